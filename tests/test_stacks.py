"""Image stacks (issue 34): a vendor's ways to build its image, chosen per host (``image.stack``), NVIDIA's
torch2 stack on a lab-made base image that fetches nothing at build time, and the cluster file's refusals."""

import hashlib
import subprocess
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

import vendors
from orchestrator import cli
from orchestrator.host import images
from orchestrator.transport import LocalTransport
from tests.fixtures.docker_env import BUILD_TIMEOUT
from tests.test_config_errors import plan_errors, replaced
from tests.test_images import _rmi
from tests.test_vendors_dockerfiles import parse_dockerfile
from vendors.errors import VendorError
from vendors.image import ImageStack
from vendors.nvidia import TORCH2
from vendors.vendor import Vendor

pytestmark = pytest.mark.usefixtures("keep_signal_handlers")  # cli.main installs its own handlers

NVIDIA = vendors.get("nvidia")
ORT, LOADGEN = (sdk.name for sdk in TORCH2.sdk_files)

TORCH2_FILE = """\
store: s.sqlite
hosts:
  - name: h100
    address: local
    vendor: nvidia
    data: {path: /tmp}
    weights: random
    image:
      stack: torch2
      base_image: lab/h100-env:1
      pins: {torch: "2.11.0", torchvision: "0.26.0"}
cases:
  - toolkit: [cudnn_fused, onnxruntime]
    precision: fp16
    batch_size: 256
"""


def edit(*pairs: str) -> str:
    return replaced(TORCH2_FILE, *pairs)


@pytest.fixture
def sdk_dir(tmp_path: Path) -> Tuple[Path, Dict[str, str]]:
    """An SDK folder with stand-ins for the torch2 stack's two wheels, and their sha256s."""
    folder = tmp_path / "sdk"
    folder.mkdir()
    sums = {}
    for name in (ORT, LOADGEN):
        (folder / name).write_bytes(name.encode())
        sums[name] = hashlib.sha256(name.encode()).hexdigest()
    return folder, sums


def instructions(text: str, word: str) -> List[str]:
    return [rest for found, rest in parse_dockerfile(text) if found == word]


# -- the vendors' stacks ------------------------------------------------------------------------------------


def test_nvidia_has_ngc_first_and_torch2_every_other_vendor_one_stack() -> None:
    assert [s.name for s in NVIDIA.stacks()] == ["ngc-22.11", "torch2"]
    assert NVIDIA.image_stack().template == "nvidia.Dockerfile.j2"
    assert NVIDIA.image_stack("torch2") is TORCH2
    for name, vendor in vendors.discover().items():
        if name != "nvidia":
            assert [s.template for s in vendor.stacks()] == [vendor.template]
    with pytest.raises(VendorError, match=r"nvidia has no image stack 'torch3' \(has: ngc-22.11, torch2\)"):
        NVIDIA.image_stack("torch3")


def test_a_stack_tells_its_pins_and_what_it_lacks() -> None:
    assert TORCH2.lacked("pytorch") is None
    assert TORCH2.lacked("tensorrt").startswith("image stack torch2 has no tensorrt: ")
    assert TORCH2.describe({"torch_version": "2.11.0"}) == (
        "torch2 (torch==2.11.0 torchvision==0.; lacks tensorrt, torch_tensorrt)"
    )
    assert NVIDIA.image_stack().describe({}).startswith("ngc-22.11 (torch==1.13.0a0+936e930 tensorrt==8.5")


@pytest.mark.parametrize(
    "other, message",
    [
        (ImageStack("two", "t.j2", {}, lacks={"tensorrt": "no"}), "lacks tensorrt, which the vendor has not"),
        (ImageStack("two", "t.j2", {}, pins=("torch",)), "pins torch but image_vars has no torch_version"),
        (ImageStack("own", "t.j2", {}), "image stacks repeat a name"),
        (ImageStack("Two", "t.j2", {}), "name must be lowercase"),
    ],
)
def test_malformed_stacks_are_refused(other: ImageStack, message: str) -> None:
    class Two(Vendor):
        name = "two"
        label = "Two"
        template = "cpu.Dockerfile.j2"
        image_vars = {"base_image": "x:1"}
        toolkits = {"pytorch": ("fp32",)}
        stack = "own"
        other_stacks = (other,)

    with pytest.raises(VendorError, match=message):
        Two().validate()


# -- the torch2 image -------------------------------------------------------------------------------------


def test_torch2_fetches_nothing_and_installs_no_wheel_it_was_not_given() -> None:
    text = images.render_dockerfile(NVIDIA, {"base_image": "lab/h100-env:1"}, [], "torch2")
    assert instructions(text, "FROM") == ["lab/h100-env:1"]
    assert "pip" not in text and "http" not in text and "COPY sdk/" not in text
    assert 'RN50BENCH_PINS="torch==2. torchvision==0."' in text
    # built without a network: a step that would fetch fails instead
    assert not images.image_spec(NVIDIA, {"base_image": "lab/h100-env:1"}, None, {}, "torch2").network
    assert images.image_spec(NVIDIA, {}, None, {}).network  # NGC's pip-installs onnxruntime-gpu and LoadGen


