"""manifest.json: what a bundle holds, read and written in one place.

Every path the manifest names (``files[].path``, ``images[].file``, the wheels of a bare host and the host
names that make their folder) is validated here, so no later step can be led outside the bundle or the
host's bundle folder; a refusal names the field (``images[0].file: ...``).
"""

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Dict, Final, List, Literal, NamedTuple, Optional, Sequence, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from orchestrator.host.images import file_sha256
from orchestrator.safeio import bounded

MANIFEST = "manifest.json"
#: 2: image archives name no image (``docker save`` of the image ID); import tags them after checking
FORMAT: Final = 2
SHA256 = r"^[0-9a-f]{64}$"
IMAGE_ID = r"^sha256:[0-9a-f]{64}$"
#: one path component: a plain name, never ``.``, ``..`` or hidden
NAME = r"[A-Za-z0-9][A-Za-z0-9._+-]{0,254}"
#: a path inside the bundle: plain names joined by ``/`` (so relative, without ``..``, never absolute)
PATH = r"^%s(/%s)*$" % (NAME, NAME)
PlainName = Annotated[str, Field(pattern="^%s$" % NAME)]
#: manifest.json is the plan and a line per file: far below this
MAX_BYTES = 16 << 20


class BundleError(ValueError):
    """A bundle cannot be used; the message is one line naming the file."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BundleFile(_Model):
    """One file of the bundle, by its path relative to the bundle folder."""

    path: str = Field(pattern=PATH, max_length=4096)
    sha256: str = Field(pattern=SHA256)
    size: int = Field(ge=0)


class BundleImage(_Model):
    """One vendor image: its tag (content hash), docker image ID, archive and where it was built."""

    vendor: PlainName
    tag: str = Field(pattern=r"^rn50bench/%s:[0-9a-f]{16}$" % NAME)
    image_id: str = Field(pattern=IMAGE_ID)
    file: str = Field(pattern=PATH, max_length=4096)
    hosts: List[str]
    built_on: Dict[str, Any]

    @property
    def content_hash(self) -> str:
        return self.tag.rsplit(":", 1)[1]


class Expected(_Model):
    """Checksums the cluster file states for one host's data and weights (doctor checks them there)."""

    host: str
    data: str
    data_md5: Optional[str] = None
    weights: str
    weights_sha256_prefix: Optional[str] = None


class Manifest(_Model):
    format: Literal[2] = FORMAT
    project: Dict[str, str]
    cluster: str
    plan: List[Dict[str, Any]]
    images: List[BundleImage]
    runner: str = Field(pattern=r"^[0-9a-f]{16}$")
    wheels: Dict[PlainName, List[PlainName]] = Field(default_factory=dict)
    expected: List[Expected]
    files: List[BundleFile]

    @model_validator(mode="after")
    def _listed(self) -> "Manifest":
        paths = [f.path for f in self.files]
        if len(set(paths)) != len(paths):
            raise ValueError("files: a path is listed twice")
        named = [("images[%d].file" % i, image.file) for i, image in enumerate(self.images)]
        named += [("wheels.%s" % host, wheel_path(host, name)) for host, names in self.wheels.items()
                  for name in names]  # fmt: skip
        for field, path in named:
            if path not in paths:
                raise ValueError("%s: %s is not in files" % (field, path))
        return self

    def file(self, path: str) -> BundleFile:
        return next(f for f in self.files if f.path == path)


class Bundle(NamedTuple):
    """A manifest as read: the model, the exact bytes (what import sends) and their sha256 (its name)."""

    manifest: Manifest
    data: bytes
    digest: str


def wheel_path(host: str, name: str) -> str:
    """The bundle path of one wheel of a bare host."""
    return "wheels/%s/%s" % (host, name)


def describe(root: Path, rel: str) -> BundleFile:
    """The manifest entry of ``root/rel`` as it is now."""
    path = root / rel
    return BundleFile(path=rel, sha256=file_sha256(path), size=path.stat().st_size)


def write(root: Path, manifest: Manifest) -> str:
    """Write ``root/manifest.json``; returns its sha256, the bundle's name."""
    data = (json.dumps(manifest.model_dump(mode="json"), indent=1, sort_keys=True) + "\n").encode()
    (root / MANIFEST).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def read(root: Path) -> Bundle:
    """The manifest of the bundle in ``root``, read once within bounds (a regular file, no link, at most
    MAX_BYTES, nested at most bounded.MAX_DEPTH); BundleError naming the file and the field otherwise."""
    path = Path(root) / MANIFEST
    try:
        data = bounded.read_regular(str(path), MAX_BYTES)
        manifest = Manifest.model_validate(bounded.loads(data))
    except bounded.Refused as exc:
        raise BundleError("%s: %s" % (path, exc)) from None
    except OSError as exc:
        raise BundleError("%s: cannot read: %s" % (path, exc.strerror or exc)) from None
    except ValidationError as exc:
        raise BundleError("%s: not a bundle manifest: %s" % (path, _first_error(exc))) from None
    return Bundle(manifest, data, hashlib.sha256(data).hexdigest())


def _first_error(exc: ValidationError) -> str:
    """``images[0].file: <why>`` of the first error, the value shown as written (repr, one line)."""
    error = exc.errors(include_url=False)[0]
    loc, key = error["loc"], ""
    if loc and loc[-1] == "[key]":  # a mapping's key: named by the mapping
        loc, key = loc[:-2], "key "
    field = _where(loc)
    message = error["msg"].replace("Value error, ", "")
    if error["type"] == "string_pattern_mismatch":
        message = "%s%r is not a plain relative name (letters, digits, ._+-, no ..)" % (key, error["input"])
    return "%s: %s" % (field, message) if field else message


def _where(loc: Sequence[Union[int, str]]) -> str:
    """A pydantic error location as the field is written: ``images[0].file``, ``wheels.h``."""
    out = ""
    for part in loc:
        out += "[%d]" % part if isinstance(part, int) else ("." if out else "") + str(part)
    return out
