"""``python -m orchestrator report RUN_ID [RUN_ID ...]``: stored runs as tables, Markdown, CSV, JSON, HTML
or an MLPerf-style system description, optionally side by side with another run or a baseline file;
several runs gather into one results table, each row naming its run."""

import argparse
import io
import json
import sys
from pathlib import Path
from typing import List, Optional

from rich.console import Console, RenderableType
from rich.table import Table

from orchestrator.report import compare as cmp
from orchestrator.report import csvexport, labels, series, sysdesc, tables
from orchestrator.report.environment import EnvBlock, blocks_markdown, environment_blocks
from orchestrator.report.htmlreport import render as render_html
from orchestrator.report.load import ReportError, RunData, gather, load_run
from orchestrator.safeio.text import console as safe_console
from orchestrator.safeio.text import shown
from orchestrator.store import Store, StoreError
from orchestrator.transport.base import atomic_path

FORMATS = ("table", "md", "html", "json", "csv", "sysdesc")
DEFAULT_STORE = "results/rn50bench.sqlite"
#: the RUN_ID that names the run started last
LATEST = "latest"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The report subcommand's arguments."""
    parser.add_argument(
        "run_id",
        metavar="RUN_ID",
        nargs="+",
        help="a run in the store (see 'ls'), or %s: the run started last; several runs gather into one "
        "results table (every format but sysdesc; no --compare or --baseline), each row naming its run"
        % LATEST,
    )
    parser.add_argument("--store", default=DEFAULT_STORE, help="SQLite results store (default: %(default)s)")
    parser.add_argument(
        "--format", choices=FORMATS, default="table", help="output format (default: %(default)s)"
    )
    parser.add_argument(
        "--lang", choices=labels.LANGS, default="en", help="labels and headings (default: en)"
    )
    parser.add_argument(
        "--table",
        choices=csvexport.TABLES,
        default="results",
        help="with --format csv: the table to write, one per file (default: %(default)s; raw numbers, units "
        "in the header)",
    )
    parser.add_argument("--out", metavar="FILE", help="write to FILE (atomically) instead of standard output")
    against = parser.add_mutually_exclusive_group()
    against.add_argument(
        "--compare", metavar="RUN_B", help="put RUN_ID (A) beside another run of the store (B)"
    )
    against.add_argument(
        "--baseline",
        metavar="FILE",
        help="put RUN_ID (A) beside a baseline file (B); 'reference' is the reference table (A100 and "
        "others, FlagPerf conventions: needs --force), shipped as orchestrator/report/baselines/%s"
        % cmp.REFERENCE_BASELINE.name,
    )
    parser.add_argument(
        "--versus",
        metavar="BASELINE",
        help="with --format html: what the first page's ratios are to: a row of its per-accelerator table "
        "(its label or a unique part of it), a baseline file, or 'reference' (the reference table's fastest "
        "row); default: the slowest row",
    )
    parser.add_argument(
        "--pair-by",
        default=",".join(cmp.KEY_FIELDS),
        metavar="FIELDS",
        help="with --compare or --baseline: the fields rows pair by (default: %(default)s); leave out "
        "toolkit to put toolkits side by side, options to put one toolkit's settings side by side",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="compare even when data, preprocessing, precision or metric version differ",
    )


