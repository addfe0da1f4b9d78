"""Issue 27, items 1, 2 and 5: what a job hands back is untrusted input.

A hostile runner (tests/hostile/runner.py, on a bare host or as the hostile image's ``python3``) makes its
result.json a link to a root-only file or to /dev/zero, a FIFO or 2 GiB; prints a 512 MiB line or three
million events; sends events of the wrong shape; forks a child that keeps its output open. Each attack
ends the job with one line and the right state, the run with exit status 1 and no traceback; nothing of
the secret reaches results_dir, no ``.part`` is left, what results_dir holds is 0600, and the
orchestrator's memory stays bounded.
"""

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from orchestrator.host.monitor import Monitor
from orchestrator.job.collect import MAX_RESULT_BYTES
from orchestrator.job.runner_output import EVENT_BURST, RunnerOutcome, show_event
from orchestrator.safeio.logs import MAX_LOG_BYTES, LogFile
from orchestrator.transport.local import LocalTransport
from runner_in_container.protocol import METRIC_VERSION, RESULT_FILE
from tests.test_faults import REPO, ssh_entry
from tests.test_transport_local import read_pid, wait_gone
from vendors.cpu import VENDOR as CPU

SECRET = "root-only secret 7f3a\n"


def _failed_doc() -> Dict[str, Any]:
    """A real runner's document (tests/data), failed in the infer stage by the stand-in."""
    doc = json.loads((REPO / "tests" / "data" / "result_cpu_ok.json").read_text())
    doc.update(status="failed", metric_version=METRIC_VERSION)
    message = "the stand-in's own failure"
    doc["error"] = {"stage": "infer", "step": None, "type": "Planted", "message": message, "traceback": ""}
    return doc


#: what the stand-in writes as result.json when it is to fail as a runner fails, and the job's reason then
FAILED = {"doc": _failed_doc()}
FAILED_REASON = "infer: Planted: the stand-in's own failure"
#: the orchestrator run under a probe that prints its peak resident memory at exit
PEAK = (
    "import atexit, re, runpy, sys\n"  # VmHWM: this process's own peak (ru_maxrss keeps the forking parent's)
    "atexit.register(lambda: sys.stderr.write('peak_rss_kib=%s\\n'"
    " % re.search(r'VmHWM:\\s*(\\d+)', open('/proc/self/status').read()).group(1)))\n"
    "sys.argv[0] = 'orchestrator'\n"
    "runpy.run_module('orchestrator', run_name='__main__', alter_sys=True)\n"
)


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A root-only file, as /etc/shadow is."""
    path = tmp_path / "shadow"
    path.write_text(SECRET)
    path.chmod(0o600)
    return path


def run_with_peak(job, timeout: float = 600) -> Tuple[subprocess.CompletedProcess, int]:
    """``orchestrator run`` of ``job`` and its peak resident memory in MiB."""
    done = subprocess.run(
        [sys.executable, "-c", PEAK, "run", "--cluster", str(job.cluster)],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    peak = re.search(r"peak_rss_kib=(\d+)", done.stderr)
    assert peak, done.stderr[-2000:]
    return done, int(peak.group(1)) // 1024


def ended(job, done: subprocess.CompletedProcess, state: str, reason: str) -> Dict[str, Any]:
    """The job ended in ``state`` with a one-line reason matching ``reason``; the run exited 1 saying so."""
    row = job.job()
    assert (row["state"], done.returncode) == (state, 1), (row["reason"], done.stderr[-2000:])
    assert re.search(reason, row["reason"]) and "\n" not in row["reason"], row["reason"]
    assert "Traceback" not in done.stderr
    assert "%s: %s" % (state, row["reason"]) in " ".join(done.stderr.split())
    return row


def results_files(job) -> List[Path]:
    return [path for path in job.results.rglob("*") if not path.is_dir()]


def nothing_leaked(job) -> None:
    """No file in results_dir holds the secret, none is a ``.part``, every one is 0600 and no link."""
    files = results_files(job)
    assert files, "results_dir holds nothing at all"
    for path in files:
        assert not path.is_symlink(), path
        assert SECRET.strip().encode() not in path.read_bytes(), path
        assert not path.name.endswith(".part"), path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def job_folder(job, row: Dict[str, Any]) -> Path:
    """The job's folder on the host (here: this machine)."""
    return job.workdir / "runs" / row["run_id"] / row["job_id"]


