"""Timers, counters, latency percentiles and accuracy counting (definitions: metrics.md)."""

import math
from typing import Dict, List, NamedTuple, Optional, Sequence

import torch

from .device import Interval

TOPK = 5


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), linear between closest ranks (numpy's default method)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be within 0..100, got {q!r}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = int(math.floor(position))
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def latency_ms(seconds: Sequence[float]) -> Dict[str, float]:
    """p50 / p90 / p99 (and mean, min, max) of per-batch times, in milliseconds."""
    ms = [s * 1000.0 for s in seconds]
    summary = {"p50": percentile(ms, 50), "p90": percentile(ms, 90), "p99": percentile(ms, 99)}
    summary.update(mean=sum(ms) / len(ms), min=min(ms), max=max(ms))
    return {key: round(value, 4) for key, value in summary.items()}


#: the forward time inside the whole passes over the core pass's above which the data path shared the device
SHARED_RATIO = 1.1


def core_ratio(in_pipeline_s: Sequence[float], core_s: Sequence[float]) -> Optional[float]:
    """The mean forward call's time inside the whole passes over its mean in the core pass (R passes'
    calls against one pass's)."""
    if not in_pipeline_s or not core_s or sum(core_s) <= 0:
        return None
    return round((sum(in_pipeline_s) / len(in_pipeline_s)) / (sum(core_s) / len(core_s)), 4)


def sharing_warning(stage: str, section: Dict) -> Optional[str]:
    """A warning when the model's calls inside the whole passes were far slower than alone (core pass)."""
    ratio = section.get("core_ratio")
    if ratio is None or ratio <= SHARED_RATIO:
        return None
    return (
        f"{stage}: the model's calls inside the whole passes took {ratio:.2f}x their time in the core pass: "
        "the data path shared the device (decoding on it, or threads delaying the model's launches); the "
        "core figure is the core pass's, the model alone; throughput_core_in_pipeline is the shared one"
    )


def rate(images: int, seconds: float) -> Optional[float]:
    """Images per second, or None for a zero-length window."""
    return images / seconds if seconds > 0 else None


def pct(count: int, total: int) -> float:
    """Percentage with two decimals."""
    return round(100.0 * count / total, 2)


class Predictions:
    """The top-k classes of one pass, kept on the device; padded slots are never stored."""

    def __init__(self, n_images: int, device: torch.device, k: int = TOPK) -> None:
        self.n_images = n_images
        self.k = k
        self.buffer = torch.empty((n_images, k), dtype=torch.int64, device=device)
        self.filled = 0

    def add(self, logits: torch.Tensor, valid: int) -> None:
        """Store the top-k of the first ``valid`` rows of a batch's logits (on their device, no sync)."""
        if self.filled + valid > self.n_images:
            raise ValueError(f"more predictions than images ({self.filled + valid} > {self.n_images})")
        top = logits[:valid].float().topk(self.k, dim=1).indices
        self.buffer[self.filled : self.filled + valid].copy_(top, non_blocking=True)
        self.filled += valid

    def to_host(self) -> torch.Tensor:
        """The predictions on the CPU (a D2H copy on accelerators; waits for it)."""
        if self.filled != self.n_images:
            raise ValueError(f"pass incomplete: {self.filled} of {self.n_images} images predicted")
        return self.buffer.cpu()


class Accuracy(NamedTuple):
    """Top-1 and top-5 hits over ``n`` images."""

    top1_count: int
    top5_count: int
    n: int

    def as_dict(self) -> Dict:
        return {
            "top1_count": self.top1_count,
            "top5_count": self.top5_count,
            "top1_pct": pct(self.top1_count, self.n),
            "top5_pct": pct(self.top5_count, self.n),
        }


def count_accuracy(topk: torch.Tensor, labels: torch.Tensor) -> Accuracy:
    """Hits of CPU predictions ``topk`` [N, k] against ``labels`` [N] (no padding allowed)."""
    if topk.shape[0] != labels.shape[0]:
        raise ValueError(f"{topk.shape[0]} predictions for {labels.shape[0]} labels")
    if labels.numel() and int(labels.min()) < 0:
        raise ValueError("a padded slot (label -1) reached the accuracy count")
    hits = topk == labels.view(-1, 1)
    return Accuracy(int(hits[:, 0].sum()), int(hits.any(dim=1).sum()), int(labels.numel()))


def agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fraction of images whose top-1 classes agree between two prediction sets."""
    return round(float((a[:, 0] == b[:, 0]).double().mean()), 6)


class PassTimes:
    """Device-timed spans of one pass, read once the pass is synchronised."""

    def __init__(self) -> None:
        self.core: List[Interval] = []
        self.h2d: List[Interval] = []
        self.d2h: List[Interval] = []
        self.whole_s = 0.0

    def seconds(self, kind: str) -> List[float]:
        return [interval.seconds() for interval in getattr(self, kind)]


class StageTotals:
    """Sums over the passes of a stage."""

    def __init__(self) -> None:
        self.pass_whole_s: List[float] = []
        self.core_batches_s: List[float] = []
        self.h2d_s = 0.0
        self.d2h_s = 0.0

    def add(self, times: PassTimes) -> None:
        self.pass_whole_s.append(times.whole_s)
        self.core_batches_s.extend(times.seconds("core"))
        self.h2d_s += sum(times.seconds("h2d"))
        self.d2h_s += sum(times.seconds("d2h"))

    @property
    def whole_s(self) -> float:
        return sum(self.pass_whole_s)

    @property
    def core_s(self) -> float:
        return sum(self.core_batches_s)
