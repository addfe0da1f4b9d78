"""python -m orchestrator: plan | run | doctor | report | ls | vendors | bundle."""

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

import vendors
from orchestrator.bundle import command as bundle_command
from orchestrator.config.cluster import Cluster, Host
from orchestrator.config.fields import ConfigError
from orchestrator.config.load import check as config_check
from orchestrator.config.load import check_launcher, load_checked, load_cluster
from orchestrator.host import doctor, images
from orchestrator.host import workdir as workdirs
from orchestrator.host.prepare import host_image_spec, image_overrides
from orchestrator.job.plan import Job, expand
from orchestrator.job.stages import RunContext
from orchestrator.outcome import INTERRUPTED
from orchestrator.report import command as report_command
from orchestrator.report import tables
from orchestrator.report.load import load_run
from orchestrator.run import lock as runlock
from orchestrator.run import signals
from orchestrator.run.display import ProgressBoard
from orchestrator.run.scheduler import run_all
from orchestrator.safeio import ids, logs
from orchestrator.safeio.text import console as safe_console
from orchestrator.safeio.text import shown
from orchestrator.store import (
    OK,
    RUN_FINISHED,
    RUN_INTERRUPTED,
    RUNNING,
    Store,
    StoreError,
    new_run_id,
    read_cell,
)
from vendors.base import Vendor

DEFAULT_STORE = report_command.DEFAULT_STORE
#: what an interrupted command that only reads (or writes its one output file at the end) has done
READ_ONLY_STOPPED = "stopped, nothing was written"


class UsageError(Exception):
    """A problem with what the user asked for; printed as one line, exit 2."""


def _print_table(console: Console, title: str, rows, columns: Sequence[Tuple[str, str]]) -> None:
    table = Table(title=title, show_lines=False)
    for _, heading in columns:
        table.add_column(heading, overflow="fold")
    for row in rows:
        table.add_row(*[row.get(key, "") for key, _ in columns])
    console.print(table)


def _offline(cluster: Cluster, args: argparse.Namespace) -> Cluster:
    """``cluster`` with defaults.offline set when ``run --offline`` asks for it."""
    if not args.offline:
        return cluster
    raw = cluster.model_dump()
    raw["defaults"]["offline"] = True
    try:
        offline = Cluster.model_validate(raw)
        check_launcher(offline, "run --offline")
    except ValidationError as exc:
        raise UsageError("run --offline: %s" % exc.errors()[0]["msg"].replace("Value error, ", "")) from None
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    return offline


