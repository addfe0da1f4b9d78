"""Vendor discovery, descriptors, device flags and peak tables."""

import json
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import vendors
from orchestrator.host.monitor import Monitor
from orchestrator.transport.local import LocalTransport
from runner_in_container.contract import TOOLKIT_PRECISIONS
from runner_in_container.protocol import STAGE_INFER
from vendors.errors import VendorError
from vendors.image import SdkFile
from vendors.peaks import Peak
from vendors.smi import MonitorSample, repeat_argv
from vendors.vendor import Vendor

REPO = Path(__file__).resolve().parent.parent
ALL = ("cpu", "iluvatar", "kunlunxin", "nvidia", "zixiao")
T = 1e12


# -- discovery -------------------------------------------------------------------------
def test_discover_finds_every_vendor_module_and_nothing_else():
    found = vendors.discover()
    assert sorted(found) == list(ALL)
    assert all(isinstance(v, Vendor) and v.name == n for n, v in found.items())


def test_get_names_the_known_vendors_when_unknown():
    assert vendors.get("nvidia").label == "NVIDIA"
    with pytest.raises(
        VendorError, match=r"unknown vendor 'acme' \(known: cpu, iluvatar, kunlunxin, nvidia, zixiao\)"
    ):
        vendors.get("acme")


def _copy_of_package(tmp_path: Path) -> Path:
    root = tmp_path / "checkout"
    shutil.copytree(REPO / "vendors", root / "vendors", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "dockerfiles", root / "dockerfiles")
    (root / "runner_in_container").mkdir()
    for name in ("__init__.py", "contract.py", "discovery.py"):  # the torch-free parts vendors use
        shutil.copy(REPO / "runner_in_container" / name, root / "runner_in_container" / name)
    return root


