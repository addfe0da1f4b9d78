"""Versions and facts of the software the case ran with (the container's side of the environment)."""

import platform
import sys
from typing import Dict, Optional

import numpy
import PIL
import torch
import torchvision


def _cudnn_version() -> Optional[str]:
    if not torch.backends.cudnn.is_available():
        return None
    version = torch.backends.cudnn.version()
    return str(version) if version is not None else None


def versions() -> Dict[str, Optional[str]]:
    """Versions of Python and the libraries the runner imports."""
    return {
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "PIL": PIL.__version__,
        "cuda": torch.version.cuda,
        "cudnn": _cudnn_version(),
    }


def collect(device_facts: Dict) -> Dict:
    """The ``environment`` section of the result; ``toolkits`` is filled as each stage's toolkit runs."""
    return {
        "versions": versions(),
        "toolkits": {},
        "device": device_facts,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "executable": sys.executable,
    }
