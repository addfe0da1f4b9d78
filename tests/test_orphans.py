"""Issue 27, item 17, on a real dockerd: a job container outlives an orchestrator killed with SIGKILL; the
next ``doctor`` or ``run`` removes it, and only it: the containers of a live orchestrator, of another
control machine and containers without our label stay. Locally and over SSH (the host's transport).

The job holds in its container (``hold_until``) until the orchestrator is killed: the kill meets the
container running by construction.
"""

import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

from orchestrator.host import orphans
from orchestrator.transport import LocalTransport, make_transport
from tests.test_faults import containers_of, local_entry, orchestrator, write_cluster
from tests.test_hostile_signals import image, start_held_run, stop, tiny  # noqa: F401 (fixtures)


def gone_owner() -> str:
    """The identity label of an orchestrator on this machine that has ended (a process started and reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    here = orphans.Owner.parse(orphans.identity())
    assert here is not None
    return orphans.Owner(here.host, here.machine, here.boot, child.pid, "1").label()


def elsewhere_owner() -> str:
    """The identity label of an orchestrator on another control machine (cannot be checked from here)."""
    here = orphans.Owner.parse(orphans.identity())
    assert here is not None
    return orphans.Owner("other-control", "0" * 32, here.boot, 1, "1").label()


def create(base_image: str, owner: Optional[str], run=None) -> str:
    """A container (created, not started) labelled as a job container of ``owner``, or without labels."""
    name = "rn50bench-test-orphans-" + uuid.uuid4().hex[:8]
    labels: List[str] = []
    if owner is not None:
        labels = ["--label", "%s=r1" % orphans.RUN_LABEL, "--label", "%s=%s" % (orphans.OWNER_LABEL, owner)]
    argv = ["docker", "create", "--name", name, *labels, base_image, "true"]
    (run or LocalTransport().run)(argv, timeout=60).check()
    return name


def exists(name: str) -> bool:
    done = subprocess.run(["docker", "container", "inspect", name], capture_output=True, check=False)
    return done.returncode == 0


@pytest.fixture
def bystanders(base_image) -> Iterator[Dict[str, str]]:
    """Containers the sweep must leave: a live orchestrator's (this test's), another machine's, unlabelled."""
    names = {
        "live": create(base_image, orphans.identity()),
        "elsewhere": create(base_image, elsewhere_owner()),
        "unlabelled": create(base_image, None),
    }
    yield names
    subprocess.run(["docker", "rm", "--force", *names.values()], capture_output=True, check=False)


def killed_run(tmp_path: Path, tiny: Path, image: Dict[str, str]) -> str:  # noqa: F811
    """A run whose orchestrator was killed with SIGKILL while its job held: the run id (its container
    is left, running)."""
    proc, _, run_id = start_held_run(tmp_path, tiny, image)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert containers_of(run_id) != []  # what the issue found: it stays for good
    return run_id


@pytest.mark.docker
@pytest.mark.slow
def test_every_job_container_names_its_run_and_orchestrator(tmp_path, tiny, image):  # noqa: F811
    proc, _, run_id = start_held_run(tmp_path, tiny, image)
    try:
        (name,) = containers_of(run_id)
        template = '{{index .Config.Labels "%s"}} {{index .Config.Labels "%s"}}' % (
            orphans.RUN_LABEL,
            orphans.OWNER_LABEL,
        )
        done = subprocess.run(
            ["docker", "container", "inspect", "--format", template, name], capture_output=True, text=True
        )
        run, owner = done.stdout.split()
        assert run == run_id
        parsed = orphans.Owner.parse(owner)
        assert parsed is not None and parsed.pid == proc.pid and not orphans.is_gone(parsed)
    finally:
        stop(proc, signal.SIGINT)


@pytest.mark.docker
@pytest.mark.slow
def test_doctor_removes_the_container_of_a_killed_orchestrator_and_only_it(
    tmp_path,
    tiny,  # noqa: F811
    image,  # noqa: F811
    bystanders,
):
    run_id = killed_run(tmp_path, tiny, image)
    path = write_cluster(
        tmp_path / "doctor.yaml", tmp_path, [local_entry("here", tiny, tmp_path / "work", image)]
    )
    done = orchestrator("doctor", "--cluster", str(path), "--min-free-docker-gib", "0.01", timeout=300)
    note = "note here / docker: removed job containers whose orchestrator is gone: rn50bench-%s" % run_id
    assert note in done.stdout, done.stdout + done.stderr
    assert containers_of(run_id) == []
    assert all(exists(name) for name in bystanders.values()), bystanders


@pytest.mark.docker
@pytest.mark.slow
def test_the_next_run_removes_the_container_of_a_killed_orchestrator(
    tmp_path,
    tiny,  # noqa: F811
    image,  # noqa: F811
    bystanders,
):
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
    first = killed_run(tmp_path / "first", tiny, image)
    proc, _, second = start_held_run(tmp_path / "second", tiny, image)  # held: its host was prepared
    try:
        assert containers_of(first) == []
        assert containers_of(second) != []  # its own, of a live orchestrator
        assert all(exists(name) for name in bystanders.values()), bystanders
    finally:
        _, err = stop(proc, signal.SIGINT)
    assert "removed 1 job container(s) left by orchestrators that are gone: rn50bench-%s" % first in err


@pytest.mark.docker
@pytest.mark.ssh
def test_a_remote_host_is_swept_over_its_transport(ssh_host, base_image):
    with make_transport(**ssh_host.transport_kwargs()) as transport:
        orphan = create(base_image, gone_owner(), transport.run)
        live = create(base_image, orphans.identity(), transport.run)
        try:
            assert orphans.sweep(transport) == [orphan]
            assert not exists(orphan) and exists(live)  # one dockerd serves this machine and the sshd hosts
        finally:
            transport.run(["docker", "rm", "--force", orphan, live], timeout=60)


@pytest.mark.docker
def test_an_owner_label_that_names_no_orchestrator_is_left_alone(base_image):
    name = create(base_image, "not/an/identity")
    try:
        assert name not in orphans.sweep(LocalTransport())
        assert exists(name)
    finally:
        subprocess.run(["docker", "rm", "--force", name], capture_output=True, check=False)


def test_is_gone_only_for_a_process_of_this_machine_that_ended():
    assert orphans.is_gone(orphans.Owner.parse(gone_owner()))
    assert not orphans.is_gone(orphans.Owner.parse(orphans.identity()))
    assert not orphans.is_gone(orphans.Owner.parse(elsewhere_owner()))
    here = orphans.Owner.parse(orphans.identity())
    rebooted = orphans.Owner(here.host, here.machine, "another-boot", here.pid, here.start)
    assert orphans.is_gone(rebooted)
    reused = orphans.Owner(here.host, here.machine, here.boot, here.pid, str(int(here.start) + 1))
    assert orphans.is_gone(reused)  # the PID now belongs to a process that started later
