"""docs/result_schema.md as a checker: every key of a result is documented, typed as documented, and
every documented key is there. The runner's end-to-end tests validate their results with it."""

import re
from pathlib import Path
from typing import Any, Dict, List, Set, Tuple

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "result_schema.md"
ROW = re.compile(r"^\| `([^`]+)` \|([^|]*)\|([^|]*)\|([^|]*)\|")
STAGE_PARENTS = ("stages", "memory.stages")
TYPES = {
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "list": lambda v: isinstance(v, list),
    "map": lambda v: isinstance(v, dict),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}


def documented() -> Dict[str, Tuple[List[str], str]]:
    """key -> (allowed types, when present) from the tables of docs/result_schema.md."""
    keys = {}
    for line in DOC.read_text().splitlines():
        match = ROW.match(line)
        if match:
            key, types, _unit, present = (g.strip() for g in match.groups())
            keys[key] = ([t.strip() for t in types.split(" or ")], present)
    return keys


def _normal(parent: str, key: str) -> str:
    if parent in STAGE_PARENTS and key in ("val", "infer"):
        return parent + ".<stage>"
    return parent + "." + key if parent else key


def _walk(value: Dict[str, Any], parent: str, docs, problems: List[str], seen: Set[str], objects: Set[str]):
    for key, item in value.items():
        path = _normal(parent, key)
        seen.add(path)
        if path not in docs:
            problems.append(f"undocumented key {path}")
            continue
        types, _ = docs[path]
        if not any(TYPES[t](item) for t in types):
            problems.append("{} is {!r}, documented as {}".format(path, item, " or ".join(types)))
        if isinstance(item, dict) and "object" in types:
            objects.add(path)
            _walk(item, path, docs, problems, seen, objects)


def check_result(doc: Dict[str, Any]) -> List[str]:
    """Problems of ``doc`` against the documentation (empty when it conforms)."""
    docs = documented()
    problems: List[str] = []
    seen: Set[str] = set()
    objects: Set[str] = {""}
    _walk(doc, "", docs, problems, seen, objects)
    device = ((doc.get("environment") or {}).get("device") or {}).get("type")
    wanted = {"always", device} | ({"failed"} if doc.get("status") == "failed" else set())
    for key, (_, present) in docs.items():
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        if present in wanted and parent in objects and key not in seen:
            problems.append(f"documented key {key} missing")
    return problems


def test_doc_rows_parse_with_known_types_and_presence():
    docs = documented()
    assert len(docs) > 100
    for key, (types, present) in docs.items():
        assert set(types) <= set(TYPES), key
        assert present in ("always", "cpu", "cuda", "failed", "optional"), key
    for top in (
        "status",
        "case",
        "config",
        "data",
        "weights",
        "environment",
        "durations",
        "stages",
        "agreement_top1",
        "accuracy_gate",
        "memory",
        "flops_per_image",
        "flops_method",
        "mfu",
    ):
        assert top in docs


@pytest.fixture
def minimal():
    """A failed result whose sections are all null."""
    doc = {key: None for key in documented() if "." not in key}
    doc.update(
        schema="rn50bench.result",
        schema_version=1,
        metric_version=3,
        status="failed",
        warnings=[],
        case="resnet50",
        started_at_unix=1.0,
        finished_at_unix=2.0,
    )
    doc["error"] = {"stage": "load", "step": None, "type": "OSError", "message": "m", "traceback": "t"}
    return doc


def test_checker_fails_on_undocumented_missing_and_mistyped_keys(minimal):
    problems = check_result(minimal)
    # config/data/... are documented as objects, not null: the checker must say so
    assert "config is None, documented as object" in problems
    doc = dict(minimal, config={"case": "resnet50"}, extra=1)
    problems = check_result(doc)
    assert "undocumented key extra" in problems
    assert "documented key config.argv missing" in problems
    doc["error"] = dict(doc["error"], stage=3)
    assert any(p.startswith("error.stage is 3") for p in check_result(doc))
