"""The conditions a job ran under (host/conditions.py): the SMI queries and parsers of the check, the host's
load read on this machine, the isolation policy on a real job run beside ``stress-ng --cpu 2``, the page
cache, the plan's warning about two entries on one machine, and stores older than the conditions table."""

import pwd
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Optional, Sequence

import pytest

import vendors
from orchestrator import cli
from orchestrator.config.load import load_cluster
from orchestrator.host import conditions, envinfo
from orchestrator.host.orphans import RUN_LABEL
from orchestrator.job.plan import expand
from orchestrator.job.stages import RunContext
from orchestrator.report.load import load_run
from orchestrator.report.tables import NOT_CHECKED, as_json, result_rows
from orchestrator.run.scheduler import run_all
from orchestrator.store import SCHEMA, Store
from orchestrator.transport.base import Completed
from orchestrator.transport.local import LocalTransport
from runner_in_container.data.generate import generate
from vendors.smi import DeviceProcess

NVIDIA = vendors.get("nvidia")

#: ``nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv,noheader`` as its manual
#: documents it (units kept), with a name holding a comma, the MPS control server and a blank line
COMPUTE_APPS = (
    "1234, /usr/bin/python3, 40514 MiB\n"
    "\n"
    "987, /opt/app/serve,v2, 1024 MiB\n"
    "55, nvidia-cuda-mps-server, 30 MiB\n"
)


def test_nvidia_lists_the_devices_compute_processes_with_names_and_memory():
    assert NVIDIA.processes_argv([1]) == [
        "nvidia-smi",
        "--query-compute-apps=pid,process_name,used_memory",
        "--format=csv,noheader,nounits",
        "-i", "1",
    ]  # fmt: skip
    assert NVIDIA.parse_processes(COMPUTE_APPS) == [
        DeviceProcess(1234, "/usr/bin/python3", 40514.0),
        DeviceProcess(987, "/opt/app/serve,v2", 1024.0),
        DeviceProcess(55, "nvidia-cuda-mps-server", 30.0),
    ]
    assert NVIDIA.parse_processes("") == []  # an idle device: no line at all
    assert NVIDIA.parse_processes("2, python, 10") == [DeviceProcess(2, "python", 10.0)]  # nounits


def test_nvidia_throttle_reasons_are_named_from_the_mask():
    head, tail = ["nvidia-smi"], ["--format=csv,noheader,nounits", "-i", "0"]
    assert NVIDIA.throttle_argvs([0]) == [
        head + ["--query-gpu=index,clocks_event_reasons.active"] + tail,  # drivers from 535 on
        head + ["--query-gpu=index,clocks_throttle_reasons.active"] + tail,  # older ones
    ]
    text = "0, 0x0000000000000001\n1, 0x0000000000000044\n2, 0x0000000000000000\n3, [N/A]\n"
    assert NVIDIA.parse_throttle(text) == {
        0: ["GpuIdle"],
        1: ["SwPowerCap", "HwThermalSlowdown"],
        2: [],
    }


#: a stand-in nvidia-smi answering the check's queries with documented output: a driver that knows only the
#: older throttle field, a device 37% busy with two other processes and the MPS control server on it
STAND_IN_SMI = (
    """#!/bin/sh
case "$1" in
  --query-compute-apps=*) printf '%s' '"""
    + COMPUTE_APPS
    + """' ;;
  --query-gpu=index,timestamp,*) echo '0, 2026/12/06 10:00:00.000, 37, 81559, 500, 70.10' ;;
  --query-gpu=index,clocks_event_reasons.active) echo 'Field is not a valid field to query.'; exit 2 ;;
  --query-gpu=index,clocks_throttle_reasons.active) echo '0, 0x0000000000000004' ;;
  *) exit 9 ;;
esac
"""
)


def test_the_device_check_names_other_processes_and_utilisation_through_the_smi(tmp_path):
    smi = tmp_path / "nvidia-smi"
    smi.write_text(STAND_IN_SMI)
    smi.chmod(0o755)
    vendor = type("StandIn", (type(NVIDIA),), {"smi": str(smi)})()
    with LocalTransport("here") as transport:
        found = conditions.check(transport, vendor, 0, "r1", False, 30)
    assert found.device_processes == ["1234 /usr/bin/python3", "987 /opt/app/serve,v2"]  # MPS server: no work
    assert found.device_utilization_pct == 37.0 and found.throttle == ["SwPowerCap"]
    assert found.unknown == [] and found.containers is None
    assert [line for line in found.busy if not line.startswith("CPUs")] == [
        "device 0 has other processes: 1234 /usr/bin/python3, 987 /opt/app/serve,v2",
        "device 0 37% utilised at idle",
    ]
    record = conditions.Conditions("warn", "cleared", before=found)
    assert record.summary().startswith("busy: ") and "throttle: SwPowerCap; cache cleared" in record.summary()
    assert conditions.read(record.as_stored()) == record  # stored and read back typed


