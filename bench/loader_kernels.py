"""Where one decoding process's device time goes: torch.profiler over a pass of data/device_loader.py's
loader (read, nvJPEG decode, resize and crop), one table of the GPU's kernels and copies by total time, for
each resize: resample.py's products, then resample_kernels.py's integer kernels (where they run).

    python -m bench.loader_kernels --data /tmp/set/val --images 5120      (on the H100)

The loader is started (warmed on the first batch) before the profile; the pass decodes the set's first
``--images`` images at batch size 256. GPU time per image of each kernel family (decode, resize, copies)
is what the model's kernels share the GPU with in a job, in every decoding process.
"""

import argparse
import sys

import torch
from torch.profiler import ProfilerActivity, profile

from bench.kernel_table import print_kernel_table
from runner_in_container.cases import discover
from runner_in_container.data import open_dataset, resample_kernels
from runner_in_container.data.device_loader import DeviceBatchLoader
from runner_in_container.data.layouts import Subset


def profiled(shard: Subset, dev: torch.device, kernels: bool, rows: int) -> None:
    """One pass of the loader over ``shard``, profiled; its table printed."""
    loader = DeviceBatchLoader(shard, 256, discover()["resnet50"].preprocessing, dev, kernels=kernels)
    loader.wait_started()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        images = sum(batch.valid for batch in loader)
        torch.cuda.synchronize()
    loader.close()
    resize = "integer kernels" if kernels else "products"
    print(f"resize by {resize}: {images} images")
    per_image = print_kernel_table(prof, images, "image", rows)
    print(f"GPU {per_image * images / 1e3:.1f} ms, {per_image:.1f} us an image")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True)
    parser.add_argument("--images", type=int, default=5120)
    parser.add_argument("--rows", type=int, default=25, help="kernels shown")
    args = parser.parse_args()
    dev = torch.device("cuda")
    dataset = open_dataset(args.data)
    shard = Subset(dataset, list(range(min(args.images, len(dataset.samples)))))
    why_not = resample_kernels.usable(dev)
    for kernels in (False, True):
        if kernels and why_not is not None:
            print(f"integer kernels: not run ({why_not})")
            continue
        profiled(shard, dev, kernels, args.rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
