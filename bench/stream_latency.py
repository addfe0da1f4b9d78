"""What one small query costs on one NVIDIA GPU: the latency floor under MLPerf's SingleStream and
MultiStream, part by part, for the ``cudnn_fused`` model at small batch sizes.

    python -m bench.stream_latency --batch-sizes 1,8 --calls 3000      (on the H100)

For each batch size and each ``cudnn_fused_benchmark`` setting (cuDNN's algorithms as chosen by its
heuristics, or timed for each shape), times ``--calls`` calls one after another, each waited for:
``graph`` the compiled forward alone (input copy and graph replay, then a sync), ``query`` the path of
runner_in_container/mlperf/sut.py's InlineSut (the forward, the top-1 and its copy to the host), and
``device`` the forward's GPU time from CUDA events around back-to-back calls. One table of p50/p90/p99
(ms). Random weights: latency does not depend on them.

    python -m bench.stream_latency --kernels --batch-sizes 1 --calls 2000

profiles the model's forward at each batch size (eager: the same kernels the graph captures, which the
profiler does not see inside a replay): one table of its kernels by GPU time a forward, their sum beside the
graph's device time (the difference is what the replay adds between kernels); then the graph's device time
with each downsample convolution (ResNet's only branch) issued on a side stream, concurrent with its block's
main path.

    python -m bench.stream_latency --branches --batch-sizes 8,16,32,64,128,256 --calls 40000

gives the graph's device time at each batch size with the batch in 1 and in 2 concurrent branches
(``cudnn_fused_branches``), over ``--calls`` images (200 calls at least).

    python -m bench.stream_latency --loadgen DATA --calls 0      (DATA: a folder of JPEGs, imagefolder)

runs the product's own SingleStream (runner_in_container/mlperf/scenario.py: LoadGen, InlineSut, the sample
library over DATA) at batch size 1 for ``--duration`` seconds, as the runner does after its infer pass
(``--processes N``: with N decoding processes alive and idle, after one pass of theirs over DATA, as in a
job; under an MPS daemon when the command runs in one), then the same with Python's garbage collector
frozen and off through the run; one table of LoadGen's p50/p90/p99.
"""

import argparse
import functools
import gc
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List

import numpy as np
import torch
import torch.fx as fx
from torch.profiler import ProfilerActivity, profile

from bench.kernel_table import print_kernel_table
from runner_in_container import toolkits
from runner_in_container.cases import discover
from runner_in_container.data import open_dataset
from runner_in_container.data.decode_procs import ProcessBatchLoader
from runner_in_container.device import open_device
from runner_in_container.mlperf.scenario import Model, run_scenario
from runner_in_container.mlperf.settings import SERVER_LATENCY_MS, Settings
from runner_in_container.toolkits.base import ToolkitSettings
from runner_in_container.toolkits.cudnn_fused import fold_and_fuse
from runner_in_container.toolkits.precision import prepare_model


def percentiles(samples: List[float]) -> str:
    p50, p90, p99 = np.percentile(np.asarray(samples) * 1e3, [50, 90, 99])
    return f"{p50:.3f} / {p90:.3f} / {p99:.3f}"


def waited(call: Callable[[], object], calls: int, dev: torch.device) -> List[float]:
    """Each call's wall time, the device waited for after each."""
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        torch.cuda.synchronize(dev)
        times.append(time.perf_counter() - start)
    return times


def device_times(call: Callable[[], object], calls: int) -> List[float]:
    """Each call's GPU time, from events recorded around it; the calls queued back to back."""
    pairs = []
    for _ in range(calls):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        call()
        end.record()
        pairs.append((start, end))
    torch.cuda.synchronize()
    return [start.elapsed_time(end) / 1e3 for start, end in pairs]


