"""Expanding a cluster file into jobs: the matrix, vendor filtering, stable ids, the decoder choice and the
job commands that join a CUDA MPS daemon."""

import posixpath
import re
from pathlib import Path
from typing import List

import pytest

import vendors
from orchestrator import cli
from orchestrator.config.load import load_checked, load_cluster
from orchestrator.job.plan import Job, Skipped, expand, job_id
from orchestrator.job.stages import RunContext
from orchestrator.launchers.ssh import DirectLauncher
from orchestrator.model.fields import ConfigError
from orchestrator.safeio.ids import ID_RE
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


def first_runs(jobs: List[Job]) -> List[Job]:
    """The first run of each job (the first case entry asks the default 3)."""
    return [job for job in jobs if job.run == 1]


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
    with pytest.raises(ConfigError, match="batch_size x scenario x runs x devices"):
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


def test_weights_sha256_of_the_case_else_the_host_reaches_the_runner_argv(tmp_path):
    """Issue 32, item 2: a case's weights_sha256 wins over its host's; unset, the job's spec leaves it out."""
    host_sum, case_sum = "a" * 64, "B" * 64
    text = CLUSTER.replace("weights: random", "weights: /w/mine.pth\n    weights_sha256: " + host_sum)
    loaded = cluster(
        tmp_path, text.replace("decoder: nvjpeg", "decoder: nvjpeg\n    weights_sha256: " + case_sum)
    )
    known = vendors.discover()
    jobs = first_runs(expand(loaded, known)[0])
    assert [j.weights_sha256 for j in jobs] == [host_sum] * 4 + [case_sum.lower()] * 2
    ctx = RunContext("r1", loaded, Store(str(tmp_path / "s.sqlite")), known, tmp_path, lambda *a: None)
    worker = DirectLauncher(ctx, loaded.hosts[0]).worker
    worker.runner_path = "/srv/runner/abc"
    argv = worker.job_command(jobs[-1], "/tmp/work/runs/r1/x").argv(jobs[-1].device)
    assert argv[argv.index("--weights-sha256") + 1] == case_sum.lower()
    assert "weights_sha256" not in expand(cluster(tmp_path), known)[0][0].as_dict()


def test_a_bad_weights_sha256_is_refused_naming_file_line_and_field(tmp_path):
    with pytest.raises(ConfigError) as info:
        cluster(tmp_path, CLUSTER.replace("decoder: nvjpeg", "decoder: nvjpeg\n    weights_sha256: 0676ba61"))
    assert str(info.value).count("\n") == 0
    assert "hosts.yaml" in str(info.value) and "cases[1].weights_sha256" in str(info.value)
    assert "must be 64 hex digits, got '0676ba61'" in str(info.value)


def test_a_vendor_onnx_and_engine_reach_the_runner_mounted_in_docker(tmp_path):
    """Issue 32, item 3: the case's onnx_path wins over its host's; docker mounts each file read-only."""
    text = CLUSTER.replace("weights: random", "weights: random\n    onnx_path: /v/host.onnx")
    text = text.replace("precision: fp16\n    batch_size: 256\n  -", "precision: fp16\n    batch_size: 256\n"
                        "    engine_path: /v/tuned.engine\n  -")  # fmt: skip
    text = text.replace("toolkit: [pytorch, inductor]", "toolkit: [tensorrt]").replace(
        "toolkit: pytorch\n", "toolkit: onnxruntime\n    onnx_path: /v/case.onnx\n"
    )
    loaded = cluster(tmp_path, text)
    known = vendors.discover()
    jobs = first_runs(expand(loaded, known)[0])
    assert [(j.toolkit, j.onnx_path, j.engine_path) for j in jobs] == [
        ("tensorrt", "/v/host.onnx", "/v/tuned.engine")
    ] * 2 + [("onnxruntime", "/v/case.onnx", None)] * 2
    ctx = RunContext("r1", loaded, Store(str(tmp_path / "s.sqlite")), known, tmp_path, lambda *a: None)
    worker = DirectLauncher(ctx, loaded.hosts[0].model_copy(update={"runtime": "docker"})).worker
    worker.image, worker.workdir = "rn50bench/nvidia:0123456789abcdef", "/tmp/work"
    argv = worker.job_command(jobs[0], "/tmp/work/runs/r1/x").argv(jobs[0].device)
    pairs = list(zip(argv, argv[1:]))
    assert ("--onnx-path", "/artefacts/onnx_path/host.onnx") in pairs
    assert ("--engine-path", "/artefacts/engine_path/tuned.engine") in pairs
    for source, target in (
        ("/v/host.onnx", "onnx_path/host.onnx"),
        ("/v/tuned.engine", "engine_path/tuned.engine"),
    ):
        assert ("--mount", "type=bind,source=%s,target=/artefacts/%s,readonly" % (source, target)) in pairs


