"""Issue 18, item 1: a workdir another local user prepared is refused, by ``run`` and by ``doctor``.

The attack, as a second uid on this machine (a throw-away system user made here): in a sticky,
world-writable folder (as /var/tmp is) it makes the workdir before root's run does, with a ``runs/``
holding a forged result.json, or a ``runs`` link to its own folder. Root's run must refuse the workdir
before it starts a container or stores anything, with one line that names the owner and the fix, and
``doctor`` must fail the workdir check with that fix.
"""

import json
import pwd
import shutil
import stat
import subprocess
import uuid
from pathlib import Path

import pytest

from orchestrator.config.load import load_cluster
from orchestrator.host import doctor
from orchestrator.host import workdir as workdirs
from orchestrator.model.cluster import Defaults
from orchestrator.transport.local import LocalTransport
from tests.test_faults import local_entry, orchestrator, write_cluster
from vendors.cpu import VENDOR as CPU

TIMEOUT = 20.0


@pytest.fixture(scope="module")
def stranger():
    """(uid, gid) of a second local user, made for this module and removed after it."""
    name = "rn50x" + uuid.uuid4().hex[:8]
    argv = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name]
    subprocess.run(argv, check=True)
    try:
        entry = pwd.getpwnam(name)
        yield entry.pw_uid, entry.pw_gid
    finally:
        subprocess.run(["userdel", name], check=False)


@pytest.fixture
def sticky_dir():
    """A root-owned, sticky, world-writable folder like /var/tmp (tmp_path's parents are root's alone)."""
    path = Path("/var/tmp") / ("rn50bench-hostile-" + uuid.uuid4().hex[:8])
    path.mkdir()
    path.chmod(0o1777)
    try:
        yield path
    finally:
        shutil.rmtree(str(path), ignore_errors=True)


def as_user(ids, *argv: str) -> None:
    """Run ``argv`` as the stranger (its uid and gid, no supplementary groups)."""
    uid, gid = ids
    subprocess.run(list(argv), user=uid, group=gid, extra_groups=[], check=True, cwd="/")


def plant_forgery(ids, workdir: Path) -> Path:
    """What the stranger leaves: its own workdir, world-writable, with a forged result in runs/."""
    forged = workdir / "runs" / "some-run" / "some-job"
    as_user(ids, "mkdir", "-p", "-m", "777", str(forged))
    as_user(ids, "chmod", "777", str(workdir))
    doc = {"status": "ok", "stages": {"infer": {"throughput_core_img_per_s": 123456.7}}}
    as_user(ids, "python3", "-c", "import sys; open(sys.argv[1], 'w').write(sys.argv[2])",
            str(forged / "result.json"), json.dumps(doc))  # fmt: skip
    return forged


def test_the_default_workdir_is_no_shared_temporary_folder():
    assert Defaults().workdir is None
    assert workdirs.default_workdir(LocalTransport(), TIMEOUT) == "/var/lib/rn50bench"  # root's


def test_a_missing_workdir_is_made_0700_under_a_sticky_folder(sticky_dir):
    path = sticky_dir / "mine" / "work"
    assert workdirs.secure(LocalTransport(), str(path), TIMEOUT) == str(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o700


def test_a_workdir_owned_by_another_user_is_refused_with_the_fix(stranger, sticky_dir):
    workdir = sticky_dir / "rn50bench"
    plant_forgery(stranger, workdir)
    with pytest.raises(workdirs.WorkdirRefused) as refused:
        workdirs.secure(LocalTransport(), str(workdir), TIMEOUT)
    message = str(refused.value)
    assert "\n" not in message
    assert "%s is owned by uid %d, not by root" % (workdir, stranger[0]) in message
    assert "fix: remove %s" % workdir in message


def test_a_runs_link_to_another_users_folder_is_refused(stranger, sticky_dir):
    theirs = sticky_dir / "theirs"
    as_user(stranger, "mkdir", "-m", "777", str(theirs))
    workdir = sticky_dir / "mine"
    workdir.mkdir(mode=0o700)
    (workdir / "runs").symlink_to(theirs)
    with pytest.raises(workdirs.WorkdirRefused, match="%s is a symbolic link" % (workdir / "runs")):
        workdirs.secure(LocalTransport(), str(workdir), TIMEOUT)


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o1777])
def test_a_workdir_others_can_write_in_is_refused(sticky_dir, mode):
    workdir = sticky_dir / "open"
    workdir.mkdir()
    workdir.chmod(mode)
    with pytest.raises(workdirs.WorkdirRefused, match="%s is writable by" % workdir):
        workdirs.secure(LocalTransport(), str(workdir), TIMEOUT)


def test_a_parent_others_can_rename_in_is_refused(sticky_dir):
    parent = sticky_dir / "open-parent"
    parent.mkdir()
    parent.chmod(0o777)  # not sticky: anyone may rename our workdir away and put theirs in its place
    with pytest.raises(workdirs.WorkdirRefused, match="%s is writable by others" % parent):
        workdirs.secure(LocalTransport(), str(parent / "work"), TIMEOUT)


@pytest.mark.docker
def test_run_and_doctor_refuse_the_attacked_workdir(tmp_path, stranger, sticky_dir, docker_engine):
    workdir = sticky_dir / "rn50bench"
    forged = plant_forgery(stranger, workdir)
    data = tmp_path / "val"
    data.mkdir()
    path = write_cluster(tmp_path / "hosts.yaml", tmp_path, [local_entry("here", data, workdir, {})])

    done = orchestrator("run", "--cluster", str(path), timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    reason = [line for line in done.stderr.splitlines() if line.startswith("error: job here.")]
    assert len(reason) == 1 and ": FAILED_START: workdir %s refused: " % workdir in reason[0]
    assert "owned by uid %d" % stranger[0] in reason[0] and "fix: remove" in reason[0]
    assert (forged / "result.json").is_file() and not (workdir / "cache").exists()  # nothing made there

    done = orchestrator("doctor", "--cluster", str(path), "--no-checksums", timeout=120)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    (fail,) = [i for i, line in enumerate(lines) if line.startswith("FAIL here / workdir:")]
    assert "owned by uid %d" % stranger[0] in lines[fail]
    assert lines[fail + 1].strip().startswith("fix: remove %s" % workdir)


def test_doctor_fails_an_unwritable_workdir_instead_of_reporting_its_space(tmp_path):
    data = tmp_path / "val"
    data.mkdir()
    path = write_cluster(
        tmp_path / "hosts.yaml", tmp_path, [local_entry("here", data, Path("/proc/rn50bench"), {})]
    )
    cluster = load_cluster(path)
    probe = doctor._HostProbe(cluster, cluster.hosts[0], CPU, doctor.Limits(), LocalTransport(), TIMEOUT)
    check = probe.workdir()
    assert (check.status, check.summary) == (doctor.FAIL, "not writable"), check
    assert "no file can be written in /proc" in check.detail
