"""The LoadGen pieces that need no LoadGen: its detail log read as a run's figures with INVALID in plain
words, its accuracy log scored against the labels, the Server QPS search on a fake measure, the settings
taken from the runner's options, and the runner's one line when LoadGen is not installed."""

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from runner_in_container.mlperf import logs, search, settings

REPO = Path(__file__).resolve().parent.parent


def mllog(key, value, error=False, warning=False) -> str:
    """One line of a LoadGen detail log."""
    metadata = {"is_error": error, "is_warning": warning, "file": "loadgen.cc", "line_no": 1, "pid": 1}
    entry = {"key": key, "value": value, "time_ms": 1.0, "namespace": "mlperf::logging", "metadata": metadata}
    return ":::MLLOG " + json.dumps(entry)


LATENCIES = {"50.00": 2_000_000, "90.00": 4_000_000, "99.00": 17_400_000}


def detail(**entries) -> str:
    lines = [mllog(key, value) for key, value in entries.items()]
    lines += [mllog("result_%s_percentile_latency_ns" % pct, ns) for pct, ns in LATENCIES.items()]
    lines += [
        mllog("result_%s_latency_ns" % name, ns) for name, ns in (("mean", 3e6), ("min", 1e6), ("max", 2e7))
    ]
    return "\n".join(["not a log line", ":::MLLOG {broken json"] + lines)


def test_an_invalid_server_run_says_why_in_plain_words():
    text = detail(
        effective_scenario="Server",
        effective_target_qps=20000,
        effective_samples_per_query=1,
        result_validity="INVALID",
        result_perf_constraints_met=False,
        result_min_duration_met=True,
        result_min_queries_met=True,
        early_stopping_met=False,
        result_invalid_reason="Reduce target QPS to improve latency. ",
        result_completed_samples_per_sec=16354.4,
        result_query_count=29490,
    )
    run = logs.run_section(logs.read_detail(text), "mlperf/search-2")
    assert run == {
        "log_dir": "mlperf/search-2",
        "validity": "INVALID",
        "reason": "the latency bound was not met; too few queries to bound the latency percentile with "
        "confidence (early stopping); LoadGen advises: Reduce target QPS to improve latency.",
        "latency_bound_met": False,
        "target_qps": 20000,
        "samples_per_s": 16354.4,
        "queries": 29490,
        "samples_per_query": 1,
        "latency_ms": {"p50": 2.0, "p90": 4.0, "p99": 17.4, "mean": 3.0, "min": 1.0, "max": 20.0},
    }


def test_a_valid_offline_run_has_no_reason_and_no_target():
    entries = logs.read_detail(
        detail(
            effective_scenario="Offline",
            result_validity="VALID",
            result_samples_per_second=29004.5,
            result_query_count=1,
        )
    )
    run = logs.run_section(entries, "mlperf/performance")
    assert (run["validity"], run["reason"], run["target_qps"], run["samples_per_s"]) == (
        "VALID",
        None,
        None,
        29004.5,
    )


def test_loadgen_errors_and_multistream_samples_per_second():
    text = (
        detail(effective_scenario="MultiStream", effective_samples_per_query=8, result_validity="INVALID")
        + "\n"
        + mllog("error_runtime", "Ending early: Ran out of generated queries", error=True)
    )
    run = logs.run_section(logs.read_detail(text), "mlperf/performance")
    assert run["reason"] == "LoadGen error: Ending early: Ran out of generated queries"
    assert run["samples_per_s"] == pytest.approx(8 / 3e-3)  # 8 samples a query over the 3 ms mean


def test_the_accuracy_log_is_scored_against_the_labels():
    def response(index, top1):
        return {"seq_id": index, "qsl_idx": index, "data": struct.pack("<i", top1).hex().upper()}

    text = json.dumps([response(0, 5), response(1, 7), response(2, 1), response(2, 1)])  # 2 logged twice
    assert logs.score_accuracy(text, [5, 3, 1]) == (2, 3)
    with pytest.raises(ValueError, match="not one of this set's samples"):
        logs.score_accuracy(json.dumps([response(9, 1)]), [5, 3, 1])


def fake_server(capacity: float):
    """A measure whose runs are good up to ``capacity`` QPS, recording the targets asked for."""
    asked = []

    def measure(qps: float) -> search.Point:
        asked.append(qps)
        return search.Point(qps, qps <= capacity, {"qps": qps})

    return measure, asked


def test_the_search_doubles_then_bisects_to_the_highest_good_target():
    measure, asked = fake_server(capacity=1000)
    points = search.find_peak(measure, start=300, runs=10, tolerance=0.05)
    assert asked[:3] == [300, 600, 1200]  # good, good, bad: then between 600 and 1200
    assert asked[3:] == [900, 1050, 975, 1012.5]  # stops when bad - good <= 5% of bad
    top = search.best(points)
    assert top is not None and top.qps == 975 and top.good


def test_the_search_halves_from_a_bad_start_and_may_find_nothing():
    measure, asked = fake_server(capacity=100)
    points = search.find_peak(measure, start=1000, runs=3, tolerance=0.05)
    assert asked == [1000, 500, 250]  # all bad, within its runs
    assert search.best(points) is None


def test_settings_from_the_runner_options():
    assert settings.from_options({"scenario": "flagperf"}) is None
    short = settings.from_options({"scenario": "server", "mlperf": "short", "mlperf_duration_s": 2.0})
    assert short is not None and (short.duration_s, short.server_latency_ms) == (2.0, 15.0)
    assert short.compliance() == "not compliant: short runs (at least 2 s each; LoadGen's minimum is 600 s)"
    full = settings.from_options({"scenario": "offline", "mlperf": "compliant"})
    assert full is not None and full.duration_s == 600 and full.compliance() is None


def test_the_runner_without_loadgen_fails_in_one_line_naming_the_package(tmp_path):
    blocker = tmp_path / "site"
    blocker.mkdir()
    (blocker / "mlperf_loadgen.py").write_text("raise ImportError('no module named mlperf_loadgen')\n")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "runner_in_container", "--case", "resnet50", "--data", str(tmp_path),
         "--weights", "random", "--out", str(out), "--scenario", "offline"],
        cwd=str(REPO),
        env={"PYTHONPATH": "%s:%s" % (blocker, REPO), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2 and not out.exists()
    assert proc.stderr == (
        "error: --scenario: offline: the MLPerf scenarios need the mlcommons-loadgen package (import "
        "mlperf_loadgen failed: no module named mlperf_loadgen)\n"
    )
