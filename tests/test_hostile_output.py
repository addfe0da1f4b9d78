"""Issue 18, item 4: user text is printed as it is written, never read as rich markup, and its control
characters (terminal escape sequences) never reach the terminal raw.

The text comes from file and folder names the user chose: the cluster file's path, the store's, the data
path, a reason naming a data file. Each is printed by ``ls``, ``report``, ``run`` and the error lines.
"""

import json
from pathlib import Path

import pytest

from orchestrator.safeio.text import shown
from orchestrator.store import Store
from tests.test_faults import local_entry, orchestrator, write_cluster

#: rich markup that raised (``[/]``) or vanished (``[val]``), and an escape sequence that retitles a terminal
HOSTILE = "cfg[/][val]\x1b]0;owned\x07\x1b[2J"
ESCAPED = "cfg[/][val]\\x1b]0;owned\\x07\\x1b[2J"


def test_shown_escapes_controls_and_keeps_the_rest():
    assert shown(HOSTILE) == ESCAPED
    assert shown("tab\tand\nnewline stay, so does ünïcode") == "tab\tand\nnewline stay, so does ünïcode"
    assert shown("\u202eevil\r") == "\\u202eevil\\x0d"


def _store_with_a_hostile_run(tmp_path: Path) -> Path:
    path = tmp_path / HOSTILE / "store.sqlite"
    store = Store(str(path))
    store.create_run("r1", str(tmp_path / HOSTILE / "hosts.yaml"), {})
    spec = dict(job_id="j1", host="h", device=0, case="resnet50", toolkit="pytorch", precision="fp32",
                batch_size=4, repeat=1, warmup=1, toolkit_options=[], decoder="auto")  # fmt: skip
    store.add_job("r1", "j1", "h", "cpu", spec)
    store.finish_job("r1", "j1", "FAILED_RUN", "DataError: cannot decode image %s/x.JPEG" % HOSTILE, None, {})
    store.close()
    return path


def test_ls_prints_a_hostile_cluster_path_literally(tmp_path):
    store = _store_with_a_hostile_run(tmp_path)
    done = orchestrator("ls", "--store", str(store), timeout=60)
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "Traceback" not in done.stderr
    assert "[/][val]" in done.stdout and "\\x1b]0;owned\\x07" in done.stdout.replace("\n", "")


def test_report_prints_a_hostile_reason_literally(tmp_path):
    store = _store_with_a_hostile_run(tmp_path)
    done = orchestrator("report", "r1", "--store", str(store), timeout=60)
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "Traceback" not in done.stderr
    assert "[/][val]" in "".join(done.stdout.split())
    as_json = orchestrator("report", "r1", "--store", str(store), "--format", "json", timeout=60)
    assert as_json.returncode == 0 and HOSTILE in json.loads(as_json.stdout)["jobs"][0]["reason"]  # data


def test_error_lines_keep_markup_like_text(tmp_path):
    missing = tmp_path / HOSTILE / "hosts.yaml"
    done = orchestrator("plan", "--cluster", str(missing), timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: %s: cannot read cluster file" % shown(missing))
    assert "\x1b" not in done.stderr


@pytest.mark.docker
def test_run_prints_a_hostile_data_path_and_store_literally(tmp_path, docker_engine):
    folder = tmp_path / HOSTILE
    folder.mkdir(parents=True)
    path = write_cluster(
        folder / "hosts.yaml", folder, [local_entry("here", folder / "val", tmp_path / "work", {})]
    )
    done = orchestrator("run", "--cluster", str(path), timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "\x1b" not in done.stderr + done.stdout
    assert "data.path %s does not exist on host here" % shown(folder / "val") in done.stderr
    assert "store %s" % shown(folder / "store.sqlite") in "".join(done.stdout.split("\n"))
