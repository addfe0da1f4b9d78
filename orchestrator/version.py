"""Which orchestrator this is: the project's version and, in a git checkout, its revision (``--version``,
and stored with each run: ``Store.create_run``)."""

import functools
import subprocess
from importlib import metadata
from pathlib import Path
from typing import List, Optional

PROJECT = "rn50bench"
#: the checkout this package lies in, when it is one
CHECKOUT = Path(__file__).resolve().parent.parent


@functools.lru_cache(maxsize=1)
def version() -> str:
    """``rn50bench 0.1.0 (git 1a2b3c4d5e6f)``, ``, modified`` where tracked files differ from it; the git
    part only in a git checkout with git installed."""
    try:
        number = metadata.version(PROJECT)
    except metadata.PackageNotFoundError:
        number = "unknown"
    revision = _git(["rev-parse", "--short=12", "HEAD"])
    if revision is None:
        return "%s %s" % (PROJECT, number)
    modified = _git(["status", "--porcelain", "--untracked-files=no"])
    return "%s %s (git %s%s)" % (PROJECT, number, revision, ", modified" if modified else "")


def _git(args: List[str]) -> Optional[str]:
    """git's output in the checkout (stripped); None where it is none, or git is missing or fails."""
    if not (CHECKOUT / ".git").exists():
        return None
    try:
        done = subprocess.run(
            ["git", "-C", str(CHECKOUT), *args], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None
