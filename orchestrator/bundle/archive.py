"""What an image archive holds, found in the same read that hashes it, before anything loads it.

An archive is ``docker save`` of one image ID, gzip. ``docker load`` gives an image the tags its archive
names, before anything can compare IDs, so a bundle's archive must name none: it must hold exactly one image
(``manifest.json``: one entry, no ``RepoTags``; no legacy ``repositories`` file; no image name in
``index.json``), and that image's ID is the sha256 of its config file, which is what docker computes on
load (and docker checks each layer against the config). Import then loads the checked bytes (their sha256
checked again on the host) and tags the ID itself. Members are tracked as tar extraction writes them: a
later member replaces an earlier one, and a member written through a link is refused.
"""

import hashlib
import posixpath
import tarfile
import zlib
from typing import BinaryIO, Callable, Dict, Optional, Set, Tuple

from orchestrator.bundle import tree
from orchestrator.safeio import bounded

#: a config or an index is a few KiB; a JSON member larger than this is no docker save of one image
MAX_JSON = 16 << 20
MAX_MEMBERS = 100_000
#: index.json annotations that make docker (containerd image store) name the image it loads
NAME_ANNOTATIONS = ("io.containerd.image.name", "org.opencontainers.image.ref.name")
_CHUNK = 1 << 20


class Refused(ValueError):
    """Not an archive of one unnamed image; the message says why in one line, ``sha256`` is the file's
    (so that a changed byte is told as such, not as the broken gzip it makes)."""

    def __init__(self, message: str, sha256: str = "") -> None:
        super().__init__(message)
        self.sha256 = sha256


def inspect(handle: BinaryIO, advance: Callable[[int], None]) -> Tuple[str, str]:
    """(sha256 of every byte of ``handle``, the ID of the one unnamed image the archive holds); Refused when
    it is no such archive. Reads ``handle`` once, to its end (what tar leaves, for the sha256)."""
    reader = tree.HashingReader(handle, advance)
    try:
        image_id = _image_id(_members(reader))
    except Refused as exc:
        why = str(exc)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:  # gzip and tar of a bad file
        why = "not a gzip docker save archive: %s" % " ".join(str(exc).split())
    else:
        return reader.drain(), image_id
    raise Refused(why, reader.drain())


class _Members:
    """Each member path as extraction leaves it: the sha256 of a small regular file, None for anything else
    (a link, a large layer: never a config); and the bytes of manifest.json and index.json."""

    def __init__(self) -> None:
        self.sha256: Dict[str, Optional[str]] = {}
        self.docs: Dict[str, bytes] = {}


def _members(reader: tree.HashingReader) -> _Members:
    found = _Members()
    links: Set[str] = set()
    tar: tarfile.TarFile
    # typeshed asks any fileobj for seek and write; a stream ("r|gz") only reads
    with tarfile.open(fileobj=reader, mode="r|gz", bufsize=_CHUNK) as tar:  # type: ignore[call-overload]
        for count, member in enumerate(tar):
            if count >= MAX_MEMBERS:
                raise Refused("more than %d members" % MAX_MEMBERS)
            name = _path(member.name)
            parents = name.split("/")[:-1]
            if any("/".join(parents[: i + 1]) in links for i in range(len(parents))):
                raise Refused("member %r is written through a link" % member.name)
            links.discard(name)
            if member.issym() or member.islnk():
                links.add(name)
            found.docs.pop(name, None)
            found.sha256[name] = None
            content = tar.extractfile(member) if member.isfile() and member.size <= MAX_JSON else None
            if content is not None:
                data = content.read()
                found.sha256[name] = hashlib.sha256(data).hexdigest()
                if name in ("manifest.json", "index.json"):
                    found.docs[name] = data
    return found


def _image_id(members: _Members) -> str:
    entries = _json(members, "manifest.json")
    if not isinstance(entries, list) or len(entries) != 1 or not isinstance(entries[0], dict):
        raise Refused("manifest.json does not list exactly one image")
    if entries[0].get("RepoTags"):
        raise Refused("it names the image %s (RepoTags)" % ", ".join(map(repr, entries[0]["RepoTags"])))
    if "repositories" in members.sha256:
        raise Refused("it names images (a repositories file)")
    index = _json(members, "index.json") if "index.json" in members.sha256 else {}
    listed = index.get("manifests") if isinstance(index, dict) else None
    for entry in listed if isinstance(listed, list) else []:
        annotations = entry.get("annotations") if isinstance(entry, dict) else None
        if isinstance(annotations, dict) and any(key in annotations for key in NAME_ANNOTATIONS):
            raise Refused("index.json names the image it holds")
    config = entries[0].get("Config")
    digest = members.sha256.get(_path(config)) if isinstance(config, str) else None
    if digest is None:
        raise Refused("its config %r is no regular file of the archive" % (config,))
    return "sha256:" + digest


def _path(name: str) -> str:
    """A member name as extraction resolves it inside the folder: no leading ``/``, no ``.`` or ``..``."""
    return posixpath.normpath("/" + name).lstrip("/")


def _json(members: _Members, name: str) -> object:
    data = members.docs.get(name)
    if data is None:
        raise Refused("no %s as a regular file" % name)
    try:
        return bounded.loads(data)
    except bounded.Refused as exc:
        raise Refused("%s: %s" % (name, exc)) from None
