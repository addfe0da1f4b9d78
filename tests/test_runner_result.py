"""The runner holds its finished document to the schema the orchestrator reads it with (result.conform): a
conforming document is written unchanged; a value that breaks the schema is dropped, named in a warning, and
fails the run, so what the runner writes is always what collect reads; a document that cannot be made to
conform is not written at all (one line on stderr)."""

import json
from pathlib import Path
from typing import Any, Dict

import pytest

from orchestrator import collect
from runner_in_container import protocol, result, schema
from runner_in_container.data.generate import generate
from tests.test_runner_e2e import common, run_runner

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
