"""Dense peak FLOP/s tables, the denominators of MFU."""

import re
from dataclasses import dataclass
from typing import Mapping

from runner_in_container.contract import PEAK_PRECISIONS

from .errors import VendorError

#: 1 TFLOP/s, the unit datasheets quote
TERA = 1e12


@dataclass(frozen=True)
class Peak:
    """Dense peak FLOP/s (or OP/s for int8) of one device model, per precision, with where it came from."""

    model: str  # device model as people name it, e.g. "NVIDIA H200 SXM"
    match: str  # regular expression, searched case-insensitively in the SMI's device name
    flops: Mapping[str, float]  # precision -> FLOP/s (dense, no sparsity)
    source: str  # document (and table) the figures come from

    def __post_init__(self) -> None:
        unknown = sorted(set(self.flops) - set(PEAK_PRECISIONS))
        if unknown:
            raise VendorError("peak {}: unknown precision(s) {}".format(self.model, ", ".join(unknown)))
        if not all(value > 0 for value in self.flops.values()):
            raise VendorError(f"peak {self.model}: figures must be positive FLOP/s")
        if not self.source:
            raise VendorError(f"peak {self.model}: a source is required")
        re.compile(self.match)
