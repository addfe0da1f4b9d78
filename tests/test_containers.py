"""orchestrator.job.containers: the docker run argv (hostile values included) and real containers."""

import os
import re
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import List

import pytest

from bench.sshlab import SshHost
from orchestrator.host import orphans
from orchestrator.host.images import ImageSpec
from orchestrator.job.containers import (
    ContainerError,
    Mount,
    container_exists,
    container_name,
    docker_run_argv,
    run_container,
)
from orchestrator.transport import LocalTransport, make_transport
from orchestrator.transport.base import Cancelled, CommandTimeout
from vendors.cpu import VENDOR as CPU
from vendors.vendor import Vendor

RUN_ID = "20261206-000000-abcdef"
HOSTILE = [
    "with space",
    "quote'single",
    "semi;colon",
    "$(touch /tmp/rn50bench-pwned)",
    "`id`",
    "new\nline",
    "a && b | c > d",
    "--privileged",
]


class Accel(Vendor):
    """A vendor exposing devices by node and a visibility variable with host indices."""

    name = "accel"
    device_node = "/dev/accel{}"
    control_nodes = ("/dev/accelctl",)
    visible_devices_env = "ACCEL_VISIBLE_DEVICES"


def _argv(**kwargs: object) -> List[str]:
    args = dict(
        name="rn50bench-job",
        run_id=RUN_ID,
        image="rn50bench/cpu:0123456789abcdef",
        vendor=CPU,
        devices=[0],
        mounts=[],
        env={},
        command=["python3", "-m", "runner_in_container"],
        user=None,
    )
    args.update(kwargs)
    return docker_run_argv(**args)  # type: ignore[arg-type]


def _pairs(argv: List[str], flag: str) -> List[str]:
    return [argv[i + 1] for i, item in enumerate(argv[:-1]) if item == flag]


# -- argv ---------------------------------------------------------------------------------------------


def test_argv_is_locked_down() -> None:
    argv = _argv(shm_size="2g")
    assert argv[:5] == ["docker", "run", "--rm", "--name", "rn50bench-job"]
    assert "--init" in argv and "--privileged" not in argv
    assert _pairs(argv, "--network") == ["none"] and _pairs(argv, "--ipc") == ["private"]
    assert _pairs(argv, "--cap-drop") == ["ALL"] and _pairs(argv, "--security-opt") == ["no-new-privileges"]
    assert _pairs(argv, "--shm-size") == ["2g"] and "--user" not in argv
    assert _pairs(argv, "--env") == ["HOME=/tmp"]
    assert argv[-4:] == ["rn50bench/cpu:0123456789abcdef", "python3", "-m", "runner_in_container"]


def test_user_env_and_mounts() -> None:
    argv = _argv(
        user="1000:1000",
        env={"RN50_A": "1", "HOME": "/work"},
        mounts=[Mount("/data/imagenet val", "/data"), Mount("/srv/results", "/results", read_only=False)],
    )
    assert _pairs(argv, "--user") == ["1000:1000"]
    assert _pairs(argv, "--env") == ["HOME=/work", "RN50_A=1"]
    assert _pairs(argv, "--mount") == [
        "type=bind,source=/data/imagenet val,target=/data,readonly",
        "type=bind,source=/srv/results,target=/results",
    ]
    assert argv.index("--mount") < argv.index("rn50bench/cpu:0123456789abcdef")


def test_vendor_devices_and_env() -> None:
    argv = _argv(vendor=Accel(), devices=[2, 3], env={"ACCEL_VISIBLE_DEVICES": "0"})
    assert _pairs(argv, "--device") == ["/dev/accel2", "/dev/accel3", "/dev/accelctl"]
    assert "ACCEL_VISIBLE_DEVICES=2,3" in _pairs(argv, "--env")  # the vendor's visibility wins
    assert "ACCEL_VISIBLE_DEVICES=0" not in argv


def test_privileged_only_when_asked() -> None:
    class Privileged(Vendor):
        name = "priv"
        privileged = True

    for argv in (_argv(privileged=True), _argv(vendor=Privileged())):
        assert argv.count("--privileged") == 1 and "--cap-drop" not in argv
        assert _pairs(argv, "--network") == ["none"]
    assert "--privileged" not in _argv(privileged=False)


