"""python -m orchestrator: plan | run | doctor | report | ls | vendors | bundle."""

import argparse
import sys
from typing import Callable, Dict, List, Optional, Tuple

from rich.console import Console
from rich.table import Table

import vendors
from orchestrator.bundle import command as bundle_command
from orchestrator.config.load import load_checked
from orchestrator.host import doctor, images
from orchestrator.host.prepare import host_image_spec
from orchestrator.job.plan import expand
from orchestrator.model.cluster import Cluster, Host
from orchestrator.model.fields import ConfigError
from orchestrator.outcome import RunState, UsageError
from orchestrator.report import command as report_command
from orchestrator.run import command as run_command
from orchestrator.run import lock as runlock
from orchestrator.run import signals
from orchestrator.safeio import ids, logs
from orchestrator.safeio.text import console as safe_console
from orchestrator.safeio.text import shown
from orchestrator.store import (
    Store,
    StoreError,
)
from vendors.vendor import Vendor

DEFAULT_STORE = report_command.DEFAULT_STORE
#: what an interrupted command that only reads (or writes its one output file at the end) has done
READ_ONLY_STOPPED = "stopped, nothing was written"


def cmd_plan(args: argparse.Namespace, console: Console) -> int:
    cluster, known = load_checked(args.cluster)
    dockerfiles = _dockerfiles(cluster, known, args.cluster)
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
    for line in cluster.shared_machines():
        console.print(line, markup=False, highlight=False)
    for item in skipped:
        what = "%s %s/%s/bs%d" % (item.case, item.toolkit, item.precision, item.batch_size)
        console.print("skipped %s on %s: %s" % (what, item.host, item.reason))
    for host, dockerfile in dockerfiles:
        console.rule("dockerfiles/%s (rendered for %s)" % (known[host.vendor].template, host.name))
        console.print(dockerfile, markup=False, highlight=False)
    return 0


def _dockerfiles(cluster: Cluster, known: Dict[str, Vendor], where: str) -> List[Tuple[Host, str]]:
    """The Dockerfile each vendor's first docker host builds, with the SDK files it has; ConfigError naming
    the host when any docker host's image inputs are incomplete (an SDK file missing, not a regular file,
    unreadable or with another checksum), as its build would fail."""
    out: List[Tuple[Host, str]] = []
    checked = set()
    for index, host in enumerate(cluster.hosts):
        inputs = (host.vendor, host.image.model_dump_json())
        if host.runtime != "docker" or inputs in checked:
            continue  # hosts with the same image inputs: their SDK files are hashed once
        checked.add(inputs)
        try:
            spec = host_image_spec(host, known[host.vendor])
        except images.ImageError as exc:
            raise ConfigError("%s: hosts[%d].image: %s" % (where, index, exc)) from None
        if all(other.vendor != host.vendor for other, _ in out):
            out.append((host, spec.dockerfile))
    return out


def cmd_doctor(args: argparse.Namespace, console: Console) -> int:
    cluster, known = load_checked(args.cluster)
    limits = doctor.Limits(
        docker_gib=args.min_free_docker_gib,
        workdir_gib=args.min_free_workdir_gib,
        checksums=not args.no_checksums,
    )
    report = doctor.run_checks(cluster, known, limits)
    doctor.render(console, report)
    return 1 if doctor.failed(report) else 0


def cmd_ls(args: argparse.Namespace, console: Console) -> int:
    store = Store(args.store, readonly=True)
    table = Table(title="runs in %s" % args.store)
    for column in ("run", "state", "jobs", "ok", "cluster file"):
        table.add_column(column)
    for run in store.runs():
        state = run["state"]
        if state == RunState.RUNNING and not runlock.is_held(args.store, run["run_id"]):
            state = "%s, no orchestrator left: --resume it" % state  # killed (SIGKILL) or lost its store
        table.add_row(run["run_id"], state, str(run["jobs"]), str(run["ok"] or 0), run["cluster_path"])
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
    # what a terminating signal does, said while it is done and after (only run has jobs to stop)
    parser.set_defaults(stopping="stopping", stopped="stopped")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("plan", help="show the jobs and rendered Dockerfiles; runs nothing")
    p.add_argument("--cluster", required=True, help="cluster file (host_configs/*.yaml)")
    p.set_defaults(func=cmd_plan, stopped=READ_ONLY_STOPPED)
    p = sub.add_parser("run", help="run every job of the cluster file and print the tables")
    p.add_argument("--cluster", help="cluster file (host_configs/*.yaml); with --resume: optional")
    p.add_argument("--store", help="SQLite results store (default: the cluster file's 'store')")
    p.add_argument(
        "--resume",
        metavar="RUN_ID",
        help="run again the jobs of a stored run that did not finish OK (cluster file: the run's own)",
    )
    p.add_argument(
        "--offline",
        action="store_true",
        help="air-gapped: no build, no pull, no pip; images must be on the hosts (bundle import)",
    )
    p.set_defaults(
        func=run_command.run,
        stopping="stopping the containers; finished jobs are stored",
        stopped="containers stopped, finished jobs are stored",
    )
    p = sub.add_parser("doctor", help="check every host (ssh, docker, devices, disk, data) before a run")
    p.add_argument("--cluster", required=True, help="cluster file (host_configs/*.yaml)")
    p.add_argument(
        "--min-free-docker-gib",
        type=float,
        default=doctor.Limits.docker_gib,
        help="free space the docker root needs for images (GiB); warns below twice that; default %(default)s",
    )
    p.add_argument(
        "--min-free-workdir-gib",
        type=float,
        default=doctor.Limits.workdir_gib,
        help="free space the workdir needs for results and caches (GiB); warns below twice that; "
        "default %(default)s",
    )
    p.add_argument(
        "--no-checksums", action="store_true", help="skip the md5/sha256 checks of data and weights"
    )
    p.set_defaults(func=cmd_doctor)
    p = sub.add_parser("report", help="a stored run as tables, HTML, comparisons or system descriptions")
    report_command.add_arguments(p)
    p.set_defaults(func=report_command.run, stopped=READ_ONLY_STOPPED)
    p = sub.add_parser("ls", help="list stored runs")
    p.add_argument("--store", default=DEFAULT_STORE)
    p.set_defaults(func=cmd_ls, stopped=READ_ONLY_STOPPED)
    p = sub.add_parser("vendors", help="list vendors, toolkits, precisions and known devices with peaks")
    p.set_defaults(func=cmd_vendors, stopped=READ_ONLY_STOPPED)
    p = sub.add_parser("bundle", help="carry the images and files of a plan into an air-gapped lab")
    bundle_command.add_arguments(p)
    p.set_defaults(func=lambda args, console: bundle_command.run(args, console, load_checked))
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup()
    console = safe_console()
    if not console.is_terminal:  # logs and CI: wide enough for the reference columns
        console = safe_console(width=max(console.width, 200))
    signals.install(args.stopping)
    try:
        command: Callable[[argparse.Namespace, Console], int] = args.func
        return command(args, console)
    except (ConfigError, UsageError, runlock.RunLocked, StoreError, ids.BadId) as exc:
        for line in str(exc).splitlines() or [""]:  # a cluster file's problems: one line each
            print("error: %s" % shown(line), file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print("interrupted (%s): %s" % (exc, args.stopped), file=sys.stderr)
        return exc.exit_status if isinstance(exc, signals.Terminated) else 130
