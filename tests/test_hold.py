"""The hold knob (runner_in_container/hold.py): the runner waits in stage ``hold`` until its file exists,
however long that takes, and then runs the case as usual. The tests that must catch a job running use it."""

import subprocess
import sys
from pathlib import Path

import pytest

from runner_in_container import protocol
from runner_in_container.data.generate import generate
from tests.test_runner_e2e import common, read_result
from tests.test_runner_schema import check_result

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_runner_holds_until_the_file_exists(tmp_path):
    data = generate(str(tmp_path / "set"), 2, layout="imagefolder", size=(160, 120))
    out = tmp_path / "out"
    argv = common(data, out, "resnet50", "random") + ["--toolkit-option", "hold_until=go"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner_in_container", *argv],
        cwd=str(REPO),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        events = []
        while not events or events[-1].get("stage") != "hold":  # start, set-up, then the hold: it blocks
            line = proc.stdout.readline()
            assert line, "the runner ended before holding: " + proc.stderr.read()
            events += [e for e in [protocol.parse_event(line)] if e is not None]
        assert events[0]["ev"] == "start" and {e["ev"] for e in events[1:]} == {"stage"}
        assert {e["stage"] for e in events[1:-1]} == {"setup"}, events  # nothing measured before the hold
        assert events[-1]["path"] == str(out / "go")
        assert proc.poll() is None and not (out / "result.json").exists()  # held: it cannot have gone on
        (out / "go").write_text("")
        rest, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert '"stage": "val"' in rest
    (out / "go").unlink()
    doc = read_result(out)
    assert check_result(doc) == []
    assert doc["status"] == "ok" and doc["config"]["toolkit_option"] == {"hold_until": "go"}
    (held,) = [w for w in doc["warnings"] if w.startswith("held ")]
    assert held.endswith("until %s existed (hold_until): e2e_time includes it" % (out / "go")), held
