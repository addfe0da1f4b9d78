"""Issue 34, item 1: the carried docker engine (scripts/fetch_docker_bundle.sh, bench/docker_engine.sh) and
the base image made from a machine's own environment (bench/base_from_env.sh).

The engine test starts the bundle's engine beside this machine's running dockerd (its own socket, state,
containerd and tmpfs data-root), imports a tiny root as a base image on it, runs containers with
``--network host`` and with the orchestrator's own settings (``--network none``, host IPC, an init), and
stops it: nothing of it left mounted or running, the other engine untouched.
"""

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

REPO = Path(__file__).resolve().parent.parent
FETCH = REPO / "scripts" / "fetch_docker_bundle.sh"
ENGINE = REPO / "bench" / "docker_engine.sh"
BASE = REPO / "bench" / "base_from_env.sh"
BUNDLE = REPO / ".cache" / "docker-bundle" / "docker-engine.tar.xz"
STATIC = "/usr/bin/tini-static"  # a static binary (docker.io's docker-init): the tiny root's "python3"
VENV_PYTHON = "/opt/venv/bin/python3"
SITE = "opt/venv/lib/python3.12/site-packages"
#: what the default SLIM leaves out of the tiny root's site-packages
SLIMMED = ("jax", "jax-0.4.30.dist-info", "jaxlib", "cupy_cuda12x-13.0.dist-info")
TIMEOUT = 300


def _run(argv: List[str], env: Dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, env=env, check=False)
    if check and proc.returncode != 0:
        pytest.fail("%s exited %d: %s" % (argv, proc.returncode, (proc.stderr or proc.stdout)[-2000:]))
    return proc


def _mounts_under(folder: Path) -> List[str]:
    prefix = str(folder) + "/"
    return [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines() if prefix in line]


def _processes_from(folder: Path) -> List[str]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            exe = os.readlink(proc / "exe")
        except OSError:
            continue
        if exe.startswith(str(folder) + "/"):
            found.append("%s %s" % (proc.name, exe))
    return found


@pytest.fixture(scope="session")
def docker_bundle() -> Path:
    """The engine bundle, made from this machine's Debian packages (about three minutes the first time)."""
    _run([str(FETCH)], dict(os.environ))
    return BUNDLE


@pytest.fixture
def tiny_root() -> Iterator[Path]:
    """A root with a venv whose python3 is a static binary, site-packages to slim, and what must stay out."""
    root = Path(tempfile.mkdtemp(prefix="rn50-root-", dir="/tmp"))
    site = root / SITE
    for name in SLIMMED + ("torch", "jaxtyping"):
        (site / name).mkdir(parents=True)
        (site / name / "__init__.py").write_text("")
    for path in ("proc/1/status", "tmp/junk", "usr/local/nvidia/lib64/libcuda.so.1", "etc/secret", "etc/os"):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("x")
    (root / "opt/venv/bin").mkdir()
    shutil.copy(STATIC, root / VENV_PYTHON.lstrip("/"))
    yield root
    shutil.rmtree(root)


def _files_in_image(docker: List[str], tag: str, env: Dict[str, str]) -> List[str]:
    container = _run(docker + ["create", tag, "python3"], env).stdout.strip()
    try:
        exported = subprocess.run(docker + ["export", container], capture_output=True, env=env, check=True)
        listing = subprocess.run(["tar", "-t"], input=exported.stdout, capture_output=True, check=True)
        return listing.stdout.decode().split()
    finally:
        _run(docker + ["rm", container], env)


@pytest.mark.docker
@pytest.mark.slow
def test_engine_beside_running_dockerd(docker_engine: None, docker_bundle: Path, tiny_root: Path) -> None:
    home = Path(tempfile.mkdtemp(prefix="rn50-eng-", dir="/tmp"))  # short: a socket path has 107 bytes
    socket = home / "docker.sock"
    env = dict(os.environ, ENGINE_DIR=str(home / "e"), DOCKER_SOCKET=str(socket), DATA_SIZE="1g")
    docker = [str(home / "e/docker-engine/bin/docker"), "-H", "unix://%s" % socket]
    other = _run(["docker", "info", "--format", "{{.ID}}"], env).stdout
    bridge = os.path.exists("/sys/class/net/docker0")  # the other engine's
    try:
        started = _run([str(ENGINE)], env, check=False)
        assert started.returncode != 0 and "usage" in started.stderr
        started = _run([str(ENGINE), "start"], env)
        assert "storage driver overlay2" in started.stdout, started.stdout
        assert "Version:           20.10" in started.stdout
        again = _run([str(ENGINE), "start"], env, check=False)
        assert again.returncode != 0 and "already running" in again.stderr

        tag = "rn50bench-engine-test/env:tiny"
        base_env = dict(env, DOCKER_HOST="unix://%s" % socket, ROOT=str(tiny_root), PYTHON=VENV_PYTHON)
        base_env["PATH"] = "%s:%s" % (home / "e/docker-engine/bin", os.environ["PATH"])
        assert "base: %s" % tag in _run([str(BASE), tag], base_env).stdout
        for network in (["--network", "host"], ["--network", "none", "--ipc", "host", "--init"]):
            ran = _run(docker + ["run", "--rm", *network, tag, "python3", "--version"], env)
            assert "tini version" in ran.stdout  # python3 is the venv's, first on PATH
        assert _run(["docker", "info", "--format", "{{.ID}}"], env).stdout == other
    finally:
        stopped = _run([str(ENGINE), "stop"], env)
        left = (_mounts_under(home), _processes_from(home), (home / "e/data").exists(), socket.exists())
        shutil.rmtree(home, ignore_errors=True)
    assert "stopped" in stopped.stdout
    assert left == ([], [], False, False)
    assert _run(["docker", "info", "--format", "{{.ID}}"], env).stdout == other  # the other engine runs on
    assert os.path.exists("/sys/class/net/docker0") == bridge  # --bridge=none deletes it outside a netns


