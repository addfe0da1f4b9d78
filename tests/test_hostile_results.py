"""What a job hands back and what the store holds are untrusted: a hostile runner's result is one
FAILED_VALIDATE line naming the field, never stored as OK, a traceback or a false "interrupted"; a store
edited by hand shows the job as unreadable in one line in every report format and in ``ls``; Markdown and
HTML show markup from host names, paths and versions as text; ``report --format json`` holds no bare NaN."""

import copy
import csv
import io
import json
import sqlite3
from pathlib import Path
from typing import Any, Dict

import pytest

import vendors
from orchestrator import cli
from orchestrator.job import collect
from orchestrator.job.plan import Job, job_id
from orchestrator.outcome import JobState
from orchestrator.report.load import StoredSpec
from orchestrator.store import Store, new_run_id
from tests.test_result_typed import REAL, _set

FORMATS = ("table", "md", "csv", "json", "html", "sysdesc")
HOSTILE_TEXT = '<script>alert(1)</script><img src=x onerror="alert(2)">'


def _real() -> Dict[str, Any]:
    return json.loads(REAL.read_text())


def _stored_run(path: Path, doc: Dict[str, Any], env: Dict[str, Any]) -> str:
    """A run of one OK job storing ``doc`` as a job does (its derived figures, its host's environment)."""
    store = Store(str(path))
    run_id = new_run_id()
    host = env.get("hostname", "h")
    store.create_run(run_id, "hosts.yaml", {"hosts": [{"name": host, "vendor": "cpu"}]})
    job = job_id("h", 0, "resnet50", "pytorch", "fp32", 4)  # the store takes only plain ids; hosts are text
    spec = Job(job, host, 0, "resnet50", "pytorch", "fp32", 4, 1, 1)
    store.add_job(run_id, spec.job_id, host, "cpu", spec.as_dict())
    store.start_job(run_id, spec.job_id)
    store.put_environment(run_id, host, env)
    result = collect.read(doc)
    store.put_result(run_id, spec.job_id, doc, collect.derive(result, vendors.get("cpu"), None).as_stored())
    store.finish_job(run_id, spec.job_id, JobState.OK, None, None, {"job_s": 1.0})
    store.close()
    return run_id


