"""A command streamed on the host in a thread while a job runs, its lines handed to a parser, and the
runner's stage windows it is summarised over (the device monitor and the host monitor are two of these)."""

import abc
import threading
import time
from typing import Dict, List, Optional, Sequence, Tuple

from orchestrator.transport.base import Transport, TransportError
from runner_in_container.protocol import (
    PASS_STAGES,
    STAGE_INFER,
    STAGE_MLPERF,
    STEP_ACCURACY,
    STEP_PERFORMANCE,
    STEP_SEARCH,
)

#: stage -> [start, end] wall times of its window, as the orchestrator saw the runner's events
#: (``window_edge``)
Windows = Dict[str, List[float]]
#: the windows the monitors summarise: each pass stage's whole passes, an MLPerf job's LoadGen runs
SUMMARISED = PASS_STAGES + (STAGE_MLPERF,)
#: how long a one-shot command before the stream (a probe) may take
PROBE_TIMEOUT_S = 15.0


def window_edge(stage: str, step: str) -> Optional[str]:
    """The edge ('start'/'end') of ``stage``'s window that the runner entering ``step`` marks, else None: a
    pass stage's whole passes begin ('passes') and end as its core pass begins ('core'); an MLPerf job's
    LoadGen window opens with its performance run (Server: its search's first run) and closes as its accuracy
    run begins."""
    if stage == STAGE_MLPERF:
        if step == STEP_PERFORMANCE or step.startswith(STEP_SEARCH):
            return "start"
        return "end" if step == STEP_ACCURACY else None
    return {"passes": "start", "core": "end"}.get(step)


class Sampler(abc.ABC):
    """Streams ``argv`` over ``transport`` in a thread until stopped; each stdout line goes to ``on_line``."""

    def __init__(self, transport: Transport, argv: List[str], interval_s: float, name: str) -> None:
        self.transport = transport
        self.argv = argv
        self.interval_s = interval_s
        self.windows: Windows = {}
        self.error: Optional[str] = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def begin(self) -> None:
        """Start the thread (``before_stream`` runs in it first)."""
        self._thread.start()

    def before_stream(self) -> None:  # noqa: B027 (a hook: most samplers need nothing first)
        """Anything to find out on the host before the stream starts (in the thread); nothing by default."""

    @abc.abstractmethod
    def on_line(self, line: str) -> None:
        """One line of the command's output, as it arrives."""

    def _loop(self) -> None:
        try:
            self.before_stream()
            if not self._stop.is_set():
                self.transport.stream(self.argv, self.on_line, lambda _line: None, cancel=self._stop.is_set)
        except TransportError as exc:
            if not self._stop.is_set():
                self.error = str(exc)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def mark(self, stage: str, edge: str, at: Optional[float] = None) -> None:
        """Record the wall time (now, or ``at``) at which a stage's window opened or closed ('start'/'end');
        it opens once (a Server search's later runs are inside its window)."""
        window = self.windows.setdefault(stage, [0.0, 0.0])
        if edge != "start" or not window[0]:
            window[0 if edge == "start" else 1] = at or time.time()

    def window(self, stage: str) -> Optional[Tuple[float, float]]:
        """The stage's (start, end) when both edges were seen, in order; else None."""
        start, end = self.windows.get(stage, [0.0, 0.0])
        return (start, end) if start and end > start else None

    def figure_window(self) -> str:
        """The window the job's figures were measured under: an MLPerf job's LoadGen runs where that window
        was seen, else the infer stage's whole passes."""
        return STAGE_MLPERF if self.window(STAGE_MLPERF) is not None else STAGE_INFER

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def peak(values: Sequence[Optional[float]]) -> Optional[float]:
    """The largest of the values present, or None."""
    present = [v for v in values if v is not None]
    return max(present) if present else None


def mean(values: Sequence[Optional[float]]) -> Optional[float]:
    """The mean of the values present, or None."""
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None
