"""Vendor plugins, found by scanning this package.

Adding a vendor means adding files, never editing a list: ``vendors/<name>.py``
exposing ``VENDOR`` (an instance of a ``vendors.vendor.Vendor`` subclass whose
``name`` is ``<name>``) and its template ``dockerfiles/<template>``; the convention is
``runner_in_container/discovery.py``'s, shared with toolkits, cases and launchers.
Modules without ``VENDOR`` (vendor, querycsv, smi, image, peaks, devices, errors) are
the parts vendors share. There is deliberately no plugin path or entry point: a vendor
lives in this package, next to the others, so a checkout shows every vendor.
"""

import sys
from typing import Dict

from runner_in_container.discovery import discover as discover_plugins

from .errors import VendorError
from .vendor import Vendor


def discover() -> Dict[str, Vendor]:
    """name -> Vendor for every vendor module of this package.

    Raises PluginError naming the module when one cannot be imported or breaks the
    convention, and VendorError (a PluginError) when a descriptor is malformed (see
    ``Vendor.validate``).
    """
    found = discover_plugins(sys.modules[__name__], "VENDOR", Vendor)  # type: Dict[str, Vendor]
    for vendor in found.values():
        vendor.validate()
    return found


def get(name: str) -> Vendor:
    """The vendor called ``name``; VendorError listing the known names otherwise."""
    known = discover()
    if name not in known:
        raise VendorError("unknown vendor {!r} (known: {})".format(name, ", ".join(sorted(known)) or "none"))
    return known[name]
