"""``report`` renders every format from real stored runs: the real runner on the CPU (random weights, tiny
generated sets), the host's captured environment and the orchestrator's derived figures, put in a Store the
way the orchestrator does. The HTML report is opened in headless Chromium and its screenshot checked."""

import argparse
import csv
import hashlib
import io
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest
from PIL import Image
from rich.console import Console

from orchestrator.metrics import table
from orchestrator.outcome import JobState
from orchestrator.report import command, csvexport, figures, labels, tables
from orchestrator.report import compare as cmp
from orchestrator.report.load import ReportError, load_run
from orchestrator.store import Store
from tests.fixtures.stored_runs import HOST, REPO, report, screenshot


def document_torch(data) -> str:
    return data.ok_jobs()[0].result["environment"]["versions"]["torch"]


def test_fixture_runs_are_real(runs):
    data = load_run(Store(runs.store), runs.main)
    states = {j.job["spec"]["toolkit"]: j.job["state"] for j in data.jobs}
    assert states == {"pytorch": JobState.OK, "onnxruntime": JobState.OK, "tensorrt": "FAILED_START"}
    for job in data.ok_jobs():
        assert job.result["status"] == "ok" and job.derived.figure("p_infer_core") > 0
        assert job.derived.figure("mfu") is None  # the CPU has no peak table
        assert job.derived.figure("peak_flops") is None


def test_markdown_has_reference_columns_and_environment_blocks(runs, capsys):
    status, out, _ = report(runs, capsys, runs.main, "--format", "md")
    assert status == 0
    data = load_run(Store(runs.store), runs.main)
    shown = tables.shown_columns(tables.RESULT_COLUMNS, tables.result_rows(data))
    assert "scenario" not in dict(shown) and "mlperf_samples_per_s" not in dict(shown)  # flagperf jobs only
    header = "| " + " | ".join(title for _, title in shown) + " |"
    assert header in out
    for job in data.ok_jobs():
        row = "| %s | cpu | 0 | %s | fp32 | 4 | 1/1 | %.1f |" % (
            HOST,
            job.job["spec"]["toolkit"],
            job.derived.figure("e2e_time_s"),
        )
        assert row in out
    assert "FAILED_START: exit status 2: error: --precision: tensorrt needs a CUDA device, got cpu" in out
    assert "| / |" in out  # MFU without a peak
    env = data.environments[HOST]
    assert "### 1. CPU %s · %s" % (env["cpu_model"], HOST) in out
    assert "    - OS kernel version: %s" % platform.release() in out
    assert "    - Accelerator driver version: unknown" in out  # not captured: stays unknown
    assert "    - Docker version: bare (no docker)" in out
    assert "        - python: %s" % platform.python_version() in out
    assert "    - onnxruntime: onnxruntime " in out and "torch %s" % document_torch(data) in out
    assert "    - tensorrt: unknown" in out  # its job stored no result


def test_zh_labels(runs, capsys):
    status, out, _ = report(runs, capsys, runs.main, "--format", "md", "--lang", "zh")
    assert status == 0
    for label in (
        "数据精度",
        "批尺寸",
        "硬件存储使用",
        "端到端时间",
        "验证总吞吐量",
        "验证计算吞吐量",
        "推理总吞吐量",
        "*推理计算吞吐量",
        "*计算卡使用率",
        "推理结果 (验证/推理)",
        "运行情况",
        "软硬件配置与运行信息",
        "机器、加速卡型号",
        "OS版本",
        "OS kernel版本",
        "加速卡驱动版本: unknown",
        "Docker 版本",
        "训练框架版本",
        "依赖软件版本",
        "推理工具包",
        "硬件环境",
        "软件环境",
    ):
        assert label in out, label
    assert "Results" not in out and "OS version" not in out
    status, text, _ = report(runs, capsys, runs.main, "--lang", "zh")
    assert status == 0 and "数据精度" in text and "加速卡驱动版本" in text


