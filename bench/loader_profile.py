"""Where the device loader's time goes: each part of data/device_loader.py alone, then the whole loader,
one table.

    python -m bench.loader_profile --data /tmp/loader_set --images 5000     (on the H200)
Generates the set (imagefolder layout) when DATA/val is missing. img/s per part, on one pass each (for
several decoding processes, the second pass: the first one starts them). Where the integer kernels run
(resample_kernels.py), the resize and the loaders are timed both ways, side by side.
"""

import argparse
import functools
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, List, Tuple

import torch
import torchvision

from runner_in_container.cases import discover
from runner_in_container.data import open_dataset, resample_kernels
from runner_in_container.data.decode_procs import ProcessBatchLoader
from runner_in_container.data.device_loader import DeviceBatchLoader, _Arena
from runner_in_container.data.jpeg_info import cpu_reason, read_header
from runner_in_container.data.loader import Loader
from runner_in_container.data.nvjpeg_probe import probe_device_decoder
from runner_in_container.data.resample import geometry, resize_crop_into

REPO = Path(__file__).resolve().parent.parent


def passed(loader: Loader) -> int:
    """One pass of ``loader``: its images."""
    return sum(batch.valid for batch in loader)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="/tmp/loader_set")
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="cuda")
    parser.add_argument(
        "--processes", type=lambda t: [int(v) for v in t.split(",")], default=[2, 3, 4, 6], help="e.g. 2,4"
    )
    args = parser.parse_args()
    root = Path(args.data)
    if not (root / "val").is_dir():
        argv = [sys.executable, "-m", "runner_in_container.data.generate", str(root), "--images"]
        subprocess.run(argv + [str(args.images), "--layout", "imagefolder"], check=True, cwd=str(REPO))
    dev = torch.device(args.device)
    pp = discover()["resnet50"].preprocessing
    dataset = open_dataset(str(root / "val"))
    n, bs = len(dataset.samples), args.batch_size
    rows: List[Tuple[str, float]] = []

    def timed(name: str, fn: Callable[[], object]) -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        start = time.perf_counter()
        fn()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        rows.append((name, n / (time.perf_counter() - start)))

    timed("read (bytes per file)", lambda: [dataset.read(i) for i in range(n)])
    arena = _Arena()

    def read_into() -> List[memoryview]:
        arena.used = 0
        return [dataset.read_into(i, arena.reserve) for i in range(n)]

    timed("read_into one reused arena", read_into)
    views = read_into()
    timed("JPEG header + route", lambda: [cpu_reason(read_header(v)) for v in views])
    device_path = [(v, h) for v, h in ((v, read_header(v)) for v in views) if cpu_reason(h) is None]
    timed("geometry from header", lambda: [geometry(h.height, h.width, pp) for _, h in device_path])
    encoded = [torch.frombuffer(v, dtype=torch.uint8) for v, _ in device_path]
    mode = torchvision.io.ImageReadMode.RGB
    decoded: List[List[torch.Tensor]] = []
    batched = probe_device_decoder(dev) if dev.type == "cuda" else True
    calls = [encoded[i : i + bs] for i in range(0, len(encoded), bs)]
    timed(
        "decode_jpeg, bs per call",
        lambda: decoded.extend(torchvision.io.decode_jpeg(c, mode=mode, device=dev) for c in calls),
    )

    def resize_all(kernels: bool) -> None:
        for images in decoded:
            out = torch.empty((bs, 3, pp.crop, pp.crop), dtype=torch.uint8, device=dev)
            slots = list(range(len(images)))
            if kernels:
                shapes = [(int(image.shape[1]), int(image.shape[2])) for image in images]
                geometries = [geometry(h, w, pp) for h, w in shapes]
                resample_kernels.resize_crop_into(out, list(images), slots, pp, geometries)
            else:
                resize_crop_into(out, list(images), slots, pp)

    resizes = [("matmuls", False)]
    if resample_kernels.usable(dev) is None:
        resizes.append(("integer kernels", True))
    for name, kernels in resizes:  # each resize alone, then each loader resizing that way
        resize_all(kernels)  # warm-up
        timed(f"resize + crop ({name})", functools.partial(resize_all, kernels))
    for name, kernels in resizes:
        loader = DeviceBatchLoader(dataset, bs, pp, dev, workers=4, batched=batched, kernels=kernels)
        timed(f"DeviceBatchLoader, {name} (the whole loader, one process)", functools.partial(passed, loader))
        for processes in args.processes:
            procs = ProcessBatchLoader(
                dataset, bs, pp, dev, processes, workers=4, batched=batched, kernels=kernels
            )
            try:
                passed(procs)  # the processes start and warm up
                timed(f"ProcessBatchLoader, {name}, {processes} processes", functools.partial(passed, procs))
            finally:
                procs.close()
    width = max(len(name) for name, _ in rows)
    print(f"{'part':<{width}}  img/s  ({n} images of {root}, bs {bs}, {dev})")
    for name, rate in rows:
        print(f"{name:<{width}}  {rate:,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
