"""Issue 27, B (items 6-10): every path the orchestrator runs from or writes has an owner -- the run's user or
root, writable by no one else, no link -- and every id that names a path is checked.

Real parts: a second local uid (made with useradd, shared with test_hostile_workdir), real bare jobs on the
CPU (this interpreter, with torch, as the bare host's Python), tmpfs mounts for a full disk.
"""

import contextlib
import hashlib
import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from orchestrator.config.load import load_checked
from orchestrator.host import workdir as workdirs
from orchestrator.job.plan import expand
from orchestrator.run import lock as runlock
from orchestrator.store import Store, StoreError
from orchestrator.transport.local import LocalTransport
from runner_in_container.data.generate import generate
from tests.test_faults import CASE, HELD, REPO, _holding, _states, _wait_for, release, write_cluster
from tests.test_hostile_store import fill, one_error_line, tmpfs
from tests.test_hostile_workdir import as_user, sticky_dir, stranger  # noqa: F401 - fixtures

TIMEOUT = 20.0
JOB = "here.d0.resnet50.pytorch.fp32.bs4"
#: what a planted module does when it is imported: leave this file (its path in the environment)
PLANTED = "import os\nopen(os.environ['RN50_PLANTED_MARK'], 'w').write(__name__)\n"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """4 generated images: one batch of 4."""
    return Path(generate(str(tmp_path_factory.mktemp("paths-data") / "set"), images=4, layout="imagefolder"))


def bare_entry(data: Path, workdir: Path, **extra: Any) -> Dict[str, Any]:
    """A bare CPU host on this machine: this interpreter (with torch) runs the installed runner."""
    entry = {
        "name": "here",
        "address": "local",
        "vendor": "cpu",
        "runtime": "bare",
        "python": sys.executable,
        "workdir": str(workdir),
        "workers": 2,
        "data": {"path": str(data)},
        "weights": "random",
    }
    entry.update(extra)
    return entry


def bare_cluster(tmp_path: Path, data: Path, cases: List[Dict[str, Any]] = (CASE,), **entry: Any) -> Path:
    return write_cluster(
        tmp_path / "hosts.yaml", tmp_path, [bare_entry(data, tmp_path / "work", **entry)], cases=list(cases)
    )


