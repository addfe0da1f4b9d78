"""A lab registry (``image.registry``) and the build lock across orchestrator processes, on a real dockerd and
a real registry (tests/fixtures/registry.py), with a tiny image rendered on the Debian base."""

import logging
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from bench.sshlab import SshHost
from orchestrator.host import images
from orchestrator.host import lock as hostlock
from orchestrator.host.images import ImageSpec, ensure_image, image_spec
from orchestrator.host.registry import remote_tag
from orchestrator.transport import TransportError, make_transport
from orchestrator.transport.local import LocalTransport
from tests.fixtures.registry import tags
from tests.test_images import _inspect, _rmi, _tiny_vendor, tiny_templates  # noqa: F401 - a fixture

BUILT_MARK = "runner-copied"  # the tiny image's RUN step prints it: a line of it means a build ran


@pytest.fixture
def tiny(base_image: str, tiny_templates: Path) -> Iterator[ImageSpec]:  # noqa: F811
    """A tiny image of its own (a fresh nonce, so a fresh content hash); removed afterwards."""
    spec = image_spec(_tiny_vendor("tiny.Dockerfile.j2"), {}, None, {})
    yield spec
    _rmi(spec.tag)


def repository(registry: str, spec: ImageSpec) -> str:
    """The repository ``spec`` has in ``registry`` (its path in the registry API)."""
    name = remote_tag(registry, spec.tag).split("/", 1)[1]
    return name.rsplit(":", 1)[0]