def test_each_smi_reads_one_sample_and_lists_processes_only_where_documented():
    assert NVIDIA.sample_argv([0]) == NVIDIA.monitor_argv([0], 1.0)[:-2]  # the monitor's query, once
    ixsmi = vendors.get("iluvatar")
    assert ixsmi.processes_argv([2])[:2] == ["ixsmi", "--query-compute-apps=pid,process_name,used_memory"]
    assert ixsmi.throttle_argvs([2]) == []
    assert vendors.get("kunlunxin").sample_argv([0]) == ["xpu_smi", "-m"]
    assert vendors.get("zixiao").sample_argv([0]) == ["zx-smi", "-dmon", "-s", "mp", "-c", "1"]
    for name in ("kunlunxin", "zixiao", "cpu"):
        assert vendors.get(name).processes_argv([0]) is None
    assert vendors.get("cpu").sample_argv([0]) is None


def test_the_host_check_reads_this_machine_and_says_when_there_is_no_governor():
    unknown = []
    with LocalTransport("here") as transport:
        out = transport.run(["sh", "-c", conditions._HOST_SCRIPT], timeout=10).check().stdout
    found = conditions.parse_host(out, unknown)
    assert unknown == []
    assert found["cpus"] >= 1 and found["load_1m"] >= 0 and 0 <= found["cpu_busy"] <= 1
    assert found["governor"]
    vm = "0.52 0.40 0.30 2/100 42\n--\n4\n--\ncpu  10 0 10 80 0 0 0 0 0 0\ncpu  40 0 40 120 0 0 0 0 0 0\n--\n"
    found = conditions.parse_host(vm, unknown)
    assert found == {
        "load_1m": 0.52,
        "cpus": 4,
        "cpu_busy": 0.6,
        "governor": "none: no cpufreq scaling_governor (a VM, or no cpufreq driver)",
    }
    conditions.parse_host("garbage", unknown)
    assert unknown == ["host load: /proc/loadavg, nproc or /proc/stat unreadable"]


def test_two_local_entries_get_a_plan_warning(tmp_path, capsys):
    host = "  - {name: %s, address: local, vendor: cpu, runtime: bare, data: {path: /d}, weights: random}\n"
    path = tmp_path / "hosts.yaml"
    path.write_text("hosts:\n" + host % "a" + host % "b" + "cases:\n  - {toolkit: pytorch}\n")
    assert cli.main(["plan", "--cluster", str(path)]) == 0
    out = capsys.readouterr().out
    assert "warning: hosts a, b are one machine (address local)" in " ".join(out.split())
    path.write_text("hosts:\n" + host % "a" + "cases:\n  - {toolkit: pytorch}\n")
    assert cli.main(["plan", "--cluster", str(path)]) == 0
    assert "one machine" not in capsys.readouterr().out


def test_host_entries_whose_machine_id_is_one_get_a_warning_after_the_run():
    environments = {"a": {"machine_id": "m1"}, "b": {"machine_id": "m1"}, "c": {"machine_id": "m2"}, "d": {}}
    assert envinfo.shared_machines(environments) == [
        "warning: hosts a, b are one machine (machine id m1): their jobs ran at the same time on it"
    ]
    with LocalTransport("here") as transport:
        assert envinfo.capture_host(transport, vendors.get("cpu"), "bare")["machine_id"] == (
            Path("/etc/machine-id").read_text().strip()
        )


class Nobody(LocalTransport):
    """This machine logged in as ``nobody`` (util-linux's setpriv): a host whose login user is not root."""

    def run(
        self, argv: Sequence[str], timeout: Optional[float] = None, stdin: Optional[bytes] = None
    ) -> Completed:
        entry = pwd.getpwnam("nobody")
        ids = ["--reuid", str(entry.pw_uid), "--regid", str(entry.pw_gid), "--clear-groups"]
        return super().run(["setpriv", *ids, "--", *argv], timeout=timeout, stdin=stdin)


def test_the_page_cache_is_cleared_by_root_and_says_why_not_otherwise():
    with LocalTransport("here") as transport:
        assert conditions.drop_caches(transport, 30) == "cleared"  # root here
    with Nobody("here") as transport:
        assert conditions.drop_caches(transport, 30) == (
            "could not clear: tee: /proc/sys/vm/drop_caches: Permission denied (the login user is not root)"
        )