def _writable_dir(path: Path, field: str) -> Path:
    """``path``, created if missing; UsageError naming ``field`` unless a file can be written there."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=str(path)):
            pass
    except OSError as exc:
        raise UsageError("%s %s is not writable: %s" % (field, path, exc.strerror or exc)) from None
    return path


def _results_dir(cluster: Cluster, run_id: str) -> Path:
    """The run's folder in results_dir; results_dir made if missing, under the workdir's rules (the run user's
    alone, at and below it: a result file in it is taken as fetched by this orchestrator)."""
    try:
        path = workdirs.private_local(
            cluster.results_dir, "results_dir", "or set results_dir to a folder of your own"
        )
    except workdirs.WorkdirRefused as exc:
        raise UsageError(str(exc)) from None
    return _writable_dir(Path(path), "results_dir") / run_id


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


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    if args.resume:
        return _resume(args, console)
    if not args.cluster:
        raise UsageError("run: --cluster FILE is required (or --resume RUN_ID)")
    cluster, known = load_checked(args.cluster)
    cluster = _offline(cluster, args)
    jobs, skipped = expand(cluster, known)
    if not jobs:
        reasons = sorted({"%s: %s" % (item.host, item.reason) for item in skipped})
        raise UsageError(
            "%s: no job to run, every case was skipped: %s" % (args.cluster, "; ".join(reasons[:3]))
            + ("; and %d more" % (len(reasons) - 3) if len(reasons) > 3 else "")
        )
    run_id = new_run_id()
    results_dir = _results_dir(cluster, run_id)
    store = Store(args.store or cluster.store)
    hosts = {h.name: h for h in cluster.hosts}
    with runlock.held(store.path, run_id):
        store.create_run(run_id, str(Path(args.cluster).resolve()), cluster.model_dump(mode="json"))
        for job in jobs:
            store.add_job(run_id, job.job_id, job.host, hosts[job.host].vendor, job.as_dict())
        for item in skipped:
            console.print("skipped %s/%s on %s: %s" % (item.toolkit, item.precision, item.host, item.reason))
        console.print("run %s: %d jobs on %d hosts; store %s" % (run_id, len(jobs), len(hosts), store.path))
        return _execute(console, store, run_id, cluster, known, jobs, results_dir)


def _resume(args: argparse.Namespace, console: Console) -> int:
    """Run again the jobs of a stored run that are not OK; OK jobs and their results stay as they are.

    The run's stored cluster file is used, or ``--cluster`` when given: it may change how hosts
    are reached and run (a fixed path, a longer timeout), not which jobs the run has. The stored one runs
    only as its cluster file still says (``_refuse_unasked_changes``); either way the hosts are shown.
    """
    run_id = ids.checked("run", args.resume)
    given = load_checked(args.cluster) if args.cluster else None
    store_path = args.store or (given[0].store if given else DEFAULT_STORE)
    if not Path(store_path).is_file():
        raise UsageError("%s: no results store here (name it with --store)" % store_path)
    store = Store(store_path)
    run = store.run(run_id)
    if run is None:
        raise UsageError("run %s is not in store %s (see: python -m orchestrator ls)" % (run_id, store_path))
    with runlock.held(store.path, run_id):  # before reading which jobs are left: no one else runs them
        return _resume_held(args, console, store, run, given)


def _resume_held(
    args: argparse.Namespace,
    console: Console,
    store: Store,
    run: Dict[str, Any],
    given: Optional[Tuple[Cluster, Dict[str, Vendor]]],
) -> int:
    run_id = run["run_id"]
    if given:
        (cluster, known), cluster_path = given, str(Path(args.cluster).resolve())
    else:
        cluster_path = run["cluster_path"]
        stored_cluster, unreadable = read_cell(run["cluster_json"], "cluster_json")
        try:
            if unreadable:
                raise ValueError(unreadable)
            cluster = Cluster.model_validate(stored_cluster)
        except ValueError as exc:
            raise UsageError("run %s: stored cluster file no longer loads: %s" % (run_id, exc)) from None
        known = config_check(cluster, "run %s (stored cluster file)" % run_id)
        _refuse_unasked_changes(console, run, cluster)
    cluster = _offline(cluster, args)
    jobs, _ = expand(cluster, known)
    stored = {job["job_id"]: job for job in store.jobs(run_id)}
    specs = {job.job_id: json.loads(json.dumps(job.as_dict(), sort_keys=True)) for job in jobs}
    if specs != {job_id: job["spec"] for job_id, job in stored.items()}:
        differ = sorted(set(specs) ^ set(stored)) or sorted(k for k in specs if specs[k] != stored[k]["spec"])
        raise UsageError(
            "%s: its jobs differ from those of run %s (first: %s); a resume runs the same jobs, start a "
            "new run for other ones" % (args.cluster, run_id, differ[0])
        )
    todo = [job for job in jobs if stored[job.job_id]["state"] != OK]
    if not todo:
        console.print("run %s: all %d jobs finished OK; nothing to resume" % (run_id, len(jobs)))
        return 0
    results_dir = _results_dir(cluster, run_id)
    _show_hosts(console, cluster, known)
    store.reopen_run(run_id, cluster_path, cluster.model_dump(mode="json"))
    console.print(
        "resuming run %s: %d of %d jobs to run, %d finished OK are kept; store %s"
        % (run_id, len(todo), len(jobs), len(jobs) - len(todo), store.path)
    )
    return _execute(console, store, run_id, cluster, known, todo, results_dir)


def _refuse_unasked_changes(console: Console, run: Dict[str, Any], stored: Cluster) -> None:
    """UsageError when the store's cluster of ``run`` differs from the cluster file it names, or that file is
    not the run user's alone: whoever changed the store (not the user, who would have given ``--cluster``)
    does not choose what runs."""
    run_id, path = run["run_id"], run["cluster_path"]
    if not Path(path).exists():
        console.print("run %s: its cluster file %s is gone; the store's hosts run, as below" % (run_id, path))
        return
    found = workdirs.local_problem(path, "or resume with --cluster FILE")
    if found:
        raise UsageError("run %s: its cluster file %s refused: %s" % (run_id, path, found))
    try:
        on_disk = load_cluster(path)
    except ConfigError as exc:
        raise UsageError(
            "run %s: its cluster file no longer loads (%s); resume with --cluster FILE" % (run_id, exc)
        ) from None
    mine, theirs = (c.model_dump(mode="json", exclude={"defaults": {"offline"}}) for c in (stored, on_disk))
    where = _first_difference(mine, theirs, "")
    if where is not None:
        raise UsageError(
            "run %s: the store's cluster differs from its cluster file %s at %s; a resume runs no host that "
            "you did not give: resume with --cluster %s to run what the file says"
            % (run_id, path, where or "the top", path)
        )


def _first_difference(a: Any, b: Any, where: str) -> Optional[str]:
    """The first place (``hosts[0].python``) where two JSON values differ; None when they are equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            found = _first_difference(a.get(key), b.get(key), "%s.%s" % (where, key) if where else key)
            if found is not None:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for index, (x, y) in enumerate(zip(a, b)):
            found = _first_difference(x, y, "%s[%d]" % (where, index))
            if found is not None:
                return found
        return None
    return None if a == b else where


