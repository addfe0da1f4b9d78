"""End to end through a real Slurm: `python -m orchestrator run` with launcher slurm on a one-node cluster
(slurmctld, slurmd and munged started by the slurm_cluster fixture), the CPU vendor image run by docker on
the node. One job finishes into the results store, one is killed by Slurm for its time limit; a second run
is interrupted with Ctrl-C and its Slurm jobs, running and pending, are cancelled."""

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import pytest

from orchestrator.launchers.slurmctl import SrunTransport
from orchestrator.store import Store
from orchestrator.transport.base import Cancelled
from orchestrator.transport.local import LocalTransport
from runner_in_container.data.generate import generate
from tests.test_faults import one_run

pytestmark = [pytest.mark.docker, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
WAIT_S = 600  # a deadline for what takes a minute or two on an idle machine, to hold on a loaded one
#: a job that never ends by itself: its runner holds for a file no one makes (runner_in_container/hold.py)
HELD = {
    "toolkit": "pytorch",
    "precision": "fp32",
    "batch_size": 4,
    "warmup": 0,
    "toolkit_options": {"hold_until": "never-made"},
}


@pytest.fixture(scope="module")
def sample_set(tmp_path_factory) -> Path:
    """6 generated images: with batch size 4 the last batch is padded."""
    return Path(generate(str(tmp_path_factory.mktemp("slurm") / "set"), images=6, layout="imagefolder"))


def write_cluster(tmp_path: Path, hosts: List[Dict], cases: List[Dict], slurm: Dict) -> Path:
    cluster = {
        "store": str(tmp_path / "store.sqlite"),
        "results_dir": str(tmp_path / "results"),
        "launcher": "slurm",
        "slurm": dict({"cpus_per_task": 1, "poll_interval_s": 1, "time_limit": "10"}, **slurm),
        "hosts": hosts,
        "cases": one_run(cases),
    }
    path = tmp_path / "hosts.yaml"
    path.write_text(json.dumps(cluster))  # JSON is YAML
    return path


def cpu_host(name: str, tmp_path: Path, data: Path, sdk_dir: Path, base_image: str, **extra) -> Dict:
    return dict(
        {
            "name": name,
            "address": "local",
            "vendor": "cpu",
            "workdir": str(tmp_path / "work"),  # "shared" with the node: the node is this machine
            "workers": 2,
            "data": {"path": str(data)},
            "weights": "random",
            "image": {"base_image": base_image, "sdk_dir": str(sdk_dir)},
        },
        **extra,
    )


def orchestrator_argv(path: Path) -> List[str]:
    return [sys.executable, "-m", "orchestrator", "run", "--cluster", str(path)]


def containers_of(run_id: str) -> List[str]:
    done = subprocess.run(
        ["docker", "ps", "--all", "--format", "{{.Names}}", "--filter", "name=" + run_id],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split()


def slurm_jobs(cluster, run_jobs: List[Dict]) -> Dict[str, Dict[str, str]]:
    """Slurm's view of a run's jobs, by orchestrator job id."""
    names = {"rn50bench." + job["job_id"]: job["job_id"] for job in run_jobs}
    return {names[j["name"]]: j for j in cluster.jobs() if j["name"] in names}


def test_cpu_case_and_a_time_limit_kill(
    tmp_path, sample_set, slurm_cluster, cpu_image, cpu_sdk_dir, base_image
):
    hosts = [
        cpu_host("pool", tmp_path, sample_set, cpu_sdk_dir, base_image),
        cpu_host("short", tmp_path, sample_set, cpu_sdk_dir, base_image, slurm={"time_limit": "1"}),
        cpu_host(
            "bare", tmp_path, sample_set, cpu_sdk_dir, base_image, runtime="bare", python=sys.executable
        ),
    ]
    cases = [
        {
            "toolkit": "onnxruntime",
            "precision": "fp32",
            "batch_size": 4,
            "warmup": 1,
            "hosts": ["pool", "bare"],
        },
        dict(HELD, hosts=["short"]),
    ]
    path = write_cluster(tmp_path, hosts, cases, {"partition": slurm_cluster.partition})
    done = subprocess.run(
        orchestrator_argv(path), cwd=str(REPO), env=slurm_cluster.env, capture_output=True, text=True,
        timeout=WAIT_S + 300,
    )  # fmt: skip  # about 90 s of it is the time-limit kill
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]

    store = Store(str(tmp_path / "store.sqlite"))
    (run,) = store.runs()
    run_id = run["run_id"]
    jobs = {j["host"]: j for j in store.jobs(run_id)}
    killed = jobs["short"]

    for host, torch in (("pool", "1.13"), ("bare", "2.")):  # the CPU image's torch; the venv's
        ok = jobs[host]
        assert ok["state"] == "OK" and ok["reason"] is None, ok
        found = store.results(run_id)[ok["job_id"]]
        doc, derived = found["result"], found["derived"]
        for stage in ("val", "infer"):
            figures = doc["stages"][stage]
            assert figures["images"] == 6 and figures["padded_slots"] == 2
            # the in-pipeline core is a sub-window of the whole one; the core pass is timed on its own
            in_pipeline = figures["throughput_core_in_pipeline_img_per_s"]
            assert in_pipeline >= figures["throughput_whole_img_per_s"] > 0
            assert figures["throughput_core_img_per_s"] > 0 and figures["core_pass"]["batches"] > 0
        assert derived["tool"] == "onnxruntime" and doc["config"]["batch_size"] == 4
        assert doc["environment"]["versions"]["torch"].startswith(torch)
        log = Path(ok["log_path"]).read_text()
        assert log.startswith("rn50bench-slurm: job=") and log.count('"ev": "result"') == 1
        host_series = store.host_samples(run_id)[ok["job_id"]]  # the host monitor, an srun step on the node
        assert host_series["samples"] and "infer" in host_series["windows"], host_series

    assert killed["state"] == "FAILED_RUN", killed
    reason = killed["reason"]
    assert re.match(r"slurm TIMEOUT: time limit 1:00 reached after \d+:\d\d ", reason), reason
    assert "(slurm job " in reason and "\n" not in reason
    assert reason.endswith("; the runner was in stage hold"), reason
    assert "DUE TO TIME LIMIT" in Path(killed["log_path"]).read_text()
    assert store.results(run_id).get(killed["job_id"]) is None

    states = {
        jobs[h]["job_id"]: s for h, s in (("pool", "COMPLETED"), ("bare", "COMPLETED"), ("short", "TIMEOUT"))
    }
    assert {i: j["state"] for i, j in slurm_jobs(slurm_cluster, list(jobs.values())).items()} == states

    envs = store.environments(run_id)
    assert set(envs) == {"pool", "short", "bare"}  # captured on the node, by srun --overlap steps
    for host, env in envs.items():
        assert env["launcher"] == "slurm" and env["slurm_node"] == slurm_cluster.node
        assert env["hostname"] == slurm_cluster.node and env["cpu_count"] >= 1
        assert bool(env["docker"]) == (host != "bare")
    assert containers_of(run_id) == []  # the killed job's container went with it


def test_ctrl_c_cancels_running_and_pending_jobs(
    tmp_path, sample_set, slurm_cluster, cpu_image, cpu_sdk_dir, base_image
):
    hosts = [
        cpu_host("busy", tmp_path, sample_set, cpu_sdk_dir, base_image),
        cpu_host("waiting", tmp_path, sample_set, cpu_sdk_dir, base_image, slurm={"partition": "held"}),
        cpu_host("wrong", tmp_path, sample_set, cpu_sdk_dir, base_image, slurm={"partition": "nosuch"}),
    ]
    path = write_cluster(tmp_path, hosts, [HELD], {"partition": slurm_cluster.partition})
    proc = subprocess.Popen(
        orchestrator_argv(path), cwd=str(REPO), env=slurm_cluster.env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + WAIT_S
        while True:  # busy holds in its container (RUNNING), waiting's partition takes no jobs (PENDING)
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the jobs did not reach RUNNING / PENDING"
            logs = list((tmp_path / "results").glob("*/busy.*/runner.log"))
            states = {j["name"].split(".")[1]: j["state"] for j in slurm_cluster.jobs()}
            if logs and '"stage": "hold"' in logs[0].read_text() and states.get("waiting") == "PENDING":
                break
            time.sleep(0.5)
        run_id = logs[0].parent.parent.name
        assert len(containers_of(run_id)) == 1  # the runner is up in its container on the node
        assert states.get("busy") == "RUNNING"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=WAIT_S)  # each scancel waits until Slurm ended the job
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, out[-2000:] + err[-2000:]

    store = Store(str(tmp_path / "store.sqlite"))
    jobs = store.jobs(run_id)
    assert {(j["host"], j["state"], j["reason"]) for j in jobs} == {
        ("busy", "CANCELLED", "run interrupted"),
        ("waiting", "CANCELLED", "run interrupted"),
        ("wrong", "FAILED_START", "sbatch exited 1: sbatch: error: invalid partition specified: nosuch; "
         "sbatch: error: Batch job submission failed: Invalid partition name specified"),
    }  # fmt: skip
    assert [j["state"] for j in slurm_jobs(slurm_cluster, jobs).values()] == ["CANCELLED"] * 2
    deadline = time.monotonic() + WAIT_S  # scancel: SIGTERM now, and the batch script removes the container
    while containers_of(run_id) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert containers_of(run_id) == []


def test_srun_steps_run_on_the_node_stream_and_stop(tmp_path, slurm_cluster, monkeypatch):
    """What environment capture and the vendor monitor use: steps beside a running batch step."""
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    sbatch = ["sbatch", "--parsable", "--time=2", "--output=%s" % (tmp_path / "slurm.out")]
    job_id = slurm_cluster.run(*sbatch, "--wrap", "sleep 120").strip()
    try:
        deadline = time.monotonic() + 30
        while {j["id"]: j["state"] for j in slurm_cluster.jobs()}.get(job_id) != "RUNNING":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        probe = SrunTransport(LocalTransport("submit"), job_id)
        assert probe.run(["sh", "-c", "echo $SLURM_JOB_ID"]).check().stdout.strip() == job_id
        lines: List[str] = []
        code = probe.stream(["sh", "-c", "echo one; sleep 0.3; echo two"], lines.append, lambda _l: None)
        assert code == 0 and lines == ["one", "two"]
        started = time.monotonic()
        with pytest.raises(Cancelled):
            probe.stream(
                ["sleep", "60"], lines.append, lines.append, cancel=lambda: time.monotonic() > started + 1
            )
        assert time.monotonic() - started < 45  # the stop, not the 60 s sleep
        deadline = time.monotonic() + 45  # the stopped step leaves the job (squeue --steps lists the rest)
        while job_id + ".0" in slurm_cluster.run("squeue", "--noheader", "--steps", "--jobs=" + job_id):
            assert time.monotonic() < deadline, "the srun step outlived its stop"
            time.sleep(0.2)
    finally:
        slurm_cluster.run("scancel", job_id)