def test_torch2_installs_the_given_wheels_offline_and_pins_them(sdk_dir) -> None:
    folder, sums = sdk_dir
    overrides = {"base_image": "lab/h100-env:1", "torch_version": "2.11.0", "torchvision_version": "0.26.0"}
    spec = images.image_spec(NVIDIA, overrides, folder, sums, "torch2")
    assert {f.name for f in spec.files} >= {"sdk/" + ORT, "sdk/" + LOADGEN}
    runs = instructions(spec.dockerfile, "RUN")
    installs = [run for run in runs if "pip install" in run]
    assert len(installs) == 1 and "--no-index --no-deps" in installs[0]
    assert ORT in installs[0] and LOADGEN in installs[0]
    assert "python3 -m pip uninstall --yes onnxruntime" in runs  # the base image's CPU build
    pins = "torch==2.11.0 torchvision==0.26.0 onnxruntime_gpu==1.30.0 mlcommons_loadgen==6.0.17"
    assert 'RN50BENCH_PINS="%s"' % pins in spec.dockerfile
    assert spec.stack == "torch2 (torch==2.11.0 torchvision==0.26.0; lacks tensorrt, torch_tensorrt)"
    (folder / LOADGEN).unlink()
    without = images.image_spec(NVIDIA, overrides, folder, {ORT: sums[ORT]}, "torch2")
    assert LOADGEN not in without.dockerfile and without.tag != spec.tag


def test_the_default_stack_is_the_one_it_was() -> None:
    assert images.render_dockerfile(NVIDIA, {}) == images.render_dockerfile(NVIDIA, {}, None, "ngc-22.11")
    assert instructions(images.render_dockerfile(NVIDIA, {}), "FROM") == ["nvcr.io/nvidia/pytorch:22.11-py3"]


# -- the cluster file --------------------------------------------------------------------------------------


def test_a_torch2_host_plans_with_its_stack_shown(tmp_path, capsys) -> None:
    path = tmp_path / "hosts.yaml"
    path.write_text(TORCH2_FILE)
    assert cli.main(["plan", "--cluster", str(path)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "image stack torch2 (torch==2.11.0 torchvision==0.26.0; lacks tensorrt, torch_tensorrt)" in out
    assert "skipped resnet50 onnxruntime/fp16/bs256 on h100: toolkit onnxruntime needs SDK file " + ORT in out


@pytest.mark.parametrize(
    "pairs, expected",
    [
        (("stack: torch2", "stack: torch3"),
         ["9: hosts[0].image.stack: vendor nvidia has no image stack 'torch3' (has: ngc-22.11, torch2)"]),
        (("      base_image: lab/h100-env:1\n", ""),
         ["8: hosts[0].image: image stack torch2 builds on a base image the lab makes: set "
          "image.base_image"]),
        (('torchvision: "0.26.0"', 'numpy: "2"'),
         ["11: hosts[0].image.pins.numpy: image stack torch2 pins torch, torchvision, not numpy"]),
        (("onnxruntime]", "tensorrt]"),
         ["13: cases[0].toolkit: image stack torch2 has no tensorrt: its base image is the lab's torch 2.x "
          "environment, without TensorRT (stack ngc-22.11 has it) (host h100); remove it, or leave the host "
          "out with cases[].hosts"]),
    ],
)  # fmt: skip
def test_the_file_is_refused_at_the_line(tmp_path, capsys, pairs, expected) -> None:
    assert plan_errors(tmp_path, edit(*pairs), capsys) == expected


def test_a_bare_host_needs_no_base_image_and_the_ngc_stack_lacks_nothing(tmp_path, capsys) -> None:
    text = edit("      base_image: lab/h100-env:1\n", "", "    image:", "    runtime: bare\n    image:")
    path = tmp_path / "hosts.yaml"
    path.write_text(text.replace("stack: torch2", "stack: ngc-22.11").replace("onnxruntime]", "tensorrt]"))
    assert cli.main(["plan", "--cluster", str(path)]) == 0, capsys.readouterr().err


@pytest.mark.docker
def test_a_torch2_image_builds_offline_on_a_local_python_base(cpu_image) -> None:
    """Built FROM the CPU test image (Debian's python3 with torch 1.13, torchvision 0.14: a stand-in for a
    lab's environment, stated in image.pins): the import and pin checks pass, the driver folder is on the
    paths beside the base image's own; the stack's own prefixes (torch 2.) refuse that base."""
    overrides = {"base_image": cpu_image.tag, "torch_version": "1.13", "torchvision_version": "0.14"}
    spec = images.image_spec(NVIDIA, overrides, None, {}, "torch2")
    lines: List[str] = []
    try:
        images.ensure_image(LocalTransport(), spec, BUILD_TIMEOUT, lines.append)
        assert any("pins ok: torch==1.13 torchvision==0.14" in line for line in lines), lines[-5:]
        shown = "import os; print(os.environ['PATH']); print(os.environ['LD_LIBRARY_PATH'])"
        argv = ["docker", "run", "--rm", "--network", "none", spec.tag, "python3", "-c", shown]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True)
        path, libraries = done.stdout.split()
        assert path.endswith(":/usr/local/nvidia/bin") and "/usr/bin" in path.split(":")
        assert libraries == "/usr/local/nvidia/lib64"
    finally:
        _rmi(spec.tag)
    refused = images.image_spec(NVIDIA, {"base_image": cpu_image.tag}, None, {}, "torch2")
    try:
        with pytest.raises(images.ImageBuildError, match="returned a non-zero code"):
            images.ensure_image(LocalTransport(), refused, BUILD_TIMEOUT, lines.append)
        refusal = "pinned packages not installed: torch==2. (installed: 1.13"
        assert any(line.startswith(refusal) for line in lines), lines[-5:]
    finally:
        _rmi(refused.tag)
