"""Fault injection with a real dockerd and real sshd: every fault ends as a stored state with its reason,
the other jobs carry on, nothing is left running, and ``run --resume`` completes the rest.

One ``orchestrator run`` exercises eleven hosts at once, each with its own fault (the CPU runs are slow,
so the faults share a run); the environment is then repaired and one resume finishes every job.

How each fault is made, on this one machine:

- host down: the veth link inside the SSH host's network namespace is set down (up again to repair);
- SSH auth refused: the host's key_file is a fresh key its sshd does not authorize (authorized later);
- unknown host key: the host's known_hosts file is empty (the key is written into it later);
- dockerd stopped: the shared dockerd cannot be stopped for one host, so that host's sshd sets
  ``SetEnv DOCKER_HOST=unix:///<nowhere>`` for its sessions: its docker client finds no engine, exactly
  as with a stopped daemon ("Cannot connect to the Docker daemon ... Is the docker daemon running?");
  the repair removes the line and reloads sshd (SIGHUP);
- image build failure: a base_image tag that is not on the machine (no registry is reachable);
  the repair tags the Debian base under that name;
- runner exception: one JPEG of the host's data set is garbage (restored later);
- container killed mid-run: docker.memory 200m, the kernel's OOM killer ends the container;
- stage timeout: a run timeout of 4 s for one host, a start timeout of 0.5 s for another;
- host workdir unwritable: the workdir lies under a regular file (root ignores permission bits);
  the file is removed later.

The memory limit and the timeouts need a different cluster file: the resume is given one without them
(same jobs).
Separate tests cover SIGINT to the orchestrator and an unwritable results_dir on the control side.
"""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from orchestrator.host.images import image_spec
from orchestrator.outcome import JobState
from orchestrator.store import Store, StoreError
from orchestrator.transport import make_transport
from runner_in_container.data.generate import generate
from vendors.cpu import VENDOR as CPU

pytestmark = [pytest.mark.docker, pytest.mark.ssh, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
CASE = {"case": "resnet50", "toolkit": "pytorch", "precision": "fp32", "batch_size": 4, "warmup": 0}
MISSING_BASE = "local/rn50bench-missing-base:fault-" + uuid.uuid4().hex[:8]  # unique: sessions may overlap
NO_DOCKERD = "unix:///run/rn50bench-test-no-dockerd.sock"
SSHD_MARK = "# rn50bench fault test\n"
OOM = {"docker": {"memory": "200m"}}  # torch imports in that, the model does not fit
SLOW = {"timeouts": {"run": 4}}  # and its job is held (HELD): it can never finish in time
QUICK = {"timeouts": {"connect": 3}}  # a host that is down: no need to wait the default 20 s for it
LATE = {"timeouts": {"start": 0.5}}  # the runner says "start" after importing torch: seconds
RELEASE = "release"  # lets a held job go on, from its results folder (runner_in_container/hold.py)
HELD = dict(CASE, toolkit_options={"hold_until": RELEASE})


def release(workdir: Path, run_id: str, job_id: str) -> None:
    """Let the held job ``job_id`` go on: its hold file, in its results folder on the host."""
    folder = workdir / "runs" / run_id / job_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RELEASE).write_text("")


# -- helpers shared with test_doctor and test_hostile_config ---------------------------------------------
def local_entry(
    name: str, data_path: Path, workdir: Path, image: Dict[str, str], **extra: Any
) -> Dict[str, Any]:
    """A CPU host on this machine, running the tiny data set with random weights; ``extra`` overrides."""
    entry = {
        "name": name,
        "address": "local",
        "vendor": "cpu",
        "workdir": str(workdir),
        "workers": 2,
        "data": {"path": str(data_path)},
        "weights": "random",
        "image": dict(image),
    }
    entry.update(extra)
    return entry


def ssh_entry(name: str, ssh_host, data_path: Path, workdir: Path, image: Dict[str, str], **extra: Any):
    """A CPU host reached over SSH (the test sshd ``ssh_host``); ``extra`` overrides."""
    entry = local_entry(name, data_path, workdir, image)
    entry.update(
        address=ssh_host.address,
        port=ssh_host.port,
        user=ssh_host.user,
        key_file=ssh_host.key_file,
        known_hosts=ssh_host.known_hosts,
    )
    entry.update(extra)
    return entry


