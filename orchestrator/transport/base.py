"""How the orchestrator reaches a host: run an argv, stream its output, move files.

Every command is an argv list. Implementations never hand a string built from
config values to a shell: the local transport execs the argv directly; the SSH
transport quotes each element with ``shlex.quote`` before the remote shell sees it.

What comes back from a host is untrusted (a job's image or runner may be hostile): a streamed line is cut
at MAX_LINE_BYTES, a command is over when its own process exits (whatever it left holding its output open
is killed after ``drain_s``), and ``get`` fetches only a regular file, never through a link, within a size
bound and a time limit, written 0600.
"""

import abc
import collections
import contextlib
import os
import shlex
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, Callable, Deque, Iterator, List, Optional, Protocol, Sequence, Tuple

LineHandler = Callable[[str], None]


class Readable(Protocol):
    """An open binary file as ``put`` reads it: ``read(size)`` until b"" (a file, or a reader that hashes)."""

    def read(self, size: int = -1, /) -> bytes: ...

#: the longest line ``stream`` hands on: the rest of a longer line is dropped, and the line says how much
MAX_LINE_BYTES = 64 * 1024


class TransportError(RuntimeError):
    """The host could not be reached or the transfer failed (message is one line)."""


class FetchRefused(TransportError):
    """``get`` refused the file: a link, not a regular file, or too large (message is one line)."""


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

        Handlers are called from the calling thread, in order within each stream. A line longer than
        MAX_LINE_BYTES is cut there and says how much was dropped. The command is over when its process
        exits: a process it left behind that holds its output open is killed with its process group.
        Returns the exit status. Raises CommandTimeout after ``timeout`` seconds and
        Cancelled once ``cancel()`` returns True; in both cases the process is killed.
        """

    @abc.abstractmethod
    def put(
        self,
        local: "Path | Readable",
        remote: str,
        mode: int = 0o644,
        progress: Optional[Callable[[int], None]] = None,
    ) -> None:
        """Copy a local file, or what is left to read in an open binary file, to a path on the host (parent
        directories are created). An open file lets the caller hash exactly what is sent.

        ``progress`` is called with the bytes sent so far (at the end at least).
        """

    @abc.abstractmethod
    def get(self, remote: str, local: Path, max_bytes: int, timeout: Optional[float] = None) -> None:
        """Copy the regular file ``remote`` from the host to ``local`` (parents created), made 0600.

        What a job left on the host is untrusted: a symbolic link is never followed and anything but a
        regular file is never read (a FIFO, ``/dev/zero``), both refused at once, as is a file larger than
        ``max_bytes``; each refusal is a one-line FetchRefused naming ``remote``. CommandTimeout after
        ``timeout`` seconds. ``local`` appears by an atomic rename, complete; nothing is left beside it.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def __enter__(self) -> "Transport":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Process(abc.ABC):
    """A command started by a ProcessTransport: its output pipes and how to stop it."""

    stdout: IO[bytes]
    stderr: IO[bytes]

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
    #: once the command's process has exited, how long its output is still read while something it left
    #: behind holds it open; then its process group is killed
    drain_s = 2.0

    @abc.abstractmethod
    def start(self, argv: List[str]) -> Process:
        """Start argv (already checked by check_argv)."""

    def run(
        self, argv: Sequence[str], timeout: Optional[float] = None, stdin: Optional[bytes] = None
    ) -> Completed:
        out: List[str] = []
        err: List[str] = []
        argv = check_argv(argv)
        returncode = self._drive(argv, out.append, err.append, timeout, None, stdin or b"", streaming=False)
        return Completed(argv, returncode, "".join(out), "".join(err))

    def stream(
        self,
        argv: Sequence[str],
        on_stdout: LineHandler,
        on_stderr: LineHandler,
        timeout: Optional[float] = None,
        cancel: Optional[Callable[[], bool]] = None,
    ) -> int:
        return self._drive(check_argv(argv), on_stdout, on_stderr, timeout, cancel, b"", streaming=True)

    def _drive(
        self,
        argv: List[str],
        on_stdout: LineHandler,
        on_stderr: LineHandler,
        timeout: Optional[float],
        cancel: Optional[Callable[[], bool]],
        stdin: bytes,
        streaming: bool,
    ) -> int:
        """Start argv, hand its lines to the sinks here, stop it on timeout/cancel/error. ``streaming``:
        lines without their line break, cut at MAX_LINE_BYTES (else whole, as they came).

        The command is over when its process exits: its output is then read until its pipes close, for
        at most ``drain_s``; a process it left behind that still holds them is killed with its group.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        proc = self.start(argv)
        lines = _Lines()
        threads = [
            _daemon(_read_lines, proc.stdout, on_stdout, lines, streaming),
            _daemon(_read_lines, proc.stderr, on_stderr, lines, streaming),
        ]
        if stdin:
            threads.append(_daemon(proc.feed, stdin))
        else:
            proc.feed(b"")
        open_pipes, returncode, drained_by = 2, None, 0.0
        try:
            while open_pipes or returncode is None:
                if cancel is not None and cancel():
                    raise Cancelled(f"{self.host}: {show_argv(argv)} was cancelled and killed")
                if deadline is not None and time.monotonic() >= deadline:
                    raise CommandTimeout(
                        f"{self.host}: {show_argv(argv)} timed out after {timeout:g} s and was killed"
                    )
                for sink, line in lines.take(self.poll_interval):
                    if sink is None:
                        open_pipes -= 1
                    else:
                        sink(line)
                if returncode is None:
                    returncode = proc.poll()
                    drained_by = time.monotonic() + self.drain_s
                elif open_pipes and time.monotonic() >= drained_by:
                    proc.kill()  # what the command left running holds its output open
                    break
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


@contextlib.contextmanager
def private_file(dest: Path) -> Iterator[BinaryIO]:
    """A new file beside ``dest``, 0600 from its creation, to write; renamed onto ``dest`` when the block
    ends without error, else removed (parents of ``dest`` are created)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(temp_name(dest.name))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _daemon(target: Callable[..., None], *args: object) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


