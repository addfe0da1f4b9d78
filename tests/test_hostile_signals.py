"""Issue 18, items 2 and 3, on a real dockerd: every terminating signal ends a run as Ctrl-C does (its
container stopped, its job CANCELLED, the run "interrupted"), and a second orchestrator on a run in
progress is refused in one line naming the first one's PID and host.

The job holds in its container (``hold_until``, runner_in_container/hold.py) and is never released: the
signal or the second orchestrator meets its container running by construction.
"""

import signal
import socket
import subprocess
from pathlib import Path
from typing import Tuple

import pytest

from orchestrator.store import Store
from runner_in_container.data.generate import generate
from tests.test_faults import (
    HELD,
    _holding,
    _states,
    _wait_for,
    containers_of,
    local_entry,
    only_run,
    orchestrator,
    start_orchestrator,
    write_cluster,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]

JOB = "here.d0.resnet50.pytorch.fp32.bs4"


def start_held_run(tmp_path: Path, data: Path, image) -> Tuple[subprocess.Popen, Path, str]:
    """An orchestrator whose one job holds in its container until released (never here): (process, store,
    run id)."""
    path = write_cluster(
        tmp_path / "hosts.yaml", tmp_path, [local_entry("here", data, tmp_path / "work", image)], cases=[HELD]
    )
    store = tmp_path / "store.sqlite"
    proc = start_orchestrator("run", "--cluster", str(path))
    try:
        _wait_for("the run in the store", lambda: "RUNNING" in _states(store).values(), proc)
        run_id = only_run(store)["run_id"]
        log = tmp_path / "results" / run_id / JOB / "runner.log"
        _wait_for("the job to hold in its container", lambda: _holding(log), proc)
        assert containers_of(run_id) != []
    except BaseException:
        stop(proc, signal.SIGINT)
        raise
    return proc, store, run_id


@pytest.fixture
def image(cpu_image, cpu_sdk_dir, base_image):
    return {"base_image": base_image, "sdk_dir": str(cpu_sdk_dir)}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return Path(generate(str(tmp_path_factory.mktemp("sig-data") / "set"), images=4, layout="imagefolder"))


def stop(proc: subprocess.Popen, signum: int) -> Tuple[str, str]:
    try:
        proc.send_signal(signum)
        return proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_terminating_signal_stops_the_container_and_marks_the_run(tmp_path, tiny, image, signum):
    proc, store, run_id = start_held_run(tmp_path, tiny, image)
    _, err = stop(proc, signum)
    assert proc.returncode == 128 + signum, err[-3000:]
    assert "Traceback" not in err
    assert containers_of(run_id) == []
    (job,) = Store(str(store)).jobs(run_id)
    assert (job["state"], job["reason"]) == ("CANCELLED", "run interrupted")
    assert only_run(store)["state"] == "interrupted"


def test_a_second_orchestrator_on_a_running_run_is_refused(tmp_path, tiny, image):
    proc, store, run_id = start_held_run(tmp_path, tiny, image)
    try:
        second = orchestrator("run", "--resume", run_id, "--store", str(store), timeout=120)
        running = containers_of(run_id)
    finally:
        _, err = stop(proc, signal.SIGINT)
    assert second.returncode == 2
    assert second.stderr.startswith(
        "error: run %s is being run by PID %d on host %s (since " % (run_id, proc.pid, socket.gethostname())
    )
    assert second.stderr.count("\n") == 1
    assert running != []  # the first one's container was left alone
    assert proc.returncode == 130, err[-3000:]
    assert only_run(store)["state"] == "interrupted"
