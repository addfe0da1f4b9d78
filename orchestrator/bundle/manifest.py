"""manifest.json: what a bundle holds, read and written in one place."""

import hashlib
import json
import posixpath
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Tuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..images import file_sha256

MANIFEST = "manifest.json"
FORMAT = 1
SHA256 = r"^[0-9a-f]{64}$"


class BundleError(ValueError):
    """A bundle cannot be used; the message is one line naming the file."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BundleFile(_Model):
    """One file of the bundle, by its path relative to the bundle folder."""

    path: str
    sha256: str = Field(pattern=SHA256)
    size: int = Field(ge=0)

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        if value.startswith("/") or posixpath.normpath(value) != value or value.split("/")[0] == "..":
            raise ValueError("must be a normalised path inside the bundle")
        return value


class BundleImage(_Model):
    """One vendor image: its tag (content hash), docker image ID, archive and where it was built."""

    vendor: str
    tag: str
    image_id: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    file: str
    hosts: List[str]
    built_on: Dict[str, Any]


class Expected(_Model):
    """Checksums the cluster file states for one host's data and weights (doctor checks them there)."""

    host: str
    data: str
    data_md5: Optional[str] = None
    weights: str
    weights_sha256_prefix: Optional[str] = None


class Manifest(_Model):
    format: Literal[1] = FORMAT
    project: Dict[str, str]
    cluster: str
    plan: List[Dict[str, Any]]
    images: List[BundleImage]
    runner: str
    wheels: Dict[str, List[str]] = Field(default_factory=dict)
    expected: List[Expected]
    files: List[BundleFile]

    def file(self, path: str) -> BundleFile:
        return next(f for f in self.files if f.path == path)


def describe(root: Path, rel: str) -> BundleFile:
    """The manifest entry of ``root/rel`` as it is now."""
    path = root / rel
    return BundleFile(path=rel, sha256=file_sha256(path), size=path.stat().st_size)


def write(root: Path, manifest: Manifest) -> str:
    """Write ``root/manifest.json``; returns its sha256, the bundle's name."""
    data = (json.dumps(manifest.model_dump(mode="json"), indent=1, sort_keys=True) + "\n").encode()
    (root / MANIFEST).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def read(root: Path) -> Tuple[Manifest, str]:
    """The manifest of the bundle in ``root`` and its sha256; BundleError naming the file otherwise."""
    path = Path(root) / MANIFEST
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BundleError("%s: cannot read: %s" % (path, exc.strerror or exc)) from None
    try:
        manifest = Manifest.model_validate(json.loads(data))
    except (ValueError, ValidationError) as exc:
        first = str(exc).splitlines()[0]
        raise BundleError("%s: not a bundle manifest: %s" % (path, first)) from None
    return manifest, hashlib.sha256(data).hexdigest()
