"""The device monitor: it streams the richest SMI query that answers (an nvidia-smi stand-in on PATH that
rejects fields it does not know, exit 2, as a real driver does), sums up the SM clock and the throttle
reasons over a window, and an MLPerf job's LoadGen runs get a window of their own from the runner's events
(in both monitors), whose figures are the job's."""

import json
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import pytest

import vendors
from orchestrator.host.hostmonitor import HostMonitor, HostReading
from orchestrator.host.monitor import Monitor, figure, throttle_shares
from orchestrator.host.monitors import LATENCY_INTERVAL_S, JobMonitors
from orchestrator.job import collect
from orchestrator.job.runner_output import show_event
from orchestrator.report import figures, firstpage
from orchestrator.transport.local import LocalTransport
from runner_in_container.protocol import STAGE_INFER, STAGE_MLPERF
from tests.fixtures.samplers import through_window, wait_until
from vendors.smi import MonitorSample

NVIDIA = vendors.get("nvidia")
REAL = Path(__file__).resolve().parent / "data" / "result_cpu_ok.json"
BASIC = "index timestamp utilization.gpu memory.total memory.used power.draw"

#: a stand-in nvidia-smi: ``--query-gpu=`` of fields it knows ($KNOWN) prints one line of fixed values (with
#: ``-lms``: every 50 ms until killed); a field it does not know fails the whole query, as nvidia-smi does
STAND_IN_SMI = r"""#!/bin/sh
query=; loop=; previous=
for arg in "$@"; do
  case "$arg" in --query-gpu=*) query=${arg#--query-gpu=} ;; esac
  [ "$previous" = -lms ] && loop=1
  previous=$arg
done
line=
for field in $(echo "$query" | tr , ' '); do
  case " $KNOWN " in
    *" $field "*) ;;
    *) printf 'Field "%s" is not a valid field to query.\n\n' "$field"; exit 2 ;;
  esac
  case "$field" in
    index) value=0 ;; timestamp) value='2026/12/06 19:16:31.123' ;; utilization.gpu) value=100 ;;
    memory.total) value=81559 ;; memory.used) value=30000 ;; power.draw) value=689.12 ;;
    clocks.sm) value=1755 ;; *reasons.active) value=0x0000000000000004 ;;
  esac
  line="${line:+$line, }$value"
done
echo "$line"
while [ -n "$loop" ]; do echo "$line"; sleep 0.05; done
"""


@pytest.fixture
def stand_in_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Puts the stand-in nvidia-smi first on PATH, knowing the fields given (space-separated)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    tool = folder / "nvidia-smi"
    tool.write_text(STAND_IN_SMI)
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", "%s:/usr/bin:/bin" % folder)
    return lambda known: monkeypatch.setenv("KNOWN", known)


def _monitored_infer() -> Tuple[Monitor, Dict[str, Any]]:
    """The NVIDIA monitor run against the stand-in through an infer window of three samples or more."""
    monitor = Monitor.start(LocalTransport(), NVIDIA, 0, 0.05)
    assert monitor is not None
    through_window(monitor, lambda: len(monitor.samples), STAGE_INFER)
    return monitor, monitor.summary({STAGE_INFER: 100})


@pytest.mark.parametrize(
    "known, field",
    [
        (BASIC + " clocks.sm clocks_event_reasons.active clocks_throttle_reasons.active", "clocks_event"),
        (BASIC + " clocks.sm clocks_throttle_reasons.active", "clocks_throttle"),  # a driver before 535
    ],
)
def test_a_driver_that_knows_the_clock_fields_gives_the_clock_and_the_throttle_shares(
    stand_in_smi, known, field
):
    stand_in_smi(known)
    monitor, out = _monitored_infer()
    assert out["error"] is None and ",clocks.sm,%s_reasons.active" % field in monitor.argv[1]
    assert monitor.argv[-2:] == ["-lms", "50"]
    assert out["infer_mean_sm_clock_mhz"] == 1755.0 and out["infer_mean_power_w"] == pytest.approx(689.12)
    assert out["infer_throttle"] == {"SwPowerCap": 1.0} and out["infer_throttle_samples"] >= 3
    assert out["samples"][0]["sm_clock_mhz"] == 1755.0 and out["samples"][0]["throttle"] == ["SwPowerCap"]
    assert json.loads(json.dumps(out)) == out  # the stored summary as the json report gives it


def test_a_driver_that_rejects_the_clock_fields_keeps_the_basic_monitor(stand_in_smi):
    stand_in_smi(BASIC)  # each richer query exits 2: "Field ... is not a valid field to query"
    monitor, out = _monitored_infer()
    assert monitor.argv == NVIDIA.monitor_argv([0], 0.05) and out["error"] is None
    assert out["infer_mean_power_w"] == pytest.approx(689.12) and out["peak_memory_used_mib"] == 30000.0
    assert out["infer_power_samples"] >= 3 and out["infer_mean_utilization_pct"] == 100.0
    assert not [key for key in out if "clock" in key or "throttle" in key]  # not sampled: absent
    assert {(row["sm_clock_mhz"], row["throttle"]) for row in out["samples"]} == {(None, None)}


