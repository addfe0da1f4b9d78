"""What a vendor's image is built from: the SDK files the lab supplies, and the pins vendors share."""

import re
from dataclasses import dataclass, field
from typing import Mapping, Optional, Tuple

from .errors import VendorError

_SDK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

#: the base image of vendors whose SDK ships Python 3.8 (cp38) wheels: Ubuntu 20.04's Python is 3.8
PY38_BASE_IMAGE = "ubuntu:20.04"

#: the runner's own dependencies where the vendor image does not ship them (not in the reference
#: tables; releases of late 2022, contemporary with torch 1.13, that support Python 3.8)
RUNNER_PIP_PINS = {"numpy_version": "1.23.5", "pillow_version": "9.3.0"}

#: PyTorch's CPU build, for vendors whose val stage runs on the CPU (their engine alone uses the device)
TORCH_CPU_VERSIONS = {"torch_version": "1.13.0+cpu", "torchvision_version": "0.14.0+cpu"}


@dataclass(frozen=True)
class SdkFile:
    """An installer the image build copies from the lab's local SDK directory.

    The descriptor declares the file *name* (the exact file the vendor ships for the
    pinned version) and what it is; the vendor does not publish checksums, so the lab
    states the sha256 of each file in its cluster file (``image.sdk_checksums``), and
    the build refuses a file whose digest differs. ``sha256`` here stays empty unless
    a vendor publishes one. No URL or mirror is ever declared.
    """

    name: str
    purpose: str
    sha256: str = ""
    #: an optional file is left out of the build (and the template) when sdk_dir lacks it
    optional: bool = False
    #: the toolkits the image has only with this file: without it their jobs are skipped, not run to fail
    toolkits: Tuple[str, ...] = ()
    #: the scenarios (contract.SCENARIOS) the image runs only with this file: likewise
    scenarios: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _SDK_NAME.match(self.name):
            raise VendorError(f"SDK file name {self.name!r}: use letters, digits and . _ + - only")
        if self.sha256 and not _SHA256.match(self.sha256):
            raise VendorError(f"SDK file {self.name}: sha256 must be 64 lowercase hex digits")


@dataclass(frozen=True)
class ImageStack:
    """One way to build a vendor's image: a template, its variables and SDK files, the packages it pins and
    the toolkits of the vendor that its image lacks.

    A vendor's first stack is made of its own ``template``, ``image_vars``, ``sdk_files`` and ``pins``
    (``Vendor.stacks``); a host picks another in its cluster file (``image.stack``). A stack whose
    ``image_vars`` name no ``base_image`` is built only on one the lab names (``image.base_image``).
    """

    name: str
    template: str
    image_vars: Mapping[str, str]
    sdk_files: Tuple[SdkFile, ...] = ()
    #: the packages whose versions the template pins, each by the image variable ``<name>_version``; the lab
    #: may state them in ``image.pins`` (a version prefix each: the build's pin check refuses others)
    pins: Tuple[str, ...] = ()
    #: toolkit -> why this stack's image cannot run it (the vendor runs it on another stack)
    lacks: Mapping[str, str] = field(default_factory=dict)
    #: False: the build fetches nothing, and runs without a network (docker build --network none)
    fetches: bool = True

    def lacked(self, toolkit: str) -> Optional[str]:
        """Why this stack's image cannot run ``toolkit``, or None."""
        reason = self.lacks.get(toolkit)
        return None if reason is None else "image stack %s has no %s: %s" % (self.name, toolkit, reason)

    def describe(self, overrides: Mapping[str, str]) -> str:
        """One line: the stack's name, its pins (with the host's ``overrides``) and the toolkits it lacks."""
        variables = dict(self.image_vars, **overrides)
        pins = " ".join("%s==%s" % (name, variables["%s_version" % name]) for name in self.pins)
        lacks = "lacks " + ", ".join(sorted(self.lacks)) if self.lacks else ""
        details = "; ".join(part for part in (pins, lacks) if part)
        return "%s (%s)" % (self.name, details) if details else self.name


def cp38_wheel(dist: str, version: str, purpose: str) -> SdkFile:
    """The Linux x86_64 CPython 3.8 wheel of ``dist`` at ``version``, named as pip names it."""
    return SdkFile(f"{dist}-{version}-cp38-cp38-linux_x86_64.whl", purpose)


def torch_wheels(image_vars: Mapping[str, str], source: str) -> Tuple[SdkFile, SdkFile]:
    """The torch and torchvision cp38 wheels at the versions ``image_vars`` pins, from ``source``."""
    torch, vision = image_vars["torch_version"], image_vars["torchvision_version"]
    return (
        cp38_wheel("torch", torch, f"PyTorch {torch} wheel (from {source})"),
        cp38_wheel("torchvision", vision, f"torchvision {vision} wheel (from {source})"),
    )
