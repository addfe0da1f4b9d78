"""A host's workdir (job results, engine caches, the runner): only the run's user can have put anything there.

Jobs write their result.json into ``<workdir>/runs/...`` and the orchestrator takes it from there as the
job's figures, and ``<workdir>/cache`` is mounted read-write into every job. So whoever can write in the
workdir, or rename a folder on its path, can forge results. The rules, checked on the host through its
transport before anything is made there (and again after ``mkdir``):

- every existing folder on the path, and every symbolic link, is owned by root or the run's user;
- no folder on the path is writable by group or others, except a sticky one (``/tmp``, ``/var/tmp``: mode
  1777), where others cannot rename or remove what is not theirs; the path is checked both as written and
  with its links resolved;
- the workdir itself is owned by the run's user and writable by no one else (it is created 0700), and
  nothing directly inside it is a symbolic link or someone else's.

The default workdir is the run user's own state folder, never a shared temporary folder:
``$XDG_STATE_HOME/rn50bench`` (``~/.local/state/rn50bench``), or ``/var/lib/rn50bench`` for root.
"""

import posixpath
import stat
from dataclasses import dataclass
from typing import Dict, List, Optional

from .transport.base import Transport, TransportError

ROOT_DEFAULT = "/var/lib/rn50bench"
STATE_DIR = "rn50bench"


class WorkdirRefused(Exception):
    """The workdir is unsafe or unusable; the message is one line with the fix."""


@dataclass(frozen=True)
class Entry:
    """What ``lstat`` says of one path on the host."""

    path: str
    uid: int
    mode: int

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_link(self) -> bool:
        return stat.S_ISLNK(self.mode)


def _output(transport: Transport, argv: List[str], timeout: float) -> str:
    done = transport.run(argv, timeout=timeout)
    if done.returncode != 0:
        said = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise WorkdirRefused("%s failed on host %s: %s" % (argv[0], transport.host, said[0]))
    return done.stdout.strip()


def run_uid(transport: Transport, timeout: float) -> int:
    """The uid that runs the jobs' commands on the host (the SSH or local user)."""
    return int(_output(transport, ["id", "-u"], timeout))


def default_workdir(transport: Transport, timeout: float) -> str:
    """The run user's state folder on the host (see the module docstring)."""
    if run_uid(transport, timeout) == 0:
        return ROOT_DEFAULT
    state = transport.run(["printenv", "XDG_STATE_HOME"], timeout=timeout).stdout.strip()
    if not state.startswith("/"):
        home = _output(transport, ["printenv", "HOME"], timeout)
        if not home.startswith("/"):
            raise WorkdirRefused("HOME on host %s is %r, not a path: set workdir" % (transport.host, home))
        state = posixpath.join(home, ".local", "state")
    return posixpath.join(posixpath.normpath(state), STATE_DIR)


def _prefixes(path: str) -> List[str]:
    """``/a/b`` -> ``/``, ``/a``, ``/a/b``."""
    parts = [p for p in path.split("/") if p]
    return ["/"] + ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def _lstat(transport: Transport, paths: List[str], timeout: float) -> Dict[str, Entry]:
    """lstat of those of ``paths`` that exist (GNU or busybox ``stat``: uid and raw mode in hex)."""
    done = transport.run(["stat", "-c", "%u %f %n", "--"] + paths, timeout=timeout)
    found = {}
    for line in done.stdout.splitlines():
        uid, mode, name = line.split(" ", 2)
        found[name] = Entry(name, int(uid), int(mode, 16))
    return found


@dataclass(frozen=True)
class Problem:
    """Why a workdir is unsafe, and the fix, both one line."""

    reason: str
    fix: str

    def __str__(self) -> str:
        return "%s; fix: %s" % (self.reason, self.fix)


def problem(entries: List[Entry], workdir: str, uid: int) -> Optional[Problem]:
    """Why the checked ``entries`` (the workdir's path, its links resolved, its direct children) make
    ``workdir`` unsafe for user ``uid``; None when they do not."""
    who = "root" if uid == 0 else "the run's user (uid %d) or root" % uid
    elsewhere = "or set workdir to a folder of your own (unset: the run user's state folder)"
    for entry in entries:
        if entry.uid not in (0, uid) or (entry.path == workdir and entry.uid != uid):
            return Problem(
                "%s is owned by uid %d, not by %s" % (entry.path, entry.uid, who),
                "remove %s (what is in it may be forged) %s" % (entry.path, elsewhere),
            )
        if entry.is_link and entry.path.startswith(workdir.rstrip("/") + "/"):
            return Problem("%s is a symbolic link" % entry.path, "remove the link %s" % entry.path)
        lax = entry.is_dir and entry.mode & 0o022
        if lax and (entry.path == workdir or not entry.mode & stat.S_ISVTX):
            return Problem(
                "%s is writable by %s" % (entry.path, "others" if entry.mode & 0o002 else "its group"),
                "chmod go-w %s %s" % (entry.path, elsewhere),
            )
    return None


def inspect(transport: Transport, path: str, timeout: float, uid: Optional[int] = None) -> Optional[Problem]:
    """Why ``path`` is no safe workdir on the host (folders not yet made are fine); None when it is."""
    uid = run_uid(transport, timeout) if uid is None else uid
    real = transport.run(["readlink", "-m", "--", path], timeout=timeout).stdout.strip() or path
    paths = list(dict.fromkeys(_prefixes(path) + _prefixes(real)))
    entries = _lstat(transport, paths, timeout)
    checked = [entries[p] for p in paths if p in entries]
    if real in entries:
        listing = transport.run(
            ["find", "-P", real, "-mindepth", "1", "-maxdepth", "1", "-printf", "%U %m %y %p\\n"],
            timeout=timeout,
        )
        for line in listing.stdout.splitlines():
            owner, mode, kind, name = line.split(" ", 3)
            kind_bits = stat.S_IFLNK if kind == "l" else stat.S_IFDIR if kind == "d" else stat.S_IFREG
            checked.append(Entry(name, int(owner), kind_bits | int(mode, 8)))
    return problem(checked, real, uid)


def refuse_unsafe(transport: Transport, path: str, timeout: float, uid: Optional[int] = None) -> None:
    """WorkdirRefused, with the reason and its fix, when ``path`` is no safe workdir on the host."""
    found = inspect(transport, path, timeout, uid)
    if found:
        raise WorkdirRefused("workdir %s refused: %s" % (path, found))


def secure(transport: Transport, path: Optional[str], timeout: float) -> str:
    """The workdir (``path``, or the default): checked, made 0700 if missing, and checked again."""
    uid = run_uid(transport, timeout)
    path = path or default_workdir(transport, timeout)
    refuse_unsafe(transport, path, timeout, uid)
    try:
        transport.run(["mkdir", "-p", "-m", "700", "--", path], timeout=timeout).check()
    except TransportError as exc:
        raise WorkdirRefused(
            "workdir %s cannot be made on host %s: %s; fix: set workdir to a folder the run's user can "
            "create" % (path, transport.host, exc)
        ) from None
    refuse_unsafe(transport, path, timeout, uid)
    return path
