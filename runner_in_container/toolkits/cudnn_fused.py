"""TensorRT-style graph fusion with PyTorch's own cuDNN ops, no compiler (CUDA only).

The fp32 eval model is traced with torch.fx; BatchNorm is folded into the convolutions
(``torch.fx.experimental.optimization.fuse``, in fp32), then ``fuse_conv_relu`` replaces
``relu(conv(x))`` by one ``torch.cudnn_convolution_relu`` call and ``relu(conv(x) + z)``
(a residual block's end) by one ``torch.cudnn_convolution_add_relu`` call. Only then is
the model cast to the precision's dtype and channels_last. Other patterns (ReLU6, ...)
run as they are. Knob ``cudnn_fused_graph`` ("1"/"0", default "1"): after a warm-up of
three calls, one forward is captured in a CUDA graph that each call replays (its output
is overwritten by the next call). Folding, fusion, cast, warm-up and capture count in
``compile_s``.

Measured on the H200 through the runner (fp16, bs 256, nvJPEG in one decoding process,
``--decode-processes 1``): p_infer_core 30,754 img/s after 0.32 s of folding, fusion, cast and
capture, where inductor (reduce-overhead + freezing) reaches about the same after 10-21 s of
compile. Against eager fp32 on the same input, top-1 agreement 98.73% on 2,048 images, as
inductor (bench/h200_bench.py's check; random weights with re-estimated BatchNorm statistics).
"""

import copy
import operator
from typing import Dict, Optional, Tuple

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.fx.experimental.optimization import fuse

from .base import Forward, Toolkit, ToolkitUnavailable
from .precision import prepare_model, tf32_flags
from .pytorch import torch_versions

CUDNN_OPS = ("cudnn_convolution_relu", "cudnn_convolution_add_relu")
RELU_FUNCTIONS = (torch.relu, F.relu)
ADD_FUNCTIONS = (operator.add, operator.iadd, torch.add)
WARMUP_CALLS = 3


class FusedConvReLU(nn.Module):
    """``relu(conv(x))``, or ``relu(conv(x) + z)`` with ``add``: one cuDNN call on CUDA, else the composite.

    ``z`` must have the convolution output's shape (as in a residual block).
    """

    def __init__(self, conv: nn.Conv2d, add: bool = False) -> None:
        super().__init__()
        self.add = add
        self.weight = conv.weight
        zeros = conv.weight.new_zeros(conv.out_channels)
        self.bias = conv.bias if conv.bias is not None else nn.Parameter(zeros, requires_grad=False)
        self.conv_args = (conv.stride, conv.padding, conv.dilation, conv.groups)

    def forward(self, x: torch.Tensor, z: Optional[torch.Tensor] = None) -> torch.Tensor:
        if x.is_cuda:
            if self.add:
                return torch.cudnn_convolution_add_relu(x, self.weight, z, 1.0, self.bias, *self.conv_args)
            return torch.cudnn_convolution_relu(x, self.weight, self.bias, *self.conv_args)
        out = F.conv2d(x, self.weight, self.bias, *self.conv_args)
        return F.relu(out + z if self.add else out)

    def extra_repr(self) -> str:
        return f"add={self.add}"


def _is_relu(node: fx.Node, modules: Dict[str, nn.Module]) -> bool:
    if not (node.args and isinstance(node.args[0], fx.Node)):
        return False
    if node.op == "call_module":
        return type(modules[node.target]) is nn.ReLU
    return node.op == "call_function" and node.target in RELU_FUNCTIONS


def _fusable_conv(node: object, modules: Dict[str, nn.Module]) -> bool:
    """``node`` calls an nn.Conv2d that cuDNN can run as is, and its output feeds one node only."""
    if not (isinstance(node, fx.Node) and node.op == "call_module" and len(node.users) == 1):
        return False
    conv = modules[node.target]
    return type(conv) is nn.Conv2d and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)


def _conv_and_residual(add: fx.Node, modules: Dict[str, nn.Module]) -> Optional[Tuple[fx.Node, fx.Node]]:
    """(conv node, other operand) of a single-user ``conv(x) + z``; None if ``add`` is not one."""
    plain_add = add.op == "call_function" and add.target in ADD_FUNCTIONS and not add.kwargs
    if not (plain_add and len(add.args) == 2 and len(add.users) == 1):
        return None
    for conv, other in (add.args, add.args[::-1]):
        if _fusable_conv(conv, modules) and isinstance(other, fx.Node):
            return conv, other
    return None


def _replace(gm: fx.GraphModule, relu: fx.Node, conv: fx.Node, residual: Optional[fx.Node]) -> None:
    """Put a FusedConvReLU call in place of ``relu`` and erase the nodes it replaces."""
    name = "fused_" + str(conv.target).replace(".", "_")
    gm.add_submodule(name, FusedConvReLU(gm.get_submodule(conv.target), add=residual is not None))
    args = (conv.args[0],) if residual is None else (conv.args[0], residual)
    with gm.graph.inserting_before(relu):
        fused = gm.graph.call_module(name, args)
    relu.replace_all_uses_with(fused)
    add = relu.args[0]
    for node in (relu, add, conv) if residual is not None else (relu, conv):
        gm.graph.erase_node(node)


