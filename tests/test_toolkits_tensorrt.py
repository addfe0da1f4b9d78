"""The pure-Python parts of the TensorRT and Torch-TensorRT adapters.

TensorRT itself is not installed here (nor on the team's H200): these tests cover
version dispatch, calibration batching and settings, not TensorRT's API.
"""

import pytest
import torch

from runner_in_container.toolkits import ToolkitSettings, load
from runner_in_container.toolkits.sdk import major_version
from runner_in_container.toolkits.tensorrt import CalibrationFeeder, binding_api
from runner_in_container.toolkits.torch_tensorrt import compile_settings, default_ir


@pytest.mark.parametrize(
    "version, expected",
    [("8.5.1.7", True), ("8.6.1.post1", True), ("9.3.0", True), ("10.0.1", False), ("10.13.3.9", False)],
)
def test_binding_api_by_version(version, expected):
    assert binding_api(version) is expected


def test_major_version():
    assert major_version("2.1.0+cu118") == 2
    assert major_version("1.13.0a0+937e930") == 1
    with pytest.raises(ValueError, match="major version"):
        major_version("unknown")


def images(counts):
    """Batches of the given sizes; image i is filled with the value i."""
    start = 0
    for count in counts:
        values = torch.arange(start, start + count, dtype=torch.float32)
        yield values.view(count, 1, 1, 1).expand(count, 1, 2, 2).clone()
        start += count


def test_calibration_feeder_rebatches_and_drops_the_remainder():
    feeder = CalibrationFeeder(lambda: images([3, 5, 2]), 4, (1, 2, 2), torch.device("cpu"))
    first = feeder.next_batch()
    assert first is feeder.buffer
    assert first[:, 0, 0, 0].tolist() == [0, 1, 2, 3]
    second = feeder.next_batch()
    assert second[:, 0, 0, 0].tolist() == [4, 5, 6, 7]
    assert feeder.next_batch() is None
    assert (feeder.fed, feeder.dropped) == (8, 2)
    assert feeder.next_batch() is None


def test_calibration_feeder_rejects_other_image_shapes():
    feeder = CalibrationFeeder(lambda: [torch.zeros(4, 3, 8, 8)], 4, (3, 224, 224), torch.device("cpu"))
    with pytest.raises(ValueError, match="calibration batch has shape"):
        feeder.next_batch()


def test_tensorrt_settings():
    cuda = torch.device("cuda")
    assert load("tensorrt")(ToolkitSettings(cuda, "fp16", 8, "/tmp")).input_dtype() == torch.float16
    assert load("tensorrt")(ToolkitSettings(cuda, "int8", 8, "/tmp")).input_dtype() == torch.float32
    with pytest.raises(ValueError, match="needs a CUDA device"):
        load("tensorrt")(ToolkitSettings(torch.device("cpu"), "fp32", 8, "/tmp"))
    with pytest.raises(ValueError, match="does not support precision bf16"):
        load("tensorrt")(ToolkitSettings(cuda, "bf16", 8, "/tmp"))


def test_torch_tensorrt_ir_and_settings():
    assert default_ir("1.3.0") == "ts"
    assert default_ir("2.4.0+cu124") == "dynamo"
    fp32 = compile_settings("fp32", (8, 3, 224, 224), "ts")
    assert fp32 == {
        "ir": "ts",
        "input_shape": (8, 3, 224, 224),
        "input_dtype": torch.float32,
        "enabled_precisions": {torch.float32},
        "disable_tf32": True,
    }
    assert compile_settings("tf32", (8, 3, 224, 224), "dynamo")["disable_tf32"] is False
    fp16 = compile_settings("fp16", (8, 3, 224, 224), "dynamo")
    assert (fp16["input_dtype"], fp16["enabled_precisions"]) == (torch.float16, {torch.float16})
    with pytest.raises(ValueError, match="torch_tensorrt_ir"):
        compile_settings("fp32", (1, 3, 8, 8), "fx")