def test_table_and_csv_and_json(runs, capsys):
    status, out, _ = report(runs, capsys, runs.main)
    assert status == 0 and "p_infer_whole" in out and "onnxruntime" in out and "OS kernel version" in out
    status, out, _ = report(runs, capsys, runs.main, "--format", "csv")
    assert status == 0 and "\n\n" not in out  # one table per file
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == list(csvexport.RESULT_COLUMNS)
    assert [r["toolkit"] for r in rows] == ["pytorch", "onnxruntime", "tensorrt"]
    assert rows[2]["p_infer_core [img/s]"] == "" and rows[2]["state"] == "FAILED_START"
    assert rows[2]["reason"].startswith("exit status")
    status, out, _ = report(runs, capsys, runs.main, "--format", "csv", "--table", "runs")
    single = list(csv.DictReader(io.StringIO(out)))  # one run per job: a mean, no interval
    assert single and {(r["k"], r["low"], r["high"], r["cv"]) for r in single} == {("1", "", "", "")}
    status, out, _ = report(runs, capsys, runs.main, "--format", "csv", "--table", "environment")
    env_rows = list(csv.DictReader(io.StringIO(out)))
    assert env_rows[0]["driver"] == "unknown" and env_rows[0]["kernel"] == platform.release()
    document = json.loads(report(runs, capsys, runs.main, "--format", "json")[1])
    for row in rows[:2]:  # the figures read back equal to the JSON's
        derived = document["results"][row["job_id"]]["derived"]
        for metric in table.METRICS:
            raw = row[csvexport.heading(metric)]
            assert (float(raw) if raw else None) == derived[metric.key], metric.key
    status, out, _ = report(runs, capsys, runs.main, "--format", "json")
    document = json.loads(out)
    assert status == 0 and len(document["results"]) == 2 and HOST in document["environments"]


def test_sysdesc(runs, capsys):
    status, out, _ = report(runs, capsys, runs.main, "--format", "sysdesc")
    assert status == 0
    (desc,) = json.loads(out)
    env = load_run(Store(runs.store), runs.main).environments[HOST]
    assert desc["host_processor_model_name"] == env["cpu_model"]
    assert desc["host_memory_capacity"] == "%.1f GiB" % env["memory_gib"]
    assert desc["accelerator_model_name"] == "N/A" and desc["accelerators_per_node"] == 0
    assert desc["host_processor_core_count"] == "unknown"  # nproc counts logical CPUs, not cores
    assert platform.release() in desc["operating_system"]
    assert "onnxruntime" in desc["framework"] and desc["framework"].startswith("torch ")
    assert "python %s" % platform.python_version() in desc["other_software_stack"]
    for key in (
        "system_name",
        "host_processors_per_node",
        "accelerator_memory_capacity",
        "driver",
        "number_of_nodes",
    ):
        assert key in desc


def test_compare_runs(runs, capsys):
    status, out, _ = report(runs, capsys, runs.main, "--compare", runs.same_data, "--format", "csv")
    assert status == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    store = Store(runs.store)
    a = [j for j in load_run(store, runs.main).ok_jobs() if j.job["spec"]["toolkit"] == "pytorch"][0].derived
    b = load_run(store, runs.same_data).ok_jobs()[0].derived
    (core,) = [r for r in rows if r["figure"] == "p_infer_core (img/s)"]
    assert core["tool"] == "pytorch" and float(core["ratio"]) == pytest.approx(
        a.figure("p_infer_core") / b.figure("p_infer_core"), abs=1e-3
    )
    assert {r["tool"] for r in rows} == {"pytorch"}  # onnxruntime has no counterpart in B
    status, out, _ = report(runs, capsys, runs.main, "--compare", runs.same_data, "--format", "md")
    assert "only in A: resnet50 onnxruntime fp32 4" in out and "| A/B |" in out


