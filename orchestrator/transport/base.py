"""How the orchestrator reaches a host: run an argv, stream its output, move files.

Every command is an argv list. Implementations never hand a string built from
config values to a shell: the local transport execs the argv directly; the SSH
transport quotes each element with ``shlex.quote`` before the remote shell sees it.
"""
import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

LineHandler = Callable[[str], None]


class TransportError(RuntimeError):
    """The host could not be reached or the transfer failed (message is one line)."""


class CommandTimeout(TransportError):
    """A command ran past its timeout; the process was killed."""


class Cancelled(TransportError):
    """A command was stopped because the run is being cancelled."""


@dataclass(frozen=True)
class Completed:
    """Outcome of a finished command."""

    argv: Sequence[str]
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> "Completed":
        """Raise TransportError with the command and its last stderr line unless rc == 0."""
        if self.returncode != 0:
            tail = (self.stderr.strip() or self.stdout.strip()).splitlines()[-1:] or [""]
            raise TransportError("%s exited %d: %s" % (self.argv[0], self.returncode, tail[0]))
        return self


class Transport(abc.ABC):
    """One host. Thread-safe: several jobs on one host share a transport."""

    #: host name from the cluster file, for messages
    host: str

    @abc.abstractmethod
    def run(self, argv: Sequence[str], timeout: Optional[float] = None, stdin: Optional[bytes] = None) -> Completed:
        """Run argv to completion and capture its output."""

    @abc.abstractmethod
    def stream(
        self,
        argv: Sequence[str],
        on_stdout: LineHandler,
        on_stderr: LineHandler,
        timeout: Optional[float] = None,
        cancel: Optional[Callable[[], bool]] = None,
    ) -> int:
        """Run argv, calling the handlers with each output line as it comes.

        Returns the exit status. Raises CommandTimeout after ``timeout`` seconds and
        Cancelled once ``cancel()`` returns True; in both cases the process is killed.
        """

    @abc.abstractmethod
    def put(self, local: Path, remote: str, mode: int = 0o644) -> None:
        """Copy a local file to a path on the host (parent directories are created)."""

    @abc.abstractmethod
    def get(self, remote: str, local: Path) -> None:
        """Copy a file from the host to a local path."""

    def close(self) -> None:
        """Release connections."""

    def __enter__(self) -> "Transport":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
