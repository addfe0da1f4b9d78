"""A host's workdir (job results, engine caches, the runner): only the run's user can have put anything there.

Jobs write their result.json into ``<workdir>/runs/...`` and the orchestrator takes it from there as the
job's figures, and ``<workdir>/cache`` is mounted read-write into every job. So whoever can write in the
workdir, or rename a folder on its path, can forge results. The rules, checked on the host through its
transport before anything is made there (and again after ``mkdir``):

- every existing folder on the path, and every symbolic link, is owned by root or the run's user;
- no folder on the path is writable by group or others, except a sticky one (``/tmp``, ``/var/tmp``: mode
  1777), where others cannot rename or remove what is not theirs; the path is checked both as written and
  with its links resolved;
- the workdir itself is owned by the run's user (it is created 0700), and nothing at or below it is a symbolic
  link, someone else's, or writable by group or others -- a sticky folder included: the sticky exemption is
  for the folders above the workdir only.

The same rules guard the folders the orchestrator writes on its own machine (``private_local``): the store's
folder, the run locks' folder and results_dir.

The default workdir is the run user's own state folder, never a shared temporary folder:
``$XDG_STATE_HOME/rn50bench`` (``~/.local/state/rn50bench``), or ``/var/lib/rn50bench`` for root.
"""

import os
import posixpath
import stat
from dataclasses import dataclass
from typing import Dict, List, Optional

from orchestrator.transport.base import Transport, TransportError
from orchestrator.transport.local import LocalTransport

ROOT_DEFAULT = "/var/lib/rn50bench"
STATE_DIR = "rn50bench"
#: where the fix of a refused workdir points
WORKDIR_ELSEWHERE = "or set workdir to a folder of your own (unset: the run user's state folder)"
#: seconds for the checks of a folder on this machine
LOCAL_TIMEOUT = 30.0


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


def problem(
    entries: List[Entry], target: str, uid: int, elsewhere: str = WORKDIR_ELSEWHERE
) -> Optional[Problem]:
    """Why the checked ``entries`` (the path of ``target``, its links resolved, and what is below it) make
    ``target`` unsafe for user ``uid``; None when they do not. ``elsewhere``: the other way out, for fixes."""
    who = "root" if uid == 0 else "the run's user (uid %d) or root" % uid
    inside = target.rstrip("/") + "/"
    for entry in entries:
        below = entry.path == target or entry.path.startswith(inside)
        if entry.uid not in (0, uid) or (entry.path == target and entry.uid != uid):
            return Problem(
                "%s is owned by uid %d, not by %s" % (entry.path, entry.uid, who),
                "remove %s (what is in it may be forged) %s" % (entry.path, elsewhere),
            )
        if below and entry.is_link:
            return Problem("%s is a symbolic link" % entry.path, "remove the link %s" % entry.path)
        lax = entry.mode & 0o022 and (below or (entry.is_dir and not entry.mode & stat.S_ISVTX))
        if lax:
            return Problem(
                "%s is writable by %s" % (entry.path, "others" if entry.mode & 0o002 else "its group"),
                "chmod go-w %s %s" % (entry.path, elsewhere),
            )
    return None


def _unsafe_below(
    transport: Transport, real: str, uid: int, depth: Optional[int], timeout: float
) -> List[Entry]:
    """The first entry below ``real`` (down to ``depth`` levels, None: all) that is a link, someone else's or
    writable by group or others (``find``, which never follows a link); none when all are safe."""
    argv = ["find", "-P", real, "-mindepth", "1"] + ([] if depth is None else ["-maxdepth", str(depth)])
    argv += ["(", "-type", "l", "-o", "-perm", "/022", "-o", "!", "-uid", str(uid), "!", "-uid", "0", ")"]
    listing = transport.run(argv + ["-printf", "%U %m %y %p\\0", "-quit"], timeout=timeout)
    found = []
    for line in filter(None, listing.stdout.split("\0")):
        owner, mode, kind, name = line.split(" ", 3)
        kind_bits = stat.S_IFLNK if kind == "l" else stat.S_IFDIR if kind == "d" else stat.S_IFREG
        found.append(Entry(name, int(owner), kind_bits | int(mode, 8)))
    return found


def inspect(
    transport: Transport,
    path: str,
    timeout: float,
    uid: Optional[int] = None,
    depth: Optional[int] = None,
    elsewhere: str = WORKDIR_ELSEWHERE,
) -> Optional[Problem]:
    """Why ``path`` is no safe workdir on the host (folders not yet made are fine); None when it is.
    ``depth``: how many levels below it are checked (None: all)."""
    uid = run_uid(transport, timeout) if uid is None else uid
    real = transport.run(["readlink", "-m", "--", path], timeout=timeout).stdout.strip() or path
    paths = list(dict.fromkeys(_prefixes(path) + _prefixes(real)))
    entries = _lstat(transport, paths, timeout)
    checked = [entries[p] for p in paths if p in entries]
    if real in entries and entries[real].is_dir:
        checked += _unsafe_below(transport, real, uid, depth, timeout)
    return problem(checked, real, uid, elsewhere)


def make_private(
    transport: Transport,
    path: str,
    timeout: float,
    what: str = "workdir",
    depth: Optional[int] = None,
    elsewhere: str = WORKDIR_ELSEWHERE,
) -> str:
    """``path`` on the host as a folder of the run's user alone: checked, made 0700 if missing, and checked
    again; WorkdirRefused (one line naming ``what``, the reason and its fix) when it is unsafe."""
    uid = run_uid(transport, timeout)

    def refuse_unsafe() -> None:
        found = inspect(transport, path, timeout, uid, depth, elsewhere)
        if found:
            raise WorkdirRefused("%s %s refused: %s" % (what, path, found))

    refuse_unsafe()
    try:
        transport.run(["mkdir", "-p", "-m", "700", "--", path], timeout=timeout).check()
    except TransportError as exc:
        raise WorkdirRefused(
            "%s %s cannot be made on host %s: %s; fix: set %s to a folder the run's user can create"
            % (what, path, transport.host, exc, what)
        ) from None
    refuse_unsafe()
    return path


def secure(transport: Transport, path: Optional[str], timeout: float) -> str:
    """The workdir (``path``, or the default): checked, made 0700 if missing, and checked again."""
    return make_private(transport, path or default_workdir(transport, timeout), timeout)


def local_problem(path: str, elsewhere: str) -> Optional[Problem]:
    """Why a file or folder on this machine is not the run user's alone (the workdir's rules, nothing below
    it checked); None when it is, or when it does not exist."""
    return inspect(LocalTransport(), os.path.abspath(path), LOCAL_TIMEOUT, os.getuid(), 0, elsewhere)


def private_local(path: str, what: str, elsewhere: str, depth: Optional[int] = None) -> str:
    """A folder on this machine that the orchestrator writes in (``what``: the store's, the run locks',
    results_dir), under the workdir's rules down to ``depth`` levels (None: all): made 0700 if missing;
    WorkdirRefused (one line, its fix ending in ``elsewhere``) when anyone else could write in it."""
    return make_private(LocalTransport(), os.path.abspath(path), LOCAL_TIMEOUT, what, depth, elsewhere)