def test_without_mps_the_argv_is_the_locked_down_one() -> None:
    argv = _argv(user="1000:1000", env={"RN50_A": "1"}, mounts=[Mount("/srv/val", "/data")], mps_pipe=None)
    assert argv == [
        "docker", "run", "--rm", "--name", "rn50bench-job", "--init", "--network", "none", "--ipc", "private",
        "--label", "rn50bench.run=" + RUN_ID, "--label", "rn50bench.orchestrator=" + orphans.identity(),
        "--shm-size", "8g", "--security-opt", "no-new-privileges", "--cap-drop", "ALL", "--user", "1000:1000",
        "--env", "HOME=/tmp", "--env", "RN50_A=1",
        "--mount", "type=bind,source=/srv/val,target=/data,readonly",
        "rn50bench/cpu:0123456789abcdef", "python3", "-m", "runner_in_container",
    ]  # fmt: skip
    assert argv == _argv(user="1000:1000", env={"RN50_A": "1"}, mounts=[Mount("/srv/val", "/data")])


def test_mps_joins_the_host_ipc_with_the_pipe_directory_mounted_and_named() -> None:
    argv = _argv(
        env={"CUDA_MPS_PIPE_DIRECTORY": "/elsewhere"},
        mounts=[Mount("/srv/val", "/data")],
        mps_pipe="/run/nvidia-mps",
    )
    assert _pairs(argv, "--ipc") == ["host"]
    assert _pairs(argv, "--network") == ["none"] and _pairs(argv, "--cap-drop") == ["ALL"]
    assert _pairs(argv, "--env") == ["HOME=/tmp", "CUDA_MPS_PIPE_DIRECTORY=/run/nvidia-mps"]
    assert _pairs(argv, "--mount") == [
        "type=bind,source=/srv/val,target=/data,readonly",
        "type=bind,source=/run/nvidia-mps,target=/run/nvidia-mps",  # read-write: clients open its pipes
    ]
    assert argv[-4:] == ["rn50bench/cpu:0123456789abcdef", "python3", "-m", "runner_in_container"]


@pytest.mark.parametrize(
    "pipe, message",
    [("nvidia-mps", "must be an absolute path"), ("/tmp/a,b", "contains ','")],
)
def test_an_mps_pipe_directory_docker_cannot_mount_is_refused(pipe: str, message: str) -> None:
    with pytest.raises(ContainerError, match=re.escape(f"mount source {pipe!r} {message}")):
        _argv(mps_pipe=pipe)


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_stay_single_argv_elements(value: str) -> None:
    argv = _argv(env={"RN50_VALUE": value}, command=["python3", "-c", value])
    assert f"RN50_VALUE={value}" in argv
    assert argv[-3:] == ["python3", "-c", value]
    assert argv.count("--privileged") == (1 if value == "--privileged" else 0)
    assert argv[-4] == "rn50bench/cpu:0123456789abcdef"  # the value never lands before the image


@pytest.mark.parametrize("value", [v for v in HOSTILE if "\n" not in v])
def test_hostile_mount_paths_pass_verbatim(value: str) -> None:
    argv = _argv(mounts=[Mount(f"/srv/{value}", "/in")])
    assert _pairs(argv, "--mount") == [f"type=bind,source=/srv/{value},target=/in,readonly"]


@pytest.mark.parametrize("bad", [",", '"', "\n", "\r", "\x00"])
def test_mount_paths_docker_would_misparse_are_refused(bad: str) -> None:
    source = f"/data/a{bad}b"
    with pytest.raises(ContainerError, match=re.escape(f"mount source {source!r} contains {bad!r}")):
        _argv(mounts=[Mount(source, "/data")])
    with pytest.raises(ContainerError, match="mount target"):
        _argv(mounts=[Mount("/data", f"/in{bad}x")])


def test_relative_mount_refused() -> None:
    with pytest.raises(ContainerError, match="mount source 'data' must be an absolute path"):
        _argv(mounts=[Mount("data", "/data")])


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("name", "job;rm -rf /", "container name 'job;rm -rf /'"),
        ("name", "-job", "container name '-job'"),
        ("image", "--privileged", "image '--privileged'"),
        ("run_id", "../r1", "run id '../r1'"),
        ("image", "rn50bench/cpu:x y", "image 'rn50bench/cpu:x y'"),
        ("user", "0:0 --privileged", "user '0:0 --privileged'"),
        ("shm_size", "8g --privileged", "shm_size '8g --privileged'"),
    ],
)
def test_bad_settings_refused(field: str, value: str, message: str) -> None:
    with pytest.raises(ContainerError, match=re.escape(message)):
        _argv(**{field: value})


