"""Result protocol between the runner and the orchestrator.

Two channels leave the runner:

* progress events: one JSON object per line on stdout, each with ``"ev"`` (the event
  type) and ``"t"`` (seconds since the runner started). Lines that are not JSON
  objects with an ``"ev"`` key are ordinary log output.
* the result: ``result.json`` in the output directory, written atomically (a temp
  file in the same directory, fsync, rename), so a reader sees either nothing or
  the whole document. The layout is documented in ``docs/result_schema.md``.

This module imports nothing outside the standard library, so the orchestrator can
use it on a control machine without torch.
"""

import json
import os
import sys
import tempfile
import time
from typing import Any, Dict, Optional, Tuple

SCHEMA_NAME = "rn50bench.result"
SCHEMA_VERSION = 1
#: the version of the metric definitions (metrics.md) the figures follow; 2: the pipeline is started
#: outside every window (loader_start_s), core comes from a core pass with the model alone; 3: that core
#: pass is one pass of the set (N images' worth of calls), not R x N
METRIC_VERSION = 3
RESULT_FILE = "result.json"

#: the reference table's convention: multiply-adds per image counted as FLOPs (metrics.md)
FLAGPERF_FLOPS_PER_IMAGE = 4.12e9

#: result.json "status": the run finished; it finished below its accuracy gate; it failed after starting
STATUS_OK = "ok"
STATUS_FAILED_ACCURACY = "failed_accuracy"
STATUS_FAILED = "failed"
STATUSES = (STATUS_OK, STATUS_FAILED_ACCURACY, STATUS_FAILED)

#: the runner's stages, as its events and result.json name them: setup, then a pass stage per model: the
#: val stage (the reference model) and the infer stage (the toolkit's compiled model)
STAGE_SETUP = "setup"
STAGE_VAL = "val"
STAGE_INFER = "infer"
#: the stages that pass over the data set, in order: result.json's "stages" keys
PASS_STAGES = (STAGE_VAL, STAGE_INFER)
#: the stage while LoadGen runs (an MLPerf job), and its steps in order: the model timed, the performance run
#: (Server: the QPS search's runs, "search-1", "search-2", ...), the accuracy run
STAGE_MLPERF = "mlperf"
STEP_TIME_MODEL = "time_model"
STEP_PERFORMANCE = "performance"
STEP_SEARCH = "search-"
STEP_ACCURACY = "accuracy"

#: exit status of ``python -m runner_in_container``
EXIT_OK = 0
EXIT_FAILED = 1  # result.json has status "failed" and an "error" section
EXIT_BAD_INPUT = 2  # one line "error: <field>: <what>" on stderr; nothing written
EXIT_FAILED_ACCURACY = 3  # result.json has status "failed_accuracy"

EVENT_KEY = "ev"
EVENT_TYPES = ("start", "stage", "progress", "metric", "result", "error")

_T0 = time.time()


def runner_started_at() -> float:
    """Wall-clock time at which the runner process imported this module."""
    return _T0


def emit(ev: str, stream: Any = None, **fields: Any) -> None:
    """Write one progress event as a JSON line and flush it."""
    if ev not in EVENT_TYPES:
        raise ValueError(f"unknown event type: {ev}")
    record = {EVENT_KEY: ev, "t": round(time.time() - _T0, 3)}
    record.update(fields)
    out = stream if stream is not None else sys.stdout
    out.write(json.dumps(record, sort_keys=True) + "\n")
    out.flush()


def parse_event(line: str) -> Optional[Dict[str, Any]]:
    """Return the event in ``line``, or None when the line is ordinary output."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if isinstance(record, dict) and record.get(EVENT_KEY) in EVENT_TYPES:
        return record
    return None


def mfu(
    flops_per_image: Optional[float], core_img_per_s: Optional[float], peak_flops: Optional[float]
) -> Tuple[Optional[float], Optional[float]]:
    """(MFU, the reference table's convention) = FLOPs per image x core img/s / peak FLOP/s (metrics.md);
    (None, None) when a figure is missing."""
    if not flops_per_image or not core_img_per_s or not peak_flops:
        return None, None
    return (
        flops_per_image * core_img_per_s / peak_flops,
        FLAGPERF_FLOPS_PER_IMAGE * core_img_per_s / peak_flops,
    )


def write_json_atomic(path: str, document: Dict[str, Any]) -> None:
    """Write ``document`` to ``path`` so that no reader ever sees a partial file."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(document, handle, indent=2, sort_keys=True, allow_nan=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
