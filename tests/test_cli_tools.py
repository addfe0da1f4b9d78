"""Issue 30 item 3: what tools and people around a run need: ``--version`` (stored with each run), a JSON
Schema of the cluster file for editors, ``report latest``, ``ls`` with times, hosts and vendors (and
``--cluster`` to find a file's store), a description and examples on every sub-command's --help."""

import json
import re
import sqlite3
from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml

from orchestrator import cli
from orchestrator.config.schema import cluster_schema
from orchestrator.store import Store
from orchestrator.version import version
from tests.test_faults import CASE, orchestrator, write_cluster
from tests.test_hostile_paths import bare_entry

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted(REPO.glob("host_configs/*.yaml"))


def test_version_names_the_project_and_this_checkouts_revision():
    done = orchestrator("--version", timeout=60)
    assert done.returncode == 0, done.stderr
    said = r"rn50bench \d+\.\d+\.\S+ \(git [0-9a-f]{12}(, modified)?\)\n"
    assert re.fullmatch(said, done.stdout), done.stdout
    assert done.stdout.strip() == version()


def test_each_run_keeps_the_version_that_made_it_and_ls_shows_it_all(tmp_path):
    """A real run (its data path is wrong: every job fails at once) of two batch sizes on a bare host."""
    host = bare_entry(tmp_path / "absent", tmp_path / "work")
    path = write_cluster(tmp_path / "hosts.yaml", tmp_path, [host], cases=[dict(CASE, batch_size=[1, 2])])
    done = orchestrator("run", "--cluster", str(path), timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    (run,) = Store(str(tmp_path / "store.sqlite"), readonly=True).runs()
    assert run["version"] == version() and (run["hosts"], run["vendors"]) == ("here", "cpu")
    reported = orchestrator("report", "latest", "--store", str(tmp_path / "store.sqlite"), "--format", "json")
    assert json.loads(reported.stdout)["run"]["version"] == version(), reported.stderr
    listed = orchestrator("ls", "--cluster", str(path), timeout=60)  # the file's store, not the default
    assert listed.returncode == 0, listed.stderr
    header = next(line for line in listed.stdout.splitlines() if "start" in line)
    columns = r"run\W+start\W+took\W+state\W+ok/jobs\W+hosts\W+vendors\W+cluster file"
    assert re.search(columns, header), header
    row = next(line for line in listed.stdout.splitlines() if run["run_id"] in line)
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells[3:7] == ["finished", "0/2", "here", "cpu"], cells
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", cells[1]) and re.fullmatch(r"\d+ s", cells[2]), cells


def _store_with_runs(path: Path, started: Dict[str, float]) -> None:
    store = Store(str(path))
    for run_id in started:
        store.create_run(run_id, "hosts.yaml", {})
    store.close()
    with sqlite3.connect(str(path)) as db:
        times = [(at, run_id) for run_id, at in started.items()]
        db.executemany("UPDATE runs SET created_at = ? WHERE run_id = ?", times)


def test_report_latest_is_the_run_started_last(tmp_path, capsys):
    path = tmp_path / "store.sqlite"
    _store_with_runs(path, {"20261206-100000-aaaaaa": 2000.0, "20261206-090000-bbbbbb": 3000.0})
    status = cli.main(["report", "latest", "--store", str(path), "--format", "json"])
    out = capsys.readouterr().out
    assert status == 0 and json.loads(out)["run"]["run_id"] == "20261206-090000-bbbbbb"


def test_report_latest_of_a_store_without_runs_is_one_line(tmp_path, capsys):
    path = tmp_path / "store.sqlite"
    Store(str(path)).close()
    assert cli.main(["report", "latest", "--store", str(path)]) == 2
    assert capsys.readouterr().err == "error: store %s holds no run yet: latest names none\n" % path


def test_ls_of_an_older_store_without_versions_still_lists(tmp_path, capsys):
    path = tmp_path / "store.sqlite"
    _store_with_runs(path, {"20261206-100000-aaaaaa": 2000.0})
    with sqlite3.connect(str(path)) as db:
        db.execute("DROP TABLE versions")
    assert cli.main(["ls", "--store", str(path)]) == 0
    assert "20261206-100000-aaaaaa" in capsys.readouterr().out


# -- the schema ----------------------------------------------------------------------------------------
def _check(value: Any, schema: Dict[str, Any], defs: Dict[str, Any], where: str) -> List[str]:
    """A structural check of ``value`` against a JSON Schema (the parts the models write: $ref, anyOf,
    type, properties, required, additionalProperties, items, enum, const): the places that fail it."""
    if "$ref" in schema:
        return _check(value, defs[schema["$ref"].rsplit("/", 1)[1]], defs, where)
    if "anyOf" in schema:
        tried = [_check(value, option, defs, where) for option in schema["anyOf"]]
        return [] if any(not t for t in tried) else min(tried, key=len)
    types = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}
    kind = schema.get("type")
    if kind in ("integer", "number"):
        wanted = int if kind == "integer" else (int, float)
        if not isinstance(value, wanted) or isinstance(value, bool):
            return ["%s: not %s" % (where, kind)]
    elif kind is not None and not isinstance(value, types[kind]):
        return ["%s: not %s" % (where, kind)]
    if "enum" in schema and value not in schema["enum"] or "const" in schema and value != schema["const"]:
        return ["%s: %r not allowed" % (where, value)]
    found: List[str] = []
    if isinstance(value, dict):
        found += ["%s.%s: required" % (where, key) for key in schema.get("required", []) if key not in value]
        for key, item in value.items():
            own = schema.get("properties", {}).get(key)
            extra = schema.get("additionalProperties", True)
            if own is None and extra is False:
                found.append("%s.%s: not allowed" % (where, key))
            elif own is not None or isinstance(extra, dict):
                found += _check(item, own if own is not None else extra, defs, "%s.%s" % (where, key))
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            found += _check(item, schema["items"], defs, "%s[%d]" % (where, index))
    return found


