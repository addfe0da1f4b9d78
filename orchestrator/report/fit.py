"""Tables that fit the width they are printed at (the terminal's, or ``COLUMNS`` when piped).

A number never folds and a word folds only when it is longer than ``LONG_WORD``; the columns share what
width is left by how much more each would take. Where even that cannot fit, each row is printed as a block
of its own, one field per line, so nothing is cut.
"""

import re
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table

#: a word longer than this may fold inside itself (a path, a long reason); a number never does
LONG_WORD = 20
#: what a column costs beside its text: a space each side and its rule
COLUMN_OVERHEAD = 3
_NUMBER = re.compile(r"[-+±]?[\d][\d.,/%±+\-e]*")


def _min_width(texts: Iterable[str]) -> int:
    """The narrowest a column of ``texts`` may be (in terminal cells): its longest number, and its longest
    word up to LONG_WORD."""
    widest = 1
    for text in texts:
        for token in text.split():
            width = cell_len(token)  # a CJK character takes two cells
            widest = max(widest, width if _NUMBER.fullmatch(token) else min(width, LONG_WORD))
    return widest


def _longest_line(texts: Iterable[str]) -> int:
    return max((cell_len(line) for text in texts for line in text.splitlines() or [""]), default=1)


def widths(columns: Sequence[Sequence[str]], available: int) -> List[int]:
    """The width of each column (its heading and cells) within ``available`` characters of text, or [] where
    even their narrowest do not fit: each at least its narrowest, the rest shared out where it is wanted."""
    least = [_min_width(texts) for texts in columns]
    wanted = [max(_longest_line(texts), low) for texts, low in zip(columns, least)]
    if sum(least) > available:
        return []
    out = list(least)
    spare = available - sum(out)
    while spare > 0:
        short = [i for i in range(len(out)) if out[i] < wanted[i]]
        if not short:
            break
        for i in short:
            if spare == 0:
                break
            out[i] += 1
            spare -= 1
    return out


class FittedTable:
    """A table of ``rows`` (dicts of display strings) under ``columns`` (key, heading) that fits the width
    it is printed at; ``caption`` (the legend) under it."""

    def __init__(
        self,
        title: str,
        rows: Sequence[Dict[str, str]],
        columns: Sequence[Tuple[str, str]],
        caption: str = "",
    ) -> None:
        self.title, self.rows, self.columns, self.caption = title, rows, columns, caption

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        texts = [[heading] + [str(row.get(key, "")) for row in self.rows] for key, heading in self.columns]
        fitted = widths(texts, options.max_width - COLUMN_OVERHEAD * len(self.columns) - 1)
        if fitted or not self.rows:
            table = Table(title=self.title, caption=self.caption or None)
            sizes: List[Optional[int]] = list(fitted) if fitted else [None] * len(self.columns)
            for (_, heading), width in zip(self.columns, sizes):
                table.add_column(heading, width=width, overflow="fold")
            for row in self.rows:
                table.add_row(*[str(row.get(key, "")) for key, _ in self.columns])
            yield table
            return
        for number, row in enumerate(self.rows, 1):  # too narrow for the columns: a block per row
            block = Table(title="%s (%d of %d)" % (self.title, number, len(self.rows)), show_header=False)
            block.add_column(style="bold", no_wrap=True)
            block.add_column(overflow="fold")
            for key, heading in self.columns:
                block.add_row(heading, str(row.get(key, "")))
            yield block
        if self.caption:
            yield self.caption
