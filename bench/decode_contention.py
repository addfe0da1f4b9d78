"""JPEG decoding on the GPU beside the model: where a decoder can run while the model computes.

    python -m bench.decode_contention --data /tmp/contention_set      (on the H200, about 3 minutes)

The model is the runner's fastest (cudnn_fused, ResNet50 fp16, batch 256, CUDA graph), replayed flat out
on a side stream. Each decoder decodes batches of 256 of the set's JPEGs in a loop, waiting for each batch
to be on the device. Two decoders: torchvision's ``decode_jpeg`` (what the runner uses: nvJPEG's default
backend, Huffman decoding on the CPU) and nvJPEG's hardware backend (the GPU's JPEG engine, through
bench/nvjpeg_hw.py). Each runs alone, in a thread of the model's process (on a high-priority stream), and
in 1, 2, 4 other processes. The table gives both rates. ``--profile``: the CUDA runtime calls of the
process while the hardware decoder runs in the model's process (where its time goes).

This is the measurement behind the runner's data path (data/decode_procs.py): in the model's process a
decoder waits behind the model's queued work; in other processes its GPU work is time-sliced with the
model's (one GPU, several processes, no MPS). Generates the set (imagefolder) when DATA/val is missing.
"""

import argparse
import glob
import multiprocessing
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch
import torchvision

from bench.nvjpeg_hw import BatchDecoder, load
from runner_in_container.data.jpeg_info import cpu_reason, read_header
from runner_in_container.toolkits.base import ToolkitSettings
from runner_in_container.toolkits.cudnn_fused import CudnnFused

REPO = Path(__file__).resolve().parent.parent

BATCH = 256
DECODERS = ("torchvision", "hardware")
#: a batch: the encoded images and their (height, width)
Batch = Tuple[List[bytes], List[Tuple[int, int]]]


def read_batches(paths: Sequence[str], count: int) -> List[Batch]:
    """Up to ``count`` batches of the files nvJPEG takes (jpeg_info.py's routing), read into memory."""
    items = []
    for path in paths:
        data = Path(path).read_bytes()
        header = read_header(data)
        if cpu_reason(header) is None:
            items.append((data, (header.height, header.width)))
        if len(items) == count * BATCH:
            break
    return [
        ([d for d, _ in items[i : i + BATCH]], [s for _, s in items[i : i + BATCH]])
        for i in range(0, len(items) - BATCH + 1, BATCH)
    ]


def decoder_loop(kind: str, batches: List[Batch], device: torch.device, priority: int) -> Callable[[], int]:
    """A function that decodes the next batch with decoder ``kind``, waits for it, returns its image count."""
    state = {"next": 0}
    if kind == "hardware":
        decoder = BatchDecoder(load(), device, priority)

        def decode(batch: Batch) -> None:
            decoder.decode(*batch)
            decoder.stream.synchronize()

    else:
        stream = torch.cuda.Stream(device, priority=priority)
        mode = torchvision.io.ImageReadMode.RGB

        def decode(batch: Batch) -> None:
            encoded = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in batch[0]]
            with torch.cuda.stream(stream):
                torchvision.io.decode_jpeg(encoded, mode=mode, device=device)
            stream.synchronize()

    def step() -> int:
        batch = batches[state["next"] % len(batches)]
        state["next"] += 1
        decode(batch)
        return len(batch[0])

    return step


class Decoding:
    """A decoder in a thread of this process, counting the images it has decoded."""

    def __init__(self, kind: str, batches: List[Batch], device: torch.device) -> None:
        self.step = decoder_loop(kind, batches, device, priority=-1)
        self.step()  # warm-up: handle, buffers
        self.images, self.stop = 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            self.images += self.step()

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


def child(kind: str, paths: List[str], device: str, start: Any, stop: Any, results: Any) -> None:
    """A decoding process: warm up, meet the others at ``start``, decode until ``stop``, report img/s."""
    try:
        torch.set_num_threads(1)
        dev = torch.device(device)
        step = decoder_loop(kind, read_batches(paths, 4), dev, priority=0)
        step()
    except Exception as exc:  # the parent prints it in the table
        start.abort()
        results.put(f"{type(exc).__name__}: {exc}")
        return
    try:
        start.wait()
        images, began = 0, time.perf_counter()
        while not stop.is_set():
            images += step()
        results.put(images / (time.perf_counter() - began))
    except Exception as exc:  # the parent prints it in the table
        results.put(f"{type(exc).__name__}: {exc}")


def model_rate(forward: Callable, example: torch.Tensor, seconds: float) -> float:
    """img/s of ``forward`` replayed flat out (two batches queued at a time) for ``seconds``."""
    side = torch.cuda.Stream(example.device)
    images, began = 0, time.perf_counter()
    with torch.cuda.stream(side):
        while time.perf_counter() - began < seconds:
            forward(example)
            forward(example)
            side.synchronize()
            images += 2 * example.shape[0]
    return images / (time.perf_counter() - began)


