"""Issue 18, item 5: every state a store file can be in gives one line, never a traceback; reading
commands change nothing in the file; a full store loses no finished result.

Real files only: a folder, an empty file, text, a truncated store, another application's SQLite file, a
store on read-only media and on a full disk (tmpfs mounts made here, unmounted after).
"""

import contextlib
import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

from orchestrator.outcome import JobState
from orchestrator.run import lock as runlock
from orchestrator.store import Store, StoreError
from runner_in_container.data.generate import generate
from tests.test_faults import (
    HELD,
    _holding,
    _states,
    _wait_for,
    local_entry,
    only_run,
    orchestrator,
    release,
    start_orchestrator,
    write_cluster,
)


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` to the last byte; the file that did it."""
    filler = folder / "filler"
    fd = os.open(str(filler), os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def a_store(path: Path) -> Path:
    store = Store(str(path))
    store.create_run("r1", "hosts.yaml", {})
    for index in range(200):  # a few pages, so that half of the file is a broken store
        spec = {
            "device": 0,
            "toolkit": "pytorch",
            "precision": "fp32",
            "batch_size": index + 1,
            "x": "-" * 400,
        }
        store.add_job("r1", "j%d" % index, "h", "cpu", spec)
    store.close()
    return path


def one_job_cluster(tmp_path: Path, base_image: str, sdk_dir: Path, **extra: Any) -> Path:
    """A cluster file with one CPU job on this machine (4 generated images); ``extra``: top-level keys."""
    data = Path(generate(str(tmp_path / "set"), images=4, layout="imagefolder"))
    image = {"base_image": base_image, "sdk_dir": str(sdk_dir)}
    entry = local_entry("here", data, tmp_path / "work", image)
    return write_cluster(tmp_path / "hosts.yaml", tmp_path, [entry], **extra)


def one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    return done.stderr.strip()


def broken_stores(tmp: Path):
    """(path, words of the one-line error) for every broken store."""
    folder = tmp / "a-folder"
    folder.mkdir()
    empty = tmp / "empty.sqlite"
    empty.write_bytes(b"")
    text = tmp / "text.sqlite"
    text.write_text("not a database\n" * 400)
    truncated = tmp / "truncated.sqlite"
    whole = a_store(tmp / "whole.sqlite").read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    return [
        (folder, "is a directory"),
        (empty, "is an empty file (0 bytes): no results in it"),
        (text, "file is not a database"),
        (truncated, "database disk image is malformed"),
    ]


@pytest.mark.parametrize("command", [["ls"], ["report", "r1"]])
def test_a_broken_store_is_one_line_for_reading_commands(tmp_path, command):
    for path, words in broken_stores(tmp_path):
        line = one_error_line(orchestrator(*command, "--store", str(path), timeout=60))
        assert str(path) in line and words in line, line
    assert (tmp_path / "empty.sqlite").stat().st_size == 0  # not made into an empty store


def test_another_applications_sqlite_file_is_refused_and_left_as_it_was(tmp_path):
    other = tmp_path / "app.sqlite"
    with contextlib.closing(sqlite3.connect(str(other))) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
        db.commit()
    before = other.read_bytes()
    for command in (["ls"], ["report", "r1"], ["run", "--resume", "r1"]):
        line = one_error_line(orchestrator(*command, "--store", str(other), timeout=60))
        assert "is not an rn50bench results store (no table runs)" in line
    assert other.read_bytes() == before and sorted(os.listdir(str(tmp_path))) == ["app.sqlite"]


def test_a_store_on_read_only_media_is_listed_and_reported_but_not_run_on(tmp_path):
    with tmpfs(tmp_path / "media", "8m") as media:
        store = a_store(media / "store.sqlite")
        subprocess.run(["mount", "-o", "remount,ro", str(media)], check=True)
        listed = orchestrator("ls", "--store", str(store), timeout=60)
        assert listed.returncode == 0 and "r1" in listed.stdout, listed.stderr
        reported = orchestrator("report", "r1", "--store", str(store), "--format", "csv", timeout=60)
        assert reported.returncode == 0, reported.stderr
        assert [row["host"] for row in csv.DictReader(io.StringIO(reported.stdout))] == ["h"] * 200
        cluster = write_cluster(tmp_path / "hosts.yaml", tmp_path, [local_entry("h", tmp_path, tmp_path, {})])
        line = one_error_line(
            orchestrator("run", "--cluster", str(cluster), "--store", str(store), timeout=60)
        )
        assert line.startswith("error: store %s cannot be opened for writing: " % store), line


def test_a_full_store_is_a_one_line_store_error_and_keeps_what_it_had(tmp_path):
    with tmpfs(tmp_path / "disk", "256k") as disk:
        store = Store(str(disk / "store.sqlite"))
        store.create_run("r1", "hosts.yaml", {})
        store.add_job("r1", "j", "h", "cpu", {})
        store.start_job("r1", "j")
        fill(disk)
        with pytest.raises(StoreError) as full:
            store.put_result("r1", "j", {"figures": "x" * 300_000}, {})
        assert str(full.value) == "store %s cannot be written: database or disk is full" % store.path
        (job,) = store.jobs("r1")
        assert job["state"] == "RUNNING" and store.results("r1") == {}
        store.close()


@pytest.mark.docker
@pytest.mark.slow
def test_a_store_that_fills_mid_run_stops_it_and_resume_runs_the_unrecorded_job_again(
    tmp_path, cpu_image, cpu_sdk_dir, base_image
):
    with tmpfs(tmp_path / "disk", "2m") as disk:
        path = one_job_cluster(
            tmp_path, base_image, cpu_sdk_dir, store=str(disk / "store.sqlite"), cases=[HELD]
        )
        proc = start_orchestrator("run", "--cluster", str(path))
        try:
            _wait_for("the run", lambda: "RUNNING" in _states(disk / "store.sqlite").values(), proc)
            run_id = only_run(disk / "store.sqlite")["run_id"]
            job_dir = tmp_path / "results" / run_id / "here.d0.resnet50.pytorch.fp32.bs4"
            _wait_for("the job to hold", lambda: _holding(job_dir / "runner.log"), proc)
            filler = fill(disk)
            release(tmp_path / "work", run_id, job_dir.name)  # it finishes with the store's disk full
            out, err = proc.communicate(timeout=600)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                proc.communicate(timeout=120)
        assert proc.returncode == 2, err[-3000:]
        assert "Traceback" not in err and "cannot rollback" not in err
        (line,) = [line for line in err.splitlines() if line.startswith("error: ")]
        assert "store %s cannot be written: database or disk is full" % (disk / "store.sqlite") in line
        assert "--resume" in line
        result = tmp_path / "results" / run_id / "here.d0.resnet50.pytorch.fp32.bs4" / "result.json"
        assert result.is_file()  # fetched, not stored
        filler.unlink()

        done = orchestrator("run", "--resume", run_id, "--store", str(disk / "store.sqlite"), timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        (job,) = Store(str(disk / "store.sqlite")).jobs(run_id)
        assert job["state"] == JobState.OK
        # the fetched file could not be recorded in the full store (its sha256, before it is read): it is not
        # taken as this orchestrator's, the job runs again
        assert (result.parent / "runner.1.log").exists()
        stored = Store(str(disk / "store.sqlite")).results(run_id)[job["job_id"]]["result"]
        assert stored == json.loads(result.read_text())


def test_ls_tells_a_running_run_from_one_no_orchestrator_holds(tmp_path):
    store = a_store(tmp_path / "store.sqlite")  # run r1 is RUNNING, as a killed orchestrator leaves it
    listed = orchestrator("ls", "--store", str(store), timeout=60)
    assert "RUNNING, no orchestrator left: --resume it" in listed.stdout.replace("\n", " "), listed.stdout
    with runlock.held(str(store), "r1"):
        listed = orchestrator("ls", "--store", str(store), timeout=60)
    assert "RUNNING" in listed.stdout and "no orchestrator" not in listed.stdout