@pytest.mark.docker
@pytest.mark.slow
def test_engine_falls_back_to_vfs_on_an_overlay(docker_engine: None, docker_bundle: Path) -> None:
    """A data-root overlay2 cannot stack on (an overlay, as where / is one): vfs, and it says so."""
    home = Path(tempfile.mkdtemp(prefix="rn50-eng-", dir="/tmp"))
    for name in ("l", "u", "w", "data"):
        (home / name).mkdir()
    layers = "lowerdir=%s,upperdir=%s,workdir=%s" % (home / "l", home / "u", home / "w")
    _run(["mount", "-t", "overlay", "overlay", "-o", layers, str(home / "data")], dict(os.environ))
    env = dict(os.environ, ENGINE_DIR=str(home), DOCKER_SOCKET=str(home / "docker.sock"))
    try:
        started = _run([str(ENGINE), "start"], env).stdout
    finally:
        _run([str(ENGINE), "stop"], env)
        left = (_mounts_under(home), _processes_from(home))
        shutil.rmtree(home, ignore_errors=True)
    assert "overlay2 failed (" in started and "falling back to vfs" in started, started
    assert "(already mounted: overlay)" in started and "storage driver vfs" in started, started
    assert left == ([], [])


@pytest.mark.docker
@pytest.mark.slow  # the bundle, the first time
def test_engine_refuses_a_socket_another_engine_answers(docker_engine: None, docker_bundle: Path) -> None:
    home = Path(tempfile.mkdtemp(prefix="rn50-eng-", dir="/tmp"))
    env = dict(os.environ, ENGINE_DIR=str(home), DOCKER_SOCKET="/var/run/docker.sock")
    try:
        refused = _run([str(ENGINE), "start"], env, check=False)
        assert refused.returncode != 0 and "another engine answers on /var/run/docker.sock" in refused.stderr
        assert _mounts_under(home) == [] and not (home / "dockerd.pid").exists()
    finally:
        shutil.rmtree(home)


@pytest.mark.docker
def test_base_from_env_leaves_out_what_a_run_brings(docker_engine: None, tiny_root: Path) -> None:
    tag = "rn50bench-engine-test/base:%s" % uuid.uuid4().hex[:8]
    env = dict(os.environ, ROOT=str(tiny_root), PYTHON=VENV_PYTHON, EXCLUDE="/etc/secret")
    try:
        made = _run([str(BASE), tag], env).stdout
        assert "(SLIM): %s\n" % " ".join(SLIMMED) in made, made
        files = _files_in_image(["docker"], tag, env)
        path = _run(["docker", "image", "inspect", "--format", "{{json .Config.Env}}", tag], env).stdout
        ran = _run(["docker", "run", "--rm", "--network", "none", tag, "python3", "--version"], env)
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)
    kept = {
        SITE + "/torch/__init__.py",
        SITE + "/jaxtyping/__init__.py",
        "usr/local/nvidia/",
        "tmp/",
        "etc/os",
    }
    assert kept <= set(files)
    assert not [name for name in SLIMMED if "%s/%s/" % (SITE, name) in files]
    for gone in ("usr/local/nvidia/lib64/", "tmp/junk", "proc/1/", "etc/secret"):
        assert gone not in files
    assert '"PATH=/opt/venv/bin:' in path and "LD_LIBRARY_PATH" not in path
    assert "tini version" in ran.stdout


@pytest.mark.docker
@pytest.mark.slow  # the bundle, the first time
def test_bundle_runs_where_its_libraries_are_not_installed(base_image: str, docker_bundle: Path) -> None:
    """The packed engine's binaries start in the Debian base image, which has no libdevmapper."""
    unpacked = Path(tempfile.mkdtemp(prefix="rn50-bundle-", dir="/tmp"))
    try:
        _run(["tar", "-C", str(unpacked), "-xJf", str(docker_bundle)], dict(os.environ))
        script = "ls /usr/lib/x86_64-linux-gnu | grep -c libdevmapper; for b in dockerd runc containerd; do "
        script += "/e/docker-engine/bin/$b --version | head -1; done"
        mount = "type=bind,source=%s,target=/e,readonly" % unpacked
        argv = [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "--mount",
            mount,
            base_image,
            "sh",
            "-c",
            script,
        ]
        lines = _run(argv, dict(os.environ), check=False).stdout.splitlines()
    finally:
        shutil.rmtree(unpacked)
    assert lines[0] == "0"  # not installed there
    assert [line.split()[0] for line in lines[1:]] == ["Docker", "runc", "containerd"], lines


def test_bundle_packs_every_library_beyond_glibc() -> None:
    listed = _run([str(FETCH), "--libs", "/usr/sbin/dockerd", "/usr/sbin/runc", STATIC], dict(os.environ))
    libs = listed.stdout.split()
    names = {Path(lib).name for lib in libs}
    assert {"libdevmapper.so.1.02.1", "libsystemd.so.0", "libseccomp.so.2", "libgcrypt.so.20"} <= names
    assert not [n for n in names if n.split(".so")[0] in ("libc", "libpthread", "libdl", "libm", "librt")]
    assert all(Path(lib).is_file() for lib in libs)
    alone = _run([str(FETCH), "--libs", STATIC], dict(os.environ))
    assert alone.stdout == ""  # a static binary needs nothing
