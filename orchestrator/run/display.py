"""Live progress: one line per host and device (stage, job, progress, last figure).

On a terminal it is a rich Live table; elsewhere (CI, pipes) each change of stage
prints one plain line, so logs stay readable.
"""

import sys
import threading
import time
from typing import Any, Dict, Optional, Tuple

from rich.console import Console
from rich.live import Live
from rich.table import Table

from orchestrator.safeio.text import console as safe_console
from orchestrator.safeio.text import shown

Key = Tuple[str, int]


class ProgressBoard:
    """Thread-safe board fed by host workers through ``update``."""

    def __init__(self, console: Optional[Console] = None) -> None:
        self.console = console or safe_console(stderr=True)
        self.rows: Dict[Key, Dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._live: Optional[Live] = None
        self._t0 = time.time()

    def __enter__(self) -> "ProgressBoard":
        if self.console.is_terminal:
            self._live = Live(self._table(), console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.__exit__(*exc)
            self._live = None

    def update(self, host: str, device: int, fields: Dict[str, Any]) -> None:
        """Merge ``fields`` (stage, job, note) into the row of (host, device)."""
        with self._lock:
            row = self.rows.setdefault((host, device), {"stage": "", "job": "", "note": ""})
            stage_changed = "stage" in fields and fields["stage"] != row["stage"]
            row.update({k: v for k, v in fields.items() if v is not None})
            if self._live is not None:
                self._live.update(self._table())
            elif stage_changed:
                where = host if device < 0 else "%s/dev%d" % (host, device)
                line = "[%7.1fs] %-18s %-14s %s %s" % (
                    time.time() - self._t0,
                    where,
                    row["stage"],
                    row["job"],
                    row["note"],
                )
                print(shown(line.rstrip()), file=sys.stderr, flush=True)

    def _table(self) -> Table:
        table = Table(title="rn50bench", expand=False)
        for column in ("host", "device", "stage", "job", "progress / last figure"):
            table.add_column(column)
        for (host, device), row in sorted(self.rows.items()):
            table.add_row(host, "-" if device < 0 else str(device), row["stage"], row["job"], row["note"])
        return table