def fuse_conv_relu(gm: fx.GraphModule) -> Tuple[fx.GraphModule, Dict[str, int]]:
    """Replace ``relu(conv(x))`` and ``relu(conv(x) + z)`` in ``gm`` (in place) by FusedConvReLU calls.

    Returns ``gm`` and the number of replacements per pattern (``conv_relu``, ``conv_add_relu``).
    """
    modules = dict(gm.named_modules())
    counts = {"conv_relu": 0, "conv_add_relu": 0}
    for relu in list(gm.graph.nodes):
        if not _is_relu(relu, modules):
            continue
        source = relu.args[0]
        if _fusable_conv(source, modules):
            _replace(gm, relu, source, None)
            counts["conv_relu"] += 1
            continue
        pair = _conv_and_residual(source, modules)
        if pair is not None:
            _replace(gm, relu, *pair)
            counts["conv_add_relu"] += 1
    gm.graph.lint()
    gm.recompile()
    gm.delete_all_unused_submodules()
    return gm, counts


def _count_batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def fold_and_fuse(model: nn.Module) -> Tuple[fx.GraphModule, Dict[str, int]]:
    """BatchNorm folded into the convolutions on an fp32 eval copy, then ``fuse_conv_relu``.

    The counts gain ``batchnorm_folded``; the caller's model is untouched.
    """
    folded = fuse(copy.deepcopy(model).float().eval(), inplace=True)
    gm, counts = fuse_conv_relu(folded)
    counts["batchnorm_folded"] = _count_batchnorms(model) - _count_batchnorms(gm)
    return gm, counts


def _require_cudnn_ops() -> None:
    missing = ["torch." + op for op in CUDNN_OPS if not hasattr(torch, op)]
    if missing:
        raise ToolkitUnavailable(f"torch {torch.__version__} has no {', '.join(missing)}")
    if not torch.backends.cudnn.is_available():
        raise ToolkitUnavailable(f"cuDNN is not available to torch {torch.__version__}")


class _Graphed:
    """A forward captured in a CUDA graph: each call copies the batch into the static input and replays.

    It holds the module: the graph reads the weights' memory, which must outlive it (freed, the caching
    allocator would hand it to other tensors and the replays would read them).
    """

    def __init__(self, module: nn.Module, example: torch.Tensor) -> None:
        self.module = module
        self.static = example.clone()
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.output = module(self.static)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.static.copy_(batch)
        self.graph.replay()
        return self.output


def _warm_up_and_capture(module: nn.Module, example: torch.Tensor, graph: bool) -> Forward:
    """Three warm-up calls on a side stream, then (``graph``) one forward captured in a CUDA graph."""
    side, main = torch.cuda.Stream(example.device), torch.cuda.current_stream(example.device)
    side.wait_stream(main)
    with torch.cuda.stream(side):
        for _ in range(WARMUP_CALLS):
            module(example)
    main.wait_stream(side)
    return _Graphed(module, example) if graph else module


class CudnnFused(Toolkit):
    name = "cudnn_fused"
    precisions = ("fp32", "tf32", "fp16", "bf16")

    def check_settings(self) -> None:
        """CUDA devices only; reads the ``cudnn_fused_graph`` knob (ValueError for a value other than 0/1)."""
        device = self.settings.device
        if device.type != "cuda":
            raise ValueError(f"toolkit {self.name} runs on CUDA devices (cuDNN); got {device.type}")
        self.graph = self.switch("cudnn_fused_graph", "1")

    def channels_last(self) -> bool:
        return True

    def compile(self, model: torch.nn.Module, example: torch.Tensor) -> Forward:
        _require_cudnn_ops()
        with torch.no_grad():
            run = self.timed("compile_s", self._build, model, example)
        self.notes.append(f"tf32 flags: {tf32_flags()}")

        def forward(batch: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return run(batch)

        return forward

    def _build(self, model: torch.nn.Module, example: torch.Tensor) -> Forward:
        fused, counts = fold_and_fuse(model)
        self.notes.append(
            "fused {conv_relu} conv+relu and {conv_add_relu} conv+add+relu into cuDNN calls; "
            "BatchNorm folded: {batchnorm_folded}".format(**counts)
        )
        prepared = prepare_model(fused, self.settings.precision, self.settings.device, self.channels_last())
        run = _warm_up_and_capture(prepared, example, self.graph)
        torch.cuda.synchronize(self.settings.device)
        state = "on: one forward captured, replayed by each call" if self.graph else "off"
        self.notes.append(f"CUDA graph {state}")
        return run

    def versions(self) -> Dict[str, str]:
        return torch_versions()
