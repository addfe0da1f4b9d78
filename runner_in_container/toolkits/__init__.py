"""Inference toolkits, one module each, found by scanning this package.

A toolkit is a ``Toolkit`` subclass with a non-empty ``name`` defined in one of the
package's modules; helper modules (precision, onnx_export, engine_cache, ...)
define none and are skipped. Importing a toolkit module never imports its SDK.
"""

import importlib
import pkgutil
from typing import Dict, List, Type

from .base import Toolkit, ToolkitSettings, ToolkitUnavailable

__all__ = ["Toolkit", "ToolkitSettings", "ToolkitUnavailable", "load", "names"]

_FOUND = {}  # type: Dict[str, Type[Toolkit]]


def _discover() -> Dict[str, Type[Toolkit]]:
    if _FOUND:
        return _FOUND
    found = {}  # type: Dict[str, Type[Toolkit]]
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for obj in vars(module).values():
            if (
                isinstance(obj, type)
                and issubclass(obj, Toolkit)
                and obj.__module__ == module.__name__
                and obj.name
            ):
                if obj.name in found:
                    first = found[obj.name].__module__
                    raise RuntimeError(
                        f"toolkit name {obj.name} is defined twice: {first} and {obj.__module__}"
                    )
                found[obj.name] = obj
    _FOUND.update(found)
    return _FOUND


def names() -> List[str]:
    """Names of all toolkits in this package, sorted."""
    return sorted(_discover())


def load(name: str) -> Type[Toolkit]:
    """The toolkit class called ``name``; ValueError listing the known names otherwise."""
    found = _discover()
    if name not in found:
        raise ValueError("unknown toolkit {!r} (known: {})".format(name, ", ".join(sorted(found))))
    return found[name]