#: what a hostile runner writes as result.json -> the start of the one line the job fails with
HOSTILE_RESULTS = [
    ({"doc": _set(_real(), "stages.infer.throughput_core_img_per_s", -12345.6)},
     "result.json: stages.infer.throughput_core_img_per_s = -12345.6: not above 0 img/s"),
    ({"doc": _set(_real(), "stages.val.top1_pct", 250.0)},
     "result.json: stages.val.top1_pct = 250.0: above 100 %"),
    ({"doc": _set(_real(), "memory.mem_used_gib", "lots")},
     "result.json: memory.mem_used_gib = 'lots': not a number"),
    ({"doc": _set(_real(), "stages.infer.latency_ms", "<script>")},
     "result.json: stages.infer.latency_ms = '<script>': not an object"),
    ({"doc": _set(_real(), "stages.infer.images", -7)},
     "result.json: stages.infer.images = -7: below 0"),
    ({"doc": _set(_real(), "durations.e2e_time_s", 5e-324)},
     "result.json: durations.e2e_time_s = 5e-324: below 1e-09 s"),
    ({"raw": json.dumps(_real()).replace('"top1_pct": 0.0', '"top1_pct": NaN', 1)},
     "result.json: NaN is not a number JSON allows"),
    ({"raw": "[" * 100000 + "]" * 100000},
     "result.json: nested deeper than 32 levels"),
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("spec, line", HOSTILE_RESULTS, ids=[line[13:50] for _, line in HOSTILE_RESULTS])
def test_a_hostile_result_fails_the_job_as_failed_validate_in_one_line(hostile_job, capsys, spec, line):
    job = hostile_job(dict(spec, mode="write_result"))
    ran = job.run()
    stored = job.job()
    assert stored["state"] == "FAILED_VALIDATE" and stored["reason"].startswith(line), stored["reason"]
    assert "\n" not in stored["reason"] and len(stored["reason"]) <= 300
    assert ran.returncode == 1 and "Traceback" not in ran.stderr and "interrupted" not in ran.stderr
    assert "error: job %s: FAILED_VALIDATE: %s" % (stored["job_id"], line) in ran.stderr
    store = Store(str(job.store))
    (run,) = store.runs()
    assert store.results(run["run_id"]) == {} and run["state"] == "finished"
    store.close()
    for fmt in FORMATS:
        status, out, err = _cli(capsys, "report", run["run_id"], "--store", str(job.store), "--format", fmt)
        assert status == 0 and err == "", (fmt, err)


def _cli(capsys, *argv: str):
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_the_stored_spec_declaration_follows_plan_job():
    stored = [f for f in Job.__dataclass_fields__] + ["series"]  # Job.as_dict adds its series
    assert [f for f in StoredSpec.__dataclass_fields__] == stored


#: a stored spec as plan makes it, but a toolkit option without its value
ODD_OPTIONS = dict(Job("j", "h", 0, "resnet50", "pytorch", "fp32", 4, 1, 1).as_dict(), toolkit_options=[[]])
EDITS = [
    ("results", "result_json", "{", "result_json: Expecting property name"),
    ("results", "derived_json", "[]", "derived_json: not a JSON object"),
    ("jobs", "spec_json", "{}", "spec_json: job_id = None: missing"),
    ("jobs", "spec_json", '{"a": NaN}', "spec_json: NaN is not a number JSON allows"),
    ("jobs", "spec_json", json.dumps(ODD_OPTIONS), "spec_json: toolkit_options.0: not a (name, value) pair"),
    ("results", "result_json", "[" * 100000 + "]" * 100000, "result_json: nested deeper than 32 levels"),
    ("results", "result_json", '{"schema": "rn50bench.result"}', "result.json: schema_version = None"),
    ("results", "derived_json", '{"tool": 5}', "derived figures: tool = 5: not a string"),
    ("jobs", "timings_json", '"x"', "timings_json: not a JSON object"),
    ("jobs", "timings_json", '{"runner_s": -1}', "timings_json: runner_s = -1: below 0 s"),
]


@pytest.mark.parametrize("table, column, value, why", EDITS, ids=[e[1] + "=" + e[2][:12] for e in EDITS])
def test_a_store_edited_by_hand_shows_the_job_unreadable_in_every_report_and_ls(
    tmp_path, capsys, table, column, value, why
):
    path = tmp_path / "store.sqlite"
    run_id = _stored_run(path, _real(), {"hostname": "h", "vendor": "cpu"})
    with sqlite3.connect(str(path)) as db:
        db.execute("UPDATE %s SET %s = ?" % (table, column), (value,))
    for fmt in FORMATS:
        status, out, err = _cli(capsys, "report", run_id, "--store", str(path), "--format", fmt)
        assert status == 0 and err == "", (fmt, err)
        if fmt == "table":  # wrapped in its column
            assert "UNREADABLE" in out
        if fmt in ("md", "html"):
            assert "UNREADABLE (stored OK): a stored cell is unreadable: " in out, fmt
            assert why.split(": ", 1)[1][:30] in out, fmt
        if fmt == "csv":  # the state and the reason in columns of their own
            (row,) = csv.DictReader(io.StringIO(out))
            assert row["state"] == "UNREADABLE (stored OK)" and why.split(": ", 1)[1][:30] in row["reason"]
            assert row["reason"].startswith("a stored cell is unreadable: ")
        if fmt == "json":
            (job,) = json.loads(out)["jobs"]
            assert job["unreadable"].startswith("a stored cell is unreadable: " + why), job["unreadable"]
            assert json.loads(out)["results"] == {}
    status, out, err = _cli(capsys, "ls", "--store", str(path))
    assert status == 0 and run_id in out and err == ""


def test_markup_in_host_names_paths_and_versions_is_shown_as_text(tmp_path, capsys):
    doc = _real()
    _set(doc, "environment.versions.torch", HOSTILE_TEXT)
    _set(doc, "environment.versions.python", "3.8 <b onmouseover=alert(3)>")
    env = {
        "hostname": "host" + HOSTILE_TEXT,
        "vendor": "cpu",
        "os": "<iframe src=javascript:alert(4)>",
        "cpu_model": "</textarea><script>x</script>",
        "image": "/path/<svg onload=alert(5)>",
    }
    path = tmp_path / "store.sqlite"
    run_id = _stored_run(path, doc, env)
    for fmt in ("md", "html"):
        status, out, err = _cli(capsys, "report", run_id, "--store", str(path), "--format", fmt)
        assert status == 0, err
        for tag in ("<script>", "<img src", "<iframe src", "<svg onload", "<b onmouseover", "</textarea>"):
            assert tag not in out, (fmt, tag)
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out
        assert "&lt;svg onload=alert(5)&gt;" in out or fmt == "html"


def test_report_json_never_holds_a_bare_nan(tmp_path, capsys):
    path = tmp_path / "store.sqlite"
    run_id = _stored_run(path, _real(), {"hostname": "h", "vendor": "cpu"})
    with sqlite3.connect(str(path)) as db:  # NaN written into every kind of cell by another program
        db.execute("UPDATE results SET derived_json = replace(derived_json, '\"mfu\": null', '\"mfu\": NaN')")
        db.execute("UPDATE environments SET env_json = '{\"memory_gib\": NaN}'")
        sample = "INSERT INTO samples VALUES (?, (SELECT job_id FROM jobs), '{\"p\": Infinity}')"
        db.execute(sample, (run_id,))
    status, out, err = _cli(capsys, "report", run_id, "--store", str(path), "--format", "json")
    assert status == 0, err
    document = json.loads(out, parse_constant=lambda name: pytest.fail("bare %s in the report" % name))
    assert document["jobs"][0]["unreadable"].startswith("a stored cell is unreadable: derived_json: NaN")


def test_a_hostile_result_with_a_valid_figure_elsewhere_stays_valid_in_the_store(tmp_path, capsys):
    """The checks refuse only what breaks the schema: a copy of a real result with odd but physical
    figures (a 0.0 % accuracy, a 1 ms e2e) is stored and reported."""
    doc = copy.deepcopy(_real())
    _set(doc, "stages.infer.top1_pct", 0.0)
    _set(doc, "durations.e2e_time_s", 0.001)
    path = tmp_path / "store.sqlite"
    run_id = _stored_run(path, doc, {"hostname": "h", "vendor": "cpu"})
    status, out, err = _cli(capsys, "report", run_id, "--store", str(path), "--format", "csv")
    assert status == 0 and "unreadable" not in out and ",OK" in out


@pytest.mark.parametrize(
    "env", ['{"accelerators": 5}', '{"accelerators": [{"index": "x"}]}', '{"memory_gib": "lots"}', "[]", "{"]
)
def test_a_hand_edited_environment_shows_as_unknown_in_every_report(tmp_path, capsys, env):
    path = tmp_path / "store.sqlite"
    run_id = _stored_run(path, _real(), {"hostname": "h", "vendor": "cpu", "cpu_model": "CPU-Q9"})
    with sqlite3.connect(str(path)) as db:
        db.execute("UPDATE environments SET env_json = ?", (env,))
    for fmt in FORMATS:
        status, out, err = _cli(capsys, "report", run_id, "--store", str(path), "--format", fmt)
        assert status == 0 and err == "" and "CPU-Q9" not in out, (fmt, err)


def test_plain_columns_edited_to_other_types_or_markup_are_shown_as_text(tmp_path, capsys):
    path = tmp_path / "store.sqlite"
    run_id = _stored_run(path, _real(), {"hostname": "h", "vendor": "cpu"})
    with sqlite3.connect(str(path)) as db:  # SQLite keeps whatever type it is given
        db.execute("UPDATE jobs SET host = 5, reason = 7, vendor = ?, state = ?", (HOSTILE_TEXT, "<b>OK"))
        db.execute("UPDATE jobs SET log_path = X'FF00', started_at = 'soon', finished_at = 1e999")
        db.execute("UPDATE runs SET state = 5, cluster_path = CAST(X'C3' AS TEXT), created_at = X'00'")
    for fmt in FORMATS:
        status, out, err = _cli(capsys, "report", run_id, "--store", str(path), "--format", fmt)
        assert status == 0 and err == "", (fmt, err)
        assert fmt not in ("md", "html") or ("<script>" not in out and "<b>OK" not in out), fmt
    status, out, err = _cli(capsys, "ls", "--store", str(path))
    assert status == 0 and err == ""


def test_a_baseline_with_nan_or_huge_figures_never_puts_a_bare_nan_in_json(tmp_path, capsys):
    path = tmp_path / "store.sqlite"
    run_id = _stored_run(path, _real(), {"hostname": "h", "vendor": "cpu"})
    row = {"case": "resnet50", "toolkit": "pytorch", "precision": "fp32", "bs": 4}
    baseline = tmp_path / "baseline.json"
    for figures in ({"p_infer_core": 1e-320, "p_val_core": 1e308}, {"p_infer_core": float("nan")}):
        rows = [dict(row, figures=figures)]
        baseline.write_text(json.dumps({"format": "rn50bench.baseline/1", "rows": rows}))
        argv = ("--store", str(path), "--baseline", str(baseline), "--force", "--format", "json")
        status, out, err = _cli(capsys, "report", run_id, *argv)
        one_line = status == 2 and err.startswith("error: ") and err.count("\n") == 1
        assert (status, err) == (0, "") or one_line, err
        if status == 0:
            json.loads(out, parse_constant=lambda name: pytest.fail("bare %s in the report" % name))


def test_a_captured_host_environment_reads_typed():
    """The reports' typed reading takes what envinfo really captures (a vendor's own device fields too)."""
    from orchestrator.host import envinfo
    from orchestrator.report.load import HostEnvironment
    from orchestrator.transport.local import LocalTransport
    from runner_in_container import schema

    env = envinfo.capture_host(LocalTransport(), vendors.get("cpu"), "bare", 60)
    assert env["accelerators"] and env["cpu_model"]
    schema.parse_as(HostEnvironment, json.loads(json.dumps(env)))
