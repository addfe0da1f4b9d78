"""Issue 27, item 16: a vendor's SDK files are checked at ``plan`` and ``doctor`` (a regular file this
process can read, with its checksum), not 40 s into the run; a toolkit whose optional SDK file is absent is
skipped with the reason; doctor's image check says "unknown" where docker does not answer.

The CPU vendor's optional onnxruntime wheel stands for every SDK file: its place in image.sdk_dir holds
a FIFO, a folder, a broken link, other bytes, a file the run user cannot read, or nothing.
"""

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Dict, Iterator

import pytest

from orchestrator import cli
from orchestrator.config.load import load_cluster
from orchestrator.host import doctor
from orchestrator.transport.local import LocalTransport
from tests.test_faults import NO_DOCKERD, REPO, local_entry, orchestrator, write_cluster
from tests.test_hostile_workdir import stranger  # noqa: F401 (a fixture)
from vendors.cpu import ONNXRUNTIME_WHEEL
from vendors.cpu import VENDOR as CPU

ONNX_CASE = {"toolkit": ["pytorch", "onnxruntime"], "precision": "fp32", "batch_size": 4}


@pytest.fixture
def folder() -> Iterator[Path]:
    """A folder every user may read (pytest's tmp_path is root's alone), removed after."""
    path = Path("/var/tmp") / ("rn50bench-sdk-" + uuid.uuid4().hex[:8])
    path.mkdir(mode=0o755)
    try:
        yield path
    finally:
        shutil.rmtree(str(path), ignore_errors=True)


def cluster_with(folder: Path, make_wheel) -> Dict[str, Path]:
    """A cluster file of one local CPU host whose SDK folder holds what ``make_wheel(path)`` puts in the
    wheel's place (nothing if it does nothing), asking for pytorch and onnxruntime."""
    sdk = folder / "sdk"
    sdk.mkdir(mode=0o755)
    wheel = sdk / ONNXRUNTIME_WHEEL.name
    make_wheel(wheel)
    image = {"base_image": "local/debian:bookworm", "sdk_dir": str(sdk)}
    path = write_cluster(
        folder / "hosts.yaml", folder, [local_entry("here", folder, folder / "w", image)], cases=[ONNX_CASE]
    )
    path.chmod(0o644)
    return {"cluster": path, "wheel": wheel}


def fifo(path: Path) -> None:
    os.mkfifo(str(path))  # no writer: hashing it would wait for ever


def other_bytes(path: Path) -> None:
    path.write_bytes(b"not the wheel")


BROKEN = {
    "a FIFO": (fifo, "is not a regular file (vendor cpu needs the installer)"),
    "a folder": (lambda path: path.mkdir(), "is not a regular file (vendor cpu needs the installer)"),
    "a broken link": (lambda path: path.symlink_to(path.parent / "gone"), "not found (vendor cpu needs it)"),
    "other bytes": (other_bytes, ""),  # then ": sha256 X, expected Y"
}


@pytest.mark.parametrize("what", sorted(BROKEN))
def test_plan_refuses_a_broken_sdk_file_in_one_line(folder, what):
    make, said = BROKEN[what]
    paths = cluster_with(folder, make)
    done = orchestrator("plan", "--cluster", str(paths["cluster"]), timeout=60)
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(
        ("error: %s: hosts[0].image: SDK file %s %s" % (paths["cluster"], paths["wheel"], said)).strip()
    ), done.stderr


@pytest.mark.parametrize("what", sorted(BROKEN))
def test_doctor_fails_a_broken_sdk_file_with_the_fix(folder, what):
    make, said = BROKEN[what]
    paths = cluster_with(folder, make)
    cluster = load_cluster(paths["cluster"])
    probe = doctor._HostProbe(cluster, cluster.hosts[0], CPU, doctor.Limits(), LocalTransport(), 30.0)
    check = probe.image()
    assert (check.status, check.summary) == (doctor.FAIL, "inputs incomplete"), check
    assert check.detail.startswith(("SDK file %s %s" % (paths["wheel"], said)).strip())
    assert "image.sdk_dir" in check.fix


def test_an_sdk_file_the_run_user_cannot_read_is_refused_at_plan(folder, stranger):  # noqa: F811
    """``plan`` run by a second uid (a forked child that drops to it: the venv's interpreter lies under
    root's home) on a file only root can read."""

    def unreadable(path: Path) -> None:
        path.write_bytes(b"only root reads this")
        path.chmod(0o600)

    paths = cluster_with(folder, unreadable)
    uid, gid = stranger
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 99
        try:
            sys.stderr = open(write, "w")  # pytest's capture replaced the object, not the descriptor
            sys.stdout = open(os.devnull, "w")
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            status = cli.main(["plan", "--cluster", str(paths["cluster"])])
        finally:
            sys.stderr.flush()
            os._exit(status)
    os.close(write)
    with os.fdopen(read) as handle:
        err = handle.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 2, err
    assert err == "error: %s: hosts[0].image: SDK file %s cannot be read: Permission denied\n" % (
        paths["cluster"],
        paths["wheel"],
    )


def test_an_absent_optional_sdk_file_skips_its_toolkit_with_the_reason(folder):
    paths = cluster_with(folder, lambda path: None)
    done = orchestrator("plan", "--cluster", str(paths["cluster"]), timeout=60)
    assert done.returncode == 0, done.stderr
    reason = "toolkit onnxruntime needs SDK file %s in image.sdk_dir (%s), which lacks it" % (
        ONNXRUNTIME_WHEEL.name,
        paths["wheel"].parent,
    )
    assert "skipped resnet50 onnxruntime/fp32/bs4 on here: " + reason in " ".join(done.stdout.split())
    assert "here.d0.resnet50.pytorch.fp32.bs4" in done.stdout
    assert "onnxruntime-" not in done.stdout.split("rendered for here")[1]  # the Dockerfile has no wheel
    cluster = load_cluster(paths["cluster"])
    probe = doctor._HostProbe(cluster, cluster.hosts[0], CPU, doctor.Limits(), LocalTransport(), 30.0)
    check = probe.image()
    assert (check.status, check.summary, check.detail) == (doctor.WARN, "a toolkit will be skipped", reason)


@pytest.mark.docker
def test_doctor_with_docker_down_says_the_image_is_unknown(folder, cpu_sdk_dir):
    """docker down: DOCKER_HOST names a socket nobody listens on (the shared dockerd keeps running)."""
    paths = cluster_with(folder, lambda path: shutil.copy(str(cpu_sdk_dir / path.name), str(path)))
    env = dict(os.environ, DOCKER_HOST=NO_DOCKERD, COLUMNS="400")  # a table row on one line
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "doctor", "--cluster", str(paths["cluster"])],
        cwd=str(REPO), env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    out = " ".join(done.stdout.split())
    assert "FAIL here / docker: " in out and "fix: start the docker daemon" in out
    assert "pass rn50bench/cpu:" not in out
    assert "skip inputs complete; on the host: unknown (docker not reached)" in out
