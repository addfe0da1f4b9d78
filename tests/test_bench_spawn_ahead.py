"""bench/spawn_ahead.py on the CPU: one trial each way, in fresh interpreters, gives every phase in order."""

import subprocess
import sys

import pytest

from runner_in_container.data.generate import generate
from tests.fixtures.stored_runs import REPO


@pytest.mark.slow
def test_one_trial_each_way_gives_the_phases_in_order(tmp_path):
    data = generate(str(tmp_path / "set"), 4, layout="imagefolder", size=(64, 48))
    argv = [sys.executable, "-m", "bench.spawn_ahead", "--data", data, "--trials", "1", "--processes", "2"]
    done = subprocess.run(argv, cwd=str(REPO), capture_output=True, text=True, check=True)
    table = done.stdout.split("| trial |")[-1].splitlines()[2:]
    rows = {row.split("|")[1].strip(): [float(cell) for cell in row.split("|")[2:-1]] for row in table}
    assert list(rows) == ["late 1", "ahead 1"]
    late, ahead = rows["late 1"], rows["ahead 1"]  # main_imported, spawned, imported, device, set_up, ready
    assert late[1] >= late[0] and ahead[1] < ahead[0]  # late: spawned after the runner's imports
    for phases in (late, ahead):
        assert phases[1:] == sorted(phases[1:])