@pytest.mark.parametrize("key", ["A B", "A=B", "1A", "", "A;B"])
def test_bad_env_names_refused(key: str) -> None:
    with pytest.raises(ContainerError, match=re.escape(f"environment variable name {key!r}")):
        _argv(env={key: "x"})


def test_nul_bytes_refused() -> None:
    with pytest.raises(ContainerError, match="environment variable RN50_A contains a NUL byte"):
        _argv(env={"RN50_A": "a\x00b"})
    with pytest.raises(ContainerError, match="contains a NUL byte"):
        _argv(command=["python3", "a\x00b"])
    with pytest.raises(ContainerError, match="container command is empty"):
        _argv(command=[])


def test_container_names_are_valid_and_unique() -> None:
    names = {
        container_name(run, job)
        for run, job in [
            ("20261128-2105", "cpu/resnet50/pytorch/fp32/bs8"),
            ("20261128-2105", "cpu-resnet50-pytorch-fp32-bs8"),  # same text after cleaning
            ("20261128-2106", "cpu/resnet50/pytorch/fp32/bs8"),
            ("run; rm -rf / $(x)", "job\n'q'"),
            ("", ""),
            ("x" * 500, "y" * 500),
        ]
    }
    assert len(names) == 6
    for name in names:
        assert re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", name), name
    assert container_name("r1", "j1") == container_name("r1", "j1")


# -- real containers ----------------------------------------------------------------------------------

PROBE = r"""
import os, sys, torch, torchvision, numpy, onnx, PIL
import runner_in_container.protocol
print("torch", torch.__version__, "torchvision", torchvision.__version__)
print("to stderr", file=sys.stderr)
print("value", repr(os.environ["RN50_VALUE"]))
print("net", sorted(os.listdir("/sys/class/net")))
print("input", open("/in/input.txt").read().strip())
try:
    open("/in/written.txt", "w")
except OSError as exc:
    print("read-only", exc.errno)
with open("/results/out.txt", "w") as handle:
    handle.write("uid=%d home=%s\n" % (os.getuid(), os.environ["HOME"]))
"""


@pytest.mark.docker
def test_container_runs_as_user_with_mounts(cpu_image: ImageSpec, tmp_path: Path) -> None:
    inputs = tmp_path / "in $(touch rn50bench-pwned); 'q' = x"
    results = tmp_path / "results dir"
    inputs.mkdir()
    results.mkdir()
    (inputs / "input.txt").write_text("imagenet\n")
    inputs.chmod(0o777)  # so that only the read-only mount stops a write
    os.chown(results, 4321, 4321)
    hostile = "$(touch /tmp/rn50bench-pwned); `id` 'q' \"d\" \\ end"
    name = container_name("test-" + uuid.uuid4().hex[:8], "probe")
    argv = docker_run_argv(
        name,
        RUN_ID,
        cpu_image.tag,
        CPU,
        [0],
        [Mount(str(inputs), "/in"), Mount(str(results), "/results", read_only=False)],
        {"RN50_VALUE": hostile},
        ["python3", "-c", PROBE],
        "4321:4321",
        shm_size="64m",
    )
    out: List[str] = []
    err: List[str] = []
    assert run_container(LocalTransport(), name, argv, out.append, err.append, timeout=120) == 0, err
    assert re.match(r"^torch 1\.13\.\S+ torchvision 0\.14\.\S+$", out[0])
    assert "to stderr" in err
    assert f"value {hostile!r}" in out
    assert "net ['lo']" in out
    assert "input imagenet" in out and "read-only 30" in out  # EROFS
    written = results / "out.txt"
    assert written.read_text() == "uid=4321 home=/tmp\n"
    assert (written.stat().st_uid, written.stat().st_gid) == (4321, 4321)
    assert not Path("/tmp/rn50bench-pwned").exists()
    assert not container_exists(LocalTransport(), name)


@pytest.mark.docker
def test_exit_status_propagates(cpu_image: ImageSpec) -> None:
    name = container_name("test-" + uuid.uuid4().hex[:8], "exit3")
    argv = _argv(name=name, image=cpu_image.tag, command=["python3", "-c", "import sys; sys.exit(3)"])
    assert run_container(LocalTransport(), name, argv, print, print, timeout=60) == 3
    assert not container_exists(LocalTransport(), name)


# ignores SIGTERM (which the killed docker client forwards), like a runner stuck in a driver call
STUBBORN = "trap '' TERM; echo started; sleep 600"
START_S = 20  # a timeout a container starts well within, also on a loaded machine


