"""python -m orchestrator: plan | run | doctor | report | ls | vendors | bundle | schema."""

import argparse
import datetime
import json
import os
import sys
import textwrap
from typing import Any, Callable, Dict, List, Optional, Tuple

from rich.console import Console
from rich.table import Table
from rich.text import Text

import vendors
from orchestrator.bundle import command as bundle_command
from orchestrator.config.load import load_checked, load_cluster
from orchestrator.config.schema import cluster_schema
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
from orchestrator.safeio.fit import FittedTable
from orchestrator.safeio.text import console as safe_console
from orchestrator.safeio.text import shown
from orchestrator.store import (
    Store,
    StoreError,
)
from orchestrator.version import version
from vendors.vendor import Vendor

DEFAULT_STORE = report_command.DEFAULT_STORE
#: the width of piped output where COLUMNS names none: the results table's columns side by side
PIPED_WIDTH = 200
#: what an interrupted command that only reads (or writes its one output file at the end) has done
READ_ONLY_STOPPED = "stopped, nothing was written"


def cmd_plan(args: argparse.Namespace, console: Console) -> int:
    cluster, known = load_checked(args.cluster)
    dockerfiles = _dockerfiles(cluster, known, args.cluster)
    jobs, skipped = expand(cluster, known)
    columns = ("job", "host", "vendor", "runtime", "device", "toolkit", "precision", "bs", "repeat", "run")
    hosts = {h.name: h for h in cluster.hosts}
    rows = [
        dict(zip(columns, (
            job.job_id, job.host, hosts[job.host].vendor, hosts[job.host].runtime, str(job.device),
            job.toolkit_label, job.precision, str(job.batch_size), str(job.repeat),
            "%d/%d" % (job.run, job.runs),
        )))  # fmt: skip
        for job in jobs
    ]
    console.print(FittedTable("jobs (%d)" % len(jobs), rows, [(c, c) for c in columns]))
    for line in cluster.shared_machines():
        console.print(line, markup=False, highlight=False)
    for item in skipped:
        console.print(item.line(), markup=False, highlight=False)
    for host, spec in dockerfiles:
        template = known[host.vendor].image_stack(host.image.stack).template
        stack = ", image stack %s" % spec.stack if spec.stack else ""
        title = "dockerfiles/%s (rendered for %s%s)" % (template, host.name, stack)
        console.rule(Text(title))
        console.print(spec.dockerfile, markup=False, highlight=False)
    return 0


def _dockerfiles(
    cluster: Cluster, known: Dict[str, Vendor], where: str
) -> List[Tuple[Host, images.ImageSpec]]:
    """The image each image stack's first docker host builds, with the SDK files it has; ConfigError naming
    the host when any docker host's image inputs are incomplete (an SDK file missing, not a regular file,
    unreadable or with another checksum), as its build would fail."""
    out: List[Tuple[Host, images.ImageSpec]] = []
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
        if all((other.vendor, other.image.stack) != (host.vendor, host.image.stack) for other, _ in out):
            out.append((host, spec))
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
    path = load_cluster(args.cluster).store if args.cluster else args.store or DEFAULT_STORE
    store = Store(path, readonly=True)
    columns = ("run", "start", "took", "state", "ok/jobs", "hosts", "vendors", "cluster file")
    rows = []
    for run in store.runs():
        state = run["state"]
        if state == RunState.RUNNING and not runlock.is_held(path, run["run_id"]):
            state = "%s, no orchestrator left: --resume it" % state  # killed (SIGKILL) or lost its store
        rows.append(dict(zip(columns, (
            run["run_id"], _when(run["created_at"]), _took(run["created_at"], run["finished_at"], state),
            state, "%d/%d" % (run["ok"] or 0, run["jobs"]), run["hosts"], run["vendors"], run["cluster_path"],
        ))))  # fmt: skip
    console.print(FittedTable("runs in %s (times UTC)" % path, rows, [(c, c) for c in columns]))
    return 0


