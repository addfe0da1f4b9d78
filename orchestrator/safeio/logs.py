"""The orchestrator's log lines (warnings once each on stderr, as ``warning: message``) and the log files it
keeps of what jobs and hosts printed."""

import logging
import os
import sys
import threading
import warnings
from pathlib import Path
from typing import Any, Set, Tuple

from orchestrator.safeio.bounded import size_text
from orchestrator.safeio.text import shown

#: the most a log file keeps of what one job (or one host's build) printed
MAX_LOG_BYTES = 32 << 20


class _Once(logging.Filter):
    """Let each distinct warning through once (e.g. one unverified host key warning per host)."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: Set[Tuple[str, str]] = set()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.getMessage())
        with self._lock:
            new = key not in self._seen
            self._seen.add(key)
        return new


class _Stderr(logging.Handler):
    """``warning: message`` on the sys.stderr of the moment (the live display may have replaced it)."""

    def emit(self, record: logging.LogRecord) -> None:
        line = "%s: %s" % (record.levelname.lower(), self.format(record))
        print(shown(line), file=sys.stderr, flush=True)


def setup() -> None:
    """Warnings once each on stderr; paramiko's own chatter is left out (every failure is reported anyway)."""
    root = logging.getLogger()
    if not any(isinstance(h, _Stderr) for h in root.handlers):
        handler = _Stderr(logging.WARNING)
        handler.addFilter(_Once())
        root.addHandler(handler)
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)
    # the ssh transport itself warns, once per host, when strict_host_keys is off
    warnings.filterwarnings("ignore", message="Unknown .* host key for", module="paramiko")


class LogFile:
    """A log file of what a job or a host printed (runner.log, build.log). What a job prints is untrusted:
    the file is made 0600 (never through a link) and keeps at most ``limit`` bytes, then one line saying
    that the rest was dropped. Unbuffered, so that ``tail -f`` follows it live. A write the disk refuses
    goes to ``failed`` (which raises it)."""

    def __init__(self, path: Path, limit: int = MAX_LOG_BYTES, append: bool = False) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags | (os.O_APPEND if append else os.O_TRUNC), 0o600)
        try:
            os.fchmod(fd, 0o600)  # a file made earlier keeps its mode otherwise
            self.size = os.fstat(fd).st_size
        except BaseException:
            os.close(fd)
            raise
        self.path = Path(path)
        self.limit = limit
        self.full = False
        self._handle = os.fdopen(fd, "wb", buffering=0)

    def write(self, text: str) -> None:
        if self.full:
            return
        data = text.encode("utf-8", "replace")
        if self.size + len(data) > self.limit:
            self.full = True
            data = b"[rn50bench: this log reached %s; the rest of the output is dropped]\n" % (
                size_text(self.limit).encode()
            )
        try:
            self._handle.write(data)
        except OSError as exc:
            self.failed(exc)
        self.size += len(data)

    def failed(self, exc: OSError) -> None:
        """A write failed (the disk is full): raise ``exc``."""
        raise exc

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "LogFile":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