def test_the_isolation_check_query_is_the_basic_one_still(stand_in_smi):
    stand_in_smi(BASIC)
    done = LocalTransport().run(NVIDIA.sample_argv([0]), timeout=30)
    assert done.returncode == 0
    assert NVIDIA.parse_monitor_line(done.stdout) == [MonitorSample(0, 30000.0, 100.0, 689.12)]


@pytest.mark.parametrize(
    "scenario, interval",
    [("flagperf", 0.05), ("offline", 0.05)]
    + [(s, LATENCY_INTERVAL_S) for s in ("server", "singlestream", "multistream")],
)
def test_a_latency_scenarios_job_is_sampled_no_more_often_than_the_latency_interval(
    stand_in_smi, scenario, interval
):
    stand_in_smi(BASIC)
    monitors = JobMonitors.start(LocalTransport(), NVIDIA, 0, 0.05, scenario)
    try:
        assert monitors.device is not None and monitors.device.interval_s == interval
        assert monitors.host.interval_s == interval
        assert monitors.device.argv[-2:] == ["-lms", str(int(interval * 1000))]
    finally:
        monitors.stop()


def test_throttle_shares_leave_out_gpu_idle_and_count_each_reason():
    readings = [("SwPowerCap",), ("SwPowerCap", "HwSlowdown"), (), ("GpuIdle",)]
    assert throttle_shares(readings) == {"SwPowerCap": 0.5, "HwSlowdown": 0.25}
    assert throttle_shares([(), ("GpuIdle",)]) == {}  # read, none active: said, not absent


# -- the MLPerf window ----------------------------------------------------------------------------
#: the runner's events of an MLPerf Server job (runner_in_container.run and mlperf.scenario), in order
MLPERF_EVENTS = [
    ("setup", "loader"),
    (STAGE_INFER, "passes"),
    (STAGE_INFER, "core"),
    (STAGE_MLPERF, "time_model"),
    (STAGE_MLPERF, "search-1"),
    (STAGE_MLPERF, "search-2"),
    (STAGE_MLPERF, "accuracy"),
    ("report", None),
]


def _feed(monitors: JobMonitors, events: List[Tuple[str, Any]]) -> Dict[str, Tuple[float, float]]:
    """The events through show_event; (before, after) wall times of each step."""
    seen: Dict[str, Tuple[float, float]] = {}
    for stage, step in events:
        before = time.time()
        show_event({"ev": "stage", "stage": stage, "step": step, "scenario": "server"}, monitors, _ignore)
        after = time.time()
        seen[str(step)] = (before, after)
        wait_until(lambda: time.time() > after, "the clock to move on")  # noqa: B023 (each edge its own time)
    return seen


def _ignore(**_fields: Any) -> None:
    """The job's display line, not looked at here."""


def test_loadgen_runs_get_a_window_of_their_own_whose_samples_give_the_jobs_figures():
    device = Monitor(LocalTransport(), NVIDIA, 0, ["true"], 0.5)  # not started: its windows and summary
    host = HostMonitor(LocalTransport(), 0.5)
    seen = _feed(JobMonitors(device, host), MLPERF_EVENTS)
    start, end = device.windows[STAGE_MLPERF]
    assert seen["search-1"][0] <= start <= seen["search-1"][1]  # the search's first run opens it
    assert seen["accuracy"][0] <= end <= seen["accuracy"][1]  # the accuracy run is outside it
    assert host.windows[STAGE_MLPERF] == [start, end] and set(device.windows) == {STAGE_INFER, STAGE_MLPERF}
    infer_start, infer_end = device.windows[STAGE_INFER]
    middle = (start + end) / 2
    device.samples = [
        (
            (infer_start + infer_end) / 2,
            MonitorSample(0, 1.0, 40.0, 395.0, None, 1980.0, ()),
        ),  # the core pass
        (start, MonitorSample(0, 2.0, 100.0, 690.0, None, 1755.0, ("SwPowerCap",))),
        (middle, MonitorSample(0, 2.0, 98.0, 700.0, None, 1740.0, ("SwPowerCap", "HwSlowdown"))),
        (end, MonitorSample(0, 2.0, 96.0, 680.0, None, 1785.0, ())),
        (end + 0.5, MonitorSample(0, 3.0, 50.0, 300.0, None, 1980.0, ("GpuIdle",))),  # the accuracy run
    ]
    result = collect.read(_server_result())
    images = collect.window_images(result.typed)
    assert images == {STAGE_INFER: 8, STAGE_MLPERF: 1900}  # queries x samples per query of every search run
    out = device.summary(images)
    assert out["figure_window"] == STAGE_MLPERF and out["windows"][STAGE_MLPERF] == [start, end]
    assert (out["mlperf_mean_power_w"], out["mlperf_power_samples"]) == (690.0, 3)
    assert out["mlperf_energy_j_per_img"] == pytest.approx(690.0 * (end - start) / 1900)
    assert out["mlperf_mean_sm_clock_mhz"] == 1760.0 and out["mlperf_mean_utilization_pct"] == 98.0
    assert out["mlperf_throttle"] == pytest.approx({"SwPowerCap": 2 / 3, "HwSlowdown": 1 / 3})
    assert out["mlperf_throttle_samples"] == 3
    assert (out["infer_mean_power_w"], out["infer_mean_sm_clock_mhz"]) == (395.0, 1980.0)  # kept beside
    assert (figure(out, "mean_power_w"), figure(out, "throttle_samples")) == (
        690.0,
        3,
    )  # the job's: LoadGen's
    host.readings = [
        (start - 1.0, HostReading((0,) * 8, 1024, 512, 400.0)),
        (end + 1.0, HostReading((100, 0, 0, 100, 0, 0, 0, 0), 1024, 512, 900.0)),
    ]
    summary = host.summary(images)
    assert summary["figure_window"] == STAGE_MLPERF
    assert summary["stages"][STAGE_MLPERF]["window_s"] == pytest.approx(end - start)
    assert summary["stages"][STAGE_MLPERF]["power_mean_w"] == 900.0
    assert summary["stages"][STAGE_MLPERF]["energy_j_per_img"] == pytest.approx(900.0 * (end - start) / 1900)


