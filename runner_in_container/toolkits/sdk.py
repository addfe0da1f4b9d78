"""Lazy, guarded import of a toolkit's SDK, and its version.

Toolkit modules never import their SDK at module level: ``import_sdk`` is called
from ``compile()`` / ``versions()`` and turns a failed import into
``ToolkitUnavailable`` with the reason.
"""

import importlib
from types import ModuleType
from typing import Optional

from .base import ToolkitUnavailable


def import_sdk(module: str) -> ModuleType:
    """Import ``module`` or raise ToolkitUnavailable("<module> is not importable: <error>")."""
    try:
        return importlib.import_module(module)
    except (ImportError, OSError) as exc:  # OSError: a shared library of the SDK failed to load
        raise ToolkitUnavailable(f"{module} is not importable: {type(exc).__name__}: {exc}") from None


def sdk_version(module: ModuleType, distribution: Optional[str] = None) -> str:
    """``module.__version__``, else the installed distribution's version, else "unknown"."""
    version = getattr(module, "__version__", None)
    if version:
        return str(version)
    try:
        from importlib import metadata

        return metadata.version(distribution or module.__name__)
    except Exception:  # noqa: BLE001 - any failure means the version is not known
        return "unknown"


def major_version(version: str) -> int:
    """Leading integer of a version string ("8.5.1.7" -> 8, "2.1.0+cu118" -> 2); ValueError if none."""
    head = version.strip().split(".")[0]
    digits = ""
    for char in head:
        if not char.isdigit():
            break
        digits += char
    if not digits:
        raise ValueError(f"cannot read a major version from {version!r}")
    return int(digits)