def one_run(cases: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """``cases`` with ``runs: 1`` where an entry sets no runs: a test of a job's life runs it once (the
    default, 3 runs a job, is for figures a lab reads; tests/test_runs.py tests it)."""
    return [dict({"runs": 1}, **case) for case in cases]


def write_cluster(path: Path, tmp: Path, hosts: List[Dict[str, Any]], **extra: Any) -> Path:
    cluster = {
        "store": str(tmp / "store.sqlite"),
        "results_dir": str(tmp / "results"),
        "hosts": hosts,
        "cases": [CASE],
    }
    cluster.update(extra)
    cluster["cases"] = one_run(cluster["cases"])
    path.write_text(json.dumps(cluster))  # JSON is YAML
    return path


def orchestrator(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """``python -m orchestrator ARGS``, its output piped, in this process's environment as Python sees it
    (a library may have put COLUMNS into the C-level environment only: the tables' width is not for it to
    say)."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=str(REPO),
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_orchestrator(*args: str) -> subprocess.Popen:
    """``python -m orchestrator ARGS`` started in the background, its output piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=str(REPO),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def containers_of(run_id: str) -> List[str]:
    """Names of the containers (running or not) that belong to ``run_id``."""
    done = subprocess.run(
        ["docker", "ps", "-a", "--filter", "name=rn50bench-" + run_id, "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split()


def only_run(store_path: Path) -> Dict[str, Any]:
    (run,) = Store(str(store_path)).runs()
    return run


def jobs_by_host(store_path: Path, run_id: str) -> Dict[str, Dict[str, Any]]:
    return {job["host"]: job for job in Store(str(store_path)).jobs(run_id)}


def sshd_home(ssh_host) -> Path:
    return Path(ssh_host.key_file).parent


def reload_sshd(ssh_host, extra: str = "") -> None:
    """Rewrite the test sshd's config with ``extra`` appended (or nothing) and make sshd re-read it."""
    config = sshd_home(ssh_host) / "sshd_config"
    base = config.read_text().split(SSHD_MARK)[0]
    config.write_text(base + (SSHD_MARK + extra + "\n" if extra else ""))
    os.kill(ssh_host.sshd_pid, signal.SIGHUP)  # sshd re-executes itself with the same pid
    want = NO_DOCKERD if "DOCKER_HOST" in extra else ""
    deadline = time.monotonic() + 120
    while True:
        try:
            with make_transport(**ssh_host.transport_kwargs(), connect_timeout=2) as transport:
                seen = transport.run(["printenv", "DOCKER_HOST"], timeout=5).stdout.strip()
            if seen == want:
                return
        except Exception:  # noqa: BLE001 - sshd is restarting
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("sshd of %s did not come back with the new config" % ssh_host.name)
        time.sleep(0.2)


def set_link(ssh_host, up: bool) -> None:
    """Set the links inside the SSH host's namespace down (a host that is off) or up again."""
    if ssh_host.netns is None:
        pytest.fail("a host that is down needs network namespaces (ip netns)")
    prefix = ["ip", "netns", "exec", ssh_host.netns, "ip"]
    listing = subprocess.run(prefix + ["-o", "link", "show"], capture_output=True, text=True, check=True)
    for line in listing.stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name != "lo":
            subprocess.run(prefix + ["link", "set", name, "up" if up else "down"], check=True)


# -- the fault run -------------------------------------------------------------------------------------
#: host -> (state, words its reason must contain)
EXPECTED = {
    "good": ("OK", []),
    "down": ("FAILED_CONNECT", []),
    "authfail": ("FAILED_CONNECT", ["authentication refused"]),
    "hostkey": ("FAILED_CONNECT", ["host key", "not known", "ssh-keyscan"]),
    "nodockerd": ("FAILED_CONNECT", ["docker on host nodockerd does not answer", "Cannot connect"]),
    "badbase": ("FAILED_BUILD", ["base image %s is not on host badbase" % MISSING_BASE, "docker build"]),
    "corrupt": ("FAILED_RUN", ["DataError", "cannot decode image"]),
    "oom": ("FAILED_RUN", ["exit status 137", "out of memory (docker.memory 200m)"]),
    "slow": ("FAILED_RUN", ["runner exceeded the run timeout of 4 s (timeouts.run); stopped"]),
    "latestart": ("FAILED_START", ["runner did not start within 0.5 s (timeouts.start); stopped"]),
    "noworkdir": ("FAILED_START", ["cannot create", "Not a directory"]),
}


class FaultLab:
    """Everything the fault run made, and how to repair it."""

    def __init__(self, tmp: Path, image: Dict[str, str], data: Path) -> None:
        self.tmp = tmp
        self.image = image
        self.data = data
        self.store = tmp / "store.sqlite"
        self.corrupt_data = tmp / "corrupt-set"
        shutil.copytree(str(data.parent), str(self.corrupt_data))
        self.bad_jpeg = sorted((self.corrupt_data / data.name).rglob("*.JPEG"))[1]
        self.good_jpeg = self.bad_jpeg.read_bytes()
        self.bad_jpeg.write_bytes(b"this is not a JPEG " * 10)
        self.blocker = tmp / "not-a-dir"
        self.blocker.write_text("a file where the workdir's parent should be\n")
        self.stranger_key = tmp / "stranger_key"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.stranger_key)], check=True
        )
        self.empty_known_hosts = tmp / "empty_known_hosts"
        self.empty_known_hosts.write_text("")
        self.ssh: Dict[str, Any] = {}
        self.run_id = ""
        self.done: Optional[subprocess.CompletedProcess] = None

    def hosts(self, repaired: bool) -> List[Dict[str, Any]]:
        tmp, image = self.tmp, self.image
        corrupt_data = self.corrupt_data / self.data.name
        return [
            local_entry("good", self.data, tmp / "w-good", image),
            ssh_entry("down", self.ssh["down"], self.data, tmp / "w-down", image,
                      **({} if repaired else QUICK)),
            ssh_entry("authfail", self.ssh["authfail"], self.data, tmp / "w-auth", image,
                      key_file=str(self.stranger_key)),
            ssh_entry("hostkey", self.ssh["hostkey"], self.data, tmp / "w-key", image,
                      known_hosts=str(self.empty_known_hosts)),
            ssh_entry("nodockerd", self.ssh["nodockerd"], self.data, tmp / "w-nod", image),
            local_entry("badbase", self.data, tmp / "w-base", dict(image, base_image=MISSING_BASE)),
            local_entry("corrupt", corrupt_data, tmp / "w-corrupt", image),
            local_entry("oom", self.data, tmp / "w-oom", image, **({} if repaired else OOM)),
            local_entry("slow", self.data, tmp / "w-slow", image, **({} if repaired else SLOW)),
            local_entry("latestart", self.data, tmp / "w-late", image, **({} if repaired else LATE)),
            local_entry("noworkdir", self.data, self.blocker / "work", image),
        ]  # fmt: skip

    def repair(self) -> None:
        set_link(self.ssh["down"], up=True)
        authorized = sshd_home(self.ssh["authfail"]) / "authorized_keys"
        authorized.write_text(authorized.read_text() + Path(str(self.stranger_key) + ".pub").read_text())
        self.empty_known_hosts.write_text(Path(self.ssh["hostkey"].known_hosts).read_text())
        reload_sshd(self.ssh["nodockerd"])
        subprocess.run(["docker", "tag", self.image["base_image"], MISSING_BASE], check=True)
        self.bad_jpeg.write_bytes(self.good_jpeg)
        self.blocker.unlink()
        release(self.tmp / "w-slow", self.run_id, "slow.d0.resnet50.pytorch.fp32.bs4")

    def cases(self) -> List[Dict[str, Any]]:
        """One case on every host; the slow host's job held until the repair."""
        hosts = [host["name"] for host in self.hosts(repaired=True)]
        return [dict(CASE, hosts=[h for h in hosts if h != "slow"]), dict(HELD, hosts=["slow"])]


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory) -> Path:
    """4 generated images: one batch of 4."""
    return Path(generate(str(tmp_path_factory.mktemp("faults-data") / "set"), images=4, layout="imagefolder"))


