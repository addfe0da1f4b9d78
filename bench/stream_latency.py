"""What one small query costs on one NVIDIA GPU: the latency floor under MLPerf's SingleStream and
MultiStream, part by part, for the ``cudnn_fused`` model at small batch sizes.

    python -m bench.stream_latency --batch-sizes 1,8 --calls 3000      (on the H100)

For each batch size and each ``cudnn_fused_benchmark`` setting (cuDNN's algorithms as chosen by its
heuristics, or timed for each shape), times ``--calls`` calls one after another, each waited for:
``graph`` the compiled forward alone (input copy and graph replay, then a sync), ``query`` the path of
runner_in_container/mlperf/sut.py's InlineSut (the forward, the top-1 and its copy to the host), and
``device`` the forward's GPU time from CUDA events around back-to-back calls. One table of p50/p90/p99
(ms). Random weights: latency does not depend on them.
"""

import argparse
import sys
import tempfile
import time
from typing import Callable, List

import numpy as np
import torch

from runner_in_container import toolkits
from runner_in_container.cases import discover
from runner_in_container.toolkits.base import ToolkitSettings


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


def row(model: torch.nn.Module, bs: int, benchmark: str, args: argparse.Namespace) -> str:
    """One table row: the model compiled at ``bs`` with ``cudnn_fused_benchmark`` ``benchmark``, timed."""
    dev = torch.device(args.device)
    torch.backends.cudnn.benchmark = False
    with tempfile.TemporaryDirectory() as work, torch.no_grad():
        options = {"cudnn_fused_benchmark": benchmark}
        settings = ToolkitSettings(dev, args.precision, bs, work, options=options)
        toolkit = toolkits.load("cudnn_fused")(settings)
        toolkit.check_settings()
        example = torch.randn(bs, 3, 224, 224, device=dev).half().to(memory_format=torch.channels_last)
        fn = toolkit.compile(model, example)
        x = example.clone()
        graph = waited(lambda: fn(x), args.calls, dev)
        query = waited(lambda: fn(x)[:bs].argmax(dim=1).cpu(), args.calls, dev)
        device = device_times(lambda: fn(x), args.calls)
    return f"| {bs} | {benchmark} | {percentiles(graph)} | {percentiles(query)} | {percentiles(device)} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--precision", default="fp16")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    dev = torch.device(args.device)
    case = discover()["resnet50"]
    model = case.build(case.resolve_weights("random")).eval().to(dev)
    print(f"{torch.cuda.get_device_name(dev)}, torch {torch.__version__}, {args.calls} calls a row")
    print("| bs | cudnn_fused_benchmark | graph p50/p90/p99 (ms) | query p50/p90/p99 | device p50/p90/p99 |")
    print("|---|---|---|---|---|")
    for bs in (int(v) for v in args.batch_sizes.split(",")):
        for benchmark in ("0", "1"):
            print(row(model, bs, benchmark, args), flush=True)
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
