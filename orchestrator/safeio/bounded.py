"""Reading what someone else wrote, within bounds: a file, a JSON document.

Everything a job hands back, a baseline, a bundle manifest and a stored cell is read through here. A file is
read only when it is a regular file reached without a symbolic link in its last component (a FIFO, a device,
``/dev/zero`` or a link are refused at once, never waited on or followed) and no larger than its bound; a JSON
document only when it is nested no deeper than its bound and holds no NaN or Infinity (not JSON, and no
figure). Every refusal is ``Refused`` with one line; the caller names the file or the cell.
"""

import json
import os
import stat
from typing import Any, List, Tuple

#: JSON documents of this project are a few levels deep (a result: about 6)
MAX_DEPTH = 32


class Refused(ValueError):
    """Not readable within bounds; the message says why in one line."""


def read_regular(path: str, max_bytes: int) -> bytes:
    """The bytes of the regular file ``path``; Refused when it is a link, not a regular file or larger than
    ``max_bytes``. OSError when it cannot be opened at all."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if os.path.islink(path):
            raise Refused("a symbolic link: only regular files are read") from None
        raise exc
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Refused("not a regular file")
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise Refused("larger than %s" % size_text(max_bytes))
    return data


def loads(text: "str | bytes", max_depth: int = MAX_DEPTH) -> Any:
    """The JSON document in ``text``; Refused when it is not JSON, holds NaN or Infinity, or is nested deeper
    than ``max_depth``."""
    try:
        doc = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise Refused("nested deeper than %d levels" % max_depth) from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError and _refuse_constant's
        raise Refused(str(exc).splitlines()[0] if str(exc) else "not JSON") from None
    if depth(doc) > max_depth:
        raise Refused("nested deeper than %d levels" % max_depth)
    return doc


def load_file(path: str, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    """``loads`` of ``read_regular(path, max_bytes)``."""
    return loads(read_regular(path, max_bytes), max_depth)


def depth(doc: Any) -> int:
    """How deep lists and objects nest in ``doc`` (a scalar is 0), without recursion."""
    deepest = 0
    stack: List[Tuple[Any, int]] = [(doc, 0)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            deepest = max(deepest, level + 1)
            stack.extend((item, level + 1) for item in value)
    return deepest


def size_text(n: int) -> str:
    """``n`` bytes in the largest binary unit that keeps it whole or above 1 (``16 MiB``)."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return "%g %s" % (n / (1 << shift), unit)
    return "%d bytes" % n


def _refuse_constant(name: str) -> Any:
    raise ValueError("%s is not a number JSON allows" % name)
