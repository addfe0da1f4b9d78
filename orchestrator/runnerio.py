"""What the runner says while a job runs: its progress events, its exit status and its last words."""

from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, Optional

from runner_in_container.protocol import EXIT_BAD_INPUT, parse_event

from .containers import REFUSED
from .monitor import Monitor
from .stages import StageFailure, one_line, os_error


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


def show_event(event: Dict[str, Any], monitor: Optional[Monitor], say: Callable[..., None]) -> None:
    """Show a runner event on the job's line (``say(stage=..., note=...)``) and mark the monitor's windows."""
    kind = event["ev"]
    stage = event.get("stage", "?")
    if kind == "stage":
        edge = {"passes": "start", "core": "end"}.get(event.get("step") or "")
        if monitor is not None and edge is not None:
            monitor.mark(stage, edge)  # the stage's whole passes begin, or end as its core pass begins
        say(stage=stage, note=event.get("step") or "")
    elif kind == "progress":
        rate = event.get("img_per_s")
        note = "%s/%s" % (event.get("images_done"), event.get("images_total"))
        say(stage=stage, note=note + (" %.0f img/s" % rate if rate else ""))
    elif kind == "metric":
        rate = event.get("throughput_core_img_per_s")
        say(stage=stage, note="core %.1f img/s" % rate if rate else "")


class JobLog:
    """The job's runner.log on this machine. A write that fails (the results disk is full) ends the job
    FAILED_COLLECT naming the file: its output can no longer be kept."""

    def __init__(self, handle: BinaryIO, path: Path) -> None:
        self.handle = handle
        self.path = path

    def write(self, text: str) -> None:
        try:
            self.handle.write(text.encode("utf-8", "replace"))
        except OSError as exc:
            raise StageFailure(
                "collect", one_line("cannot keep the job's log: " + os_error(exc, self.path))
            ) from None


class RunnerOutcome:
    """What the runner process said: exit status, last error event, last stderr line."""

    def __init__(self, memory: Optional[str] = None) -> None:
        self.memory = memory  # the container's memory limit, to explain a SIGKILL
        self.returncode = -1
        self.started = False
        self.error: Optional[Dict[str, Any]] = None
        self.last_stderr = ""
        self.monitor: Optional[Monitor] = None
        self.mps: Optional[str] = None  # the MPS daemon the job joined (mps.py's note)

    def stdout_handler(self, log, on_event: Callable[[Dict[str, Any]], None]) -> Callable[[str], None]:
        def handle(line: str) -> None:
            log.write(line + "\n")
            event = parse_event(line)
            if event is None:
                return
            if event["ev"] == "start":
                self.started = True
            elif event["ev"] == "error":
                self.error = event
            on_event(event)

        return handle

    def stderr_handler(self, log) -> Callable[[str], None]:
        def handle(line: str) -> None:
            log.write("[stderr] " + line + "\n")
            if line.strip():
                self.last_stderr = line.strip()

        return handle

    def failed_stage(self) -> str:
        """'start' when the runner never began (docker or interpreter failed), else 'run'."""
        return "run" if self.started else "start"

    def reason(self, doc: Optional[Dict[str, Any]] = None) -> str:
        error = (doc or {}).get("error") or self.error
        if error:
            where = error.get("stage", "?")
            return one_line("%s: %s: %s" % (where, error.get("type", "error"), error.get("message", "")))
        return one_line(
            "%s: %s" % (exit_meaning(self.returncode, self.memory), self.last_stderr or "no output")
        )