def local_tags(reference: str) -> List[str]:
    done = subprocess.run(
        ["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", reference],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.split()


def warnings_of(caplog: pytest.LogCaptureFixture) -> List[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.docker
@pytest.mark.ssh
def test_built_once_pushed_then_pulled_by_another_host(
    tiny: ImageSpec, lab_registry: str, ssh_host: SshHost, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = f"{lab_registry}/lab-{uuid.uuid4().hex[:6]}"  # host:port/prefix
    lines: List[str] = []
    notes: List[str] = []
    how = ensure_image(LocalTransport(), tiny, 300, lines.append, registry=registry, on_status=notes.append)
    assert how == images.BUILT and BUILT_MARK in lines
    assert tags(lab_registry, repository(registry, tiny)) == [tiny.content_hash]
    assert notes == [f"pulling {tiny.tag} from {registry}", f"pushing {tiny.tag} to {registry}"]
    assert local_tags(remote_tag(registry, tiny.tag)) == []  # the registry's name is not left on the host

    _rmi(tiny.tag)  # "another host": the same engine without the image, reached over SSH
    lines.clear()
    with make_transport(**ssh_host.transport_kwargs()) as transport:
        locks = str(tmp_path / "locks")  # the build lock taken over SSH too
        how = ensure_image(transport, tiny, 300, lines.append, registry=registry, lock_dir=locks)
    assert how == images.PULLED and BUILT_MARK not in lines
    assert [p.name for p in Path(locks).iterdir()] == [f"build-{tiny.vendor}-{tiny.content_hash}.lock"]
    assert _inspect(tiny.tag)["Config"]["Labels"]["rn50bench.content_hash"] == tiny.content_hash
    assert local_tags(remote_tag(registry, tiny.tag)) == []
    assert warnings_of(caplog) == []


@pytest.mark.docker
def test_registry_down_builds_with_one_warning(
    tiny: ImageSpec, down_registry: str, caplog: pytest.LogCaptureFixture
) -> None:
    lines: List[str] = []
    assert ensure_image(LocalTransport(), tiny, 300, lines.append, registry=down_registry) == images.BUILT
    assert BUILT_MARK in lines
    (warning,) = warnings_of(caplog)  # no second one for the push: an unreachable registry is not pushed to
    assert warning.startswith(f"registry {down_registry}: cannot pull {tiny.tag} on host local (")
    assert warning.endswith("; building it there") and "\n" not in warning


@pytest.mark.docker
def test_image_with_wrong_content_hash_not_used(
    tiny: ImageSpec, base_image: str, lab_registry: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A registry tag holding another image (here the bare base) is refused, built and overwritten."""
    registry = f"{lab_registry}/forged-{uuid.uuid4().hex[:6]}"
    forged = remote_tag(registry, tiny.tag)
    subprocess.run(["docker", "tag", base_image, forged], check=True)
    subprocess.run(["docker", "push", forged], capture_output=True, check=True)
    subprocess.run(["docker", "image", "rm", forged], capture_output=True, check=True)
    lines: List[str] = []
    assert ensure_image(LocalTransport(), tiny, 300, lines.append, registry=registry) == images.BUILT
    (warning,) = warnings_of(caplog)
    assert f"{forged} carries content hash '', not {tiny.content_hash}; not used" in warning
    _rmi(tiny.tag)
    assert ensure_image(LocalTransport(), tiny, 300, lines.append, registry=registry) == images.PULLED
    assert _inspect(tiny.tag)["Config"]["Labels"]["rn50bench.content_hash"] == tiny.content_hash


@pytest.mark.docker
def test_two_runs_on_one_engine_build_once(tiny: ImageSpec, tmp_path: Path) -> None:
    """Two transports to one engine (as two orchestrator processes have: the in-process lock does not join
    them) wait on the host's lock file; the test holds it first, so both are seen waiting."""
    lock_dir = tmp_path / "locks"
    lock_dir.mkdir()
    lock_file = lock_dir / f"build-{tiny.vendor}-{tiny.content_hash}.lock"
    holder = subprocess.Popen(
        ["flock", str(lock_file), "sh", "-c", "echo held; exec cat"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert holder.stdout.readline() == b"held\n"
    outcomes: Dict[str, str] = {}
    notes: Dict[str, List[str]] = {"run-a": [], "run-b": []}
    lines: List[str] = []

    def run(name: str) -> None:
        transport = LocalTransport(name)
        outcomes[name] = ensure_image(
            transport, tiny, 300, lines.append, lock_dir=str(lock_dir), on_status=notes[name].append
        )

    threads = [threading.Thread(target=run, args=(name,)) for name in notes]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while not all(notes.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
        for thread in threads:
            thread.join(timeout=300)
    waiting = f"waiting for another run's build of {tiny.tag} ({lock_file})"
    assert notes == {"run-a": [waiting], "run-b": [waiting]}
    assert sorted(outcomes.values()) == [images.BUILT, images.CACHED]
    assert lines.count(BUILT_MARK) == 1


HOLD = (
    "import sys, time\n"
    "from orchestrator.host.lock import held\n"
    "from orchestrator.transport.local import LocalTransport\n"
    "lock = held(LocalTransport(), sys.argv[1], 10, lambda: None)\n"
    "lock.__enter__()\n"
    "print('held', flush=True)\n"
    "time.sleep(600)\n"
)


def lock_is_free(path: Path) -> bool:
    return subprocess.run(["flock", "-n", str(path), "true"], check=False).returncode == 0


def test_lock_freed_when_its_run_dies(tmp_path: Path) -> None:
    path = tmp_path / "locks" / "build.lock"
    run = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE)
    try:
        assert run.stdout.readline() == b"held\n"
        assert not lock_is_free(path)
    finally:
        run.kill()  # no clean-up runs: the holder sees its stdin end
        run.wait()
    deadline = time.monotonic() + 30
    while not lock_is_free(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lock_is_free(path)


def test_lock_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(TransportError) as caught, hostlock.held(
        LocalTransport(), str(tmp_path / "file" / "build.lock"), 10, lambda: None
    ):
        pass
    message = str(caught.value)
    assert message.startswith(f"local: cannot lock {tmp_path}/file/build.lock: mkdir: ")
    assert "File exists" in message and "\n" not in message
