"""python -m orchestrator: plan | run | report | ls | vendors."""

import argparse
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from rich.console import Console
from rich.table import Table

import vendors

from . import images
from .config import Cluster, ConfigError, load_cluster
from .display import ProgressBoard
from .hostrun import RunContext
from .plan import expand
from .report import command as report_command
from .report import tables
from .scheduler import run_all
from .store import OK, Store, new_run_id

DEFAULT_STORE = report_command.DEFAULT_STORE


class UsageError(Exception):
    """A problem with what the user asked for; printed as one line, exit 2."""


def _print_table(console: Console, title: str, rows, columns: Sequence[Tuple[str, str]]) -> None:
    table = Table(title=title, show_lines=False)
    for _, heading in columns:
        table.add_column(heading, overflow="fold")
    for row in rows:
        table.add_row(*[row.get(key, "") for key, _ in columns])
    console.print(table)


def _load(path: str) -> Tuple[Cluster, dict]:
    cluster = load_cluster(path)
    known = vendors.discover()
    for index, host in enumerate(cluster.hosts):
        if host.vendor not in known:
            raise ConfigError(
                "%s: hosts[%d].vendor: unknown vendor %r (known: %s)"
                % (path, index, host.vendor, ", ".join(sorted(known)))
            )
    return cluster, known


def cmd_plan(args: argparse.Namespace, console: Console) -> int:
    cluster, known = _load(args.cluster)
    jobs, skipped = expand(cluster, known)
    table = Table(title="jobs (%d)" % len(jobs))
    for column in ("job", "host", "vendor", "runtime", "device", "toolkit", "precision", "bs", "repeat"):
        table.add_column(column)
    hosts = {h.name: h for h in cluster.hosts}
    for job in jobs:
        host = hosts[job.host]
        table.add_row(
            job.job_id, job.host, host.vendor, host.runtime, str(job.device), job.toolkit, job.precision,
            str(job.batch_size), str(job.repeat),
        )  # fmt: skip
    console.print(table)
    for item in skipped:
        what = "%s %s/%s/bs%d" % (item.case, item.toolkit, item.precision, item.batch_size)
        console.print("skipped %s on %s: %s" % (what, item.host, item.reason))
    shown = set()
    for host in cluster.hosts:
        if host.runtime != "docker" or host.vendor in shown:
            continue
        shown.add(host.vendor)
        overrides = {"base_image": host.image.base_image} if host.image.base_image else {}
        if host.image.pip_index_url:
            overrides["pip_index_url"] = host.image.pip_index_url
        console.rule("dockerfiles/%s (rendered for %s)" % (known[host.vendor].template, host.name))
        console.print(images.render_dockerfile(known[host.vendor], overrides), markup=False, highlight=False)
    return 0


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    cluster, known = _load(args.cluster)
    jobs, skipped = expand(cluster, known)
    if not jobs:
        raise UsageError("%s: no job to run (every case was skipped)" % args.cluster)
    store = Store(args.store or cluster.store)
    run_id = new_run_id()
    results_dir = Path(cluster.results_dir) / run_id
    hosts = {h.name: h for h in cluster.hosts}
    store.create_run(run_id, str(Path(args.cluster).resolve()), cluster.model_dump(mode="json"))
    for job in jobs:
        store.add_job(run_id, job.job_id, job.host, hosts[job.host].vendor, job.as_dict())
    for item in skipped:
        console.print("skipped %s/%s on %s: %s" % (item.toolkit, item.precision, item.host, item.reason))
    console.print("run %s: %d jobs on %d hosts; store %s" % (run_id, len(jobs), len(hosts), store.path))
    state = "interrupted"
    with ProgressBoard() as board:
        ctx = RunContext(run_id, cluster, store, known, results_dir, board.update)
        try:
            states = run_all(ctx, jobs)
            state = "finished"
        finally:
            store.finish_run(run_id, state)
    _print_run(console, store, run_id)
    failed = [job for job in store.jobs(run_id) if job["state"] != OK]
    for job in failed:
        print("error: job %s: %s: %s" % (job["job_id"], job["state"], job["reason"]), file=sys.stderr)
    if failed:
        print(
            "%d of %d jobs did not finish OK (run %s)" % (len(failed), len(states), run_id), file=sys.stderr
        )
        return 1
    return 0


def _print_run(console: Console, store: Store, run_id: str) -> None:
    _print_table(
        console, "results of run %s" % run_id, tables.result_rows(store, run_id), tables.RESULT_COLUMNS
    )
    _print_table(console, "environment", tables.environment_rows(store, run_id), tables.ENV_COLUMNS)


def cmd_ls(args: argparse.Namespace, console: Console) -> int:
    if not Path(args.store).exists():
        raise UsageError("%s: no results store yet (run something first)" % args.store)
    store = Store(args.store)
    table = Table(title="runs in %s" % args.store)
    for column in ("run", "state", "jobs", "ok", "cluster file"):
        table.add_column(column)
    for run in store.runs():
        table.add_row(run["run_id"], run["state"], str(run["jobs"]), str(run["ok"] or 0), run["cluster_path"])
    console.print(table)
    return 0


def cmd_vendors(args: argparse.Namespace, console: Console) -> int:
    for name, vendor in sorted(vendors.discover().items()):
        table = Table(title="%s (%s): image %s, runner device %s" % (name, vendor.label, vendor.template,
                                                                      vendor.runner_device))  # fmt: skip
        for column in ("toolkit / device", "precisions / peak FLOP/s (dense)", "source"):
            table.add_column(column, overflow="fold")
        for toolkit, precisions in sorted(vendor.toolkits.items()):
            table.add_row(toolkit, ", ".join(precisions), "")
        for peak in vendor.peaks:
            figures = ", ".join("%s %.1f T" % (p, f / 1e12) for p, f in sorted(peak.flops.items()))
            table.add_row(peak.model, figures, peak.source)
        console.print(table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m orchestrator", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("plan", help="show the jobs and rendered Dockerfiles; runs nothing")
    p.add_argument("--cluster", required=True, help="cluster file (host_configs/*.yaml)")
    p.set_defaults(func=cmd_plan)
    p = sub.add_parser("run", help="run every job of the cluster file and print the tables")
    p.add_argument("--cluster", required=True, help="cluster file (host_configs/*.yaml)")
    p.add_argument("--store", help="SQLite results store (default: the cluster file's 'store')")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("report", help="a stored run as tables, HTML, comparisons or system descriptions")
    report_command.add_arguments(p)
    p.set_defaults(func=report_command.run)
    p = sub.add_parser("ls", help="list stored runs")
    p.add_argument("--store", default=DEFAULT_STORE)
    p.set_defaults(func=cmd_ls)
    p = sub.add_parser("vendors", help="list vendors, toolkits, precisions and known devices with peaks")
    p.set_defaults(func=cmd_vendors)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console()
    if not console.is_terminal:  # logs and CI: wide enough for the reference columns
        console = Console(width=max(console.width, 200))
    try:
        return args.func(args, console)
    except (ConfigError, UsageError) as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: containers stopped, finished jobs are stored", file=sys.stderr)
        return 130
