"""Percentiles, throughput figures and accuracy counting with padded batches."""

import numpy
import pytest
import torch

from runner_in_container import metrics


@pytest.mark.parametrize("q", [0, 1, 50, 90, 99, 100])
def test_percentile_matches_numpy_linear(q):
    values = [0.7, 0.1, 5.0, 2.5, 2.5, 9.75, 3.0]
    assert metrics.percentile(values, q) == pytest.approx(numpy.percentile(values, q))


def test_percentile_rejects_empty_and_out_of_range():
    with pytest.raises(ValueError):
        metrics.percentile([], 50)
    with pytest.raises(ValueError):
        metrics.percentile([1.0], 101)


def test_latency_ms_converts_seconds():
    summary = metrics.latency_ms([0.010, 0.020, 0.030, 0.040])
    assert summary["p50"] == pytest.approx(25.0)
    assert summary["min"] == pytest.approx(10.0) and summary["max"] == pytest.approx(40.0)
    assert summary["p99"] == pytest.approx(39.7)


def test_rate_and_pct():
    assert metrics.rate(1000, 2.0) == 500.0
    assert metrics.rate(10, 0.0) is None
    assert metrics.pct(513, 630) == 81.43
    assert metrics.pct(602, 630) == 95.56


def _logits_for(classes, n_classes=10):
    """Logits whose top-5 is classes[i], classes[i]+1, ... (descending score)."""
    logits = torch.zeros(len(classes), n_classes)
    for row, cls in enumerate(classes):
        for rank in range(5):
            logits[row, (cls + rank) % n_classes] = 10.0 - rank
    return logits


def test_predictions_skip_padded_slots_and_count_over_n_only():
    n = 5  # two batches of 4: the second has 1 real image and 3 padded slots
    preds = metrics.Predictions(n, torch.device("cpu"))
    labels = []
    batches = [([3, 4, 5, 6], [3, 0, 7, 6], 4), ([1, 9, 9, 9], [2, -1, -1, -1], 1)]
    for classes, batch_labels, valid in batches:
        preds.add(_logits_for(classes), valid)
        labels.append(torch.tensor(batch_labels)[:valid])
    top = preds.to_host()
    assert top.shape == (5, 5)
    acc = metrics.count_accuracy(top, torch.cat(labels))
    # top-1 hits: images 0 and 3; top-5: those, image 2 (7 in 5..9) and image 4 (2 in 1..5); not image 1
    assert acc == metrics.Accuracy(top1_count=2, top5_count=4, n=5)
    assert acc.as_dict() == {"top1_count": 2, "top5_count": 4, "top1_pct": 40.0, "top5_pct": 80.0}


def test_predictions_refuse_overflow_and_incomplete_pass():
    preds = metrics.Predictions(3, torch.device("cpu"))
    preds.add(_logits_for([0, 1]), 2)
    with pytest.raises(ValueError, match="incomplete"):
        preds.to_host()
    with pytest.raises(ValueError, match="more predictions"):
        preds.add(_logits_for([0, 1]), 2)


def test_padding_label_never_counted():
    with pytest.raises(ValueError, match="padded"):
        metrics.count_accuracy(torch.zeros(2, 5, dtype=torch.int64), torch.tensor([0, -1]))


def test_low_precision_logits_give_same_topk():
    logits = _logits_for([2, 7, 4])
    for dtype in (torch.float16, torch.bfloat16):
        preds = metrics.Predictions(3, torch.device("cpu"))
        preds.add(logits.to(dtype), 3)
        assert torch.equal(preds.to_host()[:, 0], torch.tensor([2, 7, 4]))


def test_agreement_is_a_fraction_of_top1():
    a = torch.tensor([[1, 2], [3, 4], [5, 6], [7, 8]])
    b = torch.tensor([[1, 0], [4, 3], [5, 0], [7, 0]])
    assert metrics.agreement(a, b) == 0.75


def test_stage_totals_sum_passes():
    class Fixed:
        def __init__(self, s):
            self.s = s

        def seconds(self):
            return self.s

    totals = metrics.StageTotals()
    for whole in (1.0, 2.0):
        times = metrics.PassTimes()
        times.whole_s = whole
        times.core = [Fixed(0.1), Fixed(0.2)]
        times.h2d = [Fixed(0.01), Fixed(0.01)]
        times.d2h = [Fixed(0.005)]
        totals.add(times)
    assert totals.whole_s == 3.0
    assert totals.core_s == pytest.approx(0.6)
    assert totals.h2d_s == pytest.approx(0.04) and totals.d2h_s == pytest.approx(0.01)
    assert totals.core_batches_s == [0.1, 0.2, 0.1, 0.2]


def test_sharing_warning_when_the_pipeline_slowed_the_model():
    # R = 2 passes' calls inside the pipeline against one pass's in the core pass: the mean call's ratio
    assert metrics.core_ratio([0.3, 0.3, 0.3, 0.3], [0.2, 0.2]) == 1.5
    assert metrics.core_ratio([1.0], [0.0]) is None and metrics.core_ratio([], [1.0]) is None
    warning = metrics.sharing_warning("val", {"core_ratio": 1.6})
    assert warning.startswith("val: the model's calls inside the whole passes took 1.60x")
    assert metrics.sharing_warning("val", {"core_ratio": 1.1}) is None
    assert metrics.sharing_warning("val", {"core_ratio": None}) is None
