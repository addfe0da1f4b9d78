"""The metric table holds every figure once: each row is a figure of the derived record, read from a number
field of the result, and shows in every output format (the results table in the terminal, Markdown, CSV,
JSON and HTML, in English and Chinese; the metric definitions; compare; the throughput chart; bench) and in
docs/metrics.md. A row added to the table shows up everywhere with nothing else changed (checked in a fresh
interpreter with two rows more); a number added to the record beside the table fails."""

import argparse
import copy
import csv
import io
import json
import re
import subprocess
import sys
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Dict, List, Optional, get_args, get_type_hints

import markupsafe
import pytest

import vendors
from bench import gpu_product
from orchestrator.job import collect
from orchestrator.metrics import derived, table
from orchestrator.report import command, csvexport, labels, tables
from orchestrator.report.load import load_run
from orchestrator.store import Store
from tests.test_hostile_results import _stored_run
from tests.test_result_typed import REAL

REPO = Path(__file__).resolve().parent.parent


def _report(store: Path, *argv: str) -> str:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args([*argv, "--store", str(store)])
    opened = Store(str(store), readonly=True)
    try:
        return command.render(args, opened, console_width=2000)
    finally:
        opened.close()


def with_passes(doc: Dict[str, Any], passes: int) -> Dict[str, Any]:
    """``doc`` as if each stage had made ``passes`` whole passes, each 10% slower than the one before."""
    doc = copy.deepcopy(doc)
    for stage in doc["stages"].values():
        first = stage["pass_whole_s"][0]
        stage["pass_whole_s"] = [first * (1 + 0.1 * i) for i in range(passes)]
        stage.update(passes=passes, images=passes * stage["n_images"], whole_s=sum(stage["pass_whole_s"]))
        stage["throughput_whole_img_per_s"] = stage["images"] / stage["whole_s"]
    return doc


def check_every_format(root: Path, doc: Optional[Dict[str, Any]] = None) -> List[str]:
    """Assert that every row of the metric table shows in every output format of a stored run made of
    ``doc`` (the real result unless given), each spread too; the keys checked."""
    store = root / "bench.sqlite"
    doc = doc or json.loads(REAL.read_text())
    run_a, run_b = (_stored_run(store, doc, {"hostname": "h"}) for _ in range(2))
    (job,) = load_run(Store(str(store), readonly=True), run_a).ok_jobs()
    record = job.derived
    assert record is not None and set(record.figures) == set(table.BY_KEY)

    results_csv = _report(store, run_a, "--format", "csv")
    (row,) = csv.DictReader(io.StringIO(results_csv))
    text = {
        (fmt, lang): _report(store, run_a, "--format", fmt, "--lang", lang)
        for fmt in ("table", "md", "html")
        for lang in labels.LANGS
    }
    document = json.loads(_report(store, run_a, "--format", "json"))
    compared = list(csv.DictReader(io.StringIO(_report(store, run_a, "--compare", run_b, "--format", "csv"))))
    compared_json = json.loads(_report(store, run_a, "--compare", run_b, "--format", "json"))
    bench = gpu_product.table([dict(record.as_stored(), row="x5")])  # bench/gpu_product.py's table
    bench_head, _, bench_row = bench.splitlines()

    for metric in table.METRICS:
        value, shown = record.figure(metric.key), metric.show(record.figure(metric.key))
        assert document["results"][job.job_id]["derived"][metric.key] == value, metric.key
        assert document["metrics"][metric.key]["unit"] == metric.unit, metric.key
        for lang in labels.LANGS:
            html = text["html", lang]
            assert "<td>%s</td>" % markupsafe.escape(metric.definition) in html, metric.key
            assert "<td>%s</td>" % markupsafe.escape(metric.label()) in html, metric.key
        assert "<td>%s</td>" % markupsafe.escape(metric.title_zh) in text["html", "zh"], metric.key
        assert " %s |" % metric.title in bench_head and " %s |" % shown in bench_row, metric.key
        spread = record.spreads.get(metric.key)
        assert (spread is not None) == bool(metric.per_pass), metric.key
        if spread is not None:
            check_spread(metric, spread, document["results"][job.job_id]["derived"], row, text)
        raw = row[csvexport.heading(metric)]  # the CSV: the stored number, its unit in the header
        assert (float(raw) if raw else None) == value and metric.unit in csvexport.heading(metric), metric.key
        if metric.table:
            (column,) = [c for c in tables.FIGURE_COLUMNS if metric in c.metrics]
            plain = "/".join(m.show(record.figure(m.key)) for m in column.metrics)
            needs = any(m.needs_meaningful_weights for m in column.metrics) and not record.acc_meaningful
            plain += " (n/m)" if needs else ""
            assert shown in plain, metric.key
            cell = plain + (" " + spread.compact(tables.PASSES) if spread is not None else "")
            # an optional column no job of the run fills is not shown (test_mlperf_e2e shows them filled)
            hidden = column.key in tables.OPTIONAL_COLUMNS and plain in tables.OPTIONAL_COLUMNS[column.key]
            for lang, title in () if hidden else (("en", column.title), ("zh", column.title_zh)):
                assert "| %s |" % tables.md_cell(title) in text["md", lang].splitlines()[4], metric.key
                assert " %s |" % tables.md_cell(cell) in text["md", lang], metric.key
                assert title in text["table", lang] and cell in text["table", lang], metric.key
                assert "<th>%s</th>" % markupsafe.escape(title) in text["html", lang], metric.key
                assert '<td class="num">%s</td>' % markupsafe.escape(cell) in text["html", lang], metric.key
            if metric.unit == "img/s":
                assert "<title>%s: " % metric.key in text["html", "en"], metric.key  # the throughput chart
        figures = [r for r in compared if r["figure"] == metric.label()]
        if metric.compare:
            side = shown if value is None else shown + " (K = 1: no interval)"  # one run each
            said = "" if value is None else "cannot tell: A and B are each one run; runs: 3 or more"
            assert [(r["a"], r["b"], r["verdict"][: len(said)]) for r in figures] == [(side, side, said)]
            assert compared_json["pairs"][0]["a"]["figures"][metric.key] == value, metric.key
        else:
            assert figures == [], metric.key
    return [metric.key for metric in table.METRICS]


