"""The HTML report's first page and gathered runs, on real stored runs (the real runner on the CPU, stored as
the orchestrator stores a job; ``tests/test_report_formats.py``'s helpers and runs).

The slow part: a 2-host, 2-toolkit, batch-size-sweep run of 3 runs per job, its first page read and
screenshot in headless Chromium (``docs/report_first_page.png`` is that screenshot)."""

import csv
import io
import json
import os
import re
import shutil
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import pytest
from PIL import Image

import vendors
from orchestrator.host import envinfo
from orchestrator.host.monitor import Monitor
from orchestrator.job.plan import Job, job_id
from orchestrator.outcome import JobState
from orchestrator.report.firstpage import model_of
from orchestrator.report.load import load_run
from orchestrator.store import Store
from orchestrator.transport.local import LocalTransport
from runner_in_container.data.generate import generate
from tests.fixtures.stored_runs import REPO, Runs, new_run, report, screenshot, store_job
from vendors.smi import MonitorSample

#: set (to anything) to keep the sweep's screenshot as the README's docs/report_first_page.png
KEEP_SCREENSHOT = "RN50BENCH_KEEP_SCREENSHOT"
#: a figure in exponent form, as the first page must never print one
EXPONENT = re.compile(r"\d[eE][-+]\d")


def first_page(html: str) -> str:
    """The HTML of the first page: everything before the appendix."""
    return html.split('<h1 class="appendix">')[0]


def test_first_page_ranks_toolkits_and_says_k1_gives_no_interval(runs, capsys):
    status, html, _ = report(runs, capsys, runs.main, "--format", "html")
    assert status == 0
    page = first_page(html)
    assert "Fastest: cpu " in page and "p_infer_core" in page
    assert page.count("K = 1: no interval") >= 2  # two toolkits ran once each
    assert "How sure: no interval" in page
    assert "pytorch fp32" in page and "onnxruntime fp32" in page
    assert "FAILED_START: 1" in page and "OK: 2" in page  # the tensorrt job the runner refused
    assert not EXPONENT.search(re.sub(r"<[^>]*>", " ", page))
    assert "Appendix: every job" in html and html.index("Summary") < html.index("Results")
    status, html, _ = report(runs, capsys, runs.main, "--format", "html", "--lang", "zh")
    assert status == 0 and "结论" in html and "每种加速卡与推理工具" in html and "附录" in html


def test_versus_takes_a_row_the_reference_table_or_says_what_it_may_be(runs, capsys):
    status, html, _ = report(runs, capsys, runs.main, "--format", "html", "--versus", "reference")
    assert status == 0
    assert "FlagPerf reference table" in first_page(html) and "p_infer_core 12,699 img/s" in first_page(html)
    assert re.search(r"0\.000\d+×", first_page(html))  # a CPU next to an A100's tensorrt fp16
    status, html, _ = report(runs, capsys, runs.main, "--format", "html", "--versus", "onnxruntime")
    assert status == 0 and re.search(r"1\.00×", first_page(html))  # the baseline against itself
    status, out, err = report(runs, capsys, runs.main, "--format", "html", "--versus", "tpu")
    assert status == 2 and out == "" and err.count("\n") == 1
    assert "--versus tpu: no row matches" in err and "pytorch fp32" in err and "reference" in err


def test_gathered_runs_name_each_row_in_every_format(runs, capsys):
    ids = (runs.main, runs.same_data)
    status, out, _ = report(runs, capsys, *ids, "--format", "csv")
    assert status == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [row["run_id"] for row in rows] == [runs.main] * 3 + [runs.same_data]
    stored = load_run(Store(runs.store, readonly=True), runs.same_data).ok_jobs()[0].derived
    assert float(rows[-1]["p_infer_core [img/s]"]) == stored.figure("p_infer_core")
    status, out, _ = report(runs, capsys, *ids, "--format", "md")
    assert status == 0 and "| run id |" in out
    assert sum(line.startswith("| %s |" % runs.main) for line in out.splitlines()) == 3
    assert sum(line.startswith("| %s |" % runs.same_data) for line in out.splitlines()) == 1
    status, out, _ = report(runs, capsys, *ids, "--format", "json")
    assert status == 0 and [doc["run"]["run_id"] for doc in json.loads(out)["runs"]] == list(ids)
    status, out, _ = report(runs, capsys, *ids)
    assert status == 0 and runs.main in out and runs.same_data in out
    status, out, _ = report(runs, capsys, *ids, "--format", "html")
    assert status == 0 and "<th>run id</th>" in out
    assert "<td>%s</td>" % runs.same_data in out and "OK: 3" in first_page(out)
    assert re.search(r"local d0 bs 4, run (%s|%s)</td>" % ids, first_page(out))  # the best row's run
    status, out, err = report(runs, capsys, *ids, "--format", "sysdesc")
    assert status == 2 and err.count("\n") == 1 and "several runs" in err
    status, out, _ = report(runs, capsys, runs.main, "--format", "csv")
    assert status == 0 and "run_id" not in out.splitlines()[0]  # one run: no run id column


