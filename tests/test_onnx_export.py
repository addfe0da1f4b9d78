"""ONNX export (runner_in_container/toolkits/onnx_export.py) checked against real onnxruntime."""

import hashlib

import numpy
import onnx
import onnxruntime
import pytest
import torch
import torchvision

from runner_in_container.toolkits import ToolkitSettings, load
from runner_in_container.toolkits.onnx_export import (
    DEFAULT_OPSET,
    INPUT_NAME,
    OUTPUT_NAME,
    export_for,
    export_onnx,
    sha256_file,
)


def tiny_net(seed: int = 0) -> torch.nn.Module:
    """conv-BN-ReLU-pool-linear in eval mode, with BN statistics that are not the identity."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 10),
    )
    bn = net[1]
    bn.running_mean.uniform_(-0.5, 0.5)
    bn.running_var.uniform_(0.5, 2.0)
    bn.weight.data.uniform_(0.5, 1.5)
    bn.bias.data.uniform_(-0.2, 0.2)
    return net.eval()


def run_onnxruntime(path: str, batch: torch.Tensor) -> numpy.ndarray:
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: batch.numpy()})[0]


def assert_matches(path: str, model: torch.nn.Module, batch: torch.Tensor, rel_tol: float) -> None:
    with torch.no_grad():
        expected = model(batch).numpy()
    got = run_onnxruntime(path, batch)
    assert got.shape == expected.shape
    scale = max(1.0, float(numpy.abs(expected).max()))
    assert float(numpy.abs(got - expected).max()) <= rel_tol * scale
    assert (got.argmax(axis=1) == expected.argmax(axis=1)).all()


def test_export_tiny_net_matches_onnxruntime(tmp_path):
    model, batch = tiny_net(), torch.randn(2, 3, 16, 16)
    path, digest = export_onnx(model, batch, str(tmp_path / "tiny.onnx"))
    assert digest == hashlib.sha256(open(path, "rb").read()).hexdigest() == sha256_file(path)
    graph = onnx.load(path)
    assert [o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")] == [DEFAULT_OPSET]
    assert [i.name for i in graph.graph.input] == [INPUT_NAME]
    assert [o.name for o in graph.graph.output] == [OUTPUT_NAME]
    dims = [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [2, 3, 16, 16]  # fixed batch size, no symbolic dimension
    assert_matches(path, model, batch, rel_tol=1e-5)
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.onnx"]  # no temporary file left


def test_export_refuses_training_mode(tmp_path):
    model = tiny_net().train()
    with pytest.raises(ValueError, match="eval mode"):
        export_onnx(model, torch.randn(1, 3, 8, 8), str(tmp_path / "x.onnx"))
    assert list(tmp_path.iterdir()) == []


def test_export_for_leaves_the_model_alone_and_records_time(tmp_path):
    model = tiny_net()
    toolkit = load("onnxruntime")(ToolkitSettings(torch.device("cpu"), "fp32", 2, str(tmp_path)))
    path, digest = export_for(toolkit, model, torch.randn(2, 3, 8, 8))
    assert path == str(tmp_path / "onnxruntime-bs2-float32.onnx")
    assert digest == sha256_file(path)
    assert toolkit.durations["export_s"] > 0
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert any(digest in note for note in toolkit.notes)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_export_torchvision_resnet_matches_onnxruntime(tmp_path, arch):
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(weights=None).eval()
    batch = torch.randn(2, 3, 224, 224)
    path, _ = export_onnx(model, batch, str(tmp_path / (arch + ".onnx")))
    assert_matches(path, model, batch, rel_tol=1e-5)
