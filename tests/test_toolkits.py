"""Toolkit discovery, the CPU-runnable toolkits against eager fp32, and the import guards."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import torch

from runner_in_container import contract
from runner_in_container.toolkits import Toolkit, ToolkitSettings, ToolkitUnavailable, load, names
from runner_in_container.toolkits.hostio import to_numpy, to_torch
from runner_in_container.toolkits.onnxruntime import USE_TF32_SINCE, version_tuple
from runner_in_container.toolkits.precision import set_tf32, tf32_flags

from .test_onnx_export import tiny_net

TOOLKITS_DIR = Path(__file__).resolve().parent.parent / "runner_in_container" / "toolkits"

REPO = Path(__file__).resolve().parent.parent
CPU = torch.device("cpu")
EXPECTED = [
    "cudnn_fused", "inductor", "ixrt", "onnxruntime", "pytorch", "tensorrt", "torch_tensorrt", "xtcl", "zxrt"
]  # fmt: skip
SDKS = ("tensorrt", "torch_tensorrt", "ixrt", "tvm", "TopsInference", "onnxruntime")


@pytest.fixture
def restore_tf32():
    before = tf32_flags()
    yield
    set_tf32(before["cuda.matmul.allow_tf32"])
    torch.backends.cudnn.allow_tf32 = before["cudnn.allow_tf32"]


def make(name, tmp_path, precision="fp32", device=CPU, **options):
    settings = ToolkitSettings(device, precision, 2, str(tmp_path), options=options)
    return load(name)(settings)


def reference(model, batch):
    with torch.no_grad():
        return model(batch)


def test_names_found_by_scanning():
    assert names() == EXPECTED
    for name in EXPECTED:
        assert load(name).name == name


def test_the_toolkit_modules_are_the_contracts_and_run_its_precisions():
    """Each toolkit runs exactly what contract.TOOLKIT_PRECISIONS says; the orchestrator plans from that."""
    assert tuple(names()) == contract.TOOLKITS
    for name in names():
        assert load(name).precisions == contract.TOOLKIT_PRECISIONS[name]


def test_a_toolkit_outside_the_contract_is_refused():
    with pytest.raises(TypeError, match="toolkit nope is not in contract.TOOLKIT_PRECISIONS"):
        type("Nope", (Toolkit,), {"name": "nope"})


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown toolkit 'nope'.*inductor, ixrt, onnxruntime"):
        load("nope")


def test_discovery_imports_no_sdk():
    code = (
        "import sys\n"
        "from runner_in_container.toolkits import names\n"
        "names()\n"
        f"print(','.join(m for m in {SDKS!r} if m in sys.modules))\n"
    )
    argv = [sys.executable, "-c", code]
    out = subprocess.run(argv, cwd=str(REPO), capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_pytorch_fp32_matches_eager_and_sets_tf32_off(tmp_path, restore_tf32):
    set_tf32(True)
    model, batch = tiny_net(), torch.randn(2, 3, 16, 16)
    toolkit = make("pytorch", tmp_path)
    forward = toolkit.compile(model, batch)
    assert tf32_flags() == {"cuda.matmul.allow_tf32": False, "cudnn.allow_tf32": False}
    assert torch.equal(forward(batch), reference(model, batch))
    assert toolkit.durations["compile_s"] > 0 and toolkit.durations["export_s"] == 0
    assert toolkit.channels_last() is False and toolkit.input_dtype() == torch.float32
    assert toolkit.versions()["torch"] == torch.__version__


def test_pytorch_tf32_turns_tf32_on(tmp_path, restore_tf32):
    set_tf32(False)
    make("pytorch", tmp_path, "tf32").compile(tiny_net(), torch.randn(2, 3, 8, 8))
    assert tf32_flags() == {"cuda.matmul.allow_tf32": True, "cudnn.allow_tf32": True}


def test_pytorch_bf16_casts_a_copy(tmp_path, restore_tf32):
    model, batch = tiny_net(), torch.randn(2, 3, 16, 16)
    toolkit = make("pytorch", tmp_path, "bf16")
    assert toolkit.input_dtype() == torch.bfloat16
    out = toolkit.compile(model, batch.to(torch.bfloat16))(batch.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the caller's model is untouched
    assert torch.allclose(out.float(), reference(model, batch), atol=0.1, rtol=0.05)


def test_onnxruntime_cpu_matches_eager(tmp_path):
    model, batch = tiny_net(), torch.randn(2, 3, 16, 16)
    toolkit = make("onnxruntime", tmp_path)
    forward = toolkit.compile(model, batch)
    other = torch.randn(2, 3, 16, 16)
    assert torch.allclose(forward(other), reference(model, other), atol=1e-5)
    assert any("CPUExecutionProvider" in note for note in toolkit.notes)
    assert toolkit.durations["export_s"] > 0 and toolkit.durations["compile_s"] > 0
    assert (tmp_path / "onnxruntime-bs2-float32.onnx").is_file()
    assert "onnxruntime" in toolkit.versions()


def test_onnxruntime_refuses_fp16_on_cpu(tmp_path):
    with pytest.raises(ValueError, match="onnxruntime runs fp16 only on CUDA"):
        make("onnxruntime", tmp_path, "fp16")


@pytest.mark.slow
def test_inductor_cpu_matches_eager(tmp_path, restore_tf32):
    model, batch = tiny_net(), torch.randn(2, 3, 16, 16)
    toolkit = make("inductor", tmp_path)
    forward = toolkit.compile(model, batch)
    other = torch.randn(2, 3, 16, 16)
    assert torch.allclose(forward(other), reference(model, other), atol=1e-5)
    assert "inductor_mode=default (default)" in toolkit.notes
    assert "torch._inductor.config.freezing=True" in toolkit.notes
    assert toolkit.durations["compile_s"] > 0


def test_inductor_rejects_unknown_knob_values(tmp_path):
    with pytest.raises(ValueError, match="^inductor_mode: 'fastest' is not one of default, reduce-overhead"):
        make("inductor", tmp_path, inductor_mode="fastest").compile(tiny_net(), torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match="^inductor_freezing: must be 0 or 1, got 'yes'$"):
        make("inductor", tmp_path, inductor_freezing="yes").compile(tiny_net(), torch.randn(2, 3, 8, 8))


def test_option_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("RN50BENCH_INDUCTOR_MODE", "reduce-overhead")
    assert make("inductor", tmp_path).option("inductor_mode", "default") == "reduce-overhead"
    toolkit = make("inductor", tmp_path, inductor_mode="max-autotune")
    assert toolkit.option("inductor_mode", "default") == "max-autotune"
    assert toolkit.notes == ["inductor_mode=max-autotune (settings)"]
    monkeypatch.delenv("RN50BENCH_INDUCTOR_MODE")
    assert make("inductor", tmp_path).option("inductor_mode", "default") == "default"


def test_xtcl_refuses_fp32_with_reduced_precision_env(tmp_path, monkeypatch):
    monkeypatch.setenv("XTCL_USE_FP16", "1")
    with pytest.raises(ValueError, match="XTCL_USE_FP16"):
        make("xtcl", tmp_path)
    make("xtcl", tmp_path, "fp16")  # fp16 is what it says


def test_ixrt_runs_w16a32(tmp_path):
    toolkit = make("ixrt", tmp_path, "fp16", torch.device("cuda"))
    assert toolkit.input_dtype() == torch.float32
    with pytest.raises(ValueError, match="does not support precision fp32"):
        make("ixrt", tmp_path, "fp32", torch.device("cuda"))


@pytest.mark.parametrize(
    "name, module, device, precision",
    [
        ("tensorrt", "tensorrt", "cuda", "fp16"),
        ("torch_tensorrt", "torch_tensorrt", "cuda", "fp16"),
        ("ixrt", "ixrt", "cuda", "fp16"),
        ("xtcl", "tvm", "cpu", "fp32"),
        ("zxrt", "TopsInference", "cpu", "fp16"),
    ],
)
def test_missing_sdk_is_reported(tmp_path, name, module, device, precision):
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed here")
    toolkit = make(name, tmp_path, precision, torch.device(device))
    message = f"{module} is not importable: ModuleNotFoundError: No module named '{module}'"
    with pytest.raises(ToolkitUnavailable) as raised:
        toolkit.compile(tiny_net(), torch.randn(2, 3, 8, 8))
    assert str(raised.value) == message
    with pytest.raises(ToolkitUnavailable, match="is not importable"):
        toolkit.versions()
    assert list(tmp_path.iterdir()) == []  # failed before exporting anything


def test_onnxruntime_use_tf32_gate():
    assert version_tuple("1.18.0") >= USE_TF32_SINCE
    assert version_tuple("1.30.0+cu130") >= USE_TF32_SINCE
    assert version_tuple("1.17.3") < USE_TF32_SINCE
    assert version_tuple("1.9") < USE_TF32_SINCE


def test_hostio_round_trip_of_a_channels_last_batch():
    batch = torch.randn(2, 3, 4, 5).contiguous(memory_format=torch.channels_last).half()
    array = to_numpy(batch)
    assert array.flags["C_CONTIGUOUS"] and array.dtype == numpy.float16 and array.shape == (2, 3, 4, 5)
    back = to_torch(array, CPU)
    assert back.dtype == torch.float16 and torch.equal(back, batch)


def test_every_knob_a_toolkit_reads_is_declared_in_the_contract_and_no_other():
    """What ``plan`` accepts in ``toolkit_options`` (contract.TOOLKIT_KNOBS) is what each module reads,
    also for the toolkits that cannot run here (their sources are read)."""
    read = {}
    for name in names():
        source = (TOOLKITS_DIR / (name + ".py")).read_text()
        read[name] = tuple(sorted(set(re.findall(r'self\.(?:option|switch)\(\s*"([a-z0-9_]+)"', source))))
    declared = {name: tuple(sorted(knobs)) for name, knobs in contract.TOOLKIT_KNOBS.items()}
    assert {name: knobs for name, knobs in read.items() if knobs} == declared


def test_a_knob_the_contract_does_not_declare_is_refused(tmp_path):
    toolkit = make("pytorch", tmp_path)
    with pytest.raises(KeyError, match="knob pytorch_mode of toolkit pytorch is not in contract.KNOBS"):
        toolkit.option("pytorch_mode", "x")
