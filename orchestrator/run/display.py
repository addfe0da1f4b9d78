"""Live progress that shows life: a row per host and device (its stage, step, job, how long it has been at
it, the last progress or the build's last log line, the build log's path), the jobs that ended kept below
with their state and figure (or reason), and jobs done of all, time elapsed and an estimate of what is left.

On a terminal it is a rich Live table, redrawn four times a second (its times tick). Elsewhere (CI, pipes)
plain lines: one per change of stage or step (each pass of the runner, each stage of a build), one per
ended job, and a heartbeat of every busy row at least every HEARTBEAT_S seconds, so a log never falls silent.
"""

import sys
import threading
import time
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from rich.console import Console
from rich.live import Live
from rich.table import Table

from orchestrator.outcome import JobState
from orchestrator.safeio.text import console as safe_console
from orchestrator.safeio.text import shown

Key = Tuple[str, int]

#: the longest a piped run goes without a line
HEARTBEAT_S = 30.0
#: ended jobs the live table shows (the latest; all are counted)
SHOWN_ENDED = 12
#: the states a job ends in
ENDED = frozenset(state.value for state in JobState if state not in (JobState.PENDING, JobState.RUNNING))


class Ended(NamedTuple):
    """A job that ended, as the board keeps it."""

    host: str
    device: int
    job: str
    state: str
    said: str  # its figure when OK, else its reason
    seconds: float


def clock(seconds: float) -> str:
    """``42s``, ``3m 05s``, ``1h 02m``."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return "%ds" % seconds
    if seconds < 3600:
        return "%dm %02ds" % divmod(seconds, 60)
    return "%dh %02dm" % (seconds // 3600, seconds % 3600 // 60)


class ProgressBoard:
    """Thread-safe board fed by host workers through ``update``; ``total``: the jobs of the run."""

    def __init__(
        self, total: int = 0, console: Optional[Console] = None, heartbeat_s: float = HEARTBEAT_S
    ) -> None:
        self.console = console or safe_console(stderr=True)
        self.total = total
        self.rows: Dict[Key, Dict[str, Any]] = {}
        self.ended: List[Ended] = []
        self._lock = threading.Lock()
        self._live: Optional[Live] = None
        self._t0 = time.monotonic()
        self._heartbeat_s = heartbeat_s
        self._stop = threading.Event()
        self._beat: Optional[threading.Thread] = None
        self._told: Dict[str, Tuple[str, str]] = {}  # host -> the last failure printed: its state and reason

    def __enter__(self) -> "ProgressBoard":
        if self.console.is_terminal:
            self._live = Live(console=self.console, refresh_per_second=4, get_renderable=self._table)
            self._live.__enter__()
        else:
            self._beat = threading.Thread(target=self._heartbeat, name="progress-heartbeat", daemon=True)
            self._beat.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        if self._live is not None:
            self._live.refresh()
            self._live.__exit__(*exc)
            self._live = None

    def update(self, host: str, device: int, fields: Dict[str, Any]) -> None:
        """Merge ``fields`` (stage, step, job, note, figure, log) into the row of (host, device)."""
        now = time.monotonic()
        fields = {key: value for key, value in fields.items() if value is not None}
        with self._lock:
            row = self.rows.setdefault((host, device), {"stage": "", "step": "", "job": "", "note": ""})
            new_job = fields.get("job") not in (None, row["job"])
            new_stage = "stage" in fields and fields["stage"] != row["stage"]
            new_step = "step" in fields and fields["step"] != row["step"]
            if new_job or (new_stage and device < 0) or "since" not in row:
                row.update(since=now, figure="")  # a device row times its job, the host row its stage
            if new_stage and "step" not in fields:
                row["step"] = ""
            row.update(fields)
            ended = str(fields.get("stage", "")) in ENDED
            if ended:
                said = (row.get("figure") if fields["stage"] == JobState.OK else row["note"]) or ""
                self.ended.append(Ended(host, device, row["job"], row["stage"], said, now - row["since"]))
            if self._live is None and (new_stage or new_step or ended):
                again = False
                if ended and fields["stage"] != JobState.OK:  # a host's jobs failing alike: the reason once
                    failure = (str(row["stage"]), said)
                    again, self._told[host] = self._told.get(host) == failure, failure
                line = self._line((host, device), row, now, "the same reason as above" if again else None)
                self._print(line)

    # -- piped ---------------------------------------------------------------------------
    def _heartbeat(self) -> None:
        while not self._stop.wait(self._heartbeat_s):
            now = time.monotonic()
            with self._lock:
                lines = [self._summary(now)]
                lines += [
                    self._line(key, row, now)
                    for key, row in sorted(self.rows.items())
                    if str(row["stage"]) not in ENDED
                ]
            for line in lines:
                self._print(line)

    def _line(self, key: Key, row: Dict[str, Any], now: float, said: Optional[str] = None) -> str:
        what = " ".join(str(row[k]) for k in ("stage", "step", "job") if row[k])
        parts = [what, (said or self._said(row)).strip(), "(%s)" % clock(now - row["since"])]
        return "[%7.1fs] %-18s %s%s" % (
            now - self._t0, _where(*key), "  ".join(part for part in parts if part), self._count()
        )  # fmt: skip

    def _summary(self, now: float) -> str:
        return "[%7.1fs] %s" % (now - self._t0, self._status(now))

    def _print(self, line: str) -> None:
        print(shown(line.rstrip()), file=sys.stderr, flush=True)

    # -- shared --------------------------------------------------------------------------
    def _said(self, row: Dict[str, Any]) -> str:
        """A row's last progress (or build log line), its figure once there, and its build log's path."""
        said = row.get("figure") or row["note"]
        return said + (" (log %s)" % row["log"] if row.get("log") and str(row["stage"]) not in ENDED else "")

    def _count(self) -> str:
        return " [%d/%d jobs done]" % (len(self.ended), self.total) if self.total else ""

    def _status(self, now: float) -> str:
        """``3/12 jobs done, 5m 10s elapsed, about 15m 30s left``."""
        done, elapsed = len(self.ended), now - self._t0
        left = ""
        if 0 < done < self.total:
            left = ", about %s left" % clock(elapsed / done * (self.total - done))
        return "%d/%d jobs done, %s elapsed%s" % (done, self.total, clock(elapsed), left)

    def _table(self) -> Table:
        now = time.monotonic()
        with self._lock:
            table = Table(title="rn50bench: %s" % self._status(now), expand=False)
            for column in ("host", "device", "stage", "job", "time", "progress / figure"):
                table.add_column(column, overflow="fold")
            for (host, device), row in sorted(self.rows.items()):
                stage = " ".join(str(row[k]) for k in ("stage", "step") if row[k])
                device_text = "-" if device < 0 else str(device)
                since = clock(now - row["since"])
                table.add_row(host, device_text, stage, row["job"], since, self._said(row))
            shown_ended = self.ended[-SHOWN_ENDED:]
            if shown_ended:
                earlier = len(self.ended) - len(shown_ended)
                table.add_section()
                table.add_row("ended", "", "", "(%d earlier)" % earlier if earlier else "", "", "")
            for item in shown_ended:
                device_text = "-" if item.device < 0 else str(item.device)
                table.add_row(item.host, device_text, item.state, item.job, clock(item.seconds), item.said)
        return table


def _where(host: str, device: int) -> str:
    return host if device < 0 else "%s/dev%d" % (host, device)