@pytest.mark.parametrize(
    "replace, message",
    [
        (("toolkit: pytorch\n", "toolkit: pytorch\n    onnx_path: /v/case.onnx\n"),
         r"hosts\.yaml:\d+: cases\[1\]\.onnx_path: applies to the toolkits that run an ONNX graph: ixrt, "
         r"onnxruntime, tensorrt, xtcl, zxrt; with cases\[1\]\.toolkit: pytorch$"),
        (("weights: random", "weights: random\n    engine_path: /v/tuned.engine"),
         r"hosts\.yaml:\d+: hosts\[0\]\.engine_path: applies to the toolkits that build an engine: ixrt, "
         r"tensorrt, zxrt; with cases\[0\]\.toolkit: pytorch\n"),
        (("toolkit: pytorch\n", "toolkit: onnxruntime\n    onnx_path: v/case.onnx\n"),
         r"hosts\.yaml:\d+: cases\[1\]\.onnx_path: remote paths must be absolute, got 'v/case\.onnx'$"),
    ],
)  # fmt: skip
def test_an_artefact_a_job_cannot_take_is_refused_naming_file_line_and_field(tmp_path, replace, message):
    path = tmp_path / "hosts.yaml"
    path.write_text(CLUSTER.replace(*replace))
    with pytest.raises(ConfigError, match=message):
        load_checked(path)


def test_an_infer_only_entry_gives_its_jobs_stages_infer(tmp_path):
    """Issue 32, item 3: stages: [infer] reaches the runner as --stages infer; both: not in the spec."""
    loaded = cluster(tmp_path, CLUSTER.replace("decoder: nvjpeg", "decoder: nvjpeg\n    stages: [infer]"))
    known = vendors.discover()
    jobs = first_runs(expand(loaded, known)[0])
    assert [j.stages for j in jobs] == [None] * 4 + ["infer"] * 2
    assert "stages" not in jobs[0].as_dict() and jobs[-1].as_dict()["stages"] == "infer"
    ctx = RunContext("r1", loaded, Store(str(tmp_path / "s.sqlite")), known, tmp_path, lambda *a: None)
    worker = DirectLauncher(ctx, loaded.hosts[0]).worker
    worker.runner_path = "/srv/runner/abc"
    argv = worker.job_command(jobs[-1], "/tmp/work/runs/r1/x").argv(jobs[-1].device)
    assert argv[argv.index("--stages") + 1] == "infer"
    assert "--stages" not in worker.job_command(jobs[0], "/tmp/work/runs/r1/y").argv(jobs[0].device)


@pytest.mark.parametrize("stages", ["[val]", "[infer, val]", "[infer, infer]"])
def test_stages_without_infer_or_out_of_order_are_refused(tmp_path, stages):
    with pytest.raises(
        ConfigError, match=r"cases\[1\]\.stages: must be \[val, infer\] or \[infer\]"
    ):
        cluster(tmp_path, CLUSTER.replace("decoder: nvjpeg", "decoder: nvjpeg\n    stages: %s" % stages))


def test_across_a_batch_size_list_the_val_stage_runs_once_per_device_toolkit_and_precision(tmp_path):
    """Issue 32, item 3: the first batch size of each (toolkit, precision) runs val on each device; the
    others run infer alone."""
    text = CLUSTER.replace(
        "toolkit: [pytorch, inductor]\n    precision: fp16\n    batch_size: 256",
        "toolkit: [pytorch, inductor]\n    precision: [fp16, bf16]\n    batch_size: [64, 256]",
    )
    jobs = first_runs(expand(cluster(tmp_path, text), vendors.discover())[0])
    runs_val = sorted(j.series for j in jobs if j.stages is None)
    first = ["gpu.d%d.resnet50.%s.%s.bs64" % (d, t, p) for d in (0, 1) for t in ("pytorch", "inductor")
             for p in ("fp16", "bf16")]  # fmt: skip
    assert runs_val == sorted(first + ["gpu.d%d.resnet50.pytorch.fp16.bs256.nvjpeg" % d for d in (0, 1)])
    assert all(j.stages == "infer" for j in jobs if j.batch_size == 256 and j.decoder == "auto")


#: two entries of one toolkit that differ only in a knob (the second also holds its runs: no other job)
KNOBS = """
hosts:
  - name: gpu
    address: 198.18.0.2
    vendor: nvidia
    runtime: bare
    devices: [0]
    data: {path: /data/val}
    weights: random
cases:
  - {toolkit: cudnn_fused, precision: fp16, batch_size: 1, runs: 2, toolkit_options: {cudnn_fused_graph: "1"}}
  - {toolkit: cudnn_fused, precision: fp16, batch_size: 1, runs: 2, toolkit_options: OPTIONS}
"""