def schema_problems(data: Any) -> List[str]:
    """What is wrong with ``data`` by the cluster schema: jsonschema's verdict where it is installed,
    else the structural check above."""
    schema = cluster_schema()
    try:
        import jsonschema
    except ImportError:
        return _check(data, schema, schema["$defs"], "<top>")
    validator = jsonschema.Draft202012Validator(schema)
    return ["%s: %s" % (error.json_path, error.message) for error in validator.iter_errors(data)]


def test_schema_prints_json_the_shipped_cluster_files_meet(capsys):
    assert cli.main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(cluster_schema()))
    assert printed["$schema"].startswith("https://json-schema.org/")
    assert SHIPPED
    for path in SHIPPED:
        assert schema_problems(yaml.safe_load(path.read_text())) == [], path


@pytest.mark.parametrize(
    "edit, place",
    [
        (lambda d: d["cases"][0].update(batch_sise=8), "batch_sise"),
        (lambda d: d["hosts"][0].pop("address"), "address"),
        (lambda d: d["hosts"][0].update(slurm={"partition": 5}), "partition"),
        (lambda d: d.update(kube={}), "kube"),
        (lambda d: d["hosts"][0]["data"].update(layout="folders"), "layout"),
    ],
)
def test_schema_tells_what_plan_would_refuse(edit, place):
    data = yaml.safe_load((REPO / "host_configs" / "local.yaml").read_text())
    edit(data)
    found = schema_problems(data)
    assert any(place in line for line in found), found


# -- help ------------------------------------------------------------------------------------------------
def _commands() -> List[List[str]]:
    return [
        ["plan"], ["run"], ["doctor"], ["report"], ["ls"], ["vendors"], ["schema"],
        ["bundle"], ["bundle", "export"], ["bundle", "verify"], ["bundle", "import"],
    ]  # fmt: skip


@pytest.mark.parametrize("command", _commands(), ids=" ".join)
def test_every_sub_command_has_a_description_and_an_example(command, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(command + ["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    usage, description = text.split("\n\n")[:2]
    assert len(description.split()) >= 8 and not description.lstrip().startswith(("options", "positional"))
    examples = text.split("examples:\n", 1)[1].splitlines()
    shown = "  python -m orchestrator " + " ".join(command)
    assert examples and all(line.startswith(shown) for line in examples)


def test_the_list_of_commands_is_the_one_tested(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    listed = re.search(r"\{([a-z,]+)\}", capsys.readouterr().out)
    assert listed and sorted(listed.group(1).split(",")) == sorted({c[0] for c in _commands()})
