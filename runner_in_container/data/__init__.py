"""The runner's data layer: open ImageNet val in any layout, decode, preprocess, batch.

Only the torch-free part is re-exported here; preprocess and loader import torch.
"""

from .errors import DataError
from .layouts import Dataset, Sample, open_dataset

__all__ = ["DataError", "Dataset", "Sample", "open_dataset"]
