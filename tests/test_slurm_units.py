"""The Slurm launcher without a cluster: its cluster-file section, squeue/sacct parsing and end states,
the constant batch script (run for real with bash), the sbatch argv, and the output follower."""

import io
import subprocess
import tarfile
import threading
import time
import uuid
from pathlib import Path

import pytest

import vendors
from orchestrator.config.load import load_cluster
from orchestrator.job.command import DEVICE
from orchestrator.job.plan import expand
from orchestrator.job.stages import RunContext
from orchestrator.launchers import slurm, slurm_settings
from orchestrator.launchers.slurm import BATCH_SCRIPT, OutputFollower, SlurmLauncher
from orchestrator.launchers.slurmctl import JobStatus, SrunTransport, parse_sacct, parse_squeue
from orchestrator.model.fields import ConfigError
from orchestrator.outcome import StageFailure
from orchestrator.store import Store
from orchestrator.transport.base import MAX_LINE_BYTES
from orchestrator.transport.local import LocalTransport

CLUSTER = """
launcher: slurm
slurm:
  partition: gpu
  account: bench
  time_limit: "02:00:00"
  vendors:
    nvidia: {gres: "gpu:h100:1", constraint: "h100&nvlink", time_limit: "90"}
hosts:
  - name: h100-pool
    address: login1.lab
    vendor: nvidia
    data: {path: /shared/imagenet/val}
    weights: random
    workdir: /shared/rn50bench
    slurm: {account: other, exclusive: true}
  - name: cpu-pool
    address: local
    vendor: cpu
    runtime: bare
    python: /opt/venv/bin/python
    data: {path: /shared/imagenet/val}
    weights: random
    workdir: /shared/rn50bench
cases:
  - toolkit: pytorch
    batch_size: 4
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hosts.yaml"
    path.write_text(text)
    return path


# -- cluster file --------------------------------------------------------------------------------------
def test_sbatch_options_fall_back_host_then_vendor_then_cluster(tmp_path):
    cluster = load_cluster(write(tmp_path, CLUSTER))
    gpu, cpu = (slurm_settings.job_spec(cluster, h) for h in cluster.hosts)
    assert (gpu.partition, gpu.account, gpu.time_limit) == ("gpu", "other", "90")
    assert (gpu.gres, gpu.constraint, gpu.exclusive) == ("gpu:h100:1", "h100&nvlink", True)
    assert (cpu.partition, cpu.account, cpu.time_limit, cpu.gres) == ("gpu", "bench", "02:00:00", None)


@pytest.mark.parametrize(
    "edit, field",
    [
        (('time_limit: "02:00:00"', "time_limit: 2:00:00"), "slurm.time_limit"),  # YAML: the number 7200
        (('time_limit: "02:00:00"', 'time_limit: "2 hours"'), "slurm.time_limit"),
        (('gres: "gpu:h100:1"', 'gres: "gpu:1 --wrap=x"'), "slurm.vendors.nvidia.gres"),
        (('constraint: "h100&nvlink"', 'constraint: "-x"'), "slurm.vendors.nvidia.constraint"),
        (("partition: gpu", "partition: gpu;rm"), "slurm.partition"),
        (("nvidia: {", "zixiao: {"), "slurm.vendors.zixiao"),
        (("    vendor: cpu\n", "    vendor: cpu\n    devices: [0, 1]\n"), "hosts[1].devices"),
        (("launcher: slurm\n", ""), "slurm"),
        (("exclusive: true", "exclusive: true, nodes: 2"), "hosts[0].slurm.nodes"),
    ],
)
def test_bad_slurm_settings_fail_with_a_line_naming_the_field(tmp_path, edit, field):
    text = CLUSTER.replace(*edit)
    assert text != CLUSTER
    with pytest.raises(ConfigError) as info:
        load_cluster(write(tmp_path, text))
    message = str(info.value)
    assert field in message.splitlines()[0], message


# -- squeue / sacct ----------------------------------------------------------------------------------------
def test_squeue_lines_parse_to_states_exit_codes_and_signals():
    text = (
        "2|FAILED|NonZeroExitCode|vm|5:00|0:00|768|\n"
        "4|RUNNING|None|vm|2:00|0:02|0|\n"
        "1|TIMEOUT|TimeLimit|vm|1:00|1:17|15|\n"
        "7|PENDING|Resources||10:00|0:00|0|\n"
    )
    jobs = parse_squeue(text)
    assert jobs["2"].state == "FAILED" and jobs["2"].returncode() == 3 and jobs["2"].terminal
    assert jobs["4"].reason == "" and not jobs["4"].terminal
    assert jobs["1"].signal == 15 and jobs["1"].returncode() == 143
    assert jobs["7"].node == "" and jobs["7"].reason == "Resources"


def test_sacct_lines_parse_like_squeue_ones():
    text = (
        "12|CANCELLED by 1000|None|gpu07|01:00:00|00:10:02|0:15\n"
        "13|COMPLETED|None|gpu08|01:00:00|00:02:00|0:0\n"
    )
    jobs = parse_sacct(text)
    assert jobs["12"] == JobStatus("12", "CANCELLED", "", "gpu07", "01:00:00", "00:10:02", 0, 15)
    assert jobs["13"].returncode() == 0 and jobs["13"].failure(True) is None


@pytest.mark.parametrize(
    "state, ran, stage, text",
    [
        ("TIMEOUT", True, "run", "slurm TIMEOUT: time limit 1:00 reached after 1:17 on gpu07 (slurm job 9)"),
        ("CANCELLED", False, "start", "slurm CANCELLED: cancelled outside the orchestrator"),
        ("NODE_FAIL", True, "run", "slurm NODE_FAIL: node gpu07 failed (slurm job 9)"),
        ("OUT_OF_MEMORY", True, "run", "slurm OUT_OF_MEMORY: the job went over its memory limit on gpu07"),
        ("PREEMPTED", True, "run", "slurm PREEMPTED: preempted by a job of higher priority on gpu07"),
        ("BOOT_FAIL", False, "start", "slurm BOOT_FAIL: node gpu07 failed to boot"),
        ("DEADLINE", False, "start", "slurm DEADLINE: the job missed its deadline"),
        ("SPECIAL_EXIT", True, "run", "slurm SPECIAL_EXIT: ended in state SPECIAL_EXIT (Held) on gpu07"),
    ],
)
def test_slurm_end_states_map_to_a_stage_and_one_line(state, ran, stage, text):
    status = JobStatus("9", state, "Held" if state == "SPECIAL_EXIT" else "", "gpu07", "1:00", "1:17", 0, 15)
    got_stage, reason = status.failure(ran)
    assert got_stage == stage and reason.startswith(text) and reason.endswith("(slurm job 9)"), reason


def test_completed_and_failed_leave_the_verdict_to_the_exit_status():
    assert JobStatus("1", "COMPLETED", exit_code=0, signal=0).failure(True) is None
    failed = JobStatus("1", "FAILED", exit_code=1, signal=0)
    assert failed.failure(True) is None and failed.returncode() == 1


def test_srun_transport_runs_each_command_as_an_overlapping_step():
    probe = SrunTransport(LocalTransport("login"), "42")
    assert probe.wrap(["cat", "/proc/cpuinfo"]) == [
        "srun", "--jobid=42", "--overlap", "--nodes=1", "--ntasks=1", "--quiet", "--", "cat", "/proc/cpuinfo",
    ]  # fmt: skip
    assert probe.host == "login/slurm-42"


# -- the batch script ------------------------------------------------------------------------------------
def batch(args, env):
    return subprocess.run(
        ["bash", str(BATCH_SCRIPT), *args], capture_output=True, text=True, timeout=300, env=env, check=False
    )


def test_batch_script_puts_in_the_allocated_device_and_keeps_every_argument_literal(tmp_path):
    token = str(DEVICE)
    odd = '$(touch %s) "quoted" ; `x` *' % (tmp_path / "pwned")
    args = [
        "--device-token",
        token,
        "--device-from",
        "docker",
        "--",
        "printf",
        "[%s]\\n",
        odd,
        "device=" + token,
    ]
    done = batch(args, {"PATH": "/usr/bin:/bin", "SLURM_JOB_GPUS": "3,5", "CUDA_VISIBLE_DEVICES": "0,1"})
    assert done.returncode == 0, done.stderr
    first, *rest = done.stdout.splitlines()
    assert first.startswith("rn50bench-slurm: job=none node=") and first.endswith("device=3 visible=0")
    assert rest == ["[%s]" % odd, "[device=3]"]
    assert not (tmp_path / "pwned").exists()

    visible = [
        "--device-token",
        token,
        "--device-from",
        "visible",
        "--",
        "echo",
        "CUDA_VISIBLE_DEVICES=" + token,
    ]
    done = batch(visible, {"PATH": "/usr/bin:/bin", "SLURM_JOB_GPUS": "3", "CUDA_VISIBLE_DEVICES": "0"})
    assert done.stdout.splitlines()[1] == "CUDA_VISIBLE_DEVICES=0"


def test_batch_script_refuses_a_device_job_without_a_device_and_passes_exit_statuses_on():
    env = {"PATH": "/usr/bin:/bin"}
    done = batch(["--device-token", str(DEVICE), "--device-from", "docker", "--", "true"], env)
    assert done.returncode == 2 and "ask for one with gres" in done.stderr
    assert batch(["--", "sh", "-c", "exit 7"], env).returncode == 7
    assert batch(["--bogus", "--", "true"], env).returncode == 2
    assert batch([], env).returncode == 2


# -- the sbatch command ----------------------------------------------------------------------------------
@pytest.fixture
def workers(tmp_path):
    cluster = load_cluster(write(tmp_path, CLUSTER))
    known = vendors.discover()
    store = Store(str(tmp_path / "store.sqlite"))
    ctx = RunContext("20261128-000000-abcdef", cluster, store, known, tmp_path / "results", lambda *a: None)
    jobs, _ = expand(cluster, known)
    built = {}
    for host in cluster.hosts:
        launcher = SlurmLauncher(ctx, host)
        launcher.script = "/shared/rn50bench/slurm/slurm_job.sh"
        launcher.worker.user = "1000:1000"
        if host.runtime == "docker":
            launcher.worker.image = "rn50bench/nvidia:0123456789abcdef"
            launcher.context = "/shared/rn50bench/images/x.tar"
            launcher.labels = (("rn50bench.vendor", "nvidia"),)
        else:
            launcher.worker.runner_path = "/shared/rn50bench/runner/0123"
        built[host.name] = (launcher, next(j for j in jobs if j.host == host.name))
    yield built
    store.close()


def test_sbatch_argv_carries_options_script_and_the_job_command_as_separate_words(workers):
    worker, job = workers["h100-pool"]
    argv = worker.sbatch_argv(job, "/shared/rn50bench/runs/r/%s" % job.job_id)
    split = argv.index("--")
    head, command = argv[:split], argv[split + 1 :]
    assert head[:2] == ["sbatch", "--parsable"]
    expected = ["--partition=gpu", "--account=other", "--time=90", "--gres=gpu:h100:1"]
    expected += ["--constraint=h100&nvlink", "--exclusive", "--no-requeue", "--nodes=1", "--ntasks=1"]
    assert set(expected) <= set(head)
    script = head.index(worker.script)
    assert head[script + 1 :] == [
        "--device-token", str(DEVICE), "--device-from", "docker",
        "--image", worker.worker.image, "--context", worker.context, "--label", "rn50bench.vendor=nvidia",
        "--container", command[command.index("--name") + 1],
    ]  # fmt: skip
    assert command[:2] == ["docker", "run"] and '"device=%s"' % DEVICE in command
    assert "--output=/shared/rn50bench/runs/r/%s/slurm.out" % job.job_id in head
    worker.network = False  # an image stack that fetches nothing (ImageSpec.network)
    argv = worker.sbatch_argv(job, "/shared/rn50bench/runs/r/%s" % job.job_id)
    assert argv[argv.index("rn50bench.vendor=nvidia") + 1] == "--no-network"


def test_sbatch_argv_for_a_bare_cpu_job_names_no_device_and_escapes_percent_signs(workers):
    worker, job = workers["cpu-pool"]
    argv = worker.sbatch_argv(job, "/shared/100%/run")
    assert "--output=/shared/100%%/run/slurm.out" in argv and "--chdir=/shared/100%/run" in argv
    command = argv[argv.index("--") + 1 :]
    assert command[0] == "env" and "/opt/venv/bin/python" in command
    assert str(DEVICE) not in " ".join(argv)
    assert argv[argv.index(worker.script) + 1] == "--"


def test_a_job_value_holding_the_device_placeholder_is_refused_before_submitting(workers):
    worker, job = workers["h100-pool"]
    with pytest.raises(StageFailure) as info:
        worker.sbatch_argv(job, "/shared/rn50bench/runs/%s/x" % DEVICE)
    assert info.value.stage == "start" and "the device placeholder" in str(info.value)


def test_a_device_vendor_without_gres_is_refused_before_submitting(workers):
    worker, job = workers["h100-pool"]
    worker.spec = worker.spec.model_copy(update={"gres": None})
    with pytest.raises(StageFailure) as info:
        worker.sbatch_argv(job, "/shared/rn50bench/runs/r/x")
    assert info.value.stage == "start" and "slurm.vendors.nvidia.gres" in str(info.value)


# -- the job's output file ---------------------------------------------------------------------------------
def test_output_follower_returns_whole_lines_once_and_the_tail_at_the_end(tmp_path):
    path = tmp_path / "slurm.out"
    follower = OutputFollower(LocalTransport(), str(path), 10)
    assert follower.read() == []  # not there yet: the job is pending
    path.write_text('first\n{"ev": "start", "t": 0}\npart')
    assert follower.read() == ["first", '{"ev": "start", "t": 0}']
    with path.open("a") as handle:
        handle.write("ial line \u00e9\nlast without newline")
    assert follower.read() == ["partial line \u00e9"]
    assert follower.read(final=True) == ["last without newline"]
    assert follower.read(final=True) == []


def test_output_follower_reads_a_bounded_piece_per_poll_and_cuts_long_lines(tmp_path, monkeypatch):
    monkeypatch.setattr(slurm, "READ_BYTES", 100_000)
    path = tmp_path / "slurm.out"
    long_line = b"x" * (MAX_LINE_BYTES + 150_000)
    path.write_bytes(
        b"\xff\xfe not UTF-8\n" + long_line + b"\nafter\n" + b"y" * (MAX_LINE_BYTES + 5) + b"\nend"
    )
    follower = OutputFollower(LocalTransport(), str(path), 10)
    first = follower.read()
    assert first == ["\ufffd\ufffd not UTF-8"] and follower.offset == 100_000  # the bytes exact, not the text
    assert follower.read() == [] and follower.offset == 200_000  # the long line goes on; its start is kept
    cut = " [line cut: %d more bytes dropped]"
    assert follower.read(final=True) == [
        "x" * MAX_LINE_BYTES + cut % 150_000,
        "after",
        "y" * MAX_LINE_BYTES + cut % 5,
        "end",
    ]
    assert follower.offset == path.stat().st_size


def test_workers_of_one_host_entry_use_one_connection_and_row_per_job_thread(workers):
    worker, _ = workers["cpu-pool"]
    seen = {}

    def record(name):
        seen[name] = (worker.row(0), worker.transport_for(0))

    threads = [threading.Thread(target=record, args=(n,)) for n in ("a", "b")]
    for thread in threads:
        thread.start()
        thread.join()
    (slot_a, conn_a), (slot_b, conn_b) = seen["a"], seen["b"]
    assert slot_a != slot_b and conn_a is not conn_b


def test_the_readme_example_is_a_valid_cluster_file(tmp_path):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme[readme.index("## Slurm") :].split("```yaml\n", 1)[1].split("```", 1)[0]
    cluster = load_cluster(write(tmp_path, block))
    assert cluster.launcher == "slurm"
    assert slurm_settings.job_spec(cluster, cluster.hosts[1]).time_limit == "20"


# -- the batch script with a real docker engine --------------------------------------------------------
def docker(*argv):
    return subprocess.run(["docker", *argv], capture_output=True, text=True, timeout=120, check=False)


def staged_context(tmp_path, dockerfile: str) -> Path:
    """A build context tar holding only ``dockerfile``, as the launcher stages it."""
    context, data = tmp_path / "context.tar", dockerfile.encode()
    with tarfile.open(context, "w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return context


@pytest.mark.docker
def test_batch_script_builds_a_missing_image_from_the_staged_context(tmp_path, base_image):
    tag = "rn50bench-test/slurm-build:%s" % uuid.uuid4().hex[:12]
    context = staged_context(tmp_path, "FROM %s\nLABEL rn50bench.test.layer=yes\n" % base_image)
    label = '{{index .Config.Labels "rn50bench.test"}}'
    args = ["--image", tag, "--context", str(context), "--label", "rn50bench.test=from-argv", "--"]
    try:
        done = batch(args + ["docker", "image", "inspect", "--format", label, tag], None)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "rn50bench-slurm: building %s" % tag in done.stdout
        assert done.stdout.splitlines()[-1] == "from-argv"
        again = batch(args + ["true"], None)  # present now: nothing is built
        assert again.returncode == 0 and "building" not in again.stdout
    finally:
        docker("image", "rm", "--force", tag)


@pytest.mark.docker
def test_batch_script_builds_without_a_network_when_told(tmp_path, base_image):
    """--no-network (an image stack that fetches nothing): the build's steps see no interface but lo."""
    tag = "rn50bench-test/slurm-offline:%s" % uuid.uuid4().hex[:12]
    context = staged_context(tmp_path, "FROM %s\nRUN test ! -e /sys/class/net/eth0\n" % base_image)
    try:
        done = batch(["--image", tag, "--context", str(context), "--no-network", "--", "true"], None)
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        docker("image", "rm", "--force", tag)


@pytest.mark.docker
def test_batch_script_removes_its_container_when_slurm_stops_the_job(base_image):
    name = "rn50bench-test-slurm-%s" % uuid.uuid4().hex[:12]
    argv = ["bash", str(BATCH_SCRIPT), "--container", name, "--"]
    argv += ["docker", "run", "--rm", "--name", name, base_image, "sleep", "300"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while docker("container", "inspect", name).returncode != 0:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        proc.terminate()  # what Slurm sends at the time limit or on scancel, before SIGKILL
        proc.wait(timeout=300)
        assert docker("container", "inspect", name).returncode != 0
    finally:
        if proc.poll() is None:
            proc.kill()
        docker("rm", "--force", name)
