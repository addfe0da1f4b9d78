"""The orchestrator's log lines: warnings once each on stderr, as ``warning: message``."""

import logging
import sys
import threading
import warnings
from typing import Set, Tuple

from .safetext import shown


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
