"""Text shown on a terminal: what users and hosts wrote (paths, file names, host names, reasons) is printed
as it is, never read as rich markup (``[/]``, ``[val]``) or emoji codes, and never able to move the cursor,
retitle the window or recolour it (escape sequences, carriage returns, bidi overrides are shown as ``\\x1b``).

Every printing point goes through here once: ``console()`` for rich output (tables, titles, lines), and
``shown()`` for plain ``print`` lines and rich ``Text`` built by hand.
"""

import re
from pathlib import Path
from typing import Any, Optional

from rich.console import Console
from rich.text import Text

#: C0 controls but tab and newline, DEL, C1 controls, and the bidi embeddings, overrides and isolates
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: "re.Match[str]") -> str:
    code = ord(match.group())
    return "\\x%02x" % code if code < 0x100 else "\\u%04x" % code


def shown(value: Any) -> str:
    """``value`` as text that prints as it reads: control characters written as ``\\xNN`` escapes."""
    return _UNSAFE.sub(_escape, str(value))


class SafeConsole(Console):
    """A rich Console that takes every string literally: no markup, no emoji codes, controls escaped."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("markup", False)
        kwargs.setdefault("emoji", False)
        super().__init__(**kwargs)

    def render_str(self, text: str, **kwargs: Any) -> Text:
        kwargs["markup"] = False
        kwargs["emoji"] = False
        return super().render_str(shown(text), **kwargs)


def console(**kwargs: Any) -> Console:
    """The console every command prints through (see SafeConsole)."""
    return SafeConsole(**kwargs)


def one_line(text: str) -> str:
    """Collapse a message to one line of at most 300 characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= 300 else line[:297] + "..."


def os_error(exc: OSError, path: Optional[Path] = None) -> str:
    """``PATH: reason`` of a failed file operation on this machine."""
    where = path or exc.filename
    return "%s: %s" % (where, exc.strerror or exc) if where else str(exc.strerror or exc)