# -- result.json ------------------------------------------------------------------------------------------
def test_a_result_linked_to_a_root_only_file_is_not_fetched(hostile_job, secret):
    job = hostile_job({"mode": "result_symlink", "target": str(secret)})
    done = job.run()
    row = ended(job, done, "FAILED_COLLECT", r"result\.json not fetched: .* refused: a symbolic link")
    nothing_leaked(job)
    assert not (job.results / row["run_id"] / row["job_id"] / RESULT_FILE).exists()


@pytest.mark.docker
def test_a_container_linking_its_result_to_a_root_only_file_leaks_nothing(hostile_job, secret):
    job = hostile_job({"mode": "result_symlink", "target": str(secret)}, runtime="docker")
    done = job.run()
    ended(job, done, "FAILED_COLLECT", r"result\.json not fetched: .* refused: a symbolic link")
    nothing_leaked(job)  # build.log included


@pytest.mark.ssh
def test_an_ssh_host_linking_its_result_to_a_root_only_file_leaks_nothing(
    hostile_job, hostile_python, secret, ssh_host, tmp_path
):
    entry = ssh_entry("hostile", ssh_host, tmp_path / "unused", tmp_path / "unused", {})
    remote = {key: entry[key] for key in ("address", "port", "user", "key_file", "known_hosts")}
    job = hostile_job({"mode": "result_symlink", "target": str(secret)}, **remote)
    done = job.run()
    ended(job, done, "FAILED_COLLECT", r"result\.json not fetched: .* refused: a symbolic link")
    nothing_leaked(job)


@pytest.mark.parametrize(
    "spec, why",
    [
        ({"mode": "result_symlink", "target": "/dev/zero"}, "a symbolic link"),
        ({"mode": "result_fifo"}, "not a regular file"),
        ({"mode": "big_result", "size": MAX_RESULT_BYTES + 1}, "larger than 4 MiB"),
        ({"mode": "big_result", "size": 2 << 30}, "larger than 4 MiB"),  # sparse: costs no disk
    ],
    ids=["link-to-dev-zero", "fifo", "just-too-large", "2GiB"],
)
def test_a_result_that_is_no_small_regular_file_is_refused_at_once(hostile_job, spec, why):
    job = hostile_job(spec)
    done, peak_mib = run_with_peak(job)
    row = ended(job, done, "FAILED_COLLECT", r"result\.json not fetched: .* refused: " + why)
    assert row["timings"]["job_s"] < 60  # refused at once, not copied until timeouts.collect (300 s)
    assert peak_mib < 400
    nothing_leaked(job)


# -- the runner's output streams -------------------------------------------------------------------------
@pytest.mark.slow
def test_a_512_mib_line_is_cut(hostile_job):
    job = hostile_job(dict(FAILED, mode="long_line", size=512 << 20))
    done, peak_mib = run_with_peak(job)
    row = ended(job, done, "FAILED_RUN", FAILED_REASON)
    log = Path(row["log_path"]).read_text()
    assert "[line cut: %d more bytes dropped]" % ((512 << 20) - 64 * 1024) in log
    assert len(log) < 256 * 1024 and peak_mib < 400
    nothing_leaked(job)


@pytest.mark.slow
def test_three_million_events_are_counted_and_dropped(hostile_job):
    job = hostile_job(dict(FAILED, mode="event_flood", count=3_000_000))
    done, peak_mib = run_with_peak(job, timeout=300)  # it took 162 s before the events were bounded
    row = ended(job, done, "FAILED_RUN", FAILED_REASON)
    log = Path(row["log_path"]).read_bytes()
    assert log.count(b"more than 20 events a second from the runner") == 1
    assert log.endswith(b"[rn50bench: this log reached 32 MiB; the rest of the output is dropped]\n")
    assert MAX_LOG_BYTES - 200 < len(log) <= MAX_LOG_BYTES + 200
    assert peak_mib < 400
    nothing_leaked(job)


