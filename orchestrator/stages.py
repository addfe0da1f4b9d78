"""What every part of a run shares: the run's context, and how a job stage fails in one line.

A job ends in a state and a one-line reason, never in an exception: OK, or
FAILED_<stage> for the stage that broke (``states.Stage``), or CANCELLED. Other
jobs and hosts carry on.
"""

import contextlib
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional

from vendors.vendor import Vendor

from .config import Cluster
from .states import Stage
from .store import Store, StoreError
from .transport.base import Cancelled

INTERRUPTED = "run interrupted"

log = logging.getLogger(__name__)

#: called with (host, device, field updates) to drive the live display
Progress = Callable[[str, int, Dict[str, Any]], None]


class StageFailure(Exception):
    """A job stage failed; ``stage`` names it and the message is the one-line reason."""

    def __init__(self, stage: Stage, reason: str) -> None:
        super().__init__(reason)
        self.stage = stage


@dataclass
class RunContext:
    """What all host workers of one run share."""

    run_id: str
    cluster: Cluster
    store: Store
    vendors: Dict[str, Vendor]
    results_dir: Path
    progress: Progress
    cancel: threading.Event = field(default_factory=threading.Event)


def one_line(text: str) -> str:
    """Collapse a message to one line of at most 300 characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= 300 else line[:297] + "..."


@contextlib.contextmanager
def stage_errors(stage: Stage) -> Iterator[None]:
    """Turn an unexpected error inside ``stage`` into StageFailure(stage), so that no job ends by raising."""
    try:
        yield
    except (StageFailure, Cancelled, StoreError):
        raise
    except OSError as exc:  # a file here (full disk, no permission): named, with no traceback
        raise StageFailure(stage, one_line(os_error(exc))) from None
    except Exception as exc:
        log.warning("unexpected error in stage %s", stage, exc_info=True)
        raise StageFailure(stage, one_line("%s: %s" % (type(exc).__name__, exc))) from exc


def os_error(exc: OSError, path: Optional[Path] = None) -> str:
    """``PATH: reason`` of a failed file operation on this machine."""
    where = path or exc.filename
    return "%s: %s" % (where, exc.strerror or exc) if where else str(exc.strerror or exc)