def compiled(
    model: torch.nn.Module, bs: int, benchmark: str, args: argparse.Namespace, work: str, **knobs: str
):
    """``model`` through cudnn_fused at ``bs`` (``cudnn_fused_benchmark`` ``benchmark``, other knobs as
    given), and its example."""
    dev = torch.device(args.device)
    torch.backends.cudnn.benchmark = False
    options = dict(knobs, cudnn_fused_benchmark=benchmark)
    settings = ToolkitSettings(dev, args.precision, bs, work, options=options)
    toolkit = toolkits.load("cudnn_fused")(settings)
    toolkit.check_settings()
    example = torch.randn(bs, 3, 224, 224, device=dev).half().to(memory_format=torch.channels_last)
    return toolkit.compile(model, example), example


def row(model: torch.nn.Module, bs: int, benchmark: str, args: argparse.Namespace) -> str:
    """One table row: the model compiled at ``bs`` with ``cudnn_fused_benchmark`` ``benchmark``, timed."""
    dev = torch.device(args.device)
    with tempfile.TemporaryDirectory() as work, torch.no_grad():
        fn, example = compiled(model, bs, benchmark, args, work)
        x = example.clone()
        graph = waited(lambda: fn(x), args.calls, dev)
        query = waited(lambda: fn(x)[:bs].argmax(dim=1).cpu(), args.calls, dev)
        device = device_times(lambda: fn(x), args.calls)
    return f"| {bs} | {benchmark} | {percentiles(graph)} | {percentiles(query)} | {percentiles(device)} |"


class SideBranches(fx.Interpreter):
    """Runs a fused model's downsample convolutions on a side stream, each joined where its output is used."""

    def __init__(self, gm: fx.GraphModule, side: torch.cuda.Stream) -> None:
        super().__init__(gm)
        self.side = side
        self.joins: Dict[fx.Node, torch.cuda.Event] = {}

    def run_node(self, n: fx.Node) -> Any:
        main = torch.cuda.current_stream()
        if "downsample" in str(n.target):
            self.side.wait_stream(main)
            with torch.cuda.stream(self.side):
                out = super().run_node(n)
            self.joins[n] = self.side.record_event()
            return out
        for arg in n.all_input_nodes:
            if arg in self.joins:
                main.wait_event(self.joins[arg])
        return super().run_node(n)


def side_branched(model: torch.nn.Module, args: argparse.Namespace) -> fx.GraphModule:
    """cudnn_fused's model (folded, fused, cast, channels_last), each downsample conv moved to just after
    its input."""
    gm, _ = fold_and_fuse(model)
    for node in list(gm.graph.nodes):
        if "downsample" in str(node.target):
            node.all_input_nodes[0].append(node)
    gm.recompile()
    return prepare_model(gm, args.precision, torch.device(args.device), True)


