"""An uncompressed tar read in place: member extents from the headers, data by os.pread."""

import hashlib
import os
import tarfile
from typing import List, NamedTuple

from .errors import DataError

_CHUNK = 8 << 20


class Member(NamedTuple):
    """A regular file inside the tar: where its bytes are."""

    name: str
    offset: int
    size: int


def index_members(path: str) -> List[Member]:
    """Every regular file member of the tar at ``path``, in archive order (headers only, one scan)."""
    try:
        with tarfile.open(path, "r:") as tar:
            members = [m for m in tar if m.isreg()]
    except tarfile.TarError as e:
        raise DataError(
            f"{path}: cannot read tar headers ({e}); the tar layout needs a complete, uncompressed .tar"
        ) from None
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e}") from None
    sparse = [m.name for m in members if m.issparse()]
    if sparse:
        raise DataError(f"{path}: member {sparse[0]} is a sparse file, which cannot be read in place")
    end = os.path.getsize(path)
    short = [m.name for m in members if m.offset_data + m.size > end]
    if short:
        raise DataError(f"{path}: member {short[0]} ends past the end of the file (truncated tar)")
    return [Member(m.name, m.offset_data, m.size) for m in members]


def md5_file(path: str) -> str:
    """Hex MD5 of the whole file."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pread_exact(fd: int, size: int, offset: int, where: str) -> bytes:
    """``size`` bytes at ``offset`` of an open file; thread-safe (no shared file position)."""
    parts = []
    while size > 0:
        part = os.pread(fd, size, offset)
        if not part:
            raise DataError(f"{where}: file ends early (truncated tar?)")
        parts.append(part)
        size -= len(part)
        offset += len(part)
    return b"".join(parts)


def pread_into(fd: int, view: memoryview, offset: int, where: str) -> memoryview:
    """Fill ``view`` with the bytes at ``offset`` of an open file; thread-safe; returns ``view``."""
    done = 0
    while done < len(view):
        got = os.preadv(fd, [view[done:]], offset + done)
        if not got:
            raise DataError(f"{where}: file ends early (truncated?)")
        done += got
    return view