class _Lines:
    """Lines on their way from the reader threads to the thread that drives the command: a few hundred
    nanoseconds a line, so that a flood of lines costs little; a reader waits while ``limit`` are queued."""

    def __init__(self, limit: int = 10_000) -> None:
        self._items: Deque[Tuple[Optional[LineHandler], str]] = collections.deque()
        self._ready = threading.Event()
        self._room = threading.Event()
        self._limit = limit

    def put(self, sink: Optional[LineHandler], line: str) -> None:
        while len(self._items) >= self._limit:
            self._room.clear()
            self._room.wait(0.1)  # set again by take(); the timeout covers a take that came in between
        self._items.append((sink, line))
        if not self._ready.is_set():
            self._ready.set()

    def take(self, timeout: float, most: int = 1000) -> List[Tuple[Optional[LineHandler], str]]:
        """Up to ``most`` queued lines, waiting up to ``timeout`` for the first."""
        if not self._items:
            self._ready.clear()
            if not self._items:  # a put between the check and the clear set it again: no lost wake-up
                self._ready.wait(timeout)
        batch: List[Tuple[Optional[LineHandler], str]] = []
        while self._items and len(batch) < most:
            batch.append(self._items.popleft())
        self._room.set()
        return batch


def _read_lines(pipe: IO[bytes], sink: LineHandler, lines: _Lines, streaming: bool) -> None:
    """Queue (sink, line) for each line of pipe, then (None, '') at its end; closes the pipe. ``streaming``:
    without its line break, and a line longer than MAX_LINE_BYTES is cut there, the rest of it read and
    dropped, and the line says so."""
    try:
        while True:
            raw = pipe.readline(MAX_LINE_BYTES if streaming else -1)
            if not raw:
                break
            if streaming:
                if len(raw) == MAX_LINE_BYTES and not raw.endswith(b"\n"):
                    dropped = _skip_line(pipe)
                    raw += b" [line cut: %d more bytes dropped]" % dropped if dropped else b""
                raw = raw.rstrip(b"\r\n")
            lines.put(sink, raw.decode("utf-8", "replace"))
    except (OSError, ValueError, EOFError):
        pass  # the pipe was closed because the command was killed
    finally:
        lines.put(None, "")
        with contextlib.suppress(OSError, ValueError):
            pipe.close()


def _skip_line(pipe: IO[bytes]) -> int:
    """Read and drop the rest of a line; how many bytes that was (its line break not counted)."""
    dropped = 0
    while True:
        raw = pipe.readline(MAX_LINE_BYTES)
        if raw.endswith(b"\n"):
            return dropped + len(raw) - 1
        if not raw:
            return dropped
        dropped += len(raw)