@pytest.fixture(scope="module")
def fault_lab(tmp_path_factory, tiny_set, ssh_host_factory, cpu_image, cpu_sdk_dir, base_image):
    lab = FaultLab(
        tmp_path_factory.mktemp("faults"), {"base_image": base_image, "sdk_dir": str(cpu_sdk_dir)}, tiny_set
    )
    for name in ("down", "authfail", "hostkey", "nodockerd"):
        lab.ssh[name] = ssh_host_factory("fault-%s-%s" % (name, uuid.uuid4().hex[:4]))
    set_link(lab.ssh["down"], up=False)
    reload_sshd(lab.ssh["nodockerd"], "SetEnv DOCKER_HOST=" + NO_DOCKERD)
    try:
        path = write_cluster(lab.tmp / "faults.yaml", lab.tmp, lab.hosts(repaired=False), cases=lab.cases())
        lab.done = orchestrator("run", "--cluster", str(path))
        lab.run_id = only_run(lab.store)["run_id"]
        yield lab
    finally:
        built = image_spec(CPU, {"base_image": MISSING_BASE}, cpu_sdk_dir, {}).tag  # by the resume
        subprocess.run(["docker", "rmi", MISSING_BASE, built], capture_output=True, check=False)


def test_the_run_reports_every_failure(fault_lab):
    done = fault_lab.done
    assert done.returncode == 1, done.stderr[-3000:]
    failing = [host for host, (state, _) in EXPECTED.items() if state != "OK"]
    for host in failing:
        assert "error: job %s." % host in done.stderr
    assert "%d of %d jobs did not finish OK" % (len(failing), len(EXPECTED)) in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("host", sorted(EXPECTED))