def test_compare_refuses_different_data_and_names_the_fields(runs, capsys):
    status, out, err = report(runs, capsys, runs.main, "--compare", runs.other_data)
    assert status == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "data.n_images (6 vs 4)" in err and "data.layout (imagefolder vs tar)" in err
    assert "data.md5 (unknown vs " in err and "--force" in err
    assert "preprocessing" not in err and "precision" not in err and "metric_version" not in err
    status, out, _ = report(
        runs, capsys, runs.main, "--compare", runs.other_data, "--force", "--format", "md"
    )
    assert status == 0 and "forced despite differences: data.n_images (6 vs 4)" in out


def _baseline_from(side: cmp.Side, path: Path, conditions: Dict) -> Path:
    """A baseline file made of a stored run's own figures (its conditions replaced where given)."""
    rows = [
        {
            "case": e.key[0],
            "toolkit": e.key[1],
            "precision": e.key[2],
            "bs": int(e.key[3]),
            "vendor": "cpu",
            "device": e.where,
            "figures": e.figures,
            "conditions": e.conditions,
        }
        for e in side.entries
    ]
    path.write_text(
        json.dumps(
            {"format": cmp.BASELINE_FORMAT, "name": "run as baseline", "conditions": conditions, "rows": rows}
        )
    )
    return path


def test_baseline_files(runs, capsys, tmp_path):
    reference = json.loads(cmp.REFERENCE_BASELINE.read_text())
    side = cmp.load_baseline(str(cmp.REFERENCE_BASELINE))
    assert len(side.entries) == 6 and "drop_last" in reference["conventions"]
    (trt,) = [e for e in side.entries if e.key == ("resnet50", "tensorrt", "fp16", "256")]
    assert (
        trt.figures["p_infer_core"] == 12698.7
        and trt.figures["mfu_flagperf"] == 0.168
        and trt.figures["mfu"] is None
    )
    assert trt.conditions["data.images_counted"] == 49920
    status, _, err = report(runs, capsys, runs.main, "--baseline", "reference")
    assert status == 2 and "no row in common" in err  # a CPU run has no TensorRT row

    same = cmp.run_side(load_run(Store(runs.store), runs.same_data))
    path = _baseline_from(same, tmp_path / "mine.json", {})
    status, out, _ = report(runs, capsys, runs.main, "--baseline", str(path), "--format", "json")
    assert status == 0 and json.loads(out)["pairs"][0]["ratio"]["p_infer_core"] > 0
    for entry in same.entries:  # the reference's conditions on the same figures: refused, every field named
        entry.conditions = {}
    path = _baseline_from(same, tmp_path / "flagperf_like.json", reference["conditions"])
    status, _, err = report(runs, capsys, runs.main, "--baseline", str(path))
    for name in (
        "data.images_counted (6 vs 49920)",
        "data.md5",
        "metric_version (3 vs flagperf-inference)",
        "preprocessing.resize (256 vs unknown)",
        "precision.val (fp32 vs unknown)",
    ):
        assert name in err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": cmp.BASELINE_FORMAT, "rows": [{"case": "resnet50"}]}))
    with pytest.raises(ReportError, match=r"bad.json: rows\[0\]: missing field 'toolkit'"):
        cmp.load_baseline(str(bad))


@pytest.mark.parametrize("version", ["metrics.md/1", 2])
def test_other_metric_versions_are_not_comparable_unless_forced(runs, capsys, tmp_path, version):
    old = cmp.run_side(load_run(Store(runs.store), runs.same_data))
    for entry in old.entries:  # the same figures, measured under an earlier version of metrics.md
        entry.conditions["metric_version"] = version
    path = _baseline_from(old, tmp_path / "old.json", {})
    status, out, err = report(runs, capsys, runs.main, "--baseline", str(path))
    differs = "metric_version (3 vs %s)" % version
    assert status == 2 and out == "" and differs in err and "--force" in err
    status, out, _ = report(runs, capsys, runs.main, "--baseline", str(path), "--force", "--format", "md")
    assert status == 0 and "forced despite differences: " + differs in out