@pytest.mark.docker
def test_other_running_containers_are_named_and_this_runs_own_are_not(base_image):
    tag = "cond-" + uuid.uuid4().hex[:8]
    names = {"ours": tag + "-ours", "theirs": tag + "-theirs"}
    try:
        for run, name in ((tag, names["ours"]), ("another-run", names["theirs"])):
            subprocess.run(
                ["docker", "run", "-d", "--name", name, "--label", "%s=%s" % (RUN_LABEL, run), base_image]
                + ["sleep", "600"],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        with LocalTransport("here") as transport:
            found = conditions.check(transport, vendors.get("cpu"), 0, tag, True, 30)
        assert names["theirs"] in found.containers and names["ours"] not in found.containers
        assert any(line.startswith("other containers run: ") for line in found.busy)
        assert (
            found.unknown == [] and found.device_processes is None
        )  # no SMI: nothing to ask, nothing unknown
    finally:
        subprocess.run(["docker", "rm", "-f", *names.values()], stdout=subprocess.DEVNULL, check=False)


def test_a_store_older_than_the_conditions_table_reads(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(str(path)) as db:
        db.executescript(SCHEMA)  # the first stores: no conditions table
        db.execute("INSERT INTO runs VALUES ('r1', 1.0, 2.0, 'finished', 'hosts.yaml', '{}')")
        db.execute(
            "INSERT INTO jobs (run_id, job_id, host, vendor, spec_json, state) VALUES (?, ?, ?, ?, ?, ?)",
            ("r1", "j1", "h", "cpu", "{}", "FAILED_RUN"),
        )
    data = load_run(Store(str(path), readonly=True), "r1")
    assert [row["conditions"] for row in result_rows(data)] == [NOT_CHECKED]
    assert '"conditions": {}' in as_json(data)
    with sqlite3.connect(str(path)) as db:
        assert "conditions" not in {r[0] for r in db.execute("SELECT name FROM sqlite_master")}


# -- a real job beside stress-ng ------------------------------------------------------------------
CLUSTER = """
defaults: {isolation: %s, clear_caches: true}
hosts:
  - name: here
    address: local
    vendor: cpu
    runtime: bare
    python: %s
    workdir: %s
    workers: 1
    data: {path: %s}
    weights: random
cases:
  - {toolkit: pytorch, precision: fp32, batch_size: 1, repeat: 1, warmup: 0, runs: 1}
"""


@pytest.fixture
def stress():
    """``stress-ng --cpu 2`` running until the test ends, once its workers keep the CPUs busy."""
    if shutil.which("stress-ng") is None:
        pytest.fail("stress-ng is not installed (scripts/setup_system.sh installs it)")
    proc = subprocess.Popen(["stress-ng", "--cpu", "2", "--timeout", "600"], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    with LocalTransport("here") as transport:
        while time.monotonic() < deadline:
            out = transport.run(["sh", "-c", conditions._HOST_SCRIPT], timeout=10).stdout
            if conditions.parse_host(out, [])["cpu_busy"] > 0.9:
                break
    yield proc
    proc.terminate()
    proc.wait(timeout=30)


def _run(tmp_path: Path, policy: str):
    data = generate(str(tmp_path / "set"), images=1, layout="imagefolder")
    path = tmp_path / "hosts.yaml"
    path.write_text(CLUSTER % (policy, sys.executable, tmp_path / "work", data))
    cluster = load_cluster(path)
    known = {"cpu": vendors.get("cpu")}
    jobs, _ = expand(cluster, known)
    store = Store(str(tmp_path / "store.sqlite"))
    store.create_run("r1", str(path), cluster.model_dump(mode="json"))
    for job in jobs:
        store.add_job("r1", job.job_id, job.host, "cpu", job.as_dict())
    ctx = RunContext("r1", cluster, store, known, tmp_path / "results", lambda *row: None)
    states = run_all(ctx, jobs)
    return states, load_run(Store(str(tmp_path / "store.sqlite"), readonly=True), "r1")


@pytest.mark.slow
def test_a_job_beside_stress_ng_carries_the_warning_naming_the_load(tmp_path, stress):
    states, data = _run(tmp_path, "warn")
    assert list(states.values()) == ["OK"]
    [job] = data.jobs
    assert job.conditions is not None and job.conditions.policy == "warn"
    assert job.conditions.cache == "cleared"  # root here: the page cache was dropped before the job
    before = job.conditions.before
    assert before.cpus and before.load_1m is not None and before.cpu_busy > conditions.CPU_BUSY_LIMIT
    cell = result_rows(data)[0]["conditions"]
    assert cell.startswith("busy: CPUs ") and "load average" in cell and "before the job" in cell
    assert "cache cleared" in cell
    for form in ("table", "md", "csv", "json", "html"):
        out = tmp_path / ("report." + form)
        assert cli.main(["report", "r1", "--store", str(tmp_path / "store.sqlite"), "--format", form,
                         "--out", str(out)]) == 0  # fmt: skip
        assert "busy: CPUs " in out.read_text() or '"CPUs ' in out.read_text(), form


@pytest.mark.slow
def test_a_job_beside_stress_ng_fails_under_isolation_error(tmp_path, stress):
    states, data = _run(tmp_path, "error")
    assert list(states.values()) == ["FAILED_ISOLATION"]
    [job] = data.jobs
    reason = job.job["reason"]
    assert reason.startswith("CPUs ") and "load average" in reason
    assert reason.endswith("before the job (isolation: error)") and "\n" not in reason
    assert job.result is None and job.conditions.after is None  # it never ran


def test_the_summary_names_the_page_cache_only_where_it_was_asked_to_drop_it():
    assert conditions.Conditions(policy="warn", cache=conditions.NOT_CLEARED).summary() == "idle"
    assert conditions.Conditions(policy="warn", cache="cleared").summary() == "idle; cache cleared"
