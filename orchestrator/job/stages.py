"""What every job of a run shares: the run's context, and a stage's unexpected errors turned into its
one-line failure (``outcome.StageFailure``)."""

import contextlib
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator

from orchestrator.model.cluster import Cluster
from orchestrator.outcome import Stage, StageFailure
from orchestrator.safeio.text import one_line, os_error
from orchestrator.store import Store, StoreError
from orchestrator.transport.base import Cancelled
from vendors.vendor import Vendor

log = logging.getLogger(__name__)

#: called with (host, device, field updates) to drive the live display
Progress = Callable[[str, int, Dict[str, Any]], None]


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
