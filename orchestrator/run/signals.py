"""Terminating signals end the orchestrator the way Ctrl-C does, whichever one arrives.

SIGINT (Ctrl-C), SIGTERM (kill, systemd stop) and SIGHUP (a closed SSH session or terminal) all raise
``Terminated`` (a KeyboardInterrupt) in the main thread, once: a run then stops its containers, marks
its unfinished jobs CANCELLED and the run "interrupted", and the process exits 128 + the signal number.
Signals that arrive while that is under way are noted and otherwise ignored, so that a second Ctrl-C or a
systemd stop that repeats itself cannot cut the clean-up short (SIGKILL still can). What the note says is
the command's own (``install``): only ``run`` has containers to stop and jobs to store.
"""

import os
import signal
import sys
from types import FrameType
from typing import Optional

TERMINATING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """A terminating signal arrived; ``exit_status`` is the shell's convention for it (128 + number)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


class _Handler:
    """Raises Terminated for the first terminating signal, notes the later ones."""

    def __init__(self, stopping: str) -> None:
        self.first: Optional[int] = None
        self.stopping = stopping

    def __call__(self, signum: int, frame: Optional[FrameType]) -> None:
        if signum == signal.SIGHUP:
            _leave_the_terminal()
        if self.first is not None:
            print("%s: still %s" % (signal.Signals(signum).name, self.stopping), file=sys.stderr, flush=True)
            return
        self.first = signum
        raise Terminated(signum)


def _leave_the_terminal() -> None:
    """After a hang-up the terminal is gone: writing to it would fail, so output goes to /dev/null."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in (1, 2):
            if os.isatty(fd):
                os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def install(stopping: str) -> None:
    """Handle every terminating signal as described above (main thread only); ``stopping`` says what the
    command does once stopped (a later signal is answered "still <stopping>")."""
    handler = _Handler(stopping)
    for signum in TERMINATING:
        signal.signal(signum, handler)
