"""Inference toolkits, one module each, found by scanning this package.

A toolkit module ``<name>.py`` defines a ``Toolkit`` subclass whose ``name`` is
``<name>`` and exposes it as ``TOOLKIT`` (the convention of ``discovery.py``, shared
with vendors, cases and launchers); helper modules (precision, onnx_export,
engine_cache, ...) expose none. Importing a toolkit module never imports its SDK.
"""

import sys
from typing import Dict, List, Type

from ..discovery import discover
from .base import Toolkit, ToolkitSettings, ToolkitUnavailable

__all__ = ["Toolkit", "ToolkitSettings", "ToolkitUnavailable", "load", "names"]


def _found() -> Dict[str, Type[Toolkit]]:
    return discover(sys.modules[__name__], "TOOLKIT", Toolkit, classes=True)


def names() -> List[str]:
    """Names of all toolkits in this package, sorted."""
    return sorted(_found())


def load(name: str) -> Type[Toolkit]:
    """The toolkit class called ``name``; ValueError listing the known names otherwise."""
    found = _found()
    if name not in found:
        raise ValueError("unknown toolkit {!r} (known: {})".format(name, ", ".join(sorted(found))))
    return found[name]
