"""The host monitor: its sampling script on captured /proc text, CPU % and memory from two readings, node
power through ``ipmitool dcmi power reading`` (a stand-in on PATH) or recorded as unavailable with the reason,
its per-stage summary, old stores without its table, and a real local job whose store, JSON and HTML
carry it."""

import json
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.config.load import load_cluster
from orchestrator.host import hostmonitor
from orchestrator.host.hostmonitor import SAMPLE_SCRIPT, HostMonitor, HostReading, cpu_percent, parse_line
from orchestrator.job.lifecycle import RunContext
from orchestrator.job.plan import expand
from orchestrator.report.figures import CPU_LINES
from orchestrator.run.scheduler import run_all
from orchestrator.store import SCHEMA, Store
from orchestrator.transport.local import LocalTransport
from runner_in_container.data.generate import generate
from runner_in_container.protocol import STAGE_INFER, STAGE_VAL
from tests.fixtures.samplers import through_window, wait_until
from tests.test_metric_table import _report
from vendors.cpu import VENDOR as CPU

DATA = Path(__file__).resolve().parent / "data" / "host"
DCMI = DATA / "ipmitool-dcmi-power-reading.txt"
REFUSED = "Could not open device at /dev/ipmi0 or /dev/ipmi/0 or /dev/ipmidev/0: No such file or directory"


