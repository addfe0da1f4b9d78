"""torchvision ResNet50 with the IMAGENET1K_V1 weights (resnet50-0676ba61.pth): the benchmark's case."""

import torch

from ..data.preprocess import Preprocessing
from . import Case

#: torchvision's published IMAGENET1K_V1 top-1 (%); the gate is 99% of it (MLPerf-like)
REFERENCE_TOP1_PCT = 76.13
TARGET_TOP1_PCT = 0.99 * REFERENCE_TOP1_PCT


class ResNet50(Case):
    name = "resnet50"
    preprocessing = Preprocessing(resize=256, crop=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    targets = {p: TARGET_TOP1_PCT for p in ("fp32", "tf32", "fp16", "bf16", "int8")}

    def architecture(self) -> torch.nn.Module:
        import torchvision

        try:
            return torchvision.models.resnet50(weights=None)
        except TypeError:  # torchvision < 0.13
            return torchvision.models.resnet50(pretrained=False)


CASE = ResNet50()
