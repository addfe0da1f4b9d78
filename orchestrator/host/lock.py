"""A lock that every orchestrator process working on one host shares (e.g. "one build of this image at a
time"): ``flock`` on a file on that host, taken and held by one command over the host's transport.

The command holds the lock while its stdin stays open; closing it (or the orchestrator or its connection
dying, which closes it too) releases the lock, so a crashed run never leaves it taken.
"""

import contextlib
import logging
import time
from typing import Callable, Iterator

from orchestrator.transport.base import Process, ProcessTransport, TransportError

log = logging.getLogger(__name__)

#: run as ``sh -c LOCK_SCRIPT rn50bench-lock FILE SECONDS``; says ``waiting`` when another holder has the
#: lock, then ``locked`` (or ``no-flock`` where the host lacks flock) and holds it until stdin ends.
LOCK_SCRIPT = (
    'mkdir -p -- "${1%/*}" && exec 9>>"$1" || exit 1; '
    "command -v flock >/dev/null || { echo no-flock; exit 0; }; "
    'flock -n 9 || { echo waiting; flock -w "$2" 9 || { echo "not free within $2 s" >&2; exit 1; }; }; '
    "echo locked; read -r _; exit 0"
)
RELEASE_S = 10.0


@contextlib.contextmanager
def held(
    transport: ProcessTransport, path: str, wait_s: float, on_wait: Callable[[], None]
) -> Iterator[None]:
    """Hold the lock file ``path`` on the host; ``on_wait`` is called once when another holder has it
    (then this waits up to ``wait_s``). TransportError when it cannot be taken."""
    proc = transport.start(["sh", "-c", LOCK_SCRIPT, "rn50bench-lock", path, str(max(1, int(wait_s)))])
    try:
        said = proc.stdout.readline().strip()
        if said == b"waiting":
            on_wait()
            said = proc.stdout.readline().strip()
        if said == b"no-flock":
            log.warning(
                "host %s has no flock: runs that build the same image at once are not kept apart",
                transport.host,
            )
        elif said != b"locked":
            reason = " ".join(proc.stderr.read(500).decode("utf-8", "replace").split()) or "no answer"
            raise TransportError("%s: cannot lock %s: %s" % (transport.host, path, reason))
        yield
    finally:
        _release(proc)


def _release(proc: Process) -> None:
    """Close the holder's stdin, so that it ends and the lock is free; kill it if it does not."""
    proc.feed(b"")
    deadline = time.monotonic() + RELEASE_S
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    if proc.poll() is None:
        proc.kill()
    proc.close()