def _sample(proc: Path, power: str = "0") -> str:
    """One line of the real sampling script, reading ``proc`` instead of /proc."""
    done = subprocess.run(
        ["sh", "-c", SAMPLE_SCRIPT, "rn50bench-host", power, str(proc)],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return done.stdout


def stand_in_ipmitool(folder: Path, script: str) -> Path:
    """A folder holding an ``ipmitool`` that runs ``script`` (sh); put it first on PATH."""
    folder.mkdir(parents=True, exist_ok=True)
    tool = folder / "ipmitool"
    tool.write_text("#!/bin/sh\n" + script)
    tool.chmod(0o755)
    return folder


@pytest.fixture
def working_ipmitool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = stand_in_ipmitool(tmp_path / "bin", 'cat "%s"\n' % DCMI)
    monkeypatch.setenv("PATH", "%s:/usr/bin:/bin" % folder)
    return folder


# -- the sampling script and its parser ---------------------------------------------------
def test_the_script_reads_captured_proc_text_into_cpu_percent_and_memory():
    first, second = (parse_line(_sample(DATA / name)) for name in ("proc-t0", "proc-t1"))
    assert first == HostReading(
        (1239797, 1947, 286699, 1101531, 10025, 0, 3343, 3890), 24683784, 21585536, None
    )
    assert second is not None and second.mem_available_kib == 21486092
    # between them: user +177, system +19, steal +4, idle +0 jiffies: all 200 busy
    assert cpu_percent(first, second) == {
        "cpu_pct": 100.0, "user_pct": 88.5, "nice_pct": 0.0, "system_pct": 9.5, "iowait_pct": 0.0,
        "irq_pct": 0.0, "softirq_pct": 0.0, "steal_pct": 2.0,
    }  # fmt: skip


def test_idle_and_iowait_are_not_busy_and_no_time_passed_is_no_sample():
    before = HostReading((100, 0, 100, 100, 100, 0, 0, 0), None, None, None)
    # +50 user, +50 system, +150 idle, +50 iowait
    after = HostReading((150, 0, 150, 250, 150, 0, 0, 0), None, None, None)
    assert cpu_percent(before, after) == pytest.approx(
        {"cpu_pct": 33.333, "user_pct": 16.667, "nice_pct": 0, "system_pct": 16.667, "iowait_pct": 16.667,
         "irq_pct": 0, "softirq_pct": 0, "steal_pct": 0}, abs=1e-3,
    )  # fmt: skip
    assert cpu_percent(after, after) is None
    assert cpu_percent(after, before) is None  # counters went back (a reboot between lines)


@pytest.mark.parametrize(
    "line",
    [
        "",
        "cpu  1 2 3 4 5 6 7 8",
        "rn50bench-host cpu 1 2 3|mem 1 2|power ",
        "rn50bench-host cpu0 1 2 3 4 5 6 7 8|mem |power",
    ],
)
def test_lines_that_are_no_reading_are_skipped(line):
    assert parse_line(line) is None


def test_the_script_reads_node_power_through_ipmitool_when_asked(working_ipmitool):
    reading = parse_line(_sample(DATA / "proc-t0", power="1"))
    assert reading is not None and reading.power_w == 412.0
    assert parse_line(_sample(DATA / "proc-t0", power="0")).power_w is None  # type: ignore[union-attr]


# -- the power probe --------------------------------------------------------------------
def test_ipmitool_absent_is_unavailable_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no ipmitool on this "host"
    assert hostmonitor.probe_power(LocalTransport()) == "ipmitool is not installed on the host"


def test_ipmitool_refused_is_unavailable_with_its_words(tmp_path, monkeypatch):
    folder = stand_in_ipmitool(tmp_path / "bin", "echo '%s' >&2\nexit 1\n" % REFUSED)
    monkeypatch.setenv("PATH", str(folder))
    why = hostmonitor.probe_power(LocalTransport())
    assert why == "ipmitool dcmi power reading failed (exit status 1): " + REFUSED


def test_a_deactivated_reading_is_unavailable(tmp_path, monkeypatch):
    text = DCMI.read_text().replace("activated", "deactivated").replace("412", "0")
    (tmp_path / "dcmi.txt").write_text(text)
    folder = stand_in_ipmitool(tmp_path / "bin", 'cat "%s"\n' % (tmp_path / "dcmi.txt"))
    monkeypatch.setenv("PATH", "%s:/usr/bin:/bin" % folder)
    assert "gave no instantaneous reading" in (hostmonitor.probe_power(LocalTransport()) or "")


# -- the monitor through a job's stage windows --------------------------------------------------


def test_the_monitor_samples_a_real_host_and_summarises_the_stage_windows(working_ipmitool):
    monitor = HostMonitor.start(LocalTransport(), 0.1)
    through_window(monitor, lambda: len(monitor.readings), STAGE_INFER, before=3)
    out = monitor.summary({STAGE_INFER: 100})
    assert out["error"] is None and out["power"] == {"available": True, "reason": None}
    assert len(out["samples"]) >= 5 and all(0 <= row["cpu_pct"] <= 100 for row in out["samples"])
    infer = out["stages"][STAGE_INFER]
    start, end = out["windows"][STAGE_INFER]
    assert infer["intervals"] >= 3 and 0 <= infer["cpu_pct_mean"] <= 100 and infer["mem_used_peak_mib"] > 0
    assert infer["power_mean_w"] == 412.0
    assert infer["energy_j_per_img"] == pytest.approx(412.0 * (end - start) / 100)
    json.dumps(out, allow_nan=False)  # what the store keeps


def test_a_window_at_the_end_shorter_than_the_interval_still_gets_its_figures():
    monitor = HostMonitor.start(LocalTransport(), 60.0)  # one streamed reading in this test, no second
    try:
        wait_until(lambda: len(monitor.readings) >= 1, "the first reading")
        monitor.mark(STAGE_INFER, "start")
        monitor.mark(STAGE_INFER, "end", time.time() + 0.01)
    finally:
        monitor.stop()  # the job's end: one reading more closes the interval the window lies in
    assert len(monitor.readings) == 2
    infer = monitor.summary({STAGE_INFER: 6})["stages"][STAGE_INFER]
    assert infer["intervals"] == 1 and 0 <= infer["cpu_pct_mean"] <= 100 and infer["mem_used_peak_mib"] > 0


def test_the_window_mean_weights_each_interval_by_its_overlap():
    monitor = HostMonitor(LocalTransport(), 1.0)  # not started: a summary of given readings
    cpu = [(0, 0, 0, 0, 0, 0, 0, 0), (100, 0, 0, 0, 0, 0, 0, 0), (100, 0, 0, 100, 0, 0, 0, 0)]
    monitor.readings = [(10.0 + i, HostReading(c, 4096, 1024 * (3 - i), None)) for i, c in enumerate(cpu)]
    monitor.windows = {STAGE_INFER: [10.5, 11.5], STAGE_VAL: [5.0, 6.0], "hold": [11.0, 12.0]}
    out = monitor.summary({STAGE_INFER: 10})
    assert [(row["cpu_pct"], row["mem_used_mib"]) for row in out["samples"]] == [(100.0, 2.0), (0.0, 3.0)]
    infer = out["stages"][STAGE_INFER]  # half of the busy second, half of the idle one
    assert (infer["cpu_pct_mean"], infer["mem_used_peak_mib"], infer["intervals"]) == (50.0, 3.0, 2)
    assert infer["power_mean_w"] is None and infer["energy_j_per_img"] is None
    assert out["stages"][STAGE_VAL]["intervals"] == 0 and "hold" not in out["stages"]  # pass stages only


# -- the store ---------------------------------------------------------------------------------
def test_a_store_from_before_the_host_monitor_still_reads(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(str(path)) as db:
        db.executescript(SCHEMA)  # the tables of the first stores: no host_samples
    old = Store(str(path), readonly=True)
    assert old.host_samples("r1") == {} and old.samples("r1") == {}
    old.close()
    writer = Store(str(path))  # a writer adds the table
    writer.put_host_samples("r1", "j1", {"samples": []})
    assert writer.host_samples("r1") == {"j1": {"samples": []}}
    writer.close()


# -- a real job ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_real_local_job_stores_and_shows_its_host_series(tmp_path):
    """The CPU vendor (no device monitor), runtime bare, through the real lifecycle and ssh launcher."""
    data = generate(str(tmp_path / "set"), images=8, layout="imagefolder", size=(160, 120))
    (tmp_path / "hosts.yaml").write_text(
        "defaults: {monitor_interval_s: 0.2}\n"
        "hosts:\n"
        "  - {name: here, address: local, vendor: cpu, runtime: bare, python: %s, workdir: %s, workers: 1,\n"
        "     data: {path: %s}, weights: random}\n"
        "cases:\n"
        "  - {toolkit: pytorch, precision: fp32, batch_size: 2, repeat: 2, warmup: 0, runs: 1}\n"
        % (sys.executable, tmp_path / "work", data)
    )
    cluster = load_cluster(tmp_path / "hosts.yaml")
    known = {"cpu": CPU}
    (job,), _ = expand(cluster, known)
    store_path = tmp_path / "store.sqlite"
    store = Store(str(store_path))
    store.create_run("r1", str(tmp_path / "hosts.yaml"), cluster.model_dump(mode="json"))
    store.add_job("r1", job.job_id, job.host, "cpu", job.as_dict())
    ctx = RunContext("r1", cluster, store, known, tmp_path / "results", lambda *row: None)
    assert run_all(ctx, [job]) == {job.job_id: "OK"}

    host = store.host_samples("r1")[job.job_id]
    store.close()
    assert host["samples"] and all(0 <= row["cpu_pct"] <= 100 for row in host["samples"])
    assert set(host["windows"]) == {STAGE_VAL, STAGE_INFER}
    infer = host["stages"][STAGE_INFER]
    assert infer["intervals"] >= 1 and infer["cpu_pct_mean"] > 0 and infer["mem_used_peak_mib"] > 0
    if shutil.which("ipmitool") is None:
        assert host["power"] == {"available": False, "reason": "ipmitool is not installed on the host"}

    document = json.loads(_report(store_path, "r1", "--format", "json"))
    assert document["host_samples"][job.job_id] == host
    derived = document["results"][job.job_id]["derived"]
    assert derived["host_cpu_pct"] == pytest.approx(infer["cpu_pct_mean"])
    assert derived["host_mem_used_gib"] == pytest.approx(infer["mem_used_peak_mib"] / 1024)
    html = _report(store_path, "r1", "--format", "html")
    chart = html[html.index("<title>host CPU</title>") :]
    chart = chart[: chart.index("</svg>")]
    assert chart.count("<polyline ") == len(CPU_LINES) and ">infer: " in chart and ">val: " in chart
    assert "<td>host monitor</td>" in html and "node power unavailable" in html
