"""Issue 27, items 15 and 18: a baseline file is read within bounds, and the one-line messages name what
is true: the path that is the problem, and what an interrupted command did."""

import json
import os
import signal
from pathlib import Path

import pytest

from orchestrator import cli
from orchestrator.report import command as report_command
from orchestrator.run import command as run_command
from orchestrator.run import signals
from tests.test_faults import orchestrator
from tests.test_hostile_store import a_store, one_error_line


@pytest.fixture
def store(tmp_path) -> Path:
    return a_store(tmp_path / "store.sqlite")


def report_line(store: Path, *argv: str) -> str:
    return one_error_line(orchestrator("report", "r1", "--store", str(store), *argv, timeout=60))


def test_a_baseline_that_is_a_fifo_is_refused_at_once(tmp_path, store):
    fifo = tmp_path / "baseline.json"
    os.mkfifo(str(fifo))  # no writer: an open() for reading would wait for ever
    line = report_line(store, "--baseline", str(fifo))
    assert line == "error: %s: cannot read a baseline: not a regular file" % fifo


def test_a_baseline_of_dev_zero_is_refused(store):
    assert report_line(store, "--baseline", "/dev/zero") == (
        "error: /dev/zero: cannot read a baseline: not a regular file"
    )


def test_a_deep_or_large_baseline_is_refused_in_one_line(tmp_path, store):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100000 + "]" * 100000)
    assert report_line(store, "--baseline", str(deep)) == (
        "error: %s: cannot read a baseline: nested deeper than 32 levels" % deep
    )
    large = tmp_path / "large.json"
    with large.open("wb") as handle:
        handle.truncate(17 << 20)
    assert report_line(store, "--baseline", str(large)) == (
        "error: %s: cannot read a baseline: larger than 16 MiB" % large
    )


def test_a_baseline_with_a_figure_that_is_no_number_is_refused_naming_it(tmp_path, store):
    path = tmp_path / "b.json"
    row = {"case": "resnet50", "toolkit": "pytorch", "precision": "fp32", "bs": 4, "figures": {"mfu": "x"}}
    path.write_text(json.dumps({"format": "rn50bench.baseline/1", "rows": [row], "conditions": []}))
    assert report_line(store, "--baseline", str(path)) == ("error: %s: conditions: expected an object" % path)
    path.write_text(json.dumps({"format": "rn50bench.baseline/1", "rows": [row]}))
    assert report_line(store, "--baseline", str(path)) == (
        "error: %s: rows[0].figures.mfu: expected a number, got 'x'" % path
    )


def test_report_out_naming_a_folder_blames_that_folder(tmp_path, store):
    folder = tmp_path / "out"
    folder.mkdir()
    assert report_line(store, "--out", str(folder)) == (
        "error: cannot write %s: it is a folder; name a file (e.g. %s/report.html)" % (folder, folder)
    )
    assert [name for name in os.listdir(str(tmp_path)) if "store" not in name] == ["out"]  # no temporary


@pytest.fixture
def signal_handlers():
    """cli.main installs the orchestrator's signal handlers: give pytest its own back."""
    saved = {s: signal.getsignal(s) for s in signals.TERMINATING}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.mark.parametrize("command", ["plan", "report"])
def test_plan_and_report_stopped_by_sigterm_say_only_what_is_true(
    monkeypatch, capsys, signal_handlers, store, command
):
    """A SIGTERM that arrives while the command works (sent by the command to itself, so that it arrives
    by construction after the handlers are installed): nothing to do with containers or jobs."""

    def terminated(args, console):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("the handler raises before this line")

    if command == "plan":
        monkeypatch.setattr(cli, "cmd_plan", terminated)
        argv = ["plan", "--cluster", "hosts.yaml"]
    else:
        monkeypatch.setattr(report_command, "run", terminated)
        argv = ["report", "r1", "--store", str(store)]
    assert cli.main(argv) == 128 + signal.SIGTERM
    assert capsys.readouterr().err == "interrupted (SIGTERM): stopped, nothing was written\n"


def test_run_still_says_its_containers_are_stopped(monkeypatch, capsys, signal_handlers):
    def terminated(args, console):
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(run_command, "run", terminated)
    assert cli.main(["run", "--cluster", "hosts.yaml"]) == 128 + signal.SIGTERM
    assert capsys.readouterr().err == (
        "interrupted (SIGTERM): containers stopped, finished jobs are stored\n"
    )
