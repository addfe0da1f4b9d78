"""The one typed reading of a result (runner_in_container/schema.py through orchestrator/job/collect.py):
a real runner's document passes; every hostile value, wrong type or bound-breaking figure is refused in one
line that names the field and shows the value bounded and escaped; the dataclasses and
docs/result_schema.md agree."""

import copy
import json
import subprocess
import sys
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, Dict, List, Union, get_args, get_origin, get_type_hints

import pytest

from orchestrator.job import collect
from runner_in_container import schema
from tests.test_runner_schema import documented

REPO = Path(__file__).resolve().parent.parent
#: a real result of the runner on the CPU (random weights, 8 generated images), paths renamed
REAL = REPO / "tests" / "data" / "result_cpu_ok.json"


@pytest.fixture
def doc() -> Dict[str, Any]:
    return json.loads(REAL.read_text())


def _set(doc: Dict[str, Any], path: str, value: Any) -> Dict[str, Any]:
    node = doc
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    return doc


def test_a_real_result_reads_typed(doc):
    result = collect.read(doc)
    assert result.status == "ok" and result.figures is not None
    assert result.typed.stages.infer is not None and result.typed.stages.infer.images == 8
    assert result.figures.device.type == "cpu" and result.figures.memory.mem_total_gib > 0


ERROR = {"stage": "infer", "step": "passes", "type": "RuntimeError", "message": "m", "traceback": "t"}
HOSTILE = [
    ("stages.infer.throughput_core_img_per_s", -12345.6, "not above 0 img/s"),
    ("stages.infer.throughput_core_img_per_s", 0, "not above 0 img/s"),
    ("stages.val.throughput_whole_img_per_s", 1.7e308, "above 1e+09 img/s"),
    ("stages.val.throughput_whole_img_per_s", 5e-324, "below 1e-09 img/s: no such measurement"),
    ("stages.infer.top1_pct", 250.0, "above 100 %"),
    ("stages.infer.top5_pct", -0.5, "below 0 %"),
    ("stages.infer.images", -7, "below 0"),
    ("stages.infer.images", 9, "not passes x n_images (1 x 8)"),
    ("stages.val.top5_count", 9, "above n_images (8)"),
    ("stages.val.top1_count", 1, "above top5_count (0)"),
    ("stages.infer.images", 7.5, "not an integer"),
    ("stages.infer.images", True, "not an integer"),
    ("durations.e2e_time_s", -3.0, "below 0 s"),
    ("durations.e2e_time_s", None, "not a number"),
    ("memory.mem_used_gib", "lots", "not a number"),
    ("stages.infer.latency_ms", "<script>", "not an object"),
    ("stages.infer.latency_ms.p99", "<script>alert(1)</script>", "not a number"),
    ("stages.infer.pass_whole_s", [1.0, -1.0], "below 0 s", "stages.infer.pass_whole_s.1"),
    ("stages.infer", None, "missing in a result with status ok"),
    ("environment.device.type", "quantum", "not one of cpu, cuda"),
    ("environment.versions.torch", {"a": 1}, "not a string"),
    ("environment.platform", "x" * 5000, "longer than 4096 characters"),
    ("warnings", ["w"] * 2000, "more than 1024 items"),
    ("flops_per_image", 0, "below 1"),
    ("status", "great", "not one of ok, failed_accuracy, failed"),
    ("metric_version", 99, "not one of 2, 3, metrics.md/1"),
    ("error", dict(ERROR, stage="x"), "must be an object exactly when status is failed"),
    ("data.extra", 1, "not a key of this schema"),
    ("config.toolkit_option", {"k": 3}, "not a string", "config.toolkit_option.k"),
]


@pytest.mark.parametrize("case", HOSTILE, ids=[h[0] + "=" + repr(h[1])[:20] for h in HOSTILE])
def test_each_hostile_value_is_one_line_naming_the_field(doc, case):
    path, value, what = case[:3]
    field = case[3] if len(case) > 3 else path  # where the bad value lies, inside a list or a map
    with pytest.raises(collect.ResultInvalid) as caught:
        collect.read(_set(doc, path, value))
    message = str(caught.value)
    assert "\n" not in message and len(message) < 200
    assert message.startswith("result.json: %s = " % field) and message.endswith(": " + what), message


def test_nan_infinity_and_depth_are_refused_before_the_schema(doc, tmp_path):
    text = json.dumps(doc)
    for bad, why in (
        (text.replace('"top1_pct": 0.0', '"top1_pct": NaN', 1), "NaN is not a number JSON allows"),
        (text.replace('"top1_pct": 0.0', '"top1_pct": Infinity', 1), "Infinity is not a number JSON allows"),
        ("[" * 100000 + "]" * 100000, "nested deeper than 32 levels"),
        ("{", "Expecting property name enclosed in double quotes"),
    ):
        path = tmp_path / "result.json"
        path.write_text(bad)
        with pytest.raises(collect.ResultInvalid) as caught:
            collect.read_bytes(collect.load_file(str(path)))
        assert str(caught.value).startswith("result.json: " + why), caught.value


