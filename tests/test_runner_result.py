"""The runner holds its finished document to the schema the orchestrator reads it with (result.conform): a
conforming document is written unchanged; a value that breaks the schema is dropped, named in a warning, and
fails the run, so what the runner writes is always what collect reads; a document that cannot be made to
conform is not written at all (one line on stderr)."""

import json
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, Dict, get_args, get_type_hints

import pytest

from orchestrator.job import collect
from runner_in_container import protocol, result, schema
from runner_in_container.data.generate import generate
from tests.test_runner_e2e import common, run_runner
from tests.test_runner_schema import DOC, ROW

REAL = Path(__file__).resolve().parent / "data" / "result_cpu_ok.json"


@pytest.fixture
def doc() -> Dict[str, Any]:
    return json.loads(REAL.read_text())


def test_a_conforming_document_is_written_unchanged(doc):
    assert result.conform(doc) == doc
    assert doc["schema_version"] == protocol.SCHEMA_VERSION


def test_a_figure_out_of_bounds_is_dropped_and_fails_the_run(doc):
    doc["mfu"]["mfu"] = 1e-12  # a vanishing MFU: what a peak far above the device's gives
    doc = result.conform(doc)
    assert doc["status"] == protocol.STATUS_FAILED and doc["mfu"]["mfu"] is None
    error = doc["error"]
    assert (error["stage"], error["step"], error["type"]) == ("report", "schema", "Invalid")
    assert "mfu.mfu = 1e-12: below 1e-09" in error["message"]
    assert doc["warnings"][-1].startswith("mfu.mfu dropped from the result: mfu.mfu = 1e-12")
    assert collect.read(doc).status == protocol.STATUS_FAILED  # what the orchestrator reads


def test_what_is_checked_is_what_json_writes(doc):
    doc["data"]["preprocessing"]["mean"] = (0.5, 0.5, 0.5)  # a tuple: written as a list
    doc["agreement_top1"] = float("nan")  # written as NaN, which no reader takes
    written = result.conform(doc)
    assert written["data"]["preprocessing"]["mean"] == [0.5, 0.5, 0.5] and written["agreement_top1"] is None
    assert "agreement_top1 = nan: not a finite number" in written["error"]["message"]


def test_counts_that_do_not_hold_together_drop_the_stage(doc):
    doc["stages"]["infer"]["images"] += 1
    doc = result.conform(doc)
    assert doc["stages"]["infer"] is None and doc["stages"]["val"] is not None
    assert doc["status"] == protocol.STATUS_FAILED and "stages.infer.images" in doc["error"]["message"]
    schema.parse(doc)


def test_a_failed_run_keeps_its_own_error(doc):
    doc.update(status=protocol.STATUS_FAILED)
    doc["error"] = {"stage": "infer", "step": "passes", "type": "OSError", "message": "m", "traceback": "t"}
    doc["agreement_top1"] = 1.5
    doc = result.conform(doc)
    assert doc["error"]["type"] == "OSError" and doc["agreement_top1"] is None
    assert doc["warnings"][-1].startswith("agreement_top1 dropped from the result")


@pytest.mark.parametrize(
    "key, value", [("schema_version", protocol.SCHEMA_VERSION + 1), ("warnings", ["w"] * 2000)]
)
def test_what_no_null_can_repair_is_refused(doc, key, value):
    doc[key] = value
    with pytest.raises(schema.Invalid) as caught:
        result.conform(doc)
    assert str(caught.value).startswith(key + " = ")


def test_the_error_section_keeps_its_texts_within_the_schema():
    try:
        raise ValueError("x" * (schema.LONG_TEXT_MAX + 10))
    except ValueError as exc:
        error = result.error_section("val", "passes", exc)
    assert len(error["message"]) == schema.LONG_TEXT_MAX
    assert error["traceback"].endswith("xxx\n")  # its end, where the failure is
    assert len(error["traceback"]) == schema.LONG_TEXT_MAX


@pytest.mark.slow
def test_the_runner_fails_a_run_whose_figures_break_the_schema(tmp_path):
    """A peak of 1e21 FLOP/s on a CPU makes an MFU below what the schema takes: the run fails, saying so."""
    data = generate(str(tmp_path / "set"), 2, layout="imagefolder", size=(64, 48))
    out = tmp_path / "out"
    args = common(data, out, "efficientnet_lite0", "random")
    rc, events, stderr = run_runner(args + ["--peak-flops", "1e21", "--peak-source", "absurd"])
    assert rc == protocol.EXIT_FAILED, stderr
    doc = json.loads((out / protocol.RESULT_FILE).read_text())
    assert doc["status"] == protocol.STATUS_FAILED and doc["mfu"]["mfu"] is None
    assert doc["stages"]["infer"]["throughput_core_img_per_s"] > 0  # the figures that conform are kept
    assert "mfu.mfu = " in doc["error"]["message"]
    assert [e["ev"] for e in events][-2:] == ["error", "result"]
    assert events[-2]["step"] == "schema" and events[-1]["status"] == protocol.STATUS_FAILED
    assert collect.read(doc).status == protocol.STATUS_FAILED


def test_the_schema_page_names_the_schema_and_version_the_runner_writes_and_collect_reads():
    page = DOC.read_text()
    assert "Schema `%s`, version %d " % (protocol.SCHEMA_NAME, protocol.SCHEMA_VERSION) in page
    doc = json.loads(REAL.read_text())
    assert (doc["schema"], doc["schema_version"]) == (protocol.SCHEMA_NAME, protocol.SCHEMA_VERSION)


def test_the_schema_page_gives_each_bounded_figure_the_unit_its_dataclass_field_has():
    """Keys, types and presence are held both ways by test_result_typed; here the units of the bounds."""
    units = {key: unit for key, (_types, unit, _present) in documented_rows().items()}
    for key, rule in declared_rules(schema.Result, "").items():
        if rule.unit:
            assert units[key] == rule.unit.split(" ")[0], (key, rule.unit, units[key])


def documented_rows() -> Dict[str, Any]:
    """key -> (types, unit, present) of the tables of docs/result_schema.md."""
    rows = {}
    for line in DOC.read_text().splitlines():
        match = ROW.match(line)
        if match:
            key, types, unit, present = (group.strip() for group in match.groups())
            rows[key] = (types, unit, present)
    return rows


def declared_rules(cls: Any, prefix: str) -> Dict[str, schema.Rule]:
    """Dotted key (``<stage>`` for val and infer) -> the field's rule, for every field under ``cls``."""
    rules = {}
    hints = get_type_hints(cls)
    for spec in fields(cls):
        stage = cls in (schema.Stages, schema.MemoryStages)
        key = prefix + ("<stage>" if stage else spec.name)
        rules[key] = spec.metadata["rule"]
        for member in get_args(hints[spec.name]) or (hints[spec.name],):
            if is_dataclass(member):
                rules.update(declared_rules(member, key + "."))
    return rules
