"""orchestrator/host/mps.py over a real local transport. There is no GPU here: ``nvidia-smi`` and
``nvidia-cuda-mps-control`` are small scripts on PATH that answer as the real ones do for the cases
below and log how they were called (the control program's daemon is a pipe file it makes and removes)."""

import os
import stat
from pathlib import Path

import pytest

from orchestrator.host import mps
from orchestrator.transport.local import LocalTransport

SMI = """#!/bin/sh
case "$*" in
  *compute_mode*) echo "${FAKE_MODE:-Default}" ;;
  *compute-apps*) printf '%s' "${FAKE_APPS:-}" ;;
esac
"""
CONTROL = """#!/bin/sh
echo "$CUDA_VISIBLE_DEVICES $CUDA_MPS_PIPE_DIRECTORY $*" >> "$FAKE_LOG"
if [ "$1" = "-d" ]; then
  [ -n "$FAKE_START_FAILS" ] && { echo "cannot start" >&2; exit 1; }
  touch "$CUDA_MPS_PIPE_DIRECTORY/control"; exit 0
fi
read command; echo "stdin $command" >> "$FAKE_LOG"; rm -f "$CUDA_MPS_PIPE_DIRECTORY/control"
"""


@pytest.fixture
def host(tmp_path, monkeypatch):
    monkeypatch.setattr(mps, "FOLDER_ROOT", str(tmp_path))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in ((mps.NVIDIA_SMI, SMI), (mps.CONTROL, CONTROL)):
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", "%s:%s" % (bin_dir, os.environ["PATH"]))
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "log"))
    return tmp_path


def _log(host: Path):
    path = host / "log"
    return path.read_text().splitlines() if path.exists() else []


def test_auto_starts_a_daemon_of_the_jobs_own_and_quits_it(host):
    with mps.job_sharing(LocalTransport(), "auto", str(host / "lab"), True, 3, "run1") as sharing:
        pipe = str(host / "rn50bench-mps-run1-d3" / "pipe")
        assert sharing.pipe == pipe and "of the job's own" in sharing.note
        assert os.path.exists(os.path.join(pipe, "control"))
    assert _log(host) == ["3 %s -d" % pipe, "3 %s " % pipe, "stdin quit"]
    assert not (host / "rn50bench-mps-run1-d3").exists()  # quit, its folder removed


def test_the_daemon_is_quit_when_the_job_fails(host):
    with pytest.raises(RuntimeError, match="the runner broke"):
        with mps.job_sharing(LocalTransport(), "auto", str(host / "lab"), True, 0, "run1"):
            raise RuntimeError("the runner broke")
    assert _log(host)[-1] == "stdin quit"


@pytest.mark.parametrize(
    "env, reason",
    [
        ({"FAKE_MODE": "Prohibited"}, "GPU 1 is in compute mode Prohibited (MPS needs Default here)"),
        ({"FAKE_APPS": "4242\n4343\n"}, "other processes run on GPU 1 (pids 4242, 4343)"),
        ({"FAKE_START_FAILS": "1"}, "nvidia-cuda-mps-control -d failed: env exited 1: cannot start"),
    ],
)
def test_auto_leaves_mps_off_and_says_why(host, monkeypatch, env, reason):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with mps.job_sharing(LocalTransport(), "auto", str(host / "lab"), True, 1, "run1") as sharing:
        assert sharing.pipe is None and sharing.note == "auto: no MPS daemon, " + reason
    assert "stdin quit" not in _log(host)


def test_the_labs_own_daemon_is_joined_and_left_running(host):
    lab = host / "lab"
    lab.mkdir()
    (lab / "control").touch()
    for mode in ("auto", True):
        with mps.job_sharing(LocalTransport(), mode, str(lab), True, 0, "run1") as sharing:
            assert sharing.pipe == str(lab) and sharing.note.startswith("the host's MPS daemon")
    assert _log(host) == [] and (lab / "control").exists()


@pytest.mark.parametrize("mode, nvidia", [(False, True), ("auto", False)])
def test_off_and_other_vendors_share_nothing(host, mode, nvidia):
    with mps.job_sharing(LocalTransport(), mode, str(host / "lab"), nvidia, 0, "run1") as sharing:
        assert sharing == mps.Sharing(None, "off")
    assert _log(host) == []