def test_errors_are_one_line(runs, capsys, tmp_path):
    status, out, err = report(runs, capsys, "20000101-000000-abcdef")
    assert (
        status == 2
        and out == ""
        and err == "error: run 20000101-000000-abcdef: not in %s (see 'ls')\n" % runs.store
    )
    status, _, err = report(runs, capsys, runs.main, "--format", "sysdesc", "--compare", runs.same_data)
    assert status == 2 and "sysdesc" in err
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    missing = tmp_path / "none.sqlite"
    assert command.run(parser.parse_args([runs.main, "--store", str(missing)]), Console()) == 2
    assert not missing.exists()  # nothing created


def test_html_report(runs, capsys, tmp_path):
    out_file = tmp_path / "r" / "report.html"
    status, out, _ = report(
        runs, capsys, runs.main, "--format", "html", "--compare", runs.same_data, "--out", str(out_file)
    )
    assert status == 0 and "wrote" in out and os.listdir(out_file.parent) == ["report.html"]
    html = out_file.read_text()
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert (
        "https://" not in html and html.count("<svg") == 6
    )  # the first page's best per accelerator; throughput, latency, memory, timelines, compare
    for heading in ("Results", "Comparison", "Plots", "Job timelines", "Environment", "How measured"):
        assert heading in html
    assert "8178368512" in html and "no peak for" in html  # FLOP per image; why the peak is unknown
    assert "not checked (no --data-md5)" in html and "random" in html
    for phase in ("start", "load", "val", "export", "compile", "infer"):
        assert ">%s</th>" % phase in html
    status, out, _ = report(runs, capsys, runs.other_data, "--format", "html", "--lang", "zh")
    assert status == 0 and "数据精度" in out and "测量方法" in out and "特殊说明" in out
    assert hashlib.md5(b"").hexdigest() not in out  # the tar's md5 is its real one
    md5 = load_run(Store(runs.store), runs.other_data).ok_jobs()[0].result["data"]["md5"]
    assert md5 and md5 in out


def test_how_measured_tells_the_decoding_processes_start_only_where_there_were_some(runs):
    job = load_run(Store(runs.store), runs.main).ok_jobs()[0]
    assert job.result["data"].get("decode_start_s") is None  # PIL: no decoding processes
    assert "decoding processes' start" not in dict(figures.how_measured(job))
    phases = {"device": 9.04, "imported": 7.9, "ready": 21.66, "set_up": 12.3, "spawned": 1.25}  # as stored
    job.result["data"].update(decode_processes=8, decode_start_s=phases)
    assert dict(figures.how_measured(job))["decoding processes' start"] == (
        "8 processes (the slowest at each phase, seconds after the runner started): spawned 1.2 s, "
        "imported 7.9 s, device 9.0 s, set_up 12.3 s, ready 21.7 s"
    )


@pytest.mark.slow
def test_html_screenshot_shows_tables_and_plots(runs, capsys, tmp_path):
    html = tmp_path / "report.html"
    status, _, _ = report(runs, capsys, runs.main, "--format", "html", "--out", str(html))
    assert status == 0
    png = tmp_path / "report.png"
    screenshot(html, png, tmp_path / "profile")
    assert png.stat().st_size > 50_000
    image = Image.open(png).convert("RGB")
    assert image.size == (1400, 2400)
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 200  # text, tables and plots, not a blank page
    counts = {rgb: n for n, rgb in colours}
    for hex_colour in ("#4e79a7", "#f28e2b", "#59a14f", "#e15759"):  # the four throughput series' bars
        rgb = tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
        assert counts.get(rgb, 0) > 200, hex_colour
    assert labels.word("results", "en") in html.read_text()