def _copy(runs: Runs, tmp_path: Path) -> Store:
    """A writable copy of the runs' store."""
    path = tmp_path / "copy.sqlite"
    shutil.copyfile(runs.store, path)
    return Store(str(path))


def test_cancelled_job_shows_the_time_it_ran(runs, capsys, tmp_path):
    """A job interrupted after 15 minutes: stored CANCELLED with its start and end, no timings."""
    store = _copy(runs, tmp_path)
    store.add_job(runs.main, "cut", "local", "cpu", dict(load_run(store, runs.main).jobs[0].job["spec"]))
    store.start_job(runs.main, "cut")
    assert store.cancel_unfinished(runs.main, "interrupted") == 1
    store.close()
    with sqlite3.connect(str(tmp_path / "copy.sqlite")) as db:  # it started 15 minutes before it ended
        db.execute("UPDATE jobs SET started_at = finished_at - 903 WHERE job_id = 'cut'")
    status, html, _ = report(
        runs._replace(store=str(tmp_path / "copy.sqlite")), capsys, runs.main, "--format", "html"
    )
    assert status == 0
    assert "%s: 1 (15 min 3 s)" % JobState.CANCELLED in first_page(html)
    assert ">ran</th>" in html and "903" in html  # its timeline row


def test_device_power_and_utilisation_over_time(runs, capsys, tmp_path):
    """A device monitor's summary (Monitor.summary over its samples and stage windows) stored for a job:
    the first page plots its power and utilisation over time."""
    store = _copy(runs, tmp_path)
    job = next(j for j in load_run(store, runs.main).ok_jobs() if "pytorch" in j.job_id)
    monitor = Monitor(LocalTransport(), vendors.get("nvidia"), 0, ["nvidia-smi"], 0.5)
    start = 1_700_000_000.0
    for i in range(20):
        busy = 5 <= i < 15
        clock, throttle = (1755.0, ("SwPowerCap",)) if 5 <= i < 14 else (1980.0, ("GpuIdle",))
        sample = MonitorSample(
            0, 1000.0 + i, 97.0 if busy else 3.0, 310.0 if busy else 62.0, None, clock, throttle
        )
        monitor.samples.append((start + 0.5 * i, sample))
    monitor.mark("infer", "start", start + 2.5)
    monitor.mark("infer", "end", start + 7.0)
    store.put_samples(runs.main, job.job_id, monitor.summary({"infer": 600}))
    store.close()
    status, html, _ = report(
        runs._replace(store=str(tmp_path / "copy.sqlite")), capsys, runs.main, "--format", "html"
    )
    page = first_page(html)
    assert status == 0 and "Device power over time (W)" in page and "Device utilisation over time (%)" in page
    assert page.count("<polyline") == 2 and "310 (device)" in page  # the infer window's mean power
    assert "2.3 (device)" in page  # J/img: 310 W x 4.5 s / 600 images
    assert "310 (device); SM 1778 MHz; SwPowerCap 90% of samples" in page  # 9 of the window's 10 samples


class Sweep(NamedTuple):
    store: str
    run: str


@pytest.fixture(scope="session")
def sweep(tmp_path_factory) -> Sweep:
    """Two hosts (node-a: pytorch, node-b: onnxruntime), batch sizes 1 and 4, three runs of each job."""
    root = tmp_path_factory.mktemp("sweep")
    data = ["--data", generate(str(root / "set"), 8, layout="imagefolder", size=(160, 120))]
    env = envinfo.capture_host(LocalTransport(), vendors.get("cpu"), "bare")
    store = Store(str(root / "bench.sqlite"))
    run_id = new_run(store, env, ("node-a", "node-b"))
    jobs = [
        (host, toolkit, bs, k)
        for host, toolkit in (("node-a", "pytorch"), ("node-b", "onnxruntime"))
        for bs in (1, 4)
        for k in (1, 2, 3)
    ]
    with ThreadPoolExecutor(2) as pool:
        futures = [
            pool.submit(
                store_job,
                store,
                run_id,
                env,
                data,
                toolkit,
                "fp32",
                root / ("out%d" % i),
                host=host,
                bs=bs,
                run=k,
                runs=3,
            )  # fmt: skip
            for i, (host, toolkit, bs, k) in enumerate(jobs)
        ]
        for future in futures:
            future.result()
    store.finish_run(run_id, "finished")
    store.close()
    return Sweep(str(root / "bench.sqlite"), run_id)


