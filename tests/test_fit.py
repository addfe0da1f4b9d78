"""Tables that fit their width (orchestrator/safeio/fit.py): numbers never fold, long words may, and below
the narrowest the columns allow each row becomes a block of its own."""

from rich.console import Console

from orchestrator.safeio.fit import LONG_WORD, FittedTable, widths

ROWS = [
    {"tool": "onnxruntime", "figure": "17268.3 (R = 1: no spread)", "note": "x" * 40},
    {"tool": "pytorch", "figure": "9.894e+14", "note": "idle"},
]
COLUMNS = [("tool", "tool"), ("figure", "p_infer_whole"), ("note", "conditions")]


def _render(width: int) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(FittedTable("results", ROWS, COLUMNS, "legend"))
    return console.export_text()


def test_each_column_gets_its_narrowest_and_the_rest_goes_where_it_is_wanted():
    texts = [["tool", "onnxruntime", "pytorch"], ["p", "17268.3 (R = 1)"], ["n", "x" * 40]]
    assert widths(texts, 11 + 7 + LONG_WORD) == [11, 7, LONG_WORD]  # numbers whole, the long word folds
    assert widths(texts, 100) == [11, 15, 40]  # all it wants, no more
    assert widths(texts, 20) == []  # below the narrowest: no table


def test_a_wide_console_gets_one_table_and_a_narrow_one_a_block_per_row():
    for width in (60, 100):
        out = _render(width)
        assert max(len(line) for line in out.splitlines()) <= width
        assert "17268.3" in out and "9.894e+14" in out and "onnxruntime" in out
    assert "(1 of 2)" not in _render(100) and "(1 of 2)" in _render(30)
    narrow = _render(30)
    assert max(len(line) for line in narrow.splitlines()) <= 30 and "9.894e+14" in narrow
