"""cudnn_fused: the fold + fusion pass on the CPU (composite ops there), settings checks, registration."""

import contextlib
import gc
import weakref

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import vendors
from runner_in_container.cases.efficientnet_lite0 import CASE as EFFICIENTNET_LITE0
from runner_in_container.toolkits import ToolkitSettings, ToolkitUnavailable, cudnn_fused, load
from runner_in_container.toolkits.cudnn_fused import CudnnFused, FusedConvReLU, fold_and_fuse

CUDA = torch.device("cuda")


def make(tmp_path, device=CUDA, batch_size=64, **options):
    return CudnnFused(ToolkitSettings(device, "fp16", batch_size, str(tmp_path), options=options))


def called_modules(gm):
    return [gm.get_submodule(node.target) for node in gm.graph.nodes if node.op == "call_module"]


def max_relative_difference(model, gm, batch):
    with torch.no_grad():
        expected, got = model(batch), gm(batch)
    return float((got - expected).abs().max() / expected.abs().max())


@pytest.fixture(scope="module")
def resnet50():
    torch.manual_seed(0)
    model = torchvision.models.resnet50().eval()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):  # statistics away from the identity, so folding shows
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.2, 0.2)
    return model


class Branchy(nn.Module):
    """A conv whose output has two users, F.relu and torch.add(z, conv) patterns, a bias-free conv, ReLU6."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Conv2d(3, 4, 3, padding=1)
        self.plain = nn.Conv2d(4, 4, 1, bias=False)
        self.residual = nn.Conv2d(4, 4, 3, padding=1)
        self.six = nn.Conv2d(4, 4, 1)
        self.act6 = nn.ReLU6()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.shared(x)
        a = F.relu(self.plain(torch.relu(y)))
        b = torch.relu(torch.add(y, self.residual(a)))
        return self.act6(self.six(b))


def test_resnet50_fuses_every_conv_relu_and_matches_fp32(resnet50):
    gm, counts = fold_and_fuse(resnet50)
    assert counts == {"conv_relu": 33, "conv_add_relu": 16, "bias_moved": 4, "batchnorm_folded": 53}
    modules = called_modules(gm)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.ReLU)) for m in modules)
    assert sum(isinstance(m, FusedConvReLU) and m.add for m in modules) == 16
    downsample = [m for m in modules if isinstance(m, nn.Conv2d)]  # the add took conv3
    assert len(downsample) == 4 and all(m.bias is None for m in downsample)  # their bias is in the fused call
    assert not any(isinstance(m, nn.BatchNorm2d) for m in gm.modules())  # the originals are deleted
    batch = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    assert max_relative_difference(resnet50, gm, batch) < 1e-4
    assert sum(isinstance(m, nn.BatchNorm2d) for m in resnet50.modules()) == 53  # the caller's is untouched


def test_a_shared_conv_and_relu6_are_left_alone():
    torch.manual_seed(0)
    model = Branchy().eval()
    gm, counts = fold_and_fuse(model)
    assert counts == {"conv_relu": 1, "conv_add_relu": 1, "bias_moved": 0, "batchnorm_folded": 0}
    calls = {node.target: node for node in gm.graph.nodes if node.op == "call_module"}
    assert sorted(calls) == ["act6", "fused_plain", "fused_residual", "shared", "six"]
    assert calls["fused_residual"].args[1] is calls["shared"]  # z: the other operand of torch.add
    assert gm.shared.bias is not None  # z's conv feeds two nodes: its bias stays
    assert gm.fused_residual.add and not gm.fused_plain.add
    assert torch.equal(gm.fused_plain.bias, torch.zeros(4))
    batch = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    assert max_relative_difference(model, gm, batch) < 1e-5


class TwoResiduals(nn.Module):
    """``relu(conv(x) + shortcut(x))`` with its own shortcut conv, then again with a shortcut conv that is
    also called elsewhere (its bias must stay: the other call needs it)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_a, self.short_a = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 4, 1)
        self.conv_b, self.short_b = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.conv_a(x) + self.short_a(x))
        z = F.relu(self.conv_b(y) + self.short_b(y))
        return z + self.short_b(z)


def test_a_residual_conv_bias_moves_only_when_that_conv_is_called_once():
    torch.manual_seed(0)
    model = TwoResiduals().eval()
    gm, counts = fold_and_fuse(model)
    assert counts == {"conv_relu": 0, "conv_add_relu": 2, "bias_moved": 1, "batchnorm_folded": 0}
    assert gm.short_a.bias is None and gm.short_b.bias is not None
    expected = model.conv_a.bias + model.short_a.bias
    assert torch.equal(gm.fused_conv_a.bias, expected)
    assert torch.equal(gm.fused_conv_b.bias, model.conv_b.bias)
    batch = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    assert max_relative_difference(model, gm, batch) < 1e-5


def test_efficientnet_lite0_has_nothing_to_fuse():
    """Its convolutions pad in their own forward (traced as F.conv2d calls), its activation is ReLU6."""
    torch.manual_seed(0)
    model = EFFICIENTNET_LITE0.architecture().eval()
    gm, counts = fold_and_fuse(model)
    assert counts == {"conv_relu": 0, "conv_add_relu": 0, "bias_moved": 0, "batchnorm_folded": 0}
    assert not any(isinstance(m, FusedConvReLU) for m in gm.modules())
    assert sum(isinstance(m, nn.ReLU6) for m in called_modules(gm)) > 0
    batch = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    assert max_relative_difference(model, gm, batch) == 0.0


def test_runs_on_cuda_only(tmp_path):
    with pytest.raises(ValueError) as raised:
        make(tmp_path, torch.device("cpu"))
    assert str(raised.value) == "toolkit cudnn_fused runs on CUDA devices (cuDNN); got cpu"