def in_other_processes(kind: str, paths: List[str], processes: int, model: Tuple, args) -> Tuple:
    """(model img/s, or None when a process failed to start; decode img/s summed; error) with
    ``processes`` decoding processes beside the model."""
    context = multiprocessing.get_context("spawn")
    start, stop, results = context.Barrier(processes + 1), context.Event(), context.Queue()
    share = len(paths) // processes
    workers = [
        context.Process(
            target=child, args=(kind, paths[r * share : (r + 1) * share], args.device, start, stop, results)
        )
        for r in range(processes)
    ]
    for worker in workers:
        worker.start()
    try:
        start.wait(timeout=120)
        rate = model_rate(*model, args.seconds)
    except threading.BrokenBarrierError:
        rate = None
    stop.set()
    got = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(10)
    errors = [g for g in got if isinstance(g, str)]
    return rate, sum(g for g in got if not isinstance(g, str)), errors[0] if errors else ""


def in_this_process(kind: str, batches: List[Batch], model: Optional[Tuple], args) -> Tuple:
    decoding = Decoding(kind, batches, torch.device(args.device))
    time.sleep(0.5)
    images, began = decoding.images, time.perf_counter()
    rate = model_rate(*model, args.seconds) if model else time.sleep(args.seconds)
    decoded = (decoding.images - images) / (time.perf_counter() - began)
    decoding.close()
    return rate, decoded, ""


def profile_hardware_beside_model(batches: List[Batch], model: Tuple, args) -> List[str]:
    """The CUDA runtime calls while the hardware decoder runs in the model's process: calls, total, mean."""
    from torch.profiler import ProfilerActivity, profile

    decoding = Decoding("hardware", batches, torch.device(args.device))
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        model_rate(*model, 2.0)
    decoding.close()
    calls = [e for e in prof.key_averages() if e.key.startswith("cuda")]
    lines = []
    for event in sorted(calls, key=lambda e: -e.cpu_time_total)[:8]:
        mean = event.cpu_time_total / max(event.count, 1) / 1e3
        total = event.cpu_time_total / 1e3
        lines.append(f"  {event.key:28s} {event.count:7d} calls  {total:8.1f} ms  {mean:6.2f} ms each")
    return lines


def build_model(device: torch.device) -> Tuple[Callable, torch.Tensor]:
    settings = ToolkitSettings(device, "fp16", BATCH, work_dir=str(REPO / ".cache"))
    example = (
        torch.randn(BATCH, 3, 224, 224, device=device).half().contiguous(memory_format=torch.channels_last)
    )
    forward = CudnnFused(settings).compile(torchvision.models.resnet50().eval(), example)
    return forward, example


def parse(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="/tmp/contention_set")
    parser.add_argument(
        "--images", type=int, default=4096, help="images to generate when DATA/val is missing"
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each measurement")
    parser.add_argument("--processes", default="1,2,4", help="decoding process counts, e.g. 1,2,4")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--profile", action="store_true", help="also profile the hardware decoder in-process")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse(argv)
    root = Path(args.data)
    if not (root / "val").is_dir():
        generate = [sys.executable, "-m", "runner_in_container.data.generate", str(root), "--images"]
        subprocess.run(generate + [str(args.images), "--layout", "imagefolder"], check=True, cwd=str(REPO))
    paths = sorted(glob.glob(str(root / "val" / "*" / "*.JPEG")))
    batches = read_batches(paths, 6)
    if not batches:
        print(f"{root}/val: fewer than {BATCH} JPEGs nvJPEG takes", file=sys.stderr)
        return 1
    device = torch.device(args.device)
    model = build_model(device)
    alone = model_rate(*model, args.seconds)
    print(
        f"libnvjpeg: {load().path}; model alone: {alone:,.0f} img/s (cudnn_fused fp16 bs {BATCH})", flush=True
    )
    rows = [("-", "model alone", alone, None, "")]
    for kind in DECODERS:
        rows.append((kind, "alone, this process") + in_this_process(kind, batches, None, args))
        rows.append((kind, "model's process, 1 thread") + in_this_process(kind, batches, model, args))
        for processes in [int(p) for p in args.processes.split(",")]:
            where = f"{processes} other process{'es' if processes > 1 else ''}"
            rows.append((kind, where) + in_other_processes(kind, paths, processes, model, args))
        print(f"{kind}: done", flush=True)
    print(f"\n{'decoder':12s} {'where':28s} {'model img/s':>12s} {'decode img/s':>13s}")
    for kind, where, rate, decoded, error in rows:
        model_text = f"{rate:12,.0f}" if rate else f"{'-':>12s}"
        decode_text = f"{decoded:13,.0f}" if decoded is not None else f"{'-':>13s}"
        print(f"{kind:12s} {where:28s} {model_text} {decode_text} {error}".rstrip())
    if args.profile:
        print("\nCUDA runtime calls, hardware decoder in the model's process, 2 s:")
        print("\n".join(profile_hardware_beside_model(batches, model, args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