def _block_table(number: int, block: EnvBlock, lang: str) -> Table:
    table = Table(title="%d. %s" % (number, block.title), show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in block.hardware + block.software:
        table.add_row(labels.env_label(key, lang), value)
    table.add_row(
        labels.env_label("dependencies", lang),
        ", ".join("%s %s" % kv for kv in block.dependencies) or tables.UNKNOWN,
    )
    table.add_row(
        labels.env_label("toolkits", lang),
        "; ".join("%s: %s" % kv for kv in block.toolkits) or tables.UNKNOWN,
    )
    return table


def _tables(data: RunData, lang: str, comparison: Optional[cmp.Comparison]) -> List[RenderableType]:
    if comparison is not None:
        return [tables.rich_table("\n".join(cmp.notes(comparison)), cmp.rows(comparison), cmp.COLUMNS)]
    rows = tables.result_rows(data)
    out: List[RenderableType] = [
        tables.rich_table(
            "%s: %s %s" % (labels.word("results", lang), labels.word("run", lang), data.run_id),
            rows,
            tables.with_run_id(data, tables.shown_columns(labels.result_columns(lang), rows)),
            tables.legend(data),
        )
    ]
    out.append(over_runs_table(data, lang))
    out += [_block_table(n, block, lang) for n, block in enumerate(environment_blocks(data), 1)]
    return out


def over_runs_table(data: RunData, lang: str = "en") -> RenderableType:
    """The figures over each job's runs, or (every job one run) a title saying there is no interval."""
    found = series.of_run(data)
    if not series.any_repeated(found):
        return Table(title=series.legend(found), show_header=False, show_edge=False)
    return tables.rich_table(labels.word("over_runs", lang), series.rows(found), series.COLUMNS,
                             series.legend(found))  # fmt: skip


def _over_runs_markdown(data: RunData, lang: str) -> str:
    found = series.of_run(data)
    legend = tables.md_cell(series.legend(found))
    if not series.any_repeated(found):
        return legend + "\n\n"
    body = tables.as_markdown(series.rows(found), series.COLUMNS)
    return "## %s\n\n%s\n%s\n\n" % (labels.word("over_runs", lang), body, legend)


def _markdown(data: RunData, lang: str, comparison: Optional[cmp.Comparison]) -> str:
    if comparison is not None:
        notes = "".join("- %s\n" % tables.md_cell(line) for line in cmp.notes(comparison))
        return "## %s\n\n%s\n%s" % (
            labels.word("compare", lang),
            notes,
            tables.as_markdown(cmp.rows(comparison), cmp.COLUMNS),
        )
    run = tables.md_cell(data.run_id)
    head = "# %s: %s %s\n\n" % (labels.word("report", lang), labels.word("run", lang), run)
    rows = tables.result_rows(data)
    results = tables.as_markdown(
        rows, tables.with_run_id(data, tables.shown_columns(labels.result_columns(lang), rows))
    )
    legend = tables.legend(data)
    results += "\n%s\n" % tables.md_cell(legend) if legend else ""
    return head + "## %s\n\n%s\n%s%s" % (
        labels.word("results", lang),
        results,
        _over_runs_markdown(data, lang),
        blocks_markdown(environment_blocks(data), lang),
    )


def _csv(data: RunData, comparison: Optional[cmp.Comparison], which: str) -> str:
    if comparison is not None:
        return tables.as_csv(cmp.rows(comparison), cmp.COLUMNS)
    return csvexport.render(data, which)


def render(args: argparse.Namespace, store: Store, console_width: int = 200) -> str:
    """The report as text; ReportError when it cannot be made as asked."""
    runs = [load_run(store, run_id_of(store, name)) for name in args.run_id]
    if len(runs) > 1:
        if args.compare or args.baseline or args.format == "sysdesc":
            raise ReportError(
                "several runs gather into one results table: they take no --compare, --baseline or "
                "--format sysdesc (report one run for those)"
            )
        if args.format == "json":
            return tables.json_text({"runs": [json.loads(tables.as_json(data)) for data in runs]})
    data = gather(runs)
    comparison = None
    if args.compare or args.baseline:
        if args.format == "sysdesc":
            raise ReportError(
                "--format sysdesc describes the hosts of one run: it takes no --compare or --baseline"
            )
        if args.compare:
            other = cmp.run_side(load_run(store, args.compare))
        else:
            other = cmp.load_baseline(
                str(cmp.REFERENCE_BASELINE) if args.baseline == "reference" else args.baseline
            )
        pair_by = [name.strip() for name in args.pair_by.split(",") if name.strip()]
        comparison = cmp.compare(cmp.run_side(data), other, args.force, pair_by)
    if args.format == "table":
        buffer = io.StringIO()
        console = safe_console(file=buffer, width=console_width, color_system=None, force_terminal=False)
        for table in _tables(data, args.lang, comparison):
            console.print(table)
        return buffer.getvalue()
    if args.format == "md":
        return _markdown(data, args.lang, comparison)
    if args.format == "csv":
        return _csv(data, comparison, args.table)
    if args.format == "json":
        if comparison is not None:
            return tables.json_text(cmp.as_document(comparison))
        return tables.as_json(data)
    if args.format == "sysdesc":
        return tables.json_text(sysdesc.describe(data))
    return render_html(data, args.lang, comparison, args.versus)


def run_id_of(store: Store, name: str) -> str:
    """The run ``name`` stands for: itself, or for LATEST the run started last (ReportError: none yet)."""
    if name != LATEST:
        return name
    latest = store.latest_run()
    if latest is None:
        raise ReportError("store %s holds no run yet: %s names none" % (store.path, LATEST))
    return latest


def run(args: argparse.Namespace, console: Console) -> int:
    """Make the report; print it or write it to --out. Errors are one line on stderr, exit status 2."""
    try:
        try:
            store = Store(args.store, readonly=True)
        except StoreError as exc:
            raise ReportError(str(exc)) from None
        try:
            text = render(args, store, console.width)
        finally:
            store.close()
        if args.out:
            try:
                with atomic_path(Path(args.out)) as tmp:
                    tmp.write_text(text, encoding="utf-8")
            except OSError as exc:
                raise ReportError(_write_error(Path(args.out), exc)) from None
            console.print("wrote %s" % args.out, highlight=False)
        else:
            sys.stdout.write(shown(text) if sys.stdout.isatty() else text)  # files keep their bytes
    except ReportError as exc:
        print("error: %s" % shown(exc), file=sys.stderr)
        return 2
    return 0


def _write_error(out: Path, exc: OSError) -> str:
    """Why --out could not be written: the file itself (a folder, or the rename onto it failed), or its
    folder, which takes no new file (the report is written beside it first and renamed onto it)."""
    if out.is_dir():
        return "cannot write %s: it is a folder; name a file (e.g. %s)" % (out, out / "report.html")
    if exc.filename2:  # the rename onto out failed: out is the problem, not the folder
        return "cannot write %s: %s" % (out, exc.strerror or exc)
    failed = Path(exc.filename) if exc.filename else out
    if failed in out.parents and failed.exists() and not failed.is_dir():
        return "cannot write %s: %s is not a folder" % (out, failed)
    if failed != out and failed.parent == out.parent:
        return "cannot write %s: no new file can be made in its folder %s (%s)" % (
            out,
            out.parent,
            exc.strerror or exc,
        )
    return "cannot write %s: %s: %s" % (out, failed, exc.strerror or exc)