def _leftovers(name: str) -> str:
    argv = ["docker", "ps", "--all", "--quiet", "--filter", f"name=^/{name}$"]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.docker
def test_timeout_kills_and_removes(cpu_image: ImageSpec) -> None:
    name = container_name("test-" + uuid.uuid4().hex[:8], "timeout")
    argv = _argv(name=name, image=cpu_image.tag, command=["sh", "-c", STUBBORN])
    out: List[str] = []
    started = time.monotonic()
    with pytest.raises(CommandTimeout):
        run_container(LocalTransport(kill_grace=1.0), name, argv, out.append, out.append, timeout=START_S)
    assert time.monotonic() - started < START_S + 120  # the timeout, not the command's 600 s
    assert out == ["started"]
    assert _leftovers(name) == ""


@pytest.mark.docker
def test_cancel_kills_and_removes(cpu_image: ImageSpec) -> None:
    name = container_name("test-" + uuid.uuid4().hex[:8], "cancel")
    argv = _argv(name=name, image=cpu_image.tag, command=["sh", "-c", STUBBORN])
    stop = threading.Event()
    threading.Timer(3.0, stop.set).start()
    with pytest.raises(Cancelled):
        run_container(
            LocalTransport(kill_grace=1.0), name, argv, print, print, timeout=120, cancel=stop.is_set
        )
    assert _leftovers(name) == ""


@pytest.mark.docker
def test_a_stop_at_launch_leaves_no_container(cpu_image: ImageSpec) -> None:
    """Stopped the moment it is launched (a start timeout on a loaded host): a ``docker run`` client killed
    that early can leave the engine creating the container after its removal; none may appear later."""
    name = container_name("test-" + uuid.uuid4().hex[:8], "at-launch")
    argv = _argv(name=name, image=cpu_image.tag, command=["sh", "-c", STUBBORN])
    with pytest.raises(Cancelled):
        run_container(
            LocalTransport(kill_grace=1.0), name, argv, print, print, timeout=120, cancel=lambda: True
        )
    settled = time.monotonic() + 5
    while time.monotonic() < settled:
        assert _leftovers(name) == ""
        time.sleep(0.5)


def test_not_a_job_containers_argv_is_refused() -> None:
    with pytest.raises(ContainerError, match="docker_run_argv"):
        run_container(LocalTransport(), "rn50bench-x", ["docker", "run", "x"], print, print, timeout=1)


@pytest.mark.docker
def test_leftover_of_an_earlier_attempt_is_replaced(cpu_image: ImageSpec) -> None:
    name = container_name("test-" + uuid.uuid4().hex[:8], "again")
    subprocess.run(
        ["docker", "create", "--name", name, cpu_image.tag, "sleep", "600"], check=True, capture_output=True
    )
    argv = _argv(name=name, image=cpu_image.tag, command=["echo", "second attempt"])
    out: List[str] = []
    assert run_container(LocalTransport(), name, argv, out.append, print, timeout=60) == 0
    assert out == ["second attempt"] and _leftovers(name) == ""


@pytest.mark.docker
def test_docker_refusal_is_exit_125(cpu_image: ImageSpec, tmp_path: Path) -> None:
    name = container_name("test-" + uuid.uuid4().hex[:8], "missing")
    argv = _argv(name=name, image=cpu_image.tag, mounts=[Mount(str(tmp_path / "absent"), "/in")])
    err: List[str] = []
    assert run_container(LocalTransport(), name, argv, print, err.append, timeout=60) == 125
    assert any("absent" in line for line in err)


@pytest.mark.docker
@pytest.mark.ssh
def test_container_over_ssh_exit_and_timeout(cpu_image: ImageSpec, ssh_host: SshHost) -> None:
    with make_transport(**ssh_host.transport_kwargs()) as transport:
        name = container_name("test-" + uuid.uuid4().hex[:8], "ssh-exit")
        argv = _argv(name=name, image=cpu_image.tag, command=["sh", "-c", "echo 'over ssh'; exit 4"])
        out: List[str] = []
        assert run_container(transport, name, argv, out.append, print, timeout=60) == 4
        assert out == ["over ssh"]
        name = container_name("test-" + uuid.uuid4().hex[:8], "ssh-timeout")
        argv = _argv(name=name, image=cpu_image.tag, command=["sh", "-c", STUBBORN])
        with pytest.raises(CommandTimeout):
            run_container(transport, name, argv, print, print, timeout=START_S)
    assert _leftovers(name) == ""