def test_each_fault_ends_as_a_stored_state_with_its_reason(fault_lab, host):
    job = jobs_by_host(fault_lab.store, fault_lab.run_id)[host]
    state, words = EXPECTED[host]
    assert job["state"] == state, job["reason"]
    reason = job["reason"] or ""
    assert "\n" not in reason and len(reason) <= 300
    for word in words:
        assert word in reason
    if host == "down":
        assert fault_lab.ssh["down"].address in reason
    if state != "OK":
        assert reason
        assert job["job_id"] not in Store(str(fault_lab.store)).results(fault_lab.run_id)  # no figures


def test_logs_are_kept(fault_lab):
    jobs = jobs_by_host(fault_lab.store, fault_lab.run_id)
    build_log = Path(jobs["badbase"]["log_path"])
    assert build_log.name == "build.log" and MISSING_BASE.split(":")[0] in build_log.read_text()
    for host in ("corrupt", "oom"):
        assert '"ev": "start"' in Path(jobs[host]["log_path"]).read_text()
    assert Path(jobs["slow"]["log_path"]).is_file()  # stopped at 4 s: the runner may not have said a word
    assert fault_lab.bad_jpeg.name in Path(jobs["corrupt"]["log_path"]).read_text()
    assert jobs["noworkdir"]["log_path"] is None  # it never started: no log to point at


def test_the_good_host_finished_and_nothing_is_left_running(fault_lab):
    store = Store(str(fault_lab.store))
    results = store.results(fault_lab.run_id)
    good = jobs_by_host(fault_lab.store, fault_lab.run_id)["good"]
    assert set(results) == {good["job_id"]}
    assert results[good["job_id"]]["result"]["status"] == "ok"
    assert containers_of(fault_lab.run_id) == []  # the hung and the OOM-killed containers were removed
    assert only_run(fault_lab.store)["state"] == "finished"


def test_resume_refuses_a_cluster_file_with_other_jobs(fault_lab):
    path = write_cluster(
        fault_lab.tmp / "other.yaml",
        fault_lab.tmp,
        fault_lab.hosts(repaired=True),
        cases=[dict(CASE, batch_size=2)],
    )
    done = orchestrator("run", "--resume", fault_lab.run_id, "--cluster", str(path))
    assert done.returncode == 2
    assert "jobs differ from those of run %s" % fault_lab.run_id in done.stderr
    assert only_run(fault_lab.store)["state"] == "finished"  # nothing touched