def check_spread(metric: table.Metric, spread: Any, stored: Dict[str, Any], row: Dict, text: Dict) -> None:
    """A figure's spread over passes shows in the JSON (the whole record), the CSV (a column per part), the
    legend of the results table in every format and, with two passes or more, as an error bar in the
    throughput chart; with one pass, each says there is none."""
    assert stored["spreads"][metric.key] == asdict(spread), metric.key
    assert row[csvexport.heading(metric, "n")] == str(spread.n), metric.key
    for part in ("median", "min", "max"):
        assert float(row[csvexport.heading(metric, part)]) == getattr(spread, part), metric.key
    cv = row[csvexport.heading(metric, "cv")]
    legend = "(R = %d); R = 1: no spread." % spread.n if spread.n > 1 else "R = 1: no spread (a spread over"
    for shown in text.values():
        assert legend in re.sub(r"\s+", " ", shown), metric.key
    if spread.n < 2:
        assert spread.cv is None and cv == "", metric.key
        assert spread.compact(tables.PASSES) == "(R = 1: no spread)", metric.key
        assert "min..max over" not in text["html", "en"], metric.key
        return
    assert spread.min <= spread.median <= spread.max and spread.cv > 0, metric.key
    assert float(cv) == spread.cv, metric.key
    assert spread.compact(tables.PASSES) == "±%.2g%%" % (100 * spread.cv), metric.key
    assert "<title>%s: min..max over R = %d passes " % (metric.key, spread.n) in text["html", "en"], (
        metric.key
    )


def test_every_row_shows_in_every_format(tmp_path):
    assert check_every_format(tmp_path) == [metric.key for metric in table.METRICS]


def test_every_spread_over_passes_shows_in_every_format(tmp_path):
    doc = with_passes(json.loads(REAL.read_text()), 3)
    assert check_every_format(tmp_path, doc) == [metric.key for metric in table.METRICS]


