"""``python -m orchestrator run``: a new run of a cluster file, or a stored run resumed (``--resume``), its
jobs fanned out over the hosts (``scheduler``) under the run's lock, then its results table."""

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from pydantic import ValidationError
from rich.console import Console

from orchestrator.config.load import check as config_check
from orchestrator.config.load import check_launcher, load_checked, load_cluster
from orchestrator.config.problems import config_error, explain
from orchestrator.host import envinfo
from orchestrator.host import workdir as workdirs
from orchestrator.host.prepare import base_image
from orchestrator.job.plan import Job, expand
from orchestrator.job.stages import RunContext
from orchestrator.model.cluster import Cluster
from orchestrator.model.fields import ConfigError
from orchestrator.outcome import INTERRUPTED, JobState, RunState, UsageError
from orchestrator.report import tables
from orchestrator.report.command import DEFAULT_STORE, over_runs_table
from orchestrator.report.load import load_run
from orchestrator.run import lock as runlock
from orchestrator.run.display import ProgressBoard
from orchestrator.run.scheduler import run_all
from orchestrator.safeio import ids
from orchestrator.safeio.text import shown
from orchestrator.store import Store, StoreError, new_run_id, read_cell
from orchestrator.version import version
from vendors.vendor import Vendor


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
        raise UsageError(str(config_error("run --offline", explain(exc, Cluster)))) from None
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


def run(args: argparse.Namespace, console: Console) -> int:
    """A new run of ``--cluster``, or ``--resume RUN_ID``; 0 when every job ended OK, 1 otherwise."""
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
        cluster_path = str(Path(args.cluster).resolve())
        store.create_run(run_id, cluster_path, cluster.model_dump(mode="json"), version())
        for job in jobs:
            store.add_job(run_id, job.job_id, job.host, hosts[job.host].vendor, job.as_dict())
        for item in skipped:
            console.print(item.line(), markup=False, highlight=False)
        for line in cluster.shared_machines():
            console.print(line, markup=False, highlight=False)
        console.print("run %s: %d jobs on %d hosts; store %s" % (run_id, len(jobs), len(hosts), store.path))
        resume = resume_command(run_id, cluster_path, store.path)
        return _execute(console, store, run_id, cluster, known, jobs, results_dir, resume)


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
        if unreadable:
            raise UsageError("run %s: stored cluster file no longer loads: %s" % (run_id, unreadable))
        try:
            cluster = Cluster.model_validate(stored_cluster)
        except ValidationError as exc:
            where = "run %s: stored cluster file" % run_id
            raise UsageError(str(config_error(where, explain(exc, Cluster)))) from None
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
    todo = [job for job in jobs if stored[job.job_id]["state"] != JobState.OK]
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
    resume = resume_command(run_id, cluster_path, store.path)
    return _execute(console, store, run_id, cluster, known, todo, results_dir, resume)


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
        said = "run %s: its cluster file no longer loads; resume with --cluster FILE:" % run_id
        raise UsageError("%s\n%s" % (said, exc)) from None
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
            base = base_image(host, known[host.vendor])
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
    resume: str,
) -> int:
    """Run ``jobs`` of a stored run; on Ctrl-C the unfinished ones end CANCELLED and the run "interrupted".
    ``resume``: the command that runs again what did not finish OK, told where that is left.

    When the store stops taking writes (disk full) the run stops: the result files already fetched stay in
    ``results_dir`` and ``--resume`` stores them without running those jobs again (HostWorker.run_job).
    """
    state: Optional[RunState] = RunState.INTERRUPTED
    try:
        with ProgressBoard(total=len(jobs)) as board:
            run_all(RunContext(run_id, cluster, store, known, results_dir, board.update), jobs)
        state = RunState.FINISHED
    except StoreError as exc:
        state = None  # nothing more can be marked in it
        raise StoreError(
            "%s; run %s stopped, its fetched results are kept in %s: once the store can be written, resume "
            "it with: %s" % (exc, run_id, results_dir, resume)
        ) from None
    finally:
        if state == RunState.INTERRUPTED:
            store.cancel_unfinished(run_id, INTERRUPTED)
            print("run %s interrupted; resume it with: %s" % (run_id, shown(resume)), file=sys.stderr)
        if state is not None:
            store.finish_run(run_id, state)
    print_run(console, store, run_id)
    for line in envinfo.shared_machines(store.environments(run_id)):
        console.print(line, markup=False, highlight=False)
    stored = store.jobs(run_id)
    failed = [job for job in stored if job["state"] != JobState.OK]
    for line in failure_lines(failed):
        print(shown(line), file=sys.stderr)
    if failed:
        print(
            "%d of %d jobs did not finish OK (run %s); rerun them with: %s"
            % (len(failed), len(stored), run_id, shown(resume)),
            file=sys.stderr,
        )
        return 1
    return 0


def failure_lines(failed: List[Dict[str, Any]]) -> List[str]:
    """The jobs that did not finish OK, host by host, one line for the jobs of a host that failed alike
    (a wrong data path fails each of them with the same reason): ``error: job J: STATE: reason``, or
    ``error: host H, 12 jobs (J1, J2, J3 and 9 more): STATE: reason``."""
    alike: Dict[Tuple[str, str, str], List[str]] = {}
    for job in failed:
        alike.setdefault((job["host"], job["state"], job["reason"] or ""), []).append(job["job_id"])
    lines = []
    for (host, state, reason), job_ids in sorted(alike.items(), key=lambda item: item[0][0]):
        if len(job_ids) == 1:
            lines.append("error: job %s: %s: %s" % (job_ids[0], state, reason))
            continue
        named = ", ".join(job_ids[:3]) + (" and %d more" % (len(job_ids) - 3) if len(job_ids) > 3 else "")
        lines.append("error: host %s, %d jobs (%s): %s: %s" % (host, len(job_ids), named, state, reason))
    return lines


def resume_command(run_id: str, cluster_path: str, store_path: str) -> str:
    """The command line that resumes ``run_id``, its cluster file and store named (quoted for a shell)."""
    argv = ["python", "-m", "orchestrator", "run", "--resume", run_id, "--cluster", cluster_path]
    return shlex.join(argv + ["--store", store_path])


def print_run(console: Console, store: Store, run_id: str) -> None:
    data = load_run(store, run_id)
    title = "results of run %s" % run_id
    rows = tables.result_rows(data)
    console.print(tables.rich_table(title, rows, tables.RESULT_COLUMNS, tables.legend(data)))
    console.print(over_runs_table(data))
    console.print(tables.rich_table("environment", tables.environment_rows(data), tables.ENV_COLUMNS))
