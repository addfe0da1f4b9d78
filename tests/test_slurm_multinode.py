"""Scale-out through a real multi-node Slurm: `python -m orchestrator run` with launcher slurm, its pool's
submit host the cluster's login node reached over SSH (host key checked), on two slurmd nodes in their own
network namespaces with accounting in slurmdbd and MariaDB (tests/fixtures/slurm_multinode.py). The runner
runs bare, with this interpreter, on the filesystem every node shares.

The orchestrator runs without SLURM_CONF: only the login node can reach the cluster's clients."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import pytest

from orchestrator.store import Store
from runner_in_container.data.generate import generate
from tests.test_faults import one_run

pytestmark = [pytest.mark.ssh, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
CASE = {"toolkit": "pytorch", "precision": "fp32", "warmup": 0}
#: how long a run may take: minutes in CI, far more on a machine shared with other work
RUN_S = 1800
#: passes over the 2 images: long enough (seconds on one CPU) for a job to be seen in them and killed
REPEAT = 8


@pytest.fixture(scope="module")
def sample_set(tmp_path_factory) -> Path:
    return Path(generate(str(tmp_path_factory.mktemp("multinode") / "set"), images=4, layout="imagefolder"))


def write_cluster(tmp_path: Path, cluster, data: Path, cases: List[Dict], **pool_extra) -> Path:
    login = cluster.login
    pool = dict({
        "name": "pool",
        "address": login.address,
        "port": login.port,
        "user": login.user,
        "key_file": login.key_file,
        "known_hosts": login.known_hosts,
        "vendor": "cpu",
        "runtime": "bare",
        "python": sys.executable,
        "workdir": str(tmp_path / "work"),  # the same path on the login node and every node
        "workers": 1,
        "data": {"path": str(data)},
        "weights": "random",
    }, **pool_extra)  # fmt: skip
    doc = {
        "store": str(tmp_path / "store.sqlite"),
        "results_dir": str(tmp_path / "results"),
        "launcher": "slurm",
        "slurm": {
            "partition": cluster.partition,
            "cpus_per_task": 1,
            "poll_interval_s": 1,
            "time_limit": "10",
        },
        "hosts": [pool],
        "cases": one_run(cases),
    }
    path = tmp_path / "hosts.yaml"
    path.write_text(json.dumps(doc))  # JSON is YAML
    return path


def start(path: Path, *extra: str) -> subprocess.Popen:
    """Start the orchestrator without SLURM_CONF (nothing here talks to the cluster), its output in a file."""
    env = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}
    argv = [sys.executable, "-m", "orchestrator", "run", "--cluster", str(path), *extra]
    with path.with_name("orchestrator.out").open("a") as out:
        return subprocess.Popen(argv, cwd=str(REPO), env=env, stdout=out, stderr=out)


def kill_if_running(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def finish(proc: subprocess.Popen, timeout: float = RUN_S) -> int:
    """Wait for the orchestrator to exit (killed past ``timeout``); its exit status."""
    try:
        return proc.wait(timeout=timeout)
    finally:
        kill_if_running(proc)


def said(path: Path) -> str:
    """The end of what the orchestrator printed."""
    return path.with_name("orchestrator.out").read_text()[-4000:]


def runner_events(path: Path) -> List[Dict]:
    """The runner's JSON events in a job's output file so far."""
    events = []
    for line in path.read_text().splitlines() if path.exists() else []:
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except ValueError:
                pass  # a line still being written
    return events


def in_passes(path: Path) -> bool:
    """Whether the runner has begun the timed passes of its first stage."""
    return any(e.get("ev") == "stage" and e.get("step") == "passes" for e in runner_events(path))


def wait_for(what: str, check: Callable[[], List], proc: subprocess.Popen, timeout: float = RUN_S) -> List:
    """Poll ``check()`` until it returns a non-empty list; fail if ``proc`` exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert proc.poll() is None, "the orchestrator exited before %s" % what
        assert time.monotonic() < deadline, "no %s within %.0f s" % (what, timeout)
        time.sleep(0.3)