MALFORMED = [
    {"ev": "progress", "stage": ["a", "list"], "img_per_s": "fast", "images_done": {"x": 1}},
    {"ev": "metric", "stage": {"a": "dict"}, "throughput_core_img_per_s": "lots"},
    {"ev": "metric", "throughput_core_img_per_s": 1e400},  # JSON's way to say Infinity
    {"ev": "stage", "stage": "x" * 100000, "step": ["passes"]},
    {"ev": "stage", "stage": None, "step": "passes"},
    {"ev": "error", "stage": 7, "type": None},
    {"ev": "start", "extra": [[[[[]]]]]},
]


def test_malformed_events_do_not_fail_the_job(hostile_job):
    job = hostile_job(dict(FAILED, mode="bad_events", events=MALFORMED))
    ended(job, job.run(), "FAILED_RUN", "^" + FAILED_REASON + "$")
    nothing_leaked(job)


def test_malformed_events_are_shown_as_far_as_they_make_sense():
    shown: List[Dict[str, Any]] = []
    monitor = Monitor(LocalTransport(), CPU, 0, ["true"], 1.0)  # not started: its stage windows only
    for event in MALFORMED + [{"ev": "progress", "stage": "infer", "images_done": 3, "img_per_s": 12.6}]:
        show_event(event, monitor, lambda **fields: shown.append(fields))
    assert shown[0] == {"stage": "['a', 'list']", "note": "{'x': 1}/None"}
    assert shown[1] == {"stage": "{'a': 'dict'}", "note": ""}
    assert shown[3]["stage"] == "x" * 57 + "..." and len(shown[3]["note"]) <= 60
    assert list(monitor.windows) == ["None"]
    assert shown[-1] == {"stage": "infer", "note": "3/None 13 img/s"}


def test_events_beyond_the_rate_are_dropped_and_said_once():
    outcome, lines, seen = RunnerOutcome(), [], []
    handle = outcome.stdout_handler(_ListLog(lines), seen.append)
    for index in range(EVENT_BURST + 500):
        handle(json.dumps({"ev": "progress", "stage": "infer", "images_done": index}))
    handle("plain output is kept")
    assert len(seen) < EVENT_BURST + 50 and outcome.events.dropped == EVENT_BURST + 500 - len(seen)
    assert sum("events a second from the runner" in line for line in lines) == 1
    assert lines[-1] == "plain output is kept\n"


class _ListLog:
    def __init__(self, lines: List[str]) -> None:
        self.write = lines.append


# -- a runner that leaves a child behind -----------------------------------------------------------------
@pytest.mark.parametrize("runtime", ["bare", pytest.param("docker", marks=pytest.mark.docker)])
def test_a_child_holding_the_output_does_not_hold_the_job(hostile_job, runtime):
    job = hostile_job(dict(FAILED, mode="fork_holding_stdout", seconds=3600), runtime, timeouts={"run": 900})
    done = job.run(timeout=300)  # the job would wait for timeouts.run: 900 s
    row = ended(job, done, "FAILED_RUN", "^" + FAILED_REASON + "$")
    assert row["timings"]["runner_s"] < 60
    if runtime == "bare":  # in docker the child ends with its container
        assert wait_gone(read_pid(job_folder(job, row) / "child.pid")) == []
    nothing_leaked(job)


def test_logs_are_made_0600_capped_and_never_through_a_link(tmp_path):
    path = tmp_path / "build.log"
    path.write_text("earlier\n")
    os.chmod(path, 0o644)
    with LogFile(path, limit=20, append=True) as log:
        log.write("twelve bytes")
        log.write("more than the rest")
        log.write("dropped")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    notice = "[rn50bench: this log reached 20 bytes; the rest of the output is dropped]\n"
    assert path.read_text() == "earlier\ntwelve bytes" + notice
    link = tmp_path / "link.log"
    link.symlink_to(path)
    with pytest.raises(OSError):
        LogFile(link)