def test_a_nan_given_as_a_python_value_is_refused(doc):
    """A document decoded by anything other than bounded.loads is checked as well."""
    with pytest.raises(collect.ResultInvalid, match=r"top1_pct = nan: not a finite number"):
        collect.read(_set(doc, "stages.val.top1_pct", float("nan")))


def test_the_value_shown_is_bounded_and_escaped(doc):
    hostile = "\x1b]0;owned\x07<script>" + "A" * 10000
    with pytest.raises(collect.ResultInvalid) as caught:
        collect.read(_set(doc, "memory.mem_used_gib", hostile))
    message = str(caught.value)
    assert "\x1b" not in message and "\x07" not in message and "\\x1b" in message
    assert len(message) < 160


def test_a_failed_result_needs_its_error_and_no_figures(doc):
    failed = _set(copy.deepcopy(doc), "status", "failed")
    with pytest.raises(collect.ResultInvalid, match="error = None: must be an object"):
        collect.read(failed)
    result = collect.read(_set(failed, "error", ERROR))
    assert result.figures is None and result.status == "failed"


def test_stored_derived_figures_are_read_through_the_same_checks(doc):
    import vendors

    derived = collect.derive(collect.read(doc), vendors.get("cpu"), None).as_stored()
    assert collect.read_derived(derived).as_stored() == derived
    for value, what in (
        ([], "derived figures: (top level) = a list of 0 items: not an object"),
        (dict(derived, p_infer_core=-1), "derived figures: p_infer_core = -1: not above 0 img/s"),
        (dict(derived, mem_used_gib="lots"), "derived figures: mem_used_gib = 'lots': not a number"),
        (dict(derived, p_infer_core=None), "derived figures: p_infer_core = None: not a number"),
    ):
        with pytest.raises(collect.ResultInvalid) as caught:
            collect.read_derived(value)
        assert str(caught.value) == what


_DOC_TYPE = {str: "string", int: "integer", float: "number", bool: "boolean", list: "list", dict: "map"}


def _declared(cls: Any, parent: str, out: Dict[str, List[str]]) -> None:
    """Dotted key (``<stage>`` for val and infer, as the page writes it) -> the page's types of every field
    of ``cls`` and below."""
    hints = get_type_hints(cls)
    for spec in fields(cls):
        kind = hints[spec.name]
        options = get_args(kind) if get_origin(kind) is Union else (kind,)
        stage = parent.endswith("stages.") and spec.name in ("val", "infer")
        key = parent + ("<stage>" if stage else spec.name)
        out[key] = [
            "null" if o is type(None) else "object" if is_dataclass(o) else _DOC_TYPE[get_origin(o) or o]
            for o in options
        ]
        for option in options:
            if is_dataclass(option):
                _declared(option, key + ".", out)


def test_the_dataclasses_and_the_schema_page_declare_the_same_keys_and_types():
    declared: Dict[str, List[str]] = {}
    _declared(schema.Result, "", declared)
    docs = documented()
    assert sorted(declared) == sorted(docs)
    for key, types in declared.items():
        page = docs[key][0]
        if key == "metric_version":  # 2; version 1 wrote "metrics.md/1": both are read
            assert page == ["integer"] and types == ["integer", "string"]
            continue
        present = spec_present(key)
        if present != schema.PRESENT_ALWAYS:  # None where it is missing, on the other device
            types = [t for t in types if t != "null"]
        assert sorted(types) == sorted(page), (key, types, page)
        assert present == docs[key][1].replace("failed", "always"), key  # "failed": always in ``error``


def spec_present(key: str) -> str:
    """The ``present`` of the field at the dotted ``key`` (its metadata)."""
    cls: Any = schema.Result
    names = key.split(".")
    for name in names[:-1]:
        name = "val" if name == "<stage>" else name
        kind = get_type_hints(cls)[name]
        cls = next(o for o in (get_args(kind) or (kind,)) if is_dataclass(o))
    last = "val" if names[-1] == "<stage>" else names[-1]
    return next(f for f in fields(cls) if f.name == last).metadata["present"]


def test_the_schema_module_imports_without_torch():
    code = "import sys, runner_in_container.schema; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(REPO))


def test_figures_each_within_bounds_that_derive_an_absurd_mfu_are_refused(doc):
    import vendors

    _set(doc, "flops_per_image", 10**15)
    _set(doc, "stages.infer.throughput_core_img_per_s", 1e8)
    with pytest.raises(collect.ResultInvalid, match=r"^derived figures: mfu = 149\d+\.\d+: above 1e\+06$"):
        collect.derive(collect.read(doc), vendors.get("nvidia"), "NVIDIA H100 80GB HBM3")


def test_a_result_file_beyond_its_size_bound_or_not_a_regular_file_is_refused(tmp_path):
    big = tmp_path / "big.json"
    with big.open("wb") as handle:
        handle.truncate(collect.MAX_RESULT_BYTES + 1)
    with pytest.raises(collect.ResultInvalid, match="^result.json: larger than 4 MiB$"):
        collect.load_file(str(big))
    link = tmp_path / "link.json"
    link.symlink_to(REAL)
    with pytest.raises(collect.ResultInvalid, match="^result.json: a symbolic link"):
        collect.load_file(str(link))
