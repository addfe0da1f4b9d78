"""Tables that fit the width they are printed at (the terminal's, or ``COLUMNS`` when piped).

A number never folds and a word folds only when it is longer than ``LONG_WORD``; the columns share what
width is left by how much more each would take. Where the bordered table cannot fit, a compact one (no rules,
one space between columns) is tried; where even that cannot, each row is printed as a block of its own, one
field per line, so nothing is cut.
"""

import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text

#: a cell: plain text, or rich Text with its styles (doctor's coloured statuses)
Cell = Union[str, Text]

#: a word longer than this may fold inside itself (a path, a long reason); a number never does
LONG_WORD = 20
#: what a column costs beside its text in the bordered table: a space each side and its rule
COLUMN_OVERHEAD = 3
#: the bordered table (rules around every cell), and the compact one where that does not fit: no rules, no
#: padding, one space between columns, a rule under the heading
BORDERED: Dict[str, Any] = {}
COMPACT: Dict[str, Any] = {"box": box.SIMPLE_HEAD, "padding": (0, 0), "show_edge": False}
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


def _plain(cell: Any) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


class FittedTable:
    """A table of ``rows`` (dicts of cells) under ``columns`` (key, heading) that fits the width it is
    printed at; ``caption`` (the legend) under it, ``lines`` between the rows."""

    def __init__(
        self,
        title: str,
        rows: Sequence[Mapping[str, Cell]],
        columns: Sequence[Tuple[str, str]],
        caption: str = "",
        lines: bool = False,
    ) -> None:
        self.title, self.rows, self.columns, self.caption, self.lines = title, rows, columns, caption, lines

    def _cells(self, row: Mapping[str, Cell]) -> List[Cell]:
        return [row.get(key, "") for key, _ in self.columns]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        texts = [[heading] + [_plain(row.get(key, "")) for row in self.rows] for key, heading in self.columns]
        n = len(self.columns)
        for overhead, style in ((COLUMN_OVERHEAD * n + 1, BORDERED), (n - 1, COMPACT)):
            fitted = widths(texts, options.max_width - overhead)
            if fitted or not self.rows:
                yield self._table(style, fitted)
                return
        for number, row in enumerate(self.rows, 1):  # too narrow for the columns: a block per row
            block = Table(title="%s (%d of %d)" % (self.title, number, len(self.rows)), show_header=False)
            block.add_column(style="bold", no_wrap=True)
            block.add_column(overflow="fold")
            for (_, heading), cell in zip(self.columns, self._cells(row)):
                block.add_row(heading, cell)
            yield block
        if self.caption:
            yield self.caption

    def _table(self, style: Dict[str, Any], fitted: List[int]) -> Table:
        """The rows as one table in ``style`` (BORDERED or COMPACT), its columns ``fitted`` wide."""
        table = Table(title=self.title, caption=self.caption or None, show_lines=self.lines, **style)
        sizes: List[Optional[int]] = list(fitted) if fitted else [None] * len(self.columns)
        for (_, heading), width in zip(self.columns, sizes):
            table.add_column(heading, width=width, overflow="fold")
        for row in self.rows:
            table.add_row(*self._cells(row))
        return table
