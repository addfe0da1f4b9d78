"""``runs: 3`` end to end on a real dockerd: `python -m orchestrator run` makes 3 fresh runner processes per
job (interleaved), keeps them apart, and every report format gives each figure's mean, 95% interval and
CV over them; compare says "within noise" for two identical runs and which toolkit is faster beyond noise."""

import csv
import io
import json
from pathlib import Path
from typing import Any, Dict, List, NamedTuple

import pytest

from orchestrator.metrics import table
from orchestrator.metrics.interval import over_runs
from orchestrator.report import series
from orchestrator.store import Store
from runner_in_container.data.generate import generate
from tests.test_faults import local_entry, orchestrator

pytestmark = [pytest.mark.docker, pytest.mark.slow]

CASE = {"precision": "fp32", "batch_size": 4, "warmup": 1, "runs": 3}


class Runs(NamedTuple):
    store: str
    both: str  # pytorch and onnxruntime, 3 runs each
    again: str  # pytorch alone, 3 runs: the first run's pytorch job again


def _run(tmp: Path, name: str, data: str, image: Dict[str, str], toolkits: List[str]) -> str:
    cluster = {
        "store": str(tmp / "store.sqlite"),
        "results_dir": str(tmp / "results"),
        "hosts": [local_entry("here", Path(data), tmp / "work", image)],
        "cases": [dict(CASE, toolkit=toolkits)],
    }
    path = tmp / ("%s.yaml" % name)
    path.write_text(json.dumps(cluster))  # JSON is YAML
    done = orchestrator("run", "--cluster", str(path), timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Over runs" in done.stdout  # run prints the table over runs beside the results
    return Store(str(tmp / "store.sqlite")).runs()[-1]["run_id"]  # the newest: run ids sort by time


@pytest.fixture(scope="module")
def runs(tmp_path_factory, cpu_image, cpu_sdk_dir, base_image) -> Runs:
    tmp = tmp_path_factory.mktemp("runs")
    data = generate(str(tmp / "set"), images=6, layout="imagefolder")
    image = {"base_image": base_image, "sdk_dir": str(cpu_sdk_dir)}
    both = _run(tmp, "both", data, image, ["pytorch", "onnxruntime"])
    again = _run(tmp, "again", data, image, ["pytorch"])
    return Runs(str(tmp / "store.sqlite"), both, again)


def report(runs: Runs, run_id: str, *args: str) -> str:
    done = orchestrator("report", run_id, "--store", runs.store, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_each_run_is_a_job_of_its_own_interleaved_and_kept_apart(runs):
    jobs = Store(runs.store).jobs(runs.both)
    names = ["here.d0.resnet50.%s.fp32.bs4" % tool for tool in ("pytorch", "onnxruntime")]
    assert [j["job_id"] for j in jobs] == ["%s.r%d" % (s, run) for run in (1, 2, 3) for s in names]
    assert all(j["state"] == "OK" for j in jobs)
    results = Store(runs.store).results(runs.both)
    assert len(results) == 6 and len({j["log_path"] for j in jobs}) == 6  # 6 runner processes, kept apart
    assert [(j["spec"]["series"], j["spec"]["run"], j["spec"]["runs"]) for j in jobs[:2]] == [
        (names[0], 1, 3),
        (names[1], 1, 3),
    ]


def _json(runs: Runs) -> Dict[str, Any]:
    return json.loads(report(runs, runs.both, "--format", "json"))


def test_json_gives_every_figure_its_mean_interval_and_cv_from_the_stored_runs(runs):
    doc = _json(runs)
    assert set(doc["series"]) == {"here.d0.resnet50.%s.fp32.bs4" % t for t in ("pytorch", "onnxruntime")}
    for item in doc["series"].values():
        assert item["k"] == item["runs_asked"] == 3 and len(item["jobs"]) == 3
        for metric in table.METRICS:
            stored = [doc["results"][job]["derived"][metric.key] for job in item["jobs"]]
            if None in stored:
                assert metric.key not in item["figures"] or not metric.always
                continue
            found = item["figures"][metric.key]
            expected = over_runs(stored)
            assert expected is not None and found["values"] == stored
            assert (found["mean"], found["low"], found["high"], found["cv"]) == pytest.approx(
                (expected.mean, expected.low, expected.high, expected.cv)
            )
            assert found["low"] <= found["mean"] <= found["high"]


def test_csv_over_runs_reads_back_as_the_json_numbers(runs):
    doc = _json(runs)
    text = report(runs, runs.both, "--format", "csv", "--table", "runs")
    over = list(csv.DictReader(io.StringIO(text)))
    assert over and list(over[0]) == [key for key, _ in series.CSV_COLUMNS]
    for row in over:
        found = doc["series"][row["series"]]["figures"][row["figure"]]
        assert float(row["mean"]) == found["mean"] and float(row["low"]) == found["low"]
        assert float(row["high"]) == found["high"] and row["k"] == "3"
        assert [float(v) for v in row["values"].split(";")] == found["values"]
    assert {row["figure"] for row in over} >= {"p_infer_core", "p_infer_whole", "e2e_time_s"}


@pytest.mark.parametrize("form", ["md", "table", "html"])
def test_md_table_and_html_show_the_interval_of_every_compared_figure(runs, form):
    out = " ".join(report(runs, runs.both, "--format", form).split())
    assert "Over runs" in out and "95% interval" in out and "Student t" in out
    for metric in table.METRICS:
        if metric.compare and metric.always:  # the terminal may wrap a label inside its cell: its key whole
            assert (metric.key if form == "table" else metric.label()) in out, metric.key
    if form == "html":
        assert out.count("95% interval over K = 3 runs") >= 4  # error bars: 2 series x the throughputs


def test_two_identical_runs_are_within_noise(runs):
    doc = json.loads(report(runs, runs.both, "--compare", runs.again, "--format", "json"))
    (pair,) = doc["pairs"]
    assert pair["key"]["toolkit"] == "pytorch" and pair["a"]["intervals"]["p_infer_core"]["k"] == 3
    for key in ("p_infer_core", "p_infer_whole", "acc_val_top1"):
        assert pair["verdict"][key] == "within noise", (key, pair["a"]["intervals"], pair["b"]["intervals"])


def test_two_toolkits_side_by_side_say_which_is_faster_beyond_noise(runs):
    args = ("--compare", runs.both, "--pair-by", "case,precision,bs", "--format", "json")
    doc = json.loads(report(runs, runs.both, *args))
    pair = next(p for p in doc["pairs"] if p["a"]["key"]["toolkit"] == "pytorch")
    assert pair["b"]["key"]["toolkit"] == "onnxruntime"
    a, b = pair["a"]["intervals"]["p_infer_core"], pair["b"]["intervals"]["p_infer_core"]
    said = pair["verdict"]["p_infer_core"]
    if a["high"] < b["low"] or b["high"] < a["low"]:
        assert said == "A %s (beyond noise)" % ("better" if a["mean"] > b["mean"] else "worse")
    else:
        assert said == "within noise"
    assert pair["verdict"]["acc_val_top1"] == "within noise"  # both validate with pytorch: the same figure
    text = " ".join(report(runs, runs.both, *args[:-2]).split())
    assert "pytorch vs onnxruntime" in text and "beyond noise: the 95% intervals do not overlap" in text
