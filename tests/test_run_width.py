"""Issue 30 item 1: a real `run` piped with COLUMNS=100 and 120 prints no line of its tables longer than the
width, and every figure of its results whole (orchestrator/safeio/fit.py); `plan` likewise."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.metrics import table
from runner_in_container.data.generate import generate
from tests.test_faults import CASE, REPO, only_run, write_cluster
from tests.test_hostile_paths import bare_entry


def _orchestrator(width: int, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS=str(width))
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=str(REPO), env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def _too_long(text: str, width: int) -> list:
    return [line for line in text.splitlines() if len(line) > width]


@pytest.mark.slow
@pytest.mark.parametrize("width", [100, 120])
def test_run_and_plan_fit_the_width_and_keep_every_figure_whole(tmp_path: Path, width: int) -> None:
    data = generate(str(tmp_path / "set"), images=4, layout="imagefolder")
    host = bare_entry(Path(data), tmp_path / "work")
    path = write_cluster(tmp_path / "hosts.yaml", tmp_path, [host], cases=[dict(CASE, batch_size=2)])
    planned = _orchestrator(width, "plan", "--cluster", str(path))
    assert planned.returncode == 0 and not _too_long(planned.stdout, width), planned.stdout
    done = _orchestrator(width, "run", "--cluster", str(path))
    assert done.returncode == 0, done.stderr[-2000:]
    assert not _too_long(done.stdout, width), _too_long(done.stdout, width)
    run_id = only_run(tmp_path / "store.sqlite")["run_id"]
    store = str(tmp_path / "store.sqlite")
    reported = _orchestrator(width, "report", run_id, "--store", store, "--format", "json")
    derived = next(iter(json.loads(reported.stdout)["results"].values()))["derived"]
    lines = done.stdout.splitlines()
    for metric in table.METRICS:
        if metric.table and derived.get(metric.key) is not None:
            shown = metric.show(derived[metric.key])
            assert any(shown in line for line in lines), (metric.key, shown)
