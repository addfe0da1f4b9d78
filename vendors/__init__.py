"""Vendor plugins, found by scanning this package.

Adding a vendor means adding files, never editing a list: ``vendors/<name>.py``
exposing ``VENDOR`` (an instance of a ``vendors.base.Vendor`` subclass whose ``name``
is ``<name>``) and its template ``dockerfiles/<template>``. ``discover()`` imports
every module of this package and keeps those that expose ``VENDOR``; modules without
it (``base``) are helpers. There is deliberately no plugin path or entry point: a
vendor lives in this package, next to the others, so a checkout shows every vendor.
"""

import importlib
import pkgutil
from typing import Dict

from .base import Vendor, VendorError

__all__ = ["Vendor", "VendorError", "discover", "get"]


def discover() -> Dict[str, Vendor]:
    """name -> Vendor for every module of this package exposing ``VENDOR``.

    Raises VendorError naming the module when one cannot be imported, exposes
    something that is not a Vendor, names itself differently from its file, or is
    malformed (see ``Vendor.validate``).
    """
    found = {}  # type: Dict[str, Vendor]
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.ispkg or info.name.startswith("_"):
            continue
        where = f"vendors/{info.name}.py"
        try:
            module = importlib.import_module(f"{__name__}.{info.name}")
        except Exception as exc:  # a broken plugin must name itself, whatever it raised
            raise VendorError(f"{where}: cannot be imported: {type(exc).__name__}: {exc}") from exc
        vendor = getattr(module, "VENDOR", None)
        if vendor is None:
            continue
        if not isinstance(vendor, Vendor):
            raise VendorError(f"{where}: VENDOR must be a vendors.base.Vendor instance")
        if vendor.name != info.name:
            raise VendorError(f"{where}: VENDOR.name is {vendor.name!r}; it must equal the module name")
        vendor.validate()
        found[vendor.name] = vendor
    return found


def get(name: str) -> Vendor:
    """The vendor called ``name``; VendorError listing the known names otherwise."""
    known = discover()
    if name not in known:
        raise VendorError("unknown vendor {!r} (known: {})".format(name, ", ".join(sorted(known)) or "none"))
    return known[name]