#: two rows more, one of them sharing the accuracy cell: what a new figure is (its row, read from a field
#: the result has)
NEW_ROWS = """
from orchestrator.metrics import table
new = (
    table.Metric("p_new", "img/s", "%.3f", "p_new", "新吞吐量", "A new throughput.", True, True,
                 "stages.infer.throughput_core_in_pipeline_img_per_s", per_pass="stages.infer"),
    table.Metric("acc_new_top5", "%", "%.3f", "acc new top-5", "新结果 top-5", "A new accuracy.", True, True,
                 "stages.infer.top5_pct", cell="acc", needs_meaningful_weights=True),
)
table.METRICS += new
table.BY_KEY.update((metric.key, metric) for metric in new)
import sys
from pathlib import Path
import json
from tests.test_metric_table import REAL, check_every_format, with_passes
print(" ".join(check_every_format(Path(sys.argv[1]), with_passes(json.loads(REAL.read_text()), 2))))
"""


def test_a_row_added_to_the_table_shows_in_every_format(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", NEW_ROWS, str(tmp_path)],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    checked = proc.stdout.split()
    assert checked[-2:] == ["p_new", "acc_new_top5"] and len(checked) == len(table.METRICS) + 2


def test_each_row_reads_a_number_field_of_the_result_or_says_its_bounds():
    for metric in table.METRICS:
        rule = metric.rule()
        if isinstance(metric.source, str):
            spec = table.field_at(metric.source)
            assert rule is spec.metadata["rule"], metric.key
        else:
            assert metric.bounds is not None, metric.key
        assert (metric.cell == "") or metric.cell in table.SHARED_CELLS, metric.key
    assert len(table.BY_KEY) == len(table.METRICS)


def test_the_record_holds_every_row_and_no_number_beside_them():
    record = collect.derive(collect.read(json.loads(REAL.read_text())), vendors.get("cpu"), None)
    assert list(record.figures) == [metric.key for metric in table.METRICS]
    notes = [f.name for f in fields(derived.Derived) if f.name != "figures"]
    assert set(record.as_stored()) == set(notes) | set(table.BY_KEY)
    hints = get_type_hints(derived.Derived)
    for name in notes:  # a number is a figure: it has its row in the table, not a field of the record
        assert float not in (get_args(hints[name]) or (hints[name],)), name
        assert name not in table.BY_KEY, name


def test_a_stored_record_without_a_figure_that_is_always_there_is_refused():
    stored = collect.derive(collect.read(json.loads(REAL.read_text())), vendors.get("cpu"), None).as_stored()
    for metric in table.METRICS:
        rest = {k: v for k, v in stored.items() if k != metric.key}
        if metric.always:
            try:
                collect.read_derived(rest)
            except collect.ResultInvalid as exc:
                assert str(exc) == "derived figures: %s = None: missing" % metric.key
            else:
                raise AssertionError("%s: read without it" % metric.key)
        else:  # older stored records lack it: read as null
            assert collect.read_derived(rest).figure(metric.key) is None


def test_the_docs_table_has_one_row_per_metric():
    page = (REPO / "docs" / "metrics.md").read_text()
    rows = re.findall(r"^\| `([a-z0-9_]+)` \| ([^|]+) \| (higher|lower) \| (.+) \|$", page, re.M)
    expected = [
        (m.key, m.unit or "ratio", "higher" if m.higher_is_better else "lower", m.definition)
        for m in table.METRICS
    ]
    assert rows == expected


def test_a_record_stored_before_spreads_reads_with_none_and_a_bad_spread_is_refused():
    stored = collect.derive(
        collect.read(with_passes(json.loads(REAL.read_text()), 3)), vendors.get("cpu"), None
    )
    doc = json.loads(json.dumps(stored.as_stored()))
    old = collect.read_derived({k: v for k, v in doc.items() if k != "spreads"})
    assert dict(old.spreads) == {} and old.figures == stored.figures
    for change, what in (
        (
            {"p_infer_whole": dict(doc["spreads"]["p_infer_whole"], max=-1.0)},
            "p_infer_whole.max = -1.0: not above 0",
        ),
        (
            {"p_infer_whole": dict(doc["spreads"]["p_infer_whole"], cv="wide")},
            "p_infer_whole.cv = 'wide': not a number",
        ),
        ({"p_infer_core": doc["spreads"]["p_infer_whole"]}, "p_infer_core = an object of 5 keys: not a key"),
    ):
        with pytest.raises(collect.ResultInvalid, match="derived figures: spreads.%s" % re.escape(what)):
            collect.read_derived(dict(doc, spreads=change))