def test_jobs_spread_over_both_nodes_one_dies_and_resume_completes_it(tmp_path, sample_set, slurm_multinode):
    """Three one-CPU jobs on two one-CPU nodes, submitted from the login node: two run at once, one per
    node. The node of the first to reach its timed passes dies (slurmd and the job killed): that job ends
    NODE_FAIL with its reason while the other two finish on the other node; --resume completes it."""
    cluster = slurm_multinode
    path = write_cluster(tmp_path, cluster, sample_set, [dict(CASE, batch_size=[1, 2, 4], repeat=REPEAT)])
    proc = start(path)
    try:
        outputs = tmp_path / "work" / "runs"
        victim_out = wait_for(
            "a job in its timed passes",
            lambda: [p for p in sorted(outputs.glob("*/*/slurm.out")) if in_passes(p)],
            proc,
        )[0]
        victim = victim_out.parent.name
        running = {j["name"]: j for j in cluster.jobs() if j["state"] == "RUNNING"}
        dead = running["rn50bench." + victim]["node"]
        cluster.kill_node(dead)
        code = proc.wait(timeout=RUN_S)
    finally:
        kill_if_running(proc)
    assert code == 1, said(path)

    store = Store(str(tmp_path / "store.sqlite"))
    (run,) = store.runs()
    run_id = run["run_id"]
    jobs = {j["job_id"]: j for j in store.jobs(run_id)}
    failed = jobs.pop(victim)
    assert failed["state"] == "FAILED_RUN", failed
    assert failed["reason"].startswith("slurm NODE_FAIL: node %s failed (slurm job " % dead), failed
    first = "infer" if failed["spec"].get("stages") == "infer" else "val"  # val runs with one batch size
    assert failed["reason"].endswith("; the runner was in stage %s" % first), failed
    assert [j["state"] for j in jobs.values()] == ["OK", "OK"], jobs
    records = {r["name"]: r for r in cluster.accounted("rn50bench.")}
    lost = records.pop("rn50bench." + victim)
    assert (lost["state"], lost["node"]) == ("NODE_FAIL", dead)
    (other,) = set(cluster.nodes) - {dead}
    assert [(r["state"], r["node"]) for r in records.values()] == [("COMPLETED", other)] * 2

    cluster.start_node(dead)
    cluster.wait_idle()
    assert finish(start(path, "--resume", run_id)) == 0, said(path)
    jobs = {j["job_id"]: j for j in store.jobs(run_id)}
    assert [j["state"] for j in jobs.values()] == ["OK"] * 3, jobs
    assert set(store.results(run_id)) == set(jobs)
    attempts = cluster.accounted("rn50bench." + victim)
    assert sorted(r["state"] for r in attempts) == ["COMPLETED", "NODE_FAIL"], attempts


def test_a_job_slurmctld_forgot_is_followed_through_sacct(tmp_path, sample_set, slurm_multinode):
    """The orchestrator is stopped (SIGSTOP) while its job runs and until slurmctld has forgotten the
    finished job (MinJobAge): when it goes on, squeue no longer knows the job and sacct tells its end.
    A command in flight at the stop is answered only after it, so timeouts.connect allows for the stop."""
    cluster = slurm_multinode
    case = dict(CASE, batch_size=3, repeat=1)  # a job name of its own in the cluster's accounting
    path = write_cluster(tmp_path, cluster, sample_set, [case], timeouts={"connect": RUN_S})
    proc = start(path)
    try:
        running = wait_for(
            "a running job", lambda: [j for j in cluster.jobs() if j["state"] == "RUNNING"], proc
        )
        name, slurm_id = running[0]["name"], running[0]["id"]
        proc.send_signal(signal.SIGSTOP)
        try:
            deadline = time.monotonic() + RUN_S  # the job's run, MinJobAge, and slurmctld's 60 s purge cycle
            while any(j["name"] == name for j in cluster.jobs()):
                assert time.monotonic() < deadline, "slurmctld still holds %s" % name
                time.sleep(1)
        finally:
            proc.send_signal(signal.SIGCONT)
        code = proc.wait(timeout=RUN_S)
    finally:
        kill_if_running(proc)
    assert code == 0, said(path)
    (record,) = [r for r in cluster.accounted(name) if r["id"] == slurm_id]
    assert record["state"] == "COMPLETED" and record["node"] in cluster.nodes
    store = Store(str(tmp_path / "store.sqlite"))
    (run,) = store.runs()
    (job,) = store.jobs(run["run_id"])
    assert job["state"] == "OK" and store.results(run["run_id"])[job["job_id"]]["result"]["status"] == "ok"
