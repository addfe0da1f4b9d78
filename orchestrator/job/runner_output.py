"""What the runner says while a job runs: its progress events, its exit status and its last words.

All of it is untrusted (the runner or its image may be hostile): its lines reach here already cut to a bounded
length (transport.base), its log is capped (logs.LogFile), its events are shown at a bounded rate (the rest
are counted and dropped, and the log says so once), and an event whose fields have the wrong type is shown
as far as it makes sense and never fails the job.
"""

import math
import time
from typing import Any, Callable, Dict, Optional

from orchestrator.host.monitors import JobMonitors
from orchestrator.host.sampler import window_edge
from orchestrator.job.containers import REFUSED
from orchestrator.outcome import Stage, StageFailure
from orchestrator.safeio.logs import LogFile
from orchestrator.safeio.text import one_line, os_error
from runner_in_container.protocol import EXIT_BAD_INPUT, parse_event

#: runner events handled per second on average, EVENT_BURST at once; the rest are dropped (a real runner
#: sends one every 2 s and a few per stage)
EVENTS_PER_S = 20.0
EVENT_BURST = 200
#: the most characters of an event's text field shown
FIELD_CHARS = 60


def exit_meaning(code: int, memory: Optional[str]) -> str:
    """What the runner's (or the container's) exit status says about how it ended."""
    if code == 137:
        limit = " (docker.memory %s)" % memory if memory else ""
        return "exit status 137: killed by SIGKILL, out of memory%s or killed from outside" % limit
    if code == REFUSED:
        return "exit status %d: docker could not start the container" % code
    if code in (126, 127):
        return "exit status %d: the runner command could not be run" % code
    if code == EXIT_BAD_INPUT:
        return "exit status 2: the runner refused its input"
    if code > 128:
        return "exit status %d: killed by signal %d" % (code, code - 128)
    return "exit status %d" % code


def show_event(event: Dict[str, Any], monitors: Optional[JobMonitors], say: Callable[..., None]) -> None:
    """Show a runner event on the job's line (``say(stage=..., note=...)``) and mark the monitors' windows.

    Its fields are whatever the runner sent: text is shown cut to FIELD_CHARS, a figure only when it is one.
    """
    kind = event["ev"]
    stage = _text(event.get("stage", "?"))
    if kind == "stage":
        step = _text(event.get("step") or "")
        edge = window_edge(stage, step)
        if monitors is not None and edge is not None:
            monitors.mark(stage, edge)  # its window (whole passes, LoadGen's runs) opens or closes
        say(stage=stage, note=step)
    elif kind == "progress":
        rate = _number(event.get("img_per_s"))
        note = "%s/%s" % (_text(event.get("images_done")), _text(event.get("images_total")))
        fields = {"stage": stage, "note": note + (" %.0f img/s" % rate if rate else "")}
        index = _number(event.get("pass_index"))
        if index is not None and 0 <= index < 1000:
            fields["step"] = "pass %d" % (index + 1)  # a line per pass where output is piped
        say(**fields)
    elif kind == "metric":
        rate = _number(event.get("throughput_core_img_per_s"))
        say(stage=stage, note="core %.1f img/s" % rate if rate else "")


def _text(value: Any) -> str:
    """A field as text, cut to FIELD_CHARS."""
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= FIELD_CHARS else text[: FIELD_CHARS - 3] + "..."


def _number(value: Any) -> Optional[float]:
    """A field as a finite number, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


class EventRate:
    """Admits at most ``per_second`` events a second on average and ``burst`` at once (a token bucket);
    counts the rest. Cheap: a flood of millions passes through it."""

    def __init__(self, per_second: float = EVENTS_PER_S, burst: int = EVENT_BURST) -> None:
        self.per_second = per_second
        self.burst = burst
        self.dropped = 0
        self._tokens = float(burst)
        self._last = time.monotonic()

    def admit(self) -> bool:
        now = time.monotonic()
        tokens = self._tokens + (now - self._last) * self.per_second
        self._tokens, self._last = (tokens if tokens < self.burst else self.burst), now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        self.dropped += 1
        return False


class JobLog(LogFile):
    """The job's runner.log on this machine (made 0600, capped: logs.LogFile). A write that fails (the
    results disk is full) ends the job FAILED_COLLECT naming the file: its output can no longer be kept."""

    def failed(self, exc: OSError) -> None:
        raise StageFailure(
            Stage.COLLECT, one_line("cannot keep the job's log: " + os_error(exc, self.path))
        ) from None


class RunnerOutcome:
    """What the runner process said: exit status, last error event, last stderr line."""

    def __init__(self, memory: Optional[str] = None) -> None:
        self.memory = memory  # the container's memory limit, to explain a SIGKILL
        self.returncode = -1
        self.started = False
        self.error: Optional[Dict[str, Any]] = None
        self.last_stderr = ""
        self.monitors: Optional[JobMonitors] = None
        self.mps: Optional[str] = None  # the MPS daemon the job joined (mps.py's note)
        self.events = EventRate()

    def stdout_handler(
        self, log: LogFile, on_event: Callable[[Dict[str, Any]], None]
    ) -> Callable[[str], None]:
        """Each stdout line into ``log``; each event (within the EventRate) to ``on_event``."""

        def handle(line: str) -> None:
            log.write(line + "\n")
            if not line.lstrip().startswith("{"):
                return  # ordinary output, not an event
            if not self.events.admit():
                if self.events.dropped == 1:
                    log.write(
                        "[rn50bench: more than %g events a second from the runner: those beyond are "
                        "not handled]\n" % EVENTS_PER_S
                    )
                return
            event = parse_event(line)
            if event is None:
                return
            if event["ev"] == "start":
                self.started = True
            elif event["ev"] == "error":
                self.error = event
            on_event(event)

        return handle

    def stderr_handler(self, log: LogFile) -> Callable[[str], None]:
        def handle(line: str) -> None:
            log.write("[stderr] " + line + "\n")
            if line.strip():
                self.last_stderr = line.strip()

        return handle

    def failed_stage(self) -> Stage:
        """START when the runner never began (docker or interpreter failed), else RUN."""
        return Stage.runner_ended(self.started)

    def reason(self, doc: Optional[Dict[str, Any]] = None) -> str:
        error = (doc or {}).get("error")
        error = error if isinstance(error, dict) else self.error
        if error:
            where = error.get("stage", "?")
            return one_line("%s: %s: %s" % (where, error.get("type", "error"), error.get("message", "")))
        return one_line(
            "%s: %s" % (exit_meaning(self.returncode, self.memory), self.last_stderr or "no output")
        )