def _show_hosts(console: Console, cluster: Cluster, known: Dict[str, Vendor]) -> None:
    """What a resume runs, host by host: where, how (runtime, python or image) and in which workdir."""
    for host in cluster.hosts:
        if host.runtime == "docker":
            base = image_overrides(host).get("base_image") or known[host.vendor].image_vars["base_image"]
            how = "docker, image of vendor %s on %s" % (host.vendor, base)
        else:
            how = "bare, python %s" % host.python
        workdir = cluster.host_workdir(host) or "the run user's state folder"
        console.print("  host %s at %s: %s; workdir %s" % (host.name, host.address, how, workdir))


def _execute(
    console: Console,
    store: Store,
    run_id: str,
    cluster: Cluster,
    known: Dict[str, Vendor],
    jobs: List[Job],
    results_dir: Path,
) -> int:
    """Run ``jobs`` of a stored run; on Ctrl-C the unfinished ones end CANCELLED and the run "interrupted".

    When the store stops taking writes (disk full) the run stops: the result files already fetched stay in
    ``results_dir`` and ``--resume`` stores them without running those jobs again (hostrun.run_job).
    """
    state: Optional[str] = RUN_INTERRUPTED
    try:
        with ProgressBoard() as board:
            run_all(RunContext(run_id, cluster, store, known, results_dir, board.update), jobs)
        state = RUN_FINISHED
    except StoreError as exc:
        state = None  # nothing more can be marked in it
        raise StoreError(
            "%s; run %s stopped, its fetched results are kept in %s: once the store can be written, resume "
            "it with: python -m orchestrator run --resume %s --store %s"
            % (exc, run_id, results_dir, run_id, store.path)
        ) from None
    finally:
        if state == RUN_INTERRUPTED:
            store.cancel_unfinished(run_id, INTERRUPTED)
            print(
                "run %s interrupted; resume it with: python -m orchestrator run --resume %s --store %s"
                % (run_id, run_id, shown(store.path)),
                file=sys.stderr,
            )
        if state is not None:
            store.finish_run(run_id, state)
    _print_run(console, store, run_id)
    stored = store.jobs(run_id)
    failed = [job for job in stored if job["state"] != OK]
    for job in failed:
        line = "error: job %s: %s: %s" % (job["job_id"], job["state"], job["reason"])
        print(shown(line), file=sys.stderr)
    if failed:
        print(
            "%d of %d jobs did not finish OK (run %s; rerun them with --resume %s)"
            % (len(failed), len(stored), run_id, run_id),
            file=sys.stderr,
        )
        return 1
    return 0


def _print_run(console: Console, store: Store, run_id: str) -> None:
    data = load_run(store, run_id)
    _print_table(console, "results of run %s" % run_id, tables.result_rows(data), tables.RESULT_COLUMNS)
    _print_table(console, "environment", tables.environment_rows(data), tables.ENV_COLUMNS)


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
        if state == RUNNING and not runlock.is_held(args.store, run["run_id"]):
            state = "RUNNING, no orchestrator left: --resume it"  # killed (SIGKILL) or lost its store
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
        func=cmd_run,
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
        return args.func(args, console)
    except (ConfigError, UsageError, runlock.RunLocked, StoreError, ids.BadId) as exc:
        print("error: %s" % shown(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print("interrupted (%s): %s" % (exc, args.stopped), file=sys.stderr)
        return exc.exit_status if isinstance(exc, signals.Terminated) else 130