def captured(call: Callable[[torch.Tensor], object], x: torch.Tensor) -> torch.cuda.CUDAGraph:
    """``call(x)`` captured in a CUDA graph, after three warm-up calls on a side stream."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            call(x)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        call(x)
    return graph


def kernel_rows(model: torch.nn.Module, bs: int, args: argparse.Namespace) -> None:
    """The forward's kernels at ``bs``, then the graph's device time as the product captures it and with
    the downsample convolutions on a side stream."""
    forwards = 50
    with tempfile.TemporaryDirectory() as work, torch.no_grad():
        eager, x = compiled(model, bs, "0", args, work, cudnn_fused_graph="0")
        for _ in range(5):
            eager(x)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(forwards):
                eager(x)
            torch.cuda.synchronize()
        print(f"batch size {bs}: the forward's kernels")
        kernels_us = print_kernel_table(prof, forwards, "forward", args.rows)
        fn, _ = compiled(model, bs, "0", args, work)
        side = torch.cuda.Stream()
        branched = side_branched(model, args)
        static = x.clone()
        graph = captured(lambda t: SideBranches(branched, side).run(t), static)
        print(f"| bs {bs} | p50 / p90 / p99 (ms) |\n|---|---|")
        print(f"| the kernels' GPU time, summed | {kernels_us / 1e3:.3f} |")
        print(f"| the graph, device time | {percentiles(device_times(lambda: fn(x), args.calls))} |")
        side_ms = percentiles(device_times(lambda: (static.copy_(x), graph.replay()), args.calls))
        print(f"| the graph, downsample on a side stream | {side_ms} |")


def branch_rows(model: torch.nn.Module, args: argparse.Namespace) -> None:
    """The graph's device time at each batch size, the batch in 1 and in 2 concurrent branches."""
    print("| bs | 1 branch: p50 / p90 / p99 (ms) | 2 branches |\n|---|---|---|")
    for bs in (int(v) for v in args.batch_sizes.split(",")):
        cells = []
        for branches in ("1", "2"):
            with tempfile.TemporaryDirectory() as work, torch.no_grad():
                fn, x = compiled(model, bs, "0", args, work, cudnn_fused_branches=branches)
                call = functools.partial(fn, x)
                cells.append(percentiles(device_times(call, max(200, args.calls // bs))))
            torch.cuda.empty_cache()
        print(f"| {bs} | {cells[0]} | {cells[1]} |", flush=True)


def loadgen_rows(model: torch.nn.Module, args: argparse.Namespace) -> None:
    """The product's SingleStream at batch size 1 on ``args.loadgen``, garbage collector as is, then off."""
    dev = open_device(torch.device(args.device))
    case = discover()["resnet50"]
    dataset = open_dataset(args.loadgen)
    processes = None
    if args.processes:
        processes = ProcessBatchLoader(dataset, 256, case.preprocessing, dev.device, args.processes)
        sum(batch.valid for batch in processes)  # one pass, then they wait, as after a job's infer pass
    settings = Settings("singlestream", False, args.duration, None, SERVER_LATENCY_MS)
    print("| SingleStream, bs 1 | p50 / p90 / p99 (ms) | queries | LoadGen's verdict |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as work:
        fn, _ = compiled(model, 1, "0", args, work)
        for name in ("garbage collector as is", "garbage collector frozen and off"):
            if "off" in name:
                gc.collect()
                gc.freeze()
                gc.disable()
            model_in = Model(fn, 1, torch.float16, True)
            found = run_scenario(
                settings, model_in, dataset, case.preprocessing, dev, 8, work, lambda *a, **k: None
            )
            perf = found["performance"]
            ms = " / ".join("%.3f" % perf["latency_ms"][key] for key in ("p50", "p90", "p99"))
            print(f"| {name} | {ms} | {perf['queries']} | {perf['validity']} |", flush=True)
            gc.enable()
    if processes is not None:
        processes.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--precision", default="fp16")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--kernels", action="store_true", help="the forward's kernels, instead of the calls")
    parser.add_argument(
        "--branches", action="store_true", help="the graph in 1 and 2 branches, instead of the calls"
    )
    parser.add_argument("--rows", type=int, default=15, help="kernels shown with --kernels")
    parser.add_argument("--loadgen", help="a folder of JPEGs: run the product's SingleStream on it too")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of each LoadGen run")
    parser.add_argument(
        "--processes", type=int, default=8, help="decoding processes alive in the LoadGen runs"
    )
    args = parser.parse_args()
    dev = torch.device(args.device)
    case = discover()["resnet50"]
    model = case.build(case.resolve_weights("random")).eval().to(dev)
    print(f"{torch.cuda.get_device_name(dev)}, torch {torch.__version__}")
    if args.branches:
        branch_rows(model, args)
    elif args.kernels:
        for bs in (int(v) for v in args.batch_sizes.split(",")):
            kernel_rows(model, bs, args)
    elif args.calls:
        print(f"| bs | cudnn_fused_benchmark | {args.calls} calls: graph p50/p90/p99 (ms) | query | device |")
        print("|---|---|---|---|---|")
        for bs in (int(v) for v in args.batch_sizes.split(",")):
            for benchmark in ("0", "1"):
                print(row(model, bs, benchmark, args), flush=True)
                torch.cuda.empty_cache()
    if args.loadgen:
        loadgen_rows(model, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