def test_a_flagperf_job_keeps_the_infer_window_as_its_figures():
    device = Monitor(LocalTransport(), NVIDIA, 0, ["true"], 0.5)
    _feed(JobMonitors(device, HostMonitor(LocalTransport(), 0.5)), MLPERF_EVENTS[:3])
    start, end = device.windows[STAGE_INFER]
    assert list(device.windows) == [STAGE_INFER]
    device.samples = [
        (start, MonitorSample(0, 1.0, 97.0, 310.0)),
        (end + 1, MonitorSample(0, 1.0, 0.0, 90.0)),
    ]
    out = device.summary(collect.window_images(collect.read(json.loads(REAL.read_text())).typed))
    assert out["figure_window"] == STAGE_INFER and figure(out, "mean_power_w") == 310.0
    assert out["infer_energy_j_per_img"] == pytest.approx(310.0 * (end - start) / 8)
    assert not [key for key in out if key.startswith(STAGE_MLPERF)]
    assert figure({"infer_mean_power_w": 5.0}, "mean_power_w") == 5.0  # stored before figure_window


def test_the_reports_say_the_clock_and_the_throttle_reasons_only_where_sampled():
    assert firstpage.clocks(1755.4, {"SwPowerCap": 0.94, "HwSlowdown": 0.02}) == (
        "SM 1755 MHz; SwPowerCap 94%, HwSlowdown 2% of samples"
    )
    assert firstpage.clocks(1980.0, {}) == "SM 1980 MHz; no throttle reason"
    assert firstpage.clocks(None, None) == ""
    stored: Dict[str, Any] = {
        "source": "nvidia-smi (host side, every 0.5 s)", "peak_memory_used_mib": 30000.0,
        "figure_window": STAGE_MLPERF, "mlperf_mean_power_w": 689.5, "mlperf_energy_j_per_img": 0.0123,
        "mlperf_mean_sm_clock_mhz": 1755.0, "mlperf_throttle": {"SwPowerCap": 0.94},
        "infer_mean_power_w": 395.0,
    }  # fmt: skip
    line = figures._monitor_line(stored)
    assert line == (
        "nvidia-smi (host side, every 0.5 s); peak used 30,000 MiB; mlperf: mean power 690 W, energy 0.0123 "
        "J/img; SM 1755 MHz; SwPowerCap 94% of samples"
    )
    basic = {key: value for key, value in stored.items() if "clock" not in key and "throttle" not in key}
    assert figures._monitor_line(basic).endswith("energy 0.0123 J/img")  # not sampled: nothing said


def _server_result() -> Dict[str, Any]:
    """The stored CPU result with the mlperf section of a Server job whose search ran twice."""
    doc = json.loads(REAL.read_text())

    def run(name: str, queries: int) -> Dict[str, Any]:
        return {
            "log_dir": "mlperf/" + name, "validity": "VALID", "reason": None, "latency_bound_met": True,
            "target_qps": 100.0, "samples_per_s": 99.0, "queries": queries, "samples_per_query": 1,
            "latency_ms": None,
        }  # fmt: skip

    search: List[Dict[str, Any]] = [run("search-1", 1000), run("search-2", 900)]
    doc["mlperf"] = {
        "scenario": "server", "loadgen_version": "6.0.17", "rules": "mlperf.conf (resnet50)",
        "compliant": False, "compliance": "not compliant: short", "min_duration_s": 10.0,
        "server_latency_ms": 15.0, "server_qps": 100.0, "batch_size": 4, "batch_wait_ms": 2.0,
        "performance_samples": 8, "performance": search[1], "search": search,
        "accuracy": {"log_dir": "mlperf/accuracy", "samples": 8, "top1_count": 1, "top1_pct": 12.5,
                     "reason": None},
        "log_files": [],
    }  # fmt: skip
    return doc