def _when(unix: Optional[float]) -> str:
    """``2026-12-06 18:04`` (UTC) of a stored time; ``?`` where the store has none."""
    if unix is None:
        return "?"
    return datetime.datetime.fromtimestamp(unix, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")


def _took(started: Optional[float], finished: Optional[float], state: str) -> str:
    """How long a run took from its start to its last end (``1h 05m``, ``42 s``); ``-`` while it runs."""
    if started is None or finished is None or finished < started or state == RunState.RUNNING:
        return "-"
    seconds = round(finished - started)
    if seconds < 60:
        return "%d s" % seconds
    hours, minutes = divmod(seconds // 60, 60)
    return "%dh %02dm" % (hours, minutes) if hours else "%d min" % minutes


def cmd_schema(args: argparse.Namespace, console: Console) -> int:
    print(json.dumps(cluster_schema(), indent=2, sort_keys=True))
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
        for stack in vendor.stacks():
            line = "  image stack %s: dockerfiles/%s" % (stack.describe({}), stack.template)
            console.print(line, markup=False, highlight=False)
    return 0


#: each sub-command's --help: what it does (beyond its one line in the list of commands), and examples
HELP: Dict[str, Tuple[str, Tuple[str, ...]]] = {
    "plan": (
        "Read the cluster file, check it against this installation (vendors, toolkits, the runner's knobs) "
        "and show the jobs it makes and the Dockerfile each vendor's image is built from. Connects to no "
        "host and runs nothing: every problem of the file is told here, one line each.",
        ("plan --cluster host_configs/local.yaml",),
    ),
    "run": (
        "Run every job of the cluster file on its hosts (prepared, image built, jobs one at a time per "
        "device), store the results and print the tables. A run that did not finish OK is resumed with "
        "--resume: only its jobs that are not OK run again.",
        (
            "run --cluster host_configs/local.yaml",
            "run --resume 20261206-180102-a1b2c3 --cluster host_configs/local.yaml",
        ),
    ),
    "doctor": (
        "Check every host of the cluster file before a run: SSH, docker, devices, free disk, data and "
        "weights (with their checksums). Exit status 1 when a check fails.",
        ("doctor --cluster host_configs/lab_example.yaml", "doctor --cluster hosts.yaml --no-checksums"),
    ),
    "report": (
        "A stored run as a table, Markdown, CSV, JSON, a self-contained HTML page or an MLPerf-style "
        "system description; beside another run (--compare) or a baseline (--baseline). RUN_ID 'latest' "
        "is the run started last; several RUN_IDs gather into one results table. The HTML's first page "
        "ranks accelerators and toolkits with their 95% intervals, with ratios to --versus.",
        (
            "report latest",
            "report 20261206-180102-a1b2c3 --format html --out report.html --versus reference",
            "report 20261206-180102-a1b2c3 20261206-190455-d4e5f6 --format csv",
            "report latest --baseline reference --force",
        ),
    ),
    "ls": (
        "The runs of a results store: when each started, how long it took, its state, how many of its "
        "jobs ended OK, its hosts and vendors, and its cluster file. --cluster FILE lists that file's "
        "store.",
        ("ls", "ls --cluster host_configs/local.yaml", "ls --store results/rn50bench.sqlite"),
    ),
    "vendors": (
        "The vendors this installation knows: their image, toolkits and precisions, and the devices whose "
        "peak FLOP/s it knows (for MFU).",
        ("vendors",),
    ),
    "bundle": (
        "Carry what a plan needs (images, wheels, the runner) into an air-gapped lab: export on a machine "
        "with network, verify the copy, import it on the lab's hosts, then run --offline.",
        (
            "bundle export --cluster hosts.yaml --out /media/usb/rn50bench",
            "bundle verify /media/usb/rn50bench",
        ),
    ),
    "bundle export": (
        "Build (unless there) every image the plan of the cluster file needs and save them, with the "
        "files they were made from, into DIR; prints the manifest's sha256 to give verify and import.",
        ("bundle export --cluster hosts.yaml --out /media/usb/rn50bench",),
    ),
    "bundle verify": (
        "Check every file of a bundle against its manifest, and the manifest against --expect.",
        ("bundle verify /media/usb/rn50bench --expect SHA256",),
    ),
    "bundle import": (
        "Verify a bundle, copy it onto the hosts of the lab's cluster file and load its images there.",
        ("bundle import /media/usb/rn50bench --cluster lab.yaml --expect SHA256",),
    ),
    "schema": (
        "Print a JSON Schema of the cluster file, for editors that check YAML as it is typed (keys, "
        "types, defaults); what depends on this installation (vendors, toolkits, knobs) is checked by plan.",
        ("schema > rn50bench-cluster.schema.json",),
    ),
}


def _describe(parser: argparse.ArgumentParser, path: str = "") -> None:
    """Give every sub-command below ``parser`` its description and examples from HELP (KeyError: none)."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for name, child in action.choices.items():
            key = ("%s %s" % (path, name)).strip()
            description, examples = HELP[key]
            child.description = textwrap.fill(description, 100)
            child.epilog = "examples:\n" + "\n".join("  python -m orchestrator %s" % e for e in examples)
            child.formatter_class = argparse.RawDescriptionHelpFormatter
            _describe(child, key)


class _ShowVersion(argparse.Action):
    """``--version``: the version (git run only when asked)."""

    def __init__(self, option_strings: List[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        print(version())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m orchestrator",
        description="Run the ResNet50 inference benchmark on the hosts of a cluster file "
        "(host_configs/*.yaml), each vendor in its container, and report the results.",
        epilog="examples:\n  python -m orchestrator plan --cluster host_configs/local.yaml\n"
        "  python -m orchestrator run --cluster host_configs/local.yaml\n"
        "  python -m orchestrator report latest\n"
        "each command tells more: python -m orchestrator COMMAND --help",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_ShowVersion, help="show the version and git revision, and exit")
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
    p = sub.add_parser("ls", help="list stored runs: start, duration, state, hosts, vendors")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--store", help="SQLite results store (default: %s)" % DEFAULT_STORE)
    where.add_argument("--cluster", metavar="FILE", help="list the store this cluster file names")
    p.set_defaults(func=cmd_ls, stopped=READ_ONLY_STOPPED)
    p = sub.add_parser("vendors", help="list vendors, toolkits, precisions and known devices with peaks")
    p.set_defaults(func=cmd_vendors, stopped=READ_ONLY_STOPPED)
    p = sub.add_parser("bundle", help="carry the images and files of a plan into an air-gapped lab")
    bundle_command.add_arguments(p)
    p.set_defaults(func=lambda args, console: bundle_command.run(args, console, load_checked))
    p = sub.add_parser("schema", help="print a JSON Schema of the cluster file (for editors)")
    p.set_defaults(func=cmd_schema, stopped=READ_ONLY_STOPPED)
    _describe(parser)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup()
    console = safe_console()
    if not console.is_terminal and not os.environ.get("COLUMNS"):  # logs and CI, unless COLUMNS says
        console = safe_console(width=PIPED_WIDTH)
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
    except BrokenPipeError:  # ``... | head``: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141