def orchestrator_in(
    cwd: Path, *args: str, mark: Optional[Path] = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """``python -m orchestrator ARGS`` started in ``cwd`` (``-P``: the orchestrator itself imports nothing
    from there; what it starts gets no such flag), with the planted modules' ``mark`` file in its
    environment."""
    return subprocess.run(
        [sys.executable, "-P", "-m", "orchestrator", *args],
        cwd=str(cwd),
        env=dict(os.environ, PYTHONPATH=str(REPO), RN50_PLANTED_MARK=str(mark or cwd / "planted-ran")),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def stored(store: Path) -> Dict[str, Dict[str, Any]]:
    """job id -> its row in the store, with its result (None when none)."""
    db = Store(str(store))
    (run,) = db.runs()
    results = db.results(run["run_id"])
    return {
        job["job_id"]: dict(job, run_id=run["run_id"], result=results.get(job["job_id"], {}).get("result"))
        for job in db.jobs(run["run_id"])
    }


def core_throughput(result: Dict[str, Any]) -> float:
    return result["stages"]["infer"]["throughput_core_img_per_s"]


# -- item 6: the bare runner imports only the installed copy -------------------------------------------
def plant_modules(ids, folder: Path) -> None:
    """The stranger's folder, with a runner_in_container package, a runpy and a torch of its own."""
    as_user(ids, "mkdir", "-m", "755", str(folder))
    for rel in ("runner_in_container/__init__.py", "runner_in_container/__main__.py", "runpy.py",
                "torch/__init__.py", "platform.py"):  # fmt: skip
        as_user(ids, "mkdir", "-p", str((folder / rel).parent))
        as_user(ids, "python3", "-c", "import sys; open(sys.argv[1], 'w').write(sys.argv[2])",
                str(folder / rel), PLANTED)  # fmt: skip


@pytest.mark.slow
def test_a_runner_planted_in_the_current_folder_is_not_imported(tmp_path, tiny, stranger, sticky_dir):  # noqa: F811
    theirs = sticky_dir / "theirs"
    plant_modules(stranger, theirs)
    mark = tmp_path / "planted-ran"
    path = bare_cluster(tmp_path, tiny)
    done = orchestrator_in(theirs, "run", "--cluster", str(path), mark=mark)
    assert not mark.exists(), "a planted module ran: %s" % mark.read_text()
    assert done.returncode == 0, done.stderr[-3000:]
    assert stored(tmp_path / "store.sqlite")[JOB]["state"] == "OK"

    done = orchestrator_in(theirs, "doctor", "--cluster", str(path), "--no-checksums", mark=mark, timeout=300)
    assert not mark.exists(), "doctor's probe imported a planted module"
    assert "all checks pass" in done.stdout and "torch" in done.stdout, done.stdout[-3000:]  # the probe ran


# -- item 7: the store, its folder, the lock folder and results_dir are the run user's ------------------
@pytest.mark.parametrize("what", ["folder", "store", "results_dir"])
def test_a_store_or_results_dir_another_uid_can_write_is_refused(tmp_path, tiny, stranger, what):  # noqa: F811
    path = bare_cluster(tmp_path, tiny)
    store, results = tmp_path / "store.sqlite", tmp_path / "results"
    Store(str(store)).close()
    results.mkdir()
    owned = {"folder": tmp_path, "store": store, "results_dir": results}[what]
    os.chown(str(owned), *stranger)
    line = one_error_line(orchestrator_in(tmp_path, "run", "--cluster", str(path)))
    assert "%s is owned by uid %d" % (owned, stranger[0]) in line and "; fix: " in line, line
    assert not (tmp_path / "work").exists()


def test_a_world_writable_lock_folder_is_refused(tmp_path):
    store = tmp_path / "store.sqlite"
    Store(str(store)).close()
    locks = Path(str(store) + "-locks")
    locks.mkdir(mode=0o777)
    locks.chmod(0o1777)  # sticky or not: others could put their own lock file (a link) there
    with pytest.raises(runlock.RunLocked, match="run lock folder %s refused: %s is writable by others" % (
            locks, locks)):  # fmt: skip
        with runlock.held(str(store), "r1"):
            pass


def stored_run(cluster: Path) -> str:
    """A run of ``cluster`` in its store, as a killed orchestrator leaves it; its id."""
    loaded, known = load_checked(str(cluster))
    jobs, _ = expand(loaded, known)
    store = Store(loaded.store)
    store.create_run("r1", str(cluster), loaded.model_dump(mode="json"))
    for job in jobs:
        store.add_job("r1", job.job_id, job.host, "cpu", job.as_dict())
    store.close()
    return "r1"


@pytest.mark.slow
def test_a_resume_runs_no_host_that_the_store_was_edited_to(tmp_path, tiny):
    path = bare_cluster(tmp_path, tiny)
    run_id = stored_run(path)
    mark = tmp_path / "evil-ran"
    evil = tmp_path / "evil.sh"
    evil.write_text("#!/bin/sh\necho pwned > %s\n" % mark)
    evil.chmod(0o755)
    store = tmp_path / "store.sqlite"
    with sqlite3.connect(str(store)) as db:
        (text,) = db.execute("SELECT cluster_json FROM runs").fetchone()
        cluster = json.loads(text)
        cluster["hosts"][0]["python"] = str(evil)
        db.execute("UPDATE runs SET cluster_json = ?", (json.dumps(cluster),))

    line = one_error_line(
        orchestrator_in(tmp_path, "run", "--resume", run_id, "--store", str(store), mark=mark)
    )
    assert "the store's cluster differs from its cluster file %s at hosts[0].python" % path in line, line
    assert "resume with --cluster %s" % path in line and not mark.exists()

    done = orchestrator_in(tmp_path, "run", "--resume", run_id, "--cluster", str(path), mark=mark)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "host here at local: bare, python %s" % sys.executable in done.stdout.replace("\n", " ")
    assert not mark.exists() and stored(store)[JOB]["state"] == "OK"


def test_a_resume_from_the_store_refuses_a_cluster_file_of_another_uid(tmp_path, tiny, stranger):  # noqa: F811
    (tmp_path / "conf").mkdir()
    path = write_cluster(tmp_path / "conf" / "hosts.yaml", tmp_path, [bare_entry(tiny, tmp_path / "work")])
    run_id = stored_run(path)
    os.chown(str(path), *stranger)  # they could make it say what they edited the store to
    refused = orchestrator_in(tmp_path, "run", "--resume", run_id, "--store", str(tmp_path / "store.sqlite"))
    line = one_error_line(refused)
    assert "its cluster file %s refused: %s is owned by uid %d" % (path, path, stranger[0]) in line, line
    assert not (tmp_path / "work").exists()


# -- item 8: a result file is taken on resume only if this orchestrator fetched it ----------------------
@pytest.fixture(scope="module")
def real_result(tmp_path_factory, tiny) -> Dict[str, Any]:
    """The result.json of one real bare job: what a forger copies."""
    tmp = tmp_path_factory.mktemp("paths-real")
    done = orchestrator_in(tmp, "run", "--cluster", str(bare_cluster(tmp, tiny)))
    assert done.returncode == 0, done.stderr[-3000:]
    return stored(tmp / "store.sqlite")[JOB]["result"]


def processes_naming(text: str) -> List[int]:
    """PIDs of the processes whose command line contains ``text`` (a path unique to one test)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text.encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            pass
    return pids


def end_orphans(text: str) -> None:
    """Stop the runners that a killed orchestrator left (their command names ``text``), by their PIDs."""
    for pid in processes_naming(text):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while processes_naming(text) and time.monotonic() < deadline:
        time.sleep(0.1)


@pytest.mark.slow
def test_a_result_planted_after_a_kill_is_not_stored(tmp_path, tiny, real_result):
    path = bare_cluster(tmp_path, tiny, cases=[HELD])
    store = tmp_path / "store.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "run", "--cluster", str(path)],
        cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _wait_for("the run", lambda: "RUNNING" in _states(store).values(), proc)
        (run,) = Store(str(store)).runs()
        job_dir = tmp_path / "results" / run["run_id"] / JOB
        _wait_for("the job to hold", lambda: _holding(job_dir / "runner.log"), proc)
    finally:
        proc.kill()  # kill -9
        proc.communicate(timeout=60)
        end_orphans(str(tmp_path / "work"))
    forged = json.loads(json.dumps(real_result))
    forged["stages"]["infer"]["throughput_core_img_per_s"] = 123456.7
    (job_dir / "result.json").write_text(json.dumps(forged))  # valid in every field but its origin
    release(tmp_path / "work", run["run_id"], JOB)  # the job, run again, holds no more

    done = orchestrator_in(
        tmp_path, "run", "--resume", run["run_id"], "--store", str(store), mark=tmp_path / "m"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    job = stored(store)[JOB]
    assert job["state"] == "OK" and core_throughput(job["result"]) != 123456.7
    assert (job_dir / "runner.1.log").is_file()  # the job ran again
    fetched = hashlib.sha256((job_dir / "result.json").read_bytes()).hexdigest()
    assert Store(str(store)).fetched(run["run_id"], JOB) == fetched


# -- item 9: nothing at or below the workdir is writable by others, or a link ---------------------------
@pytest.mark.parametrize("child", ["runner", "cache"])
def test_a_sticky_world_writable_child_of_the_workdir_is_refused(stranger, sticky_dir, child):  # noqa: F811
    workdir = sticky_dir / "mine"
    (workdir / child).mkdir(parents=True)
    workdir.chmod(0o755)
    (workdir / child).chmod(0o1777)
    as_user(stranger, "mkdir", str(workdir / child / "0123abcd"))  # their runner or engines, in our folder
    with pytest.raises(workdirs.WorkdirRefused, match="%s is writable by others" % (workdir / child)):
        workdirs.secure(LocalTransport(), str(workdir), TIMEOUT)


def test_a_link_deep_in_the_workdir_is_refused(sticky_dir):  # noqa: F811
    workdir = sticky_dir / "mine"
    (workdir / "cache").mkdir(parents=True, mode=0o700)
    (workdir / "cache" / "cpu").symlink_to("/etc")
    with pytest.raises(workdirs.WorkdirRefused, match="%s is a symbolic link" % (workdir / "cache" / "cpu")):
        workdirs.secure(LocalTransport(), str(workdir), TIMEOUT)


# -- item 10: ids, a new store made twice at once, a full disk at the lock -----------------------------
def test_a_run_id_that_names_a_path_is_refused_in_one_line(tmp_path):
    store = tmp_path / "deep" / "er" / "store.sqlite"
    Store(str(store)).close()
    with sqlite3.connect(str(store)) as db:
        db.execute(
            "INSERT INTO runs (run_id, created_at, state, cluster_path, cluster_json) VALUES (?, 0, ?, ?, ?)",
            ("../../x", "RUNNING", "hosts.yaml", "{}"),
        )
    before = sorted(os.listdir(str(tmp_path)))
    done = orchestrator_in(tmp_path, "run", "--resume", "../../x", "--store", str(store))
    assert "run id '../../x' is not one" in one_error_line(done)
    assert sorted(os.listdir(str(tmp_path))) == before and not (tmp_path / "deep" / "x.lock").exists()
    listed = orchestrator_in(tmp_path, "ls", "--store", str(store))
    assert listed.returncode == 0 and "../../x" in listed.stdout, listed.stderr
    with pytest.raises(StoreError, match="run id '../x' is not one"):
        Store(str(store)).create_run("../x", "hosts.yaml", {})


def _open_and_add(path: str, index: int, barrier: Any) -> None:
    barrier.wait()
    store = Store(path)
    store.create_run("r%d" % index, "hosts.yaml", {})
    store.close()


def test_runs_making_one_new_store_at_once_all_find_it_whole(tmp_path):
    context = multiprocessing.get_context("fork")
    for attempt in range(16):  # the old code lost about one in 30
        path = str(tmp_path / ("store%d.sqlite" % attempt))
        barrier = context.Barrier(4)
        procs = [context.Process(target=_open_and_add, args=(path, i, barrier)) for i in range(4)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(60)
        assert [proc.exitcode for proc in procs] == [0, 0, 0, 0], "attempt %d" % attempt
        assert len(Store(path).runs()) == 4
        assert oct(os.stat(path).st_mode & 0o777) == oct(0o600)


def test_a_full_disk_at_the_run_lock_is_one_line(tmp_path):
    with tmpfs(tmp_path / "disk", "512k") as disk:
        store = disk / "store.sqlite"
        Store(str(store)).close()
        fill(disk)
        with pytest.raises(runlock.RunLocked) as refused:
            with runlock.held(str(store), "r1"):
                pass
        message = str(refused.value)
        assert (
            "\n" not in message and message.startswith("cannot lock run r1: ") and "No space left" in message
        )
