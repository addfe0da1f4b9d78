"""MLPerf scenarios in a cluster file: ``scenario`` expands like toolkit, names its jobs, reaches the runner's
argv with only the LoadGen settings that scenario reads, and ``plan`` refuses bad settings in one line
naming the file, the line and the field (contract.OPTIONS and contract.JOINTS, as the runner checks them)."""

import posixpath
import subprocess
from pathlib import Path

import pytest

import vendors
from orchestrator.config.load import load_cluster
from orchestrator.job.plan import expand
from orchestrator.job.stages import RunContext
from orchestrator.launchers.ssh import DirectLauncher
from orchestrator.store import Store
from tests.test_faults import orchestrator
from vendors.cpu import LOADGEN_WHEEL

CLUSTER = """\
store: s.sqlite
hosts:
  - name: gpu
    address: 198.18.0.2
    vendor: nvidia
    runtime: bare
    data: {path: /data/val}
    weights: random
cases:
  - toolkit: pytorch
    precision: fp16
    batch_size: 8
    scenario: [flagperf, offline, server]
    server_target_qps: 500
    mlperf_duration_s: 2
    runs: 1
"""


def write(tmp_path: Path, text: str = CLUSTER) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(text)
    return path


def plan(path: Path) -> subprocess.CompletedProcess:
    return orchestrator("plan", "--cluster", str(path), timeout=300)


def test_a_list_of_scenarios_expands_and_names_each_job(tmp_path):
    jobs, skipped = expand(load_cluster(write(tmp_path)), vendors.discover())
    assert not skipped
    assert [j.job_id for j in jobs] == [
        "gpu.d0.resnet50.pytorch.fp16.bs8",
        "gpu.d0.resnet50.pytorch.fp16.bs8.offline",
        "gpu.d0.resnet50.pytorch.fp16.bs8.server",
    ]
    flagperf, offline, server = jobs
    assert (flagperf.mlperf_duration_s, flagperf.server_target_qps) == (None, None)
    assert (offline.mlperf_duration_s, offline.server_target_qps) == (2, None)  # server's setting: not read
    assert (server.mlperf_duration_s, server.server_target_qps) == (2, 500)


def test_the_scenario_and_its_settings_reach_the_runner_argv(tmp_path):
    loaded = load_cluster(write(tmp_path))
    known = vendors.discover()
    jobs, _ = expand(loaded, known)
    ctx = RunContext("r1", loaded, Store(str(tmp_path / "s.sqlite")), known, tmp_path, lambda *a: None)
    worker = DirectLauncher(ctx, loaded.hosts[0]).worker
    worker.runner_path = "/srv/runner/abc"
    argvs = [worker.job_command(j, posixpath.join("/tmp/w/runs/r1", j.job_id)).argv(j.device) for j in jobs]
    flagperf, offline, server = argvs
    assert flagperf[flagperf.index("--scenario") + 1] == "flagperf" and "--mlperf-duration-s" not in flagperf
    assert offline[offline.index("--scenario") + 1] == "offline" and "--server-target-qps" not in offline
    assert float(server[server.index("--server-target-qps") + 1]) == 500
    assert server[server.index("--mlperf") + 1] == "short"


def test_plan_takes_the_file(tmp_path):
    proc = plan(write(tmp_path))
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    "old, new, line, what",
    [
        (
            "[flagperf, offline, server]",
            "[offline, mlperf_server]",
            13,
            "cases[0].scenario: unknown scenario 'mlperf_server'; did you mean server?",
        ),
        (
            "server_target_qps: 500",
            "server_target_qps: -5",
            14,
            "cases[0].server_target_qps: must be a positive number, got -5",
        ),
        (
            "[flagperf, offline, server]",
            "[flagperf, offline]",
            14,
            "cases[0].server_target_qps: applies to the server scenario only; with cases[0].scenario: "
            "flagperf",
        ),
        (
            "mlperf_duration_s: 2",
            "mlperf_duration_s: 2\n    mlperf: compliant",
            15,
            "cases[0].mlperf_duration_s: applies to short runs; compliant runs last mlperf.conf's minimums; "
            "with cases[0].mlperf: compliant",
        ),
    ],
)
def test_plan_refuses_a_bad_scenario_setting_in_one_line(tmp_path, old, new, line, what):
    path = write(tmp_path, CLUSTER.replace(old, new))
    proc = plan(path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1
    assert proc.stderr.startswith("error: %s:%d: " % (path, line)), proc.stderr
    assert what in proc.stderr, proc.stderr


def test_a_scenario_whose_loadgen_wheel_is_absent_is_skipped_with_the_reason(tmp_path):
    sdk = tmp_path / "sdk"
    sdk.mkdir()  # neither optional wheel: the CPU image is built without onnxruntime and LoadGen
    text = """\
hosts:
  - name: here
    address: local
    vendor: cpu
    data: {path: /data/val}
    weights: random
    image: {sdk_dir: %s}
cases:
  - toolkit: pytorch
    batch_size: 4
    scenario: [flagperf, offline]
    runs: 1
""" % sdk
    jobs, skipped = expand(load_cluster(write(tmp_path, text)), vendors.discover())
    assert [job.job_id for job in jobs] == ["here.d0.resnet50.pytorch.fp32.bs4"]
    (skip,) = skipped
    assert skip.reason == (
        "scenario offline needs SDK file %s in image.sdk_dir (%s), which lacks it" % (LOADGEN_WHEEL.name, sdk)
    )
