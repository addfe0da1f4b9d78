"""MLPerf's four scenarios and LoadGen's accuracy mode end to end with the real LoadGen in the CPU image,
through ``python -m orchestrator run``: short runs on a small generated set, each job's LoadGen logs parsed
into its result and fetched beside it, INVALID runs explained in plain words, the figures in the report."""

import json
from pathlib import Path

import pytest

from orchestrator.store import Store
from runner_in_container.data.generate import generate
from tests.test_faults import local_entry, orchestrator, write_cluster
from tests.test_runner_schema import check_result

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SCENARIOS = ["offline", "server", "singlestream", "multistream"]
CASE = {
    "case": "resnet50",
    "toolkit": "pytorch",
    "precision": "fp32",
    "batch_size": 1,
    "warmup": 1,
    "scenario": SCENARIOS,
    "mlperf_duration_s": 1,
    "server_latency_ms": 5000,  # a CPU meets this bound, never mlperf.conf's 15 ms
}


@pytest.fixture(scope="module")
def mlperf_run(tmp_path_factory, cpu_image, cpu_sdk_dir, base_image):
    """One run of the four scenarios on a local CPU host: (its folder, the store, the run id, its output)."""
    tmp = tmp_path_factory.mktemp("mlperf")
    data = Path(generate(str(tmp / "set"), images=6, layout="imagefolder", size=(96, 80)))
    image = {"base_image": base_image, "sdk_dir": str(cpu_sdk_dir)}
    path = write_cluster(
        tmp / "mlperf.yaml", tmp, [local_entry("here", data, tmp / "work", image)], cases=[CASE]
    )
    done = orchestrator("run", "--cluster", str(path), timeout=1800)
    store = Store(str(tmp / "store.sqlite"))
    (run,) = store.runs()
    return tmp, store, run["run_id"], done


def test_each_scenario_runs_and_its_figures_come_from_loadgen_logs(mlperf_run):
    tmp, store, run_id, done = mlperf_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    jobs = {job["job_id"]: job for job in store.jobs(run_id)}
    assert sorted(jobs) == sorted("here.d0.resnet50.pytorch.fp32.bs1." + s for s in SCENARIOS)
    results = store.results(run_id)
    for job_id, job in jobs.items():
        assert job["state"] == "OK", (job_id, job["reason"])
        assert check_result(results[job_id]["result"]) == []  # every key as docs/result_schema.md has it
        mlperf = results[job_id]["result"]["mlperf"]
        scenario = job_id.rsplit(".", 1)[1]
        assert mlperf["scenario"] == scenario and not mlperf["compliant"]
        assert mlperf["compliance"].startswith("not compliant: short runs (at least 1 s each")
        performance = mlperf["performance"]
        assert performance["validity"] in ("VALID", "INVALID") and performance["queries"] >= 1
        assert (performance["reason"] is None) == (performance["validity"] == "VALID")
        latency = performance["latency_ms"]
        assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
        assert performance["samples_per_query"] == {"multistream": 8}.get(
            scenario, performance["samples_per_query"]
        )
        accuracy = mlperf["accuracy"]  # random weights: any top-1, but every sample scored once
        assert accuracy["samples"] == 6 and 0 <= accuracy["top1_count"] <= 6
        # the logs the result names were fetched beside it; the summary says what the result says
        job_dir = tmp / "results" / run_id / job_id
        for name in mlperf["log_files"]:
            assert (job_dir / name).is_file(), name
        summary = (job_dir / performance["log_dir"] / "mlperf_log_summary.txt").read_text()
        assert "Result is : %s" % performance["validity"] in summary
        assert json.loads((job_dir / "mlperf" / "accuracy" / "mlperf_log_accuracy.json").read_text())


def test_the_server_search_explains_each_invalid_run(mlperf_run):
    _, store, run_id, _ = mlperf_run
    (server,) = [found for job_id, found in store.results(run_id).items() if job_id.endswith(".server")]
    mlperf = server["result"]["mlperf"]
    search = mlperf["search"]
    assert 2 <= len(search) <= 7 and mlperf["server_latency_ms"] == 5000
    assert [run["log_dir"] for run in search] == ["mlperf/search-%d" % (n + 1) for n in range(len(search))]
    for run in search:
        assert run["target_qps"] > 0
        if run["validity"] == "INVALID":  # short runs are too short for early stopping: said so
            assert "too few queries to bound the latency percentile" in run["reason"]
    good = [run["target_qps"] for run in search if run["latency_bound_met"]]
    assert mlperf["server_qps"] == (max(good) if good else None)
    assert server["derived"]["mlperf_server_qps"] == mlperf["server_qps"]


def test_the_report_shows_the_scenario_figures(mlperf_run):
    tmp, _, run_id, _ = mlperf_run
    texts = {}
    for fmt in ("md", "csv", "json", "html"):
        report = orchestrator("report", run_id, "--store", str(tmp / "store.sqlite"), "--format", fmt)
        assert report.returncode == 0, report.stderr
        assert "MLPerf" in report.stdout or "mlperf_" in report.stdout, fmt
        texts[fmt] = report.stdout
    assert "| scenario |" in texts["md"] and "| server |" in texts["md"]
    html = texts["html"]
    assert "<h3>MLPerf Server search</h3>" in html and "<circle" in html  # the latency-throughput chart
    job_dir = tmp / "results" / run_id / "here.d0.resnet50.pytorch.fp32.bs1.server"
    link = '<a href="%s">' % (job_dir / "mlperf" / "accuracy" / "mlperf_log_summary.txt").as_uri()
    assert link in html  # the logs, linked where they were fetched


def test_each_jobs_loadgen_runs_have_a_monitor_window_that_gives_its_host_figures(mlperf_run):
    """The runner's real step events open the LoadGen window at the performance (Server: first search) run
    and close it at the accuracy run; the job's host figures are that window's."""
    _, store, run_id, _ = mlperf_run
    hosts = store.host_samples(run_id)
    assert len(hosts) == len(SCENARIOS)
    for job_id, host in hosts.items():
        start, end = host["windows"]["mlperf"]
        assert host["windows"]["infer"][1] < start < end and host["figure_window"] == "mlperf", job_id
        assert host["stages"]["mlperf"]["window_s"] == pytest.approx(end - start)
