"""GPU access without the NVIDIA Container Toolkit (issue 34): ``docker.gpu_access: nodes`` gives the job
container the GPU's device node, the control nodes CUDA needs and the host's driver folder, read-only; doctor
tells which way a host has and warns where the cluster file asks for the other."""

import shutil
from pathlib import Path
from typing import List

import pytest

import vendors
from orchestrator.config.load import load_checked
from orchestrator.host import doctor
from orchestrator.job import command
from orchestrator.job.containers import ContainerError, docker_run_argv
from orchestrator.job.plan import expand
from orchestrator.transport import LocalTransport
from tests.test_config_errors import plan_errors

pytestmark = pytest.mark.usefixtures("keep_signal_handlers")  # cli.main installs its own handlers

NVIDIA = vendors.get("nvidia")
RUN_ID = "20261206-000000-abcdef"

FILE = """\
store: s.sqlite
hosts:
  - name: h100
    address: local
    vendor: nvidia
    devices: [3]
    data: {path: /tmp}
    weights: random
    docker: {gpu_access: nodes, driver_dir: %s}
cases:
  - toolkit: cudnn_fused
"""


def _argv(vendor=NVIDIA, devices=(3,), **kwargs: object) -> List[str]:
    return docker_run_argv(
        "rn50bench-job", RUN_ID, "rn50bench/nvidia:0123456789abcdef", vendor, list(devices), [], {},
        ["python3", "-m", "runner_in_container"], None, **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


def _pairs(argv: List[str], flag: str) -> List[str]:
    return [argv[i + 1] for i, item in enumerate(argv[:-1]) if item == flag]


def test_nodes_give_the_gpus_node_the_control_nodes_and_the_driver_folder_read_only() -> None:
    argv = _argv(driver_dir="/opt/nvidia-driver")
    assert "--gpus" not in argv
    assert _pairs(argv, "--device") == ["/dev/nvidia3", "/dev/nvidiactl", "/dev/nvidia-uvm"]
    mount = "type=bind,source=/opt/nvidia-driver,target=/usr/local/nvidia,readonly"
    assert _pairs(argv, "--mount") == [mount]
    # the container sees its GPUs renumbered from 0, as through the toolkit (the same nodes and cgroup)
    assert _pairs(argv, "--env") == ["HOME=/tmp", "CUDA_VISIBLE_DEVICES=0"]
    assert "--privileged" not in argv and _pairs(argv, "--cap-drop") == ["ALL"]


def test_toolkit_is_the_default_and_unchanged() -> None:
    argv = _argv()
    assert _pairs(argv, "--gpus") == ['"device=3"'] and "--device" not in argv and "--mount" not in argv
    assert _pairs(argv, "--env") == ["HOME=/tmp", "CUDA_VISIBLE_DEVICES=0"]


def test_a_vendor_without_a_driver_mount_is_refused() -> None:
    with pytest.raises(ContainerError, match="vendor cpu has no driver folder to mount"):
        _argv(vendors.get("cpu"), (), driver_dir="/opt/x")


def test_a_job_of_a_nodes_host_mounts_its_driver_dir_also_under_slurm(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yaml"
    path.write_text(FILE % "/opt/nvidia-driver")
    cluster, known = load_checked(path)
    job = expand(cluster, known)[0][0]
    built = command.build(job, cluster.hosts[0], NVIDIA, "/w/job", "/w/cache", RUN_ID, "rn50bench/nvidia:x",
                          None, None, None)  # fmt: skip
    argv = built.argv(3)
    assert "type=bind,source=/opt/nvidia-driver,target=/usr/local/nvidia,readonly" in _pairs(argv, "--mount")
    placeholder, names_device = built.with_placeholder()
    assert names_device and "/dev/nvidia{device}" in _pairs(placeholder, "--device")


@pytest.mark.parametrize(
    "docker, expected",
    [
        ("{gpu_access: nodes}",
         "9: hosts[0].docker.gpu_access: vendor cpu reaches its devices only its own way "
         "(docker_device_args): remove it"),
        ("{driver_dir: /opt/d}",
         "9: hosts[0].docker.driver_dir: only containers of gpu_access: nodes mount a driver folder: set "
         "that, or remove driver_dir"),
    ],
)  # fmt: skip
def test_the_file_is_refused_at_the_line(tmp_path, capsys, docker, expected) -> None:
    text = (FILE % "x").replace("vendor: nvidia", "vendor: cpu").replace("devices: [3]", "devices: [0]")
    text = text.replace("{gpu_access: nodes, driver_dir: x}", docker)
    assert plan_errors(tmp_path, text, capsys) == [expected]


# -- doctor ----------------------------------------------------------------------------------------------


def _gpu_access(tmp_path: Path, docker: str) -> doctor.Check:
    """doctor's gpu access check of a local NVIDIA host whose docker section is ``docker``."""
    path = tmp_path / "hosts.yaml"
    path.write_text((FILE % "x").replace("{gpu_access: nodes, driver_dir: x}", docker))
    cluster, _ = load_checked(path)
    with LocalTransport("here") as transport:
        probe = doctor._HostProbe(cluster, cluster.hosts[0], NVIDIA, doctor.Limits(), transport, 20)
        return probe.gpu_access()


@pytest.fixture
def driver_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "driver"
    for part in doctor.DRIVER_PARTS:
        (folder / part).mkdir(parents=True)
    return folder


@pytest.mark.skipif(
    shutil.which("nvidia-container-cli") is not None or Path("/usr/local/nvidia").exists(),
    reason="this machine has the toolkit or a driver folder",
)
def test_doctor_warns_toolkit_without_the_toolkit_and_names_the_fix(tmp_path) -> None:
    check = _gpu_access(tmp_path, "{}")  # gpu_access toolkit; no /usr/local/nvidia on this machine either
    assert check.status == doctor.WARN and check.summary == "no NVIDIA Container Toolkit"
    assert check.detail.startswith("host h100 has neither NVIDIA Container Toolkit nor driver folder /usr/")
    assert check.fix == (
        "set docker.gpu_access: nodes, with docker.driver_dir: the folder of the driver's lib64/ and bin/"
    )


def test_doctor_passes_nodes_with_a_driver_folder_and_warns_without(tmp_path, driver_dir) -> None:
    check = _gpu_access(tmp_path, "{gpu_access: nodes, driver_dir: %s}" % driver_dir)
    assert check.status == doctor.PASS and "driver folder %s" % driver_dir in check.summary
    (driver_dir / "lib64").rmdir()
    check = _gpu_access(tmp_path, "{gpu_access: nodes, driver_dir: %s}" % driver_dir)
    assert check.status == doctor.WARN and "lacks lib64/ or bin/" in check.detail
    assert check.fix.startswith("set docker.driver_dir to the folder of the driver's lib64/ and bin/")