def test_resume_after_repair_completes_the_rest(fault_lab):
    store = Store(str(fault_lab.store))
    before = {job["host"]: job for job in store.jobs(fault_lab.run_id)}
    good_result = store.results(fault_lab.run_id)[before["good"]["job_id"]]
    fault_lab.repair()
    path = write_cluster(
        fault_lab.tmp / "repaired.yaml",
        fault_lab.tmp,
        fault_lab.hosts(repaired=True),
        cases=fault_lab.cases(),
    )
    done = orchestrator("run", "--resume", fault_lab.run_id, "--cluster", str(path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "%d of %d jobs to run, 1 finished OK are kept" % (len(EXPECTED) - 1, len(EXPECTED)) in done.stdout

    after = jobs_by_host(fault_lab.store, fault_lab.run_id)
    assert {host: job["state"] for host, job in after.items()} == {host: JobState.OK for host in EXPECTED}
    assert after["good"] == before["good"]  # never rerun: same start, finish, timings
    results = store.results(fault_lab.run_id)
    assert results[before["good"]["job_id"]] == good_result
    assert len(results) == len(EXPECTED)
    for host in ("corrupt", "oom", "slow"):  # the failed attempt's log is kept beside the new one
        log = Path(after[host]["log_path"])
        assert log.with_name("runner.1.log").is_file() and '"ev": "result"' in log.read_text()
    assert containers_of(fault_lab.run_id) == []
    run = only_run(fault_lab.store)
    assert run["state"] == "finished" and run["ok"] == len(EXPECTED)
    assert (
        json.loads(store.run(fault_lab.run_id)["cluster_json"])["hosts"][7].get("docker", {}).get("memory")
        is None
    )

    again = orchestrator("run", "--resume", fault_lab.run_id, "--store", str(fault_lab.store))
    assert again.returncode == 0 and "nothing to resume" in again.stdout


# -- Ctrl-C ---------------------------------------------------------------------------------------------
WAIT_S = 900  # a deadline for what takes a minute on an idle machine, to hold on a loaded one


def _wait_for(what: str, predicate, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        if proc.poll() is not None:
            pytest.fail("orchestrator ended (%d) before %s: %s" % (proc.returncode, what, proc.stderr.read()))
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("timed out waiting for " + what)
        time.sleep(0.2)


def _states(store: Path) -> Dict[str, str]:
    try:
        with sqlite3.connect(str(store)) as db:
            return dict(db.execute("SELECT job_id, state FROM jobs"))
    except sqlite3.Error:
        return {}


def _holding(log: Path) -> bool:
    """Whether the runner log says the runner holds (stage hold: it cannot finish until released)."""
    return log.is_file() and '"stage": "hold"' in log.read_text()


def test_sigint_stops_the_containers_keeps_what_finished_and_resume_completes(
    tmp_path, tiny_set, cpu_image, cpu_sdk_dir, base_image
):
    image = {"base_image": base_image, "sdk_dir": str(cpu_sdk_dir)}
    workdir = tmp_path / "work"
    path = write_cluster(
        tmp_path / "sigint.yaml",
        tmp_path,
        [local_entry("sig", tiny_set, workdir, image)],
        cases=[CASE, dict(HELD, batch_size=2)],  # two jobs, one after the other on device 0; the second held
    )
    store = tmp_path / "store.sqlite"
    proc = start_orchestrator("run", "--cluster", str(path))
    try:
        first, second = "sig.d0.resnet50.pytorch.fp32.bs4", "sig.d0.resnet50.pytorch.fp32.bs2"
        _wait_for("the first job to finish", lambda: _states(store).get(first) == "OK", proc)
        run_id = only_run(store)["run_id"]
        log = tmp_path / "results" / run_id / second / "runner.log"
        _wait_for("the second job to hold in its container", lambda: _holding(log), proc)
        assert containers_of(run_id) != []
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-3000:]
    assert "resume it with: python -m orchestrator run --resume %s" % run_id in err
    assert containers_of(run_id) == []
    jobs = {job["job_id"]: job for job in Store(str(store)).jobs(run_id)}
    assert jobs[first]["state"] == "OK"
    assert (jobs[second]["state"], jobs[second]["reason"]) == ("CANCELLED", "run interrupted")
    assert only_run(store)["state"] == "interrupted"
    kept = Store(str(store)).results(run_id)[first]

    release(workdir, run_id, second)
    done = orchestrator("run", "--resume", run_id, "--store", str(store))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "1 of 2 jobs to run, 1 finished OK are kept" in done.stdout
    after = {job["job_id"]: job for job in Store(str(store)).jobs(run_id)}
    assert after[first] == jobs[first] and after[second]["state"] == "OK"
    assert Store(str(store)).results(run_id)[first] == kept
    assert only_run(store)["state"] == "finished"


# -- control side and store ---------------------------------------------------------------------------
def test_unwritable_results_dir_fails_before_anything_runs(tmp_path, tiny_set):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    path = write_cluster(
        tmp_path / "hosts.yaml",
        tmp_path,
        [local_entry("here", tiny_set, tmp_path / "work", {})],
        results_dir=str(blocker / "results"),
    )
    done = orchestrator("run", "--cluster", str(path), timeout=60)
    assert done.returncode == 2
    line = done.stderr.strip()
    assert line.startswith("error: results_dir %s cannot be made" % (blocker / "results")), line
    assert "\n" not in line and "Not a directory" in line
    assert not (tmp_path / "store.sqlite").exists() and not (tmp_path / "work").exists()


def test_the_store_never_reruns_or_overwrites_an_ok_job(tmp_path):
    store = Store(str(tmp_path / "s.sqlite"))
    store.create_run("r", "hosts.yaml", {})
    store.add_job("r", "j", "h", "cpu", {})
    store.start_job("r", "j")
    store.put_result("r", "j", {"figure": 1}, {})
    store.finish_job("r", "j", JobState.OK, None, None, {})
    with pytest.raises(StoreError, match="finished OK"):
        store.start_job("r", "j")
    store.finish_job("r", "j", "CANCELLED", "run interrupted", None, {})
    assert store.cancel_unfinished("r", "run interrupted") == 0
    (job,) = store.jobs("r")
    assert (job["state"], job["reason"]) == (JobState.OK, None)
    assert store.results("r")["j"]["result"] == {"figure": 1}