@pytest.mark.slow
def test_sweep_first_page_answers_which_is_fastest_by_how_much_how_sure(sweep, capsys, tmp_path):
    html_path = tmp_path / "report.html"
    stored = report(sweep, capsys, sweep.run, "--format", "html", "--out", str(html_path))
    assert stored[0] == 0
    page = first_page(html_path.read_text())
    figure = r"[\d,.]+ \(-?[\d,.]+ \.\. [\d,.]+, K = 3\)"  # a noisy CPU's interval may reach below 0
    assert re.search(r"Fastest: cpu .* on node-[ab] d0 bs [14], p_infer_core %s img/s\." % figure, page)
    ratio = r"\d+\.\d\d× (\(-?[\d.]+ \.\. [\d.]+\) )?"
    by_how_much = ratio + r"the p_infer_core of cpu .* (pytorch|onnxruntime) fp32"
    assert re.search(by_how_much, page) and "How sure: the 95% intervals" in page
    assert "node-a" in page and "node-b" in page and "Σ p_infer_core" in page
    assert "p_infer_core over batch size" in page and page.count("<circle") == 4  # 2 lines x 2 sizes
    assert not EXPONENT.search(re.sub(r"<[^>]*>", " ", page))
    png = tmp_path / "first.png"
    screenshot(html_path, png, tmp_path / "profile", "1400,1500")
    image = Image.open(png).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 200
    counts = {rgb: n for n, rgb in colours}
    for hex_colour in ("#4e79a7", "#f28e2b"):  # the bars and the sweep's lines
        assert counts.get(tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)), 0) > 200, hex_colour
    if os.environ.get(KEEP_SCREENSHOT):
        shutil.copyfile(png, REPO / "docs" / "report_first_page.png")


#: two settings of one knob, as a lab compares them; the hold knob beside one changes nothing measured
SETTINGS = ((("cudnn_fused_benchmark", "0"),), (("cudnn_fused_benchmark", "1"), ("hold_until", "go")))


def _two_settings(runs: Runs, tmp_path: Path) -> Runs:
    """A run of two jobs of one toolkit that differ only in a knob (``SETTINGS``), stored as ``plan`` makes
    them, each with a stored job's result and figures (cudnn_fused runs on CUDA only)."""
    store = _copy(runs, tmp_path)
    source = next(j for j in load_run(store, runs.main).ok_jobs() if "pytorch" in j.job_id)
    run_id = new_run(store, load_run(store, runs.main).environments["local"])
    for options in SETTINGS:
        made = job_id("local", 0, "resnet50", "cudnn_fused", "fp32", 4, options=options)
        spec = Job(made, "local", 0, "resnet50", "cudnn_fused", "fp32", 4, 1, 1, toolkit_options=options)
        store.add_job(run_id, made, "local", "cpu", spec.as_dict())
        store.start_job(run_id, made)
        assert source.result is not None and source.derived is not None
        store.put_result(run_id, made, source.result, source.derived.as_stored())
        store.finish_job(run_id, made, JobState.OK, None, "runner.log", dict(source.job["timings"]))
    store.finish_run(run_id, "finished")
    store.close()
    return runs._replace(store=str(tmp_path / "copy.sqlite"), main=run_id)


def test_two_settings_of_one_toolkit_are_two_rows_named_apart_in_every_format(runs, capsys, tmp_path):
    stored = _two_settings(runs, tmp_path)
    names = ["cudnn_fused (cudnn_fused_benchmark=%s)" % value for value in "01"]
    ids = ["local.d0.resnet50.cudnn_fused.fp32.bs4.cudnn_fused_benchmark-%s" % value for value in "01"]
    said = {}
    for form in ("md", "csv", "json", "html"):
        status, said[form], _ = report(stored, capsys, stored.main, "--format", form)
        assert status == 0 and "hold_until" not in said[form].replace('"hold_until"', ""), form
    status, said["table"], _ = report(stored, capsys, stored.main)
    assert status == 0
    for form in ("md", "html"):
        assert all(name in " ".join(said[form].split()) for name in names), form
    assert all("(cudnn_fused_benchmark=%s)" % value in said["table"] for value in "01")  # the cell folds
    rows = list(csv.DictReader(io.StringIO(said["csv"])))
    assert [(r["job_id"], r["series"], r["toolkit"], r["toolkit_options"]) for r in rows] == [
        (made, made, "cudnn_fused", "cudnn_fused_benchmark=%s" % value) for made, value in zip(ids, "01")
    ]
    doc = json.loads(said["json"])
    assert set(doc["series"]) == set(ids)
    assert [job["spec"]["toolkit_options"] for job in doc["jobs"]] == [[list(p) for p in o] for o in SETTINGS]
    model = model_of(load_run(Store(stored.store, readonly=True), stored.main).ok_jobs()[0])
    assert all("cpu %s · %s fp32" % (model, name) in first_page(said["html"]) for name in names)
    args = ("--compare", stored.main, "--pair-by", "case,toolkit,precision,bs,scenario", "--format", "csv")
    status, out, _ = report(stored, capsys, stored.main, *args)  # the run with itself: its settings paired
    assert status == 0
    tools = {row["tool"] for row in csv.DictReader(io.StringIO(out))}
    assert tools == {"%s vs %s" % (names[0], names[1]), "%s vs %s" % (names[1], names[0])}
    status, out, _ = report(stored, capsys, stored.main, "--compare", stored.main, "--format", "json")
    pairs = json.loads(out)["pairs"]  # by default each setting with itself
    assert [(p["a"]["key"]["options"], p["b"]["key"]["options"]) for p in pairs] == [
        ("cudnn_fused_benchmark=0", "cudnn_fused_benchmark=0"),
        ("cudnn_fused_benchmark=1", "cudnn_fused_benchmark=1"),
    ]
