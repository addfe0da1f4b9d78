"""How the orchestrator reaches a host: run an argv, stream its output, move files.

Every command is an argv list. Implementations never hand a string built from
config values to a shell: the local transport execs the argv directly; the SSH
transport quotes each element with ``shlex.quote`` before the remote shell sees it.
"""

import abc
import contextlib
import os
import queue
import shlex
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, List, Optional, Sequence, Tuple

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
            raise TransportError(f"{self.argv[0]} exited {self.returncode}: {tail[0]}")
        return self


class Transport(abc.ABC):
    """One host. Thread-safe: several jobs on one host share a transport."""

    #: host name from the cluster file, for messages
    host: str

    @abc.abstractmethod
    def run(
        self, argv: Sequence[str], timeout: Optional[float] = None, stdin: Optional[bytes] = None
    ) -> Completed:
        """Run argv to completion and capture its output.

        Raises CommandTimeout after ``timeout`` seconds (the process is killed).
        A program that cannot be started gives returncode 127 (126 if not executable).
        """

    @abc.abstractmethod
    def stream(
        self,
        argv: Sequence[str],
        on_stdout: LineHandler,
        on_stderr: LineHandler,
        timeout: Optional[float] = None,
        cancel: Optional[Callable[[], bool]] = None,
    ) -> int:
        """Run argv, calling the handlers with each output line (no line break) as it comes.

        Handlers are called from the calling thread, in order within each stream.
        Returns the exit status. Raises CommandTimeout after ``timeout`` seconds and
        Cancelled once ``cancel()`` returns True; in both cases the process is killed.
        """

    @abc.abstractmethod
    def put(
        self,
        local: "Path | BinaryIO",
        remote: str,
        mode: int = 0o644,
        progress: Optional[Callable[[int], None]] = None,
    ) -> None:
        """Copy a local file, or what is left to read in an open binary file, to a path on the host (parent
        directories are created). An open file lets the caller hash exactly what is sent.

        ``progress`` is called with the bytes sent so far (at the end at least).
        """

    @abc.abstractmethod
    def get(self, remote: str, local: Path) -> None:
        """Copy a file from the host to a local path."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def __enter__(self) -> "Transport":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Process(abc.ABC):
    """A command started by a ProcessTransport: its output pipes and how to stop it."""

    stdout: BinaryIO
    stderr: BinaryIO

    @abc.abstractmethod
    def feed(self, data: bytes) -> None:
        """Write data to the command's stdin, then close it; a command that stopped reading is ignored."""

    @abc.abstractmethod
    def poll(self) -> Optional[int]:
        """The exit status once the command has ended, else None."""

    @abc.abstractmethod
    def kill(self) -> None:
        """Stop the command and its process group: TERM, a grace period, then KILL."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the command held (channels)."""


class ProcessTransport(Transport):
    """run() and stream() for transports that start a Process: line pumping, timeout, cancel."""

    #: seconds between checks of timeout, cancel and exit status while output is quiet
    poll_interval = 0.05

    @abc.abstractmethod
    def start(self, argv: List[str]) -> Process:
        """Start argv (already checked by check_argv)."""

    def run(
        self, argv: Sequence[str], timeout: Optional[float] = None, stdin: Optional[bytes] = None
    ) -> Completed:
        out: List[str] = []
        err: List[str] = []
        argv = check_argv(argv)
        returncode = self._drive(argv, out.append, err.append, timeout, None, stdin or b"")
        return Completed(argv, returncode, "".join(out), "".join(err))

    def stream(
        self,
        argv: Sequence[str],
        on_stdout: LineHandler,
        on_stderr: LineHandler,
        timeout: Optional[float] = None,
        cancel: Optional[Callable[[], bool]] = None,
    ) -> int:
        return self._drive(check_argv(argv), _chomp(on_stdout), _chomp(on_stderr), timeout, cancel, b"")

    def _drive(
        self,
        argv: List[str],
        on_stdout: LineHandler,
        on_stderr: LineHandler,
        timeout: Optional[float],
        cancel: Optional[Callable[[], bool]],
        stdin: bytes,
    ) -> int:
        """Start argv, hand its lines to the sinks here, stop it on timeout/cancel/error."""
        deadline = None if timeout is None else time.monotonic() + timeout
        proc = self.start(argv)
        lines: queue.Queue[Tuple[Optional[LineHandler], str]] = queue.Queue()
        threads = [
            _daemon(_read_lines, proc.stdout, on_stdout, lines),
            _daemon(_read_lines, proc.stderr, on_stderr, lines),
        ]
        if stdin:
            threads.append(_daemon(proc.feed, stdin))
        else:
            proc.feed(b"")
        open_pipes, returncode = 2, None
        try:
            while open_pipes or returncode is None:
                if cancel is not None and cancel():
                    raise Cancelled(f"{self.host}: {show_argv(argv)} was cancelled and killed")
                if deadline is not None and time.monotonic() >= deadline:
                    raise CommandTimeout(
                        f"{self.host}: {show_argv(argv)} timed out after {timeout:g} s and was killed"
                    )
                try:
                    sink, line = lines.get(timeout=self.poll_interval)
                except queue.Empty:
                    pass
                else:
                    if sink is None:
                        open_pipes -= 1
                    else:
                        sink(line)
                if not open_pipes:
                    returncode = proc.poll()
        except BaseException:
            proc.kill()
            raise
        finally:
            proc.close()
            for thread in threads:
                thread.join(timeout=1.0)
        return returncode


def check_argv(argv: Sequence[str]) -> List[str]:
    """The argv as a list; ValueError unless it is a non-empty sequence of NUL-free strings."""
    if isinstance(argv, (str, bytes)) or not argv:
        raise ValueError(f"argv must be a non-empty list of strings, got {argv!r}")
    items = list(argv)
    for item in items:
        if not isinstance(item, str) or "\x00" in item:
            raise ValueError(f"argv element {item!r} is not a string without NUL bytes")
    if items[0].startswith("-"):
        raise ValueError(f"argv[0] {items[0]!r} is an option, not a program")
    return items


def show_argv(argv: Sequence[str], limit: int = 120) -> str:
    """The argv as one shell-quoted line for messages (never executed)."""
    text = " ".join(shlex.quote(item) for item in argv)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def temp_name(name: str) -> str:
    """A hidden sibling name for writing ``name`` before the atomic rename."""
    return f".{name}.{uuid.uuid4().hex[:12]}.part"


@contextlib.contextmanager
def atomic_path(dest: Path, mode: Optional[int] = None) -> Iterator[Path]:
    """Yield a temporary sibling of dest (parents created); on success chmod it and rename it onto dest."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(temp_name(dest.name))
    try:
        yield tmp
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _chomp(handler: LineHandler) -> LineHandler:
    return lambda line: handler(line.rstrip("\r\n"))


def _daemon(target: Callable[..., None], *args: object) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def _read_lines(pipe: BinaryIO, sink: LineHandler, lines: "queue.Queue") -> None:
    """Queue (sink, line) for each line of pipe, then (None, '') at its end; closes the pipe."""
    try:
        for raw in iter(pipe.readline, b""):
            lines.put((sink, raw.decode("utf-8", "replace")))
    except (OSError, ValueError, EOFError):
        pass  # the pipe was closed because the command was killed
    finally:
        lines.put((None, ""))
        with contextlib.suppress(OSError, ValueError):
            pipe.close()