def test_graph_knob(tmp_path):
    with pytest.raises(ValueError, match="^cudnn_fused_graph: must be 0 or 1, got 'yes'$"):
        make(tmp_path, cudnn_fused_graph="yes")
    toolkit = make(tmp_path, cudnn_fused_graph="0")
    assert toolkit.graph is False and toolkit.branches == 1
    assert toolkit.notes == [
        "cudnn_fused_graph=0 (settings)",
        "cudnn_fused_branches=1 (default)",
        "cudnn_fused_benchmark=0 (default)",
    ]
    default = make(tmp_path)
    assert default.graph is True and default.branches == 2 and default.benchmark is False
    assert make(tmp_path, cudnn_fused_branches="4").branches == 4
    assert make(tmp_path, batch_size=63).branches == 1  # small batches: one chunk is faster than two
    assert make(tmp_path, batch_size=8, cudnn_fused_branches="2").branches == 2  # as asked
    assert toolkit.channels_last() is True and toolkit.input_dtype() == torch.float16


@pytest.mark.parametrize(
    "value, what",
    [("0", "must be in 1..8, got 0"), ("9", "must be in 1..8, got 9"), ("-1", "must be in 1..8, got -1"),
     ("two", "not an integer: 'two'"), ("", "not an integer: ''")],
)  # fmt: skip
def test_branches_knob_is_checked(tmp_path, value, what):
    with pytest.raises(ValueError) as raised:
        make(tmp_path, cudnn_fused_branches=value)
    assert str(raised.value) == "cudnn_fused_branches: " + what


def test_benchmark_knob(tmp_path):
    assert make(tmp_path, cudnn_fused_benchmark="1").benchmark is True
    with pytest.raises(ValueError, match="^cudnn_fused_benchmark: must be 0 or 1, got 'on'$"):
        make(tmp_path, cudnn_fused_benchmark="on")


def test_branches_need_the_graph(tmp_path):
    with pytest.raises(ValueError, match=r"^cudnn_fused_branches: more than 1 needs cudnn_fused_graph=1"):
        make(tmp_path, cudnn_fused_graph="0", cudnn_fused_branches="2")


def test_missing_cudnn_op_is_reported(tmp_path, monkeypatch):
    monkeypatch.delattr(torch, "cudnn_convolution_add_relu")
    with pytest.raises(ToolkitUnavailable, match=r"has no torch\.cudnn_convolution_add_relu$"):
        make(tmp_path).compile(Branchy(), torch.randn(2, 3, 8, 8))


def test_registered_for_nvidia():
    assert load("cudnn_fused") is CudnnFused
    assert vendors.get("nvidia").toolkits["cudnn_fused"] == ("fp32", "tf32", "fp16", "bf16")
    assert CudnnFused.precisions == ("fp32", "tf32", "fp16", "bf16")


class _Stream:
    """CPU stand-in for a CUDA stream: records the order of the work queued and awaited."""

    log = []

    def __init__(self, device=None):
        self.name = f"stream{len(_Stream.log)}"
        _Stream.log.append(("new", self.name))

    def wait_stream(self, other):
        _Stream.log.append(("wait", self.name, other.name))


def test_branches_split_the_batch_over_streams_and_join_in_order(monkeypatch):
    _Stream.log = []
    current = _Stream()
    active = [current]

    @contextlib.contextmanager
    def on(stream):
        active.append(stream)
        yield
        active.pop()

    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: current)
    monkeypatch.setattr(torch.cuda, "stream", on)
    seen = []

    def module(chunk):
        seen.append((active[-1].name, chunk.shape[0]))
        return chunk * 2

    streams = [_Stream(), _Stream()]
    batch = torch.arange(10.0).view(5, 2)
    out = cudnn_fused.branched(module, batch.chunk(2), streams)
    assert torch.equal(out, batch * 2)  # the chunks' outputs in batch order
    assert seen == [("stream1", 3), ("stream2", 2)]
    waits = [entry for entry in _Stream.log if entry[0] == "wait"]
    assert waits == [  # each branch starts after the current stream's work; the current stream joins both
        ("wait", "stream1", "stream0"),
        ("wait", "stream2", "stream0"),
        ("wait", "stream0", "stream1"),
        ("wait", "stream0", "stream2"),
    ]
    assert torch.equal(cudnn_fused.branched(module, [batch], []), batch * 2)  # one branch: no streams


class _RecordingGraph:
    """CPU stand-in for torch.cuda.CUDAGraph: replay() runs ``work`` (what a real graph replays)."""

    capturing = None

    def __init__(self):
        self.work = None

    def replay(self):
        self.work()


def test_the_graphed_forward_keeps_the_module_it_captured(monkeypatch):
    """The graph reads the module's weight memory on every replay: the callable must keep the module alive
    (on the H200 a freed module's memory went to other tensors and the replays computed garbage)."""

    @contextlib.contextmanager
    def capture(graph):
        _RecordingGraph.capturing = graph
        yield

    monkeypatch.setattr(torch.cuda, "CUDAGraph", _RecordingGraph)
    monkeypatch.setattr(torch.cuda, "graph", capture)
    module = nn.Linear(4, 2)
    example = torch.randn(3, 4)
    graphed = cudnn_fused._Graphed(module, example)
    alive = weakref.ref(module)  # the replay below holds the module weakly: only ``graphed`` may keep it
    _RecordingGraph.capturing.work = lambda: graphed.output.copy_(alive()(graphed.static))
    del module
    gc.collect()
    assert alive() is not None
    batch = torch.randn(3, 4)
    with torch.no_grad():  # each call copies the batch in, replays, returns the captured output buffer
        assert graphed(batch) is graphed.output and torch.allclose(graphed.output, alive()(batch))
