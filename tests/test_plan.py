"""Expanding a cluster file into jobs: the matrix, vendor filtering, stable ids, the decoder choice and the
job commands that join a CUDA MPS daemon."""

import posixpath
from pathlib import Path

import pytest

import vendors
from orchestrator.config.load import load_cluster
from orchestrator.job.plan import expand
from orchestrator.job.stages import RunContext
from orchestrator.launchers.ssh import DirectLauncher
from orchestrator.model.fields import ConfigError
from orchestrator.store import Store

CLUSTER = """
hosts:
  - name: gpu
    address: 198.18.0.2
    vendor: nvidia
    runtime: bare
    devices: [0, 1]
    data: {path: /data/val}
    weights: random
    decode_processes: 3
cases:
  - toolkit: [pytorch, inductor]
    precision: fp16
    batch_size: 256
  - toolkit: pytorch
    precision: fp16
    batch_size: 256
    decoder: nvjpeg
    runs: 1
"""


def cluster(tmp_path: Path, text: str = CLUSTER):
    path = tmp_path / "hosts.yaml"
    path.write_text(text)
    return load_cluster(path)


def test_cases_expand_per_device_and_the_decoder_names_a_job_apart(tmp_path):
    jobs, skipped = expand(cluster(tmp_path), vendors.discover())
    assert not skipped
    first = [
        "gpu.d0.resnet50.pytorch.fp16.bs256.r%d",
        "gpu.d1.resnet50.pytorch.fp16.bs256.r%d",
        "gpu.d0.resnet50.inductor.fp16.bs256.r%d",
        "gpu.d1.resnet50.inductor.fp16.bs256.r%d",
    ]
    # the default 3 runs, interleaved: run 1 of every job, then run 2 ...; runs: 1 names no run
    assert [j.job_id for j in jobs] == (
        [name % 1 for name in first]
        + ["gpu.d0.resnet50.pytorch.fp16.bs256.nvjpeg", "gpu.d1.resnet50.pytorch.fp16.bs256.nvjpeg"]
        + [name % 2 for name in first]
        + [name % 3 for name in first]
    )
    assert [j.decoder for j in jobs[4:6]] == ["nvjpeg"] * 2
    assert {j.decoder for j in jobs[:4] + jobs[6:]} == {"auto"}


def test_the_runs_of_a_job_share_its_series_and_say_which_they_are(tmp_path):
    jobs, _ = expand(cluster(tmp_path), vendors.discover())
    series = [j for j in jobs if j.series == "gpu.d1.resnet50.inductor.fp16.bs256"]
    assert [(j.run, j.runs) for j in series] == [(1, 3), (2, 3), (3, 3)]
    assert series[1].as_dict()["series"] == "gpu.d1.resnet50.inductor.fp16.bs256"
    single = [j for j in jobs if j.decoder == "nvjpeg"]
    assert [(j.job_id == j.series, j.run, j.runs) for j in single] == [(True, 1, 1)] * 2


@pytest.mark.parametrize("runs", [0, 31, -1])
def test_runs_out_of_bounds_is_refused_in_one_line(tmp_path, runs):
    with pytest.raises(ConfigError) as caught:
        cluster(tmp_path, CLUSTER.replace("runs: 1", "runs: %d" % runs))
    said = str(caught.value)
    assert "cases[1].runs" in said and "1 to 30 runs" in said and "\n" not in said


def test_runs_count_against_the_most_jobs_a_file_may_make(tmp_path):
    sizes = ", ".join(str(n) for n in range(1, 201))  # 2 toolkits x 200 x 2 devices x 30 runs > 10,000
    text = CLUSTER.replace(
        "  - toolkit: [pytorch, inductor]\n    precision: fp16\n    batch_size: 256",
        "  - toolkit: [pytorch, inductor]\n    precision: fp16\n    batch_size: [%s]\n    runs: 30" % sizes,
    )
    with pytest.raises(ConfigError, match="batch_size x runs x devices"):
        cluster(tmp_path, text)


def test_the_decoder_and_its_processes_reach_the_runner_argv(tmp_path):
    loaded = cluster(tmp_path)
    known = vendors.discover()
    jobs, _ = expand(loaded, known)
    ctx = RunContext("r1", loaded, Store(str(tmp_path / "s.sqlite")), known, tmp_path, lambda *a: None)
    worker = DirectLauncher(ctx, loaded.hosts[0]).worker
    worker.runner_path = "/srv/runner/abc"
    for job in (jobs[0], jobs[-1]):
        argv = worker.job_command(job, posixpath.join("/tmp/work/runs/r1", job.job_id)).argv(job.device)
        assert argv[argv.index("--decoder") + 1] == job.decoder
        assert argv[argv.index("--decode-processes") + 1] == "3"


@pytest.mark.parametrize("mps", [False, True])
def test_a_job_joins_the_mps_daemon_only_when_its_host_says_so(tmp_path, mps):
    setting = "decode_processes: 3\n    mps: %s\n    mps_pipe_directory: /run/mps" % str(mps).lower()
    loaded = cluster(tmp_path, CLUSTER.replace("decode_processes: 3", setting))
    known = vendors.discover()
    job = expand(loaded, known)[0][0]
    ctx = RunContext("r1", loaded, Store(str(tmp_path / "s.sqlite")), known, tmp_path, lambda *a: None)
    commands = {}
    for runtime in ("bare", "docker"):
        worker = DirectLauncher(ctx, loaded.hosts[0].model_copy(update={"runtime": runtime})).worker
        worker.runner_path, worker.image = "/srv/runner/abc", "rn50bench/nvidia:0123456789abcdef"
        worker.workdir = "/tmp/work"  # as prepare() makes it
        command = worker.job_command(job, posixpath.join("/tmp/work/runs/r1", job.job_id))
        commands[runtime] = command.argv(job.device)
    bare, docker = commands["bare"], commands["docker"]
    variable = "CUDA_MPS_PIPE_DIRECTORY=/run/mps"
    assert bare[0] == "env" and (variable in bare[: bare.index("python3")]) == mps  # set for the runner
    pairs = list(zip(docker, docker[1:]))
    assert ("--ipc", "host" if mps else "private") in pairs
    assert (("--env", variable) in pairs) == mps
    assert (("--mount", "type=bind,source=/run/mps,target=/run/mps") in pairs) == mps  # read-write
    assert mps or not any("/run/mps" in arg for arg in bare + docker)


def test_an_unknown_decoder_is_refused_naming_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"cases\[1\]\.decoder"):
        cluster(tmp_path, CLUSTER.replace("decoder: nvjpeg", "decoder: dali"))


def test_two_entries_making_the_same_job_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"cases\[1\]: makes the job of cases\[0\] again \(host gpu"):
        cluster(tmp_path, CLUSTER.replace("decoder: nvjpeg", "decoder: auto"))