def test_three_passes_give_a_spread_in_every_format_and_one_pass_says_it_has_none(runs, capsys):
    """A real runner job with repeat 3: each whole throughput's CV, and min <= median <= max, in the JSON,
    the CSV, the Markdown and the HTML (an error bar); a job with repeat 1 says R = 1: no spread."""
    (job,) = load_run(Store(runs.store), runs.passes).ok_jobs()
    assert job.result["stages"]["infer"]["pass_whole_s"] and job.result["stages"]["infer"]["passes"] == 3
    keys = ("p_val_whole", "p_infer_whole")
    status, out, _ = report(runs, capsys, runs.passes, "--format", "json")
    spreads = json.loads(out)["results"][job.job_id]["derived"]["spreads"]
    for key in keys:
        spread = spreads[key]
        assert spread["n"] == 3 and spread["min"] <= spread["median"] <= spread["max"] and spread["cv"] > 0
    status, out, _ = report(runs, capsys, runs.passes, "--format", "csv")
    (row,) = csv.DictReader(io.StringIO(out))
    for key in keys:
        metric = table.BY_KEY[key]
        low, mid, high = (float(row[csvexport.heading(metric, part)]) for part in ("min", "median", "max"))
        assert row[key + "_n"] == "3" and low <= mid <= high and float(row[key + "_cv [ratio]"]) > 0
        float(row[csvexport.heading(metric)])  # the figure's own cell stays a number
    status, out, _ = report(runs, capsys, runs.passes, "--format", "md")
    assert status == 0 and "(R = 3); R = 1: no spread." in out
    for key in keys:
        shown = table.BY_KEY[key].show(float(row[csvexport.heading(table.BY_KEY[key])]))
        assert " %s ±%.2g%% |" % (shown, 100 * spreads[key]["cv"]) in out
    status, out, _ = report(runs, capsys, runs.passes, "--format", "html")
    for key in keys:
        assert "<title>%s: min..max over R = 3 passes " % key in out
    assert "R = 3, median" in out and "(n=%d" % job.result["stages"]["infer"]["batches"] in out

    status, out, _ = report(runs, capsys, runs.same_data, "--format", "md")
    assert (
        "(R = 1: no spread) |" in out
        and "p_infer_whole: R = 1: no spread (a spread" in out
        and "±" not in out
    )
    status, out, _ = report(runs, capsys, runs.same_data, "--format", "csv")
    (row,) = csv.DictReader(io.StringIO(out))
    assert row["p_infer_whole_n"] == "1" and row["p_infer_whole_cv [ratio]"] == ""  # one pass: no CV
    status, out, _ = report(runs, capsys, runs.same_data, "--format", "html")
    assert "min..max over" not in out and "p_infer_whole: R = 1: no spread" in out


def test_latency_shows_its_sample_count(runs, capsys):
    """p50 / p90 / p99 with n, the model calls they are taken over, and a coarse mark under 100."""
    (job,) = load_run(Store(runs.store), runs.passes).ok_jobs()
    infer = job.result["stages"]["infer"]
    status, out, _ = report(runs, capsys, runs.passes, "--format", "html")
    core, whole = infer["core_pass"]["batches"], infer["batches"]
    assert whole == 3 * core  # the whole passes' calls: R x the core pass's
    assert "%s infer (n=%d)" % (job.label(), core) in out  # the latency chart's label
    assert "ms (n=%d; coarse: under 100 samples)" % core in out and "ms (n=%d; coarse" % whole in out


@pytest.mark.parametrize("width", [100, 120, 200])
def test_the_tables_fit_the_width_and_no_figure_folds(runs, width):
    """``report`` piped with COLUMNS=100/120: no line longer than the width, and every figure of the results
    whole on one line (a number never folds; below the width the table turns into a block per job)."""
    env = dict(os.environ, COLUMNS=str(width))
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "report", runs.main, "--store", runs.store],
        cwd=str(REPO), env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= width
    for job in load_run(Store(runs.store), runs.main).ok_jobs():
        for metric in table.METRICS:
            if metric.table and job.derived.figure(metric.key) is not None:
                shown = metric.show(job.derived.figure(metric.key))
                assert any(shown in line for line in lines), (metric.key, shown)