def knob_cluster(tmp_path: Path, options: str):
    path = tmp_path / "hosts.yaml"
    path.write_text(KNOBS.replace("OPTIONS", options))
    return load_checked(path)


@pytest.mark.usefixtures("keep_signal_handlers")  # cli.main installs its own handlers
def test_entries_differing_only_in_toolkit_options_are_two_jobs_named_and_planned_apart(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("COLUMNS", "300")  # each id on one line
    loaded, known = knob_cluster(tmp_path, '{cudnn_fused_benchmark: "1", cudnn_fused_graph: "1"}')
    jobs, _ = expand(loaded, known)
    one = "gpu.d0.resnet50.cudnn_fused.fp16.bs1.cudnn_fused_graph-1"
    other = "gpu.d0.resnet50.cudnn_fused.fp16.bs1.cudnn_fused_benchmark-1.cudnn_fused_graph-1"
    assert [j.job_id for j in jobs] == [one + ".r1", other + ".r1", one + ".r2", other + ".r2"]
    assert [j.series for j in jobs[:2]] == [one, other] and jobs[1].as_dict()["series"] == other
    assert jobs[1].toolkit_label == "cudnn_fused (cudnn_fused_benchmark=1, cudnn_fused_graph=1)"
    assert cli.main(["plan", "--cluster", str(tmp_path / "hosts.yaml")]) == 0
    out = capsys.readouterr().out
    assert out.count(one) == 2 and out.count(other) == 2  # the runs of each
    assert "cudnn_fused (cudnn_fused_benchmark=1, cudnn_fused_graph=1)" in out


@pytest.mark.parametrize(
    "options",
    ['{cudnn_fused_graph: "1"}', '{cudnn_fused_graph: "1", hold_until: go}', '{cudnn_fused_graph: "1", '
     'inductor_mode: default}'],
)  # fmt: skip
def test_entries_making_the_same_job_are_still_refused_whatever_changes_nothing_measured(tmp_path, options):
    """The hold knob holds the run at its start; another toolkit's knob goes unread."""
    with pytest.raises(ConfigError) as caught:
        knob_cluster(tmp_path, options)
    said = "cases[1]: makes the job of cases[0] again (host gpu, resnet50 cudnn_fused fp16 batch size 1)"
    assert said in str(caught.value)


def test_a_job_without_options_keeps_its_id_and_the_hold_knob_changes_none():
    pinned = "gpu.d1.resnet50.cudnn_fused.fp16.bs8.pil.server.r2"
    assert job_id("gpu", 1, "resnet50", "cudnn_fused", "fp16", 8, "pil", "server", run=2, runs=3) == pinned
    held = [("hold_until", "go"), ("inductor_mode", "default")]  # the runner's knob; inductor's, unread
    assert job_id("gpu", 1, "resnet50", "cudnn_fused", "fp16", 8, "pil", "server", held, 2, 3) == pinned
    assert job_id("gpu", 0, "resnet50", "pytorch", "fp32", 4) == "gpu.d0.resnet50.pytorch.fp32.bs4"


@pytest.mark.parametrize("value", ["a:b", "1+2", "x" * 60, "..", "1.y-2", "", "xpu2-v1_b"])
def test_any_option_value_gives_a_safe_short_stable_id(value):
    """A free-string knob (xtcl_device_type) may hold any character the cluster file allows; ':' and '+'
    (no docker name has them), '.' (it separates the options) or a long value name the options by a hash."""
    made = job_id("h", 0, "resnet50", "xtcl", "fp16", 1, options=[("xtcl_device_type", value)])
    assert ID_RE.match(made) and len(made) <= 100 and "/" not in made
    assert made == job_id("h", 0, "resnet50", "xtcl", "fp16", 1, options={"xtcl_device_type": value}.items())
    other = job_id("h", 0, "resnet50", "xtcl", "fp16", 1, options=[("xtcl_device_type", value + "0")])
    assert other != made
    readable = bool(re.match(r"^[A-Za-z0-9_-]{0,40}$", value))
    assert made.endswith(".xtcl_device_type-" + value) == readable
    assert re.search(r"\.opts-[0-9a-f]{12}$", made) or readable


def test_a_skipped_line_names_the_toolkit_with_the_options_it_would_be_measured_with():
    held = (("hold_until", "go"),)
    skipped = Skipped("gpu", "resnet50", "tensorrt", "fp16", 256, "no [b]TensorRT[/b]", held)
    assert skipped.line() == "skipped resnet50 tensorrt/fp16/bs256 on gpu: no [b]TensorRT[/b]"
    options = (("cudnn_fused_benchmark", "1"),)
    skipped = Skipped("gpu", "resnet50", "cudnn_fused", "fp16", 1, "why", options)
    assert skipped.line() == "skipped resnet50 cudnn_fused (cudnn_fused_benchmark=1)/fp16/bs1 on gpu: why"