def _in_checkout(root: Path, code: str) -> subprocess.CompletedProcess:
    """Run ``code`` with ``root`` first on sys.path, so ``import vendors`` is the copy."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=str(root),
        capture_output=True,
        text=True,
        timeout=60,
    )


ACME = '''
"""A vendor added by files alone."""
from .peaks import Peak
from .vendor import Vendor


class Acme(Vendor):
    name = "acme"
    label = "Acme"
    template = "acme.Dockerfile.j2"
    image_vars = {"base_image": "acme/base:1", "acme_sdk_version": "9.9"}
    toolkits = {"pytorch": ("fp16",)}
    device_node = "/dev/acme{}"
    visible_devices_env = "ACME_VISIBLE_DEVICES"
    peaks = (Peak("Acme A1", r"A1", {"fp16": 1e12}, "Acme A1 datasheet"),)


VENDOR = Acme()
'''


def test_a_vendor_is_added_by_dropping_its_two_files_in(tmp_path):
    root = _copy_of_package(tmp_path)
    (root / "vendors" / "acme.py").write_text(ACME)
    (root / "dockerfiles" / "acme.Dockerfile.j2").write_text(
        "FROM {{ base_image }}\nENV V={{ acme_sdk_version }}\n"
    )
    proc = _in_checkout(
        root,
        """
        import json, jinja2, vendors
        acme = vendors.get("acme")
        loader = jinja2.FileSystemLoader("dockerfiles")
        env = jinja2.Environment(loader=loader, undefined=jinja2.StrictUndefined)
        print(json.dumps({
            "from": vendors.__file__,
            "names": sorted(vendors.discover()),
            "args": acme.docker_device_args([1]),
            "env": acme.device_env([1]),
            "peak": acme.peak_flops("Acme A1", "fp16"),
            "dockerfile": env.get_template(acme.template).render(**acme.image_vars),
        }))
        """,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["from"].startswith(str(root))
    assert out["names"] == sorted(ALL + ("acme",))
    assert out["args"] == ["--device", "/dev/acme1"]
    assert out["env"] == {"ACME_VISIBLE_DEVICES": "1"}
    assert out["peak"] == [1e12, "Acme A1 datasheet"]
    assert out["dockerfile"] == "FROM acme/base:1\nENV V=9.9"


@pytest.mark.parametrize(
    "module, message",
    [
        ("raise RuntimeError('boom')\n", r"vendors/broken\.py: cannot be imported: RuntimeError: boom"),
        ("VENDOR = object()\n", r"vendors/broken\.py: VENDOR must be an instance of vendors\.vendor\.Vendor"),
        (ACME, r"vendors/broken\.py: VENDOR\.name is 'acme'; it must equal the module name"),
        (ACME.replace("VENDOR = Acme()", ""), r"broken\.py: defines Acme \('acme'\) but exposes no VENDOR"),
        (ACME.replace('"fp16": 1e12', '"fp64": 1e12'), r"peak Acme A1: unknown precision\(s\) fp64"),
    ],
)
def test_a_broken_vendor_module_is_named(tmp_path, module, message):
    root = _copy_of_package(tmp_path)
    (root / "vendors" / "broken.py").write_text(module)
    proc = _in_checkout(
        root,
        "import vendors\nfrom runner_in_container.discovery import PluginError\n"
        "try:\n    vendors.discover()\nexcept PluginError as e:\n    print(e)",
    )
    assert proc.returncode == 0, proc.stderr
    assert re.search(message, proc.stdout), proc.stdout


def test_a_helper_module_without_vendor_is_ignored(tmp_path):
    root = _copy_of_package(tmp_path)
    (root / "vendors" / "helpers.py").write_text("X = 1\n")
    proc = _in_checkout(root, "import vendors\nprint(sorted(vendors.discover()))")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(sorted(ALL))


# -- descriptor checks -------------------------------------------------------------------
class _Good(Vendor):
    name = "good"
    label = "Good"
    template = "good.Dockerfile.j2"
    image_vars = {"base_image": "x:1"}
    toolkits = {"pytorch": ("fp16",)}


@pytest.mark.parametrize(
    "attrs, message",
    [
        ({"name": "Bad-Name"}, "name must be lowercase"),
        ({"image_vars": {}}, "image_vars.base_image is required"),
        ({"runner_device": "xpu"}, "runner_device must be 'cuda' or 'cpu'"),
        ({"toolkits": {"pytorch": ("fp64",)}}, "toolkit pytorch runs .*, not fp64"),
        ({"toolkits": {"pytorch": ()}}, "toolkit pytorch: no precisions"),
        ({"toolkits": {"ixrt": ("fp16", "int8")}}, "toolkit ixrt runs fp16, not int8"),
        ({"toolkits": {"t": ("fp16",)}}, "no toolkit t"),
        ({"sdk_files": (SdkFile("a.whl", "a"), SdkFile("a.whl", "again"))}, "sdk_files repeat a name"),
    ],
)
def test_validate_names_the_bad_field(attrs, message):
    _Good().validate()
    bad = type("Bad", (_Good,), attrs)()
    with pytest.raises(VendorError, match=message):
        bad.validate()


def test_sdk_file_and_peak_reject_malformed_declarations():
    with pytest.raises(VendorError, match="use letters, digits"):
        SdkFile("evil; rm -rf /.run", "x")
    with pytest.raises(VendorError, match="64 lowercase hex"):
        SdkFile("ok.run", "x", sha256="ABC")
    assert SdkFile("ok.run", "x", sha256="a" * 64).sha256 == "a" * 64
    with pytest.raises(VendorError, match="unknown precision"):
        Peak("X", "X", {"fp64": 1.0}, "doc")
    with pytest.raises(VendorError, match="positive"):
        Peak("X", "X", {"fp16": 0.0}, "doc")
    with pytest.raises(VendorError, match="source is required"):
        Peak("X", "X", {"fp16": 1.0}, "")


def test_sdk_files_declare_names_and_no_checksum_or_url():
    for vendor in vendors.discover().values():
        for sdk in vendor.sdk_files:
            # Vendors publish no checksums: the lab's cluster file supplies them. The one exception is a
            # PyPI wheel, whose sha256 PyPI publishes.
            assert sdk.sha256 == "" or sdk.name.endswith(".whl")
            assert "://" not in sdk.name + sdk.purpose


# -- containers --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, devices, args",
    [
        ("nvidia", [0, 1], ["--gpus", '"device=0,1"']),
        ("nvidia", [3], ["--gpus", '"device=3"']),
        (
            "iluvatar",
            [0, 2],
            ["--device", "/dev/iluvatar0", "--device", "/dev/iluvatar2", "--device", "/dev/itrctl"],
        ),
        ("kunlunxin", [1], ["--device", "/dev/xpu1", "--device", "/dev/xpuctrl"]),
        ("zixiao", [0, 1], ["--device", "/dev/gcu0", "--device", "/dev/gcu1"]),
        ("cpu", [0], []),
        ("nvidia", [], []),
        ("kunlunxin", [], []),
    ],
)
def test_docker_device_args(name, devices, args):
    assert vendors.get(name).docker_device_args(devices) == args


@pytest.mark.parametrize(
    "name, host, container",
    [
        ("nvidia", {"CUDA_VISIBLE_DEVICES": "2,5"}, {"CUDA_VISIBLE_DEVICES": "0,1"}),  # --gpus renumbers
        (
            "iluvatar",
            {"CUDA_VISIBLE_DEVICES": "2,5"},
            {"CUDA_VISIBLE_DEVICES": "2,5"},
        ),  # nodes keep host names
        ("kunlunxin", {"XPU_VISIBLE_DEVICES": "2,5"}, {"XPU_VISIBLE_DEVICES": "2,5"}),
        ("zixiao", {"TOPS_VISIBLE_DEVICES": "2,5"}, {"TOPS_VISIBLE_DEVICES": "2,5"}),
        ("cpu", {}, {}),
    ],
)
def test_visible_devices_on_the_host_and_in_the_container(name, host, container):
    vendor = vendors.get(name)
    assert vendor.device_env([2, 5]) == host
    assert vendor.container_env([2, 5]) == container


@pytest.mark.parametrize("devices", [[-1], [0, 0], ["1"], [True]])
def test_bad_device_lists_are_refused(devices):
    with pytest.raises(ValueError, match="device ind"):
        vendors.get("kunlunxin").docker_device_args(devices)


def test_no_vendor_needs_privileged_and_runner_devices_match_the_stack():
    found = vendors.discover()
    assert not any(v.privileged for v in found.values())
    assert {n: v.runner_device for n, v in found.items()} == {
        "cpu": "cpu", "iluvatar": "cuda", "kunlunxin": "cpu", "nvidia": "cuda", "zixiao": "cpu",
    }  # fmt: skip


def _docker_ok() -> bool:
    if not shutil.which("docker"):
        return False
    probe = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, timeout=30
    )
    return probe.returncode == 0


@pytest.mark.docker
def test_docker_reads_the_quoted_gpus_value_as_two_device_ids():
    """Unquoted, ``--gpus device=0,1`` becomes DeviceIDs ["0"] with Count 1: the quotes matter."""
    if not _docker_ok():
        pytest.skip("no docker engine reachable")
    name = f"rn50bench-test-vendors-gpus-{time.monotonic_ns()}"
    argv = ["docker", "create", "--name", name] + vendors.get("nvidia").docker_device_args([0, 1])
    try:
        subprocess.run(argv + ["local/debian:bookworm", "true"], check=True, capture_output=True, timeout=60)
        inspect = subprocess.run(
            ["docker", "inspect", "--format", "{{json .HostConfig.DeviceRequests}}", name],
            check=True, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)
    requests = json.loads(inspect.stdout)
    assert [(r["DeviceIDs"], r["Count"], r["Capabilities"]) for r in requests] == [(["0", "1"], 0, [["gpu"]])]


# -- monitor loop ----------------------------------------------------------------------------
def test_repeat_argv_reruns_until_killed_and_stops_when_the_command_fails(tmp_path):
    argv = repeat_argv(["echo", "tick; $(touch %s)" % (tmp_path / "injected")], 0.05)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    first = [proc.stdout.readline() for _ in range(3)]  # it repeats: three lines come, however slow
    proc.kill()
    out, _ = proc.communicate(timeout=60)
    lines = "".join(first + [out]).splitlines()
    assert len(lines) >= 3 and set(lines) == {"tick; $(touch %s)" % (tmp_path / "injected")}
    assert not (tmp_path / "injected").exists()  # values are arguments, never shell text
    done = subprocess.run(
        repeat_argv(["sh", "-c", "echo once; exit 3"], 0.05), capture_output=True, text=True, timeout=120
    )
    assert (done.returncode, done.stdout) == (3, "once\n")
    with pytest.raises(ValueError, match="positive"):
        repeat_argv(["true"], 0)


def test_monitor_summary_takes_power_and_utilisation_inside_the_infer_window_only():
    monitor = Monitor(LocalTransport(), vendors.get("nvidia"), 0, ["true"], 1.0)  # not started: a summary
    monitor.windows[STAGE_INFER] = [10.0, 20.0]
    monitor.samples = [
        (9.9996, MonitorSample(0, 1.0, 99.0, 900.0)),  # before the window, though its row rounds to 10.0
        (10.0, MonitorSample(0, 2.0, 50.0, 100.0)),
        (15.0, MonitorSample(0, 3.0)),  # the SMI gave memory only
        (20.0, MonitorSample(0, 4.0, 70.0, 200.0)),
        (20.5, MonitorSample(0, 8.0, 1.0, 900.0)),  # after it
    ]
    out = monitor.summary({STAGE_INFER: 1000})
    assert (out["infer_mean_power_w"], out["infer_power_samples"]) == (150.0, 2)
    assert out["infer_energy_j_per_img"] == pytest.approx(150.0 * 10.0 / 1000)
    assert out["infer_mean_utilization_pct"] == 60.0
    assert out["peak_memory_used_mib"] == 8.0
    assert [row["t"] for row in out["samples"]] == [10.0, 10.0, 15.0, 20.0, 20.5]


# -- peaks -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "vendor, model, precision, flops",
    [
        ("nvidia", "NVIDIA H200", "fp16", 989.4 * T),
        ("nvidia", "NVIDIA H200", "bf16", 989.4 * T),
        ("nvidia", "NVIDIA H200", "tf32", 494.7 * T),
        ("nvidia", "NVIDIA H200", "fp32", 67 * T),
        ("nvidia", "NVIDIA H200", "int8", 1978.9 * T),
        ("nvidia", "NVIDIA H100 80GB HBM3", "fp8", 1978.9 * T),
        ("nvidia", "NVIDIA H100 PCIe", "fp16", 756.5 * T),
        ("nvidia", "NVIDIA H100 PCIe", "fp32", 51 * T),
        ("nvidia", "NVIDIA A100-SXM4-40GB", "fp16", 312 * T),
        ("nvidia", "NVIDIA A100-SXM4-80GB", "tf32", 156 * T),
        ("nvidia", "NVIDIA A100-PCIE-40GB", "int8", 624 * T),
        ("nvidia", "NVIDIA A100 80GB PCIe", "fp32", 19.5 * T),
        ("iluvatar", "Iluvatar MR-V100", "fp16", 96 * T),
        ("iluvatar", "Iluvatar BI-V100", "fp32", 37 * T),
    ],
)
def test_peak_lookup(vendor, model, precision, flops):
    found = vendors.get(vendor).peak_flops(model, precision)
    assert found is not None
    assert found[0] == pytest.approx(flops)
    assert found[1]


def test_h200_peak_names_its_datasheet():
    flops, source = vendors.get("nvidia").peak_flops("NVIDIA H200", "fp16")
    assert flops == pytest.approx(989.4e12)
    assert "H200" in source and "datasheet" in source and "sparsity" in source


@pytest.mark.parametrize(
    "vendor, model, precision",
    [
        ("nvidia", "NVIDIA H200 NVL", "fp16"),  # another card, another peak
        ("nvidia", "NVIDIA GH200 480GB", "fp16"),
        ("nvidia", "NVIDIA H100 NVL", "fp16"),
        ("nvidia", "Tesla T4", "fp16"),
        ("nvidia", "NVIDIA A100-SXM4-40GB", "fp8"),  # the A100 has no fp8
        ("nvidia", "", "fp16"),
        ("iluvatar", "Iluvatar BI-V150", "fp16"),
        ("kunlunxin", "R200", "fp16"),
        ("zixiao", "C100", "fp16"),
        ("cpu", "Intel(R) Xeon(R) Processor", "fp32"),
    ],
)
def test_unknown_device_or_precision_has_no_peak(vendor, model, precision):
    assert vendors.get(vendor).peak_flops(model, precision) is None


@pytest.mark.parametrize(
    "model, precision, p_infer_core, mfu_percent",
    [
        ("NVIDIA A100-SXM4-40GB", "fp16", 12698.7, 16.8),  # seed table: tensorrt fp16
        ("Iluvatar MR-V100", "fp16", 2721.402, 11.7),  # seed table: ixrt fp16
    ],
)
def test_peaks_reproduce_the_reference_tables_flagperf_convention_mfu(
    model, precision, p_infer_core, mfu_percent
):
    vendor = vendors.get("iluvatar" if "Iluvatar" in model else "nvidia")
    flops, _ = vendor.peak_flops(model, precision)
    assert round(100 * 4.12e9 * p_infer_core / flops, 1) == mfu_percent


def test_describe_is_plain_data_for_the_vendors_command():
    described = vendors.get("nvidia").describe()
    json.dumps(described)
    assert described["toolkits"]["tensorrt"] == ["fp32", "tf32", "fp16", "int8"]
    assert described["docker_device_args_example"] == ["--gpus", '"device=0,1"']
    h200 = [d for d in described["devices"] if d["model"] == "NVIDIA H200 SXM"][0]
    assert h200["peak_flops"]["fp16"] == pytest.approx(989.4e12) and h200["source"]
    kunlunxin = vendors.get("kunlunxin").describe()
    assert kunlunxin["devices"] == [] and kunlunxin["sdk_files"][0]["name"] == "XTCL-ubuntu_x86_64.tar.gz"


@pytest.mark.parametrize(
    "name, toolkits",
    [
        ("nvidia", {"pytorch", "inductor", "cudnn_fused", "onnxruntime", "tensorrt", "torch_tensorrt"}),
        ("iluvatar", {"pytorch", "ixrt"}),
        ("kunlunxin", {"xtcl"}),
        ("zixiao", {"zxrt"}),
        ("cpu", {"pytorch", "inductor", "onnxruntime"}),
    ],
)
def test_toolkits_per_vendor(name, toolkits):
    vendor = vendors.get(name)
    assert set(vendor.toolkits) == toolkits
    extra = {"iluvatar": {"ixrt": ("fp16",)}, "kunlunxin": {"xtcl": ("fp32", "fp16")}}.get(name, {})
    for toolkit, precisions in extra.items():
        assert vendor.toolkits[toolkit] == precisions


def test_every_vendor_row_of_the_capability_matrix_is_within_what_its_toolkits_run():
    """A vendor may offer a toolkit at fewer precisions than the toolkit runs, never at more."""
    for vendor in vendors.discover().values():
        for toolkit, precisions in vendor.toolkits.items():
            assert set(precisions) <= set(TOOLKIT_PRECISIONS[toolkit]), (vendor.name, toolkit)


def test_vendors_package_does_not_import_torch():
    code = "import sys, vendors; vendors.discover(); print('torch' in sys.modules)"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=str(REPO), capture_output=True, text=True, timeout=60
    )
    assert proc.stdout.strip() == "False", proc.stderr
