"""One orchestrator per run: a run (new or resumed) is held under an exclusive lock for as long as it runs.

The lock is ``flock`` on ``<store>-locks/<run id>.lock``, which names its holder (PID and host). The kernel
drops it when the holder ends, however it ends (even SIGKILL), so a lock is never stale; the file stays
behind, harmless. A second ``run --resume`` of a run in progress is refused before it touches the run.
The lock folder follows the workdir's rules (``workdir.private_local``): the run user's alone, 0700.
"""

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Iterator

from orchestrator.host import workdir as workdirs
from orchestrator.safeio import bounded, ids
from orchestrator.store import STORE_ELSEWHERE


class RunLocked(Exception):
    """Another orchestrator runs this run; the message names it (one line)."""


def lock_path(store: str, run_id: str) -> Path:
    """The lock file of a run: beside the store, whichever way the store's path is spelled; ids.BadId for a
    run id that is no valid id (it could name a file elsewhere)."""
    return Path(os.path.realpath(store) + "-locks") / (ids.checked("run", run_id) + ".lock")


@contextlib.contextmanager
def held(store: str, run_id: str) -> Iterator[Path]:
    """Hold run ``run_id`` of ``store`` while the block runs; RunLocked when another process holds it."""
    try:
        path = lock_path(store, run_id)
        workdirs.private_local(str(path.parent), "run lock folder", STORE_ELSEWHERE, 1)
        fd = os.open(str(path), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except (ids.BadId, workdirs.WorkdirRefused) as exc:
        raise RunLocked("cannot lock run %s: %s" % (run_id, exc)) from None
    except OSError as exc:
        raise RunLocked("cannot lock run %s: %s: %s" % (run_id, path, exc.strerror or exc)) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise RunLocked("cannot lock run %s: %s: %s" % (run_id, path, exc.strerror)) from None
            raise RunLocked(_held_by(run_id, fd)) from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(holder).encode(), 0)
        except OSError as exc:  # a full disk
            raise RunLocked("cannot lock run %s: %s: %s" % (run_id, path, exc.strerror or exc)) from None
        yield path
    finally:
        os.close(fd)  # releases the lock


def is_held(store: str, run_id: str) -> bool:
    """Whether an orchestrator holds the run now (creates nothing: reading commands call it)."""
    try:
        fd = os.open(str(lock_path(store, run_id)), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (OSError, ids.BadId):
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def _held_by(run_id: str, fd: int) -> str:
    """The one-line refusal, naming the holder as its lock file says."""
    try:
        holder = bounded.loads(os.pread(fd, 4096, 0))
        who = "PID %d on host %s (since %s)" % (
            int(holder["pid"]),
            holder["host"],
            time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(holder["since"]))),
        )
    except (ValueError, KeyError, TypeError):
        who = "another process (it has not written its name yet)"
    return "run %s is being run by %s; wait for it to end, or stop that process first" % (run_id, who)
