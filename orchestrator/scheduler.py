"""Fan jobs out: hosts in parallel, the devices of a host in parallel, one job at a time per device."""

import sys
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Dict, List, Optional

from .hostrun import INTERRUPTED, HostWorker, RunContext, StageFailure
from .launchers import slurm
from .plan import Job
from .store import CANCELLED
from .transport.base import Cancelled


def _by_device(jobs: List[Job]) -> "OrderedDict[int, List[Job]]":
    queues: OrderedDict[int, List[Job]] = OrderedDict()
    for job in jobs:
        queues.setdefault(job.device, []).append(job)
    return queues


def run_host(ctx: RunContext, host_name: str, jobs: List[Job]) -> Dict[str, str]:
    """Prepare one host and run its jobs; returns job id -> final state."""
    host = next(h for h in ctx.cluster.hosts if h.name == host_name)
    worker = HostWorker(ctx, host)
    states: Dict[str, str] = {}
    lock = threading.Lock()

    def end(job: Job, state: str, reason: str, log_path: Optional[str] = None) -> None:
        ctx.store.finish_job(ctx.run_id, job.job_id, state, reason, log_path, {})
        with lock:
            states[job.job_id] = state
        ctx.progress(host_name, job.device, {"stage": state, "note": reason})

    try:
        try:
            worker.prepare()
        except StageFailure as exc:
            log = worker.build_log if exc.stage == "build" and worker.build_log else None
            for job in jobs:
                end(job, "FAILED_" + exc.stage.upper(), str(exc), str(log) if log else None)
            return states
        except Cancelled:
            for job in jobs:
                end(job, CANCELLED, INTERRUPTED)
            return states

        def drain(queue: List[Job]) -> None:
            for job in queue:
                if ctx.cancel.is_set():
                    end(job, CANCELLED, INTERRUPTED)
                    continue
                state = worker.run_job(job)
                with lock:
                    states[job.job_id] = state

        queues = _by_device(jobs)
        with ThreadPoolExecutor(max_workers=len(queues), thread_name_prefix="dev-" + host_name) as pool:
            for future in [pool.submit(drain, q) for q in queues.values()]:
                future.result()
    finally:
        worker.close()
    return states


def run_all(ctx: RunContext, jobs: List[Job]) -> Dict[str, str]:
    """Run every job; returns job id -> final state.

    On KeyboardInterrupt (Ctrl-C) it sets ``ctx.cancel``, waits until every host has
    stopped its containers and stored its jobs (a second Ctrl-C does not cut that
    short), then raises KeyboardInterrupt.
    """
    by_host: OrderedDict[str, List[Job]] = OrderedDict()
    for job in jobs:
        by_host.setdefault(job.host, []).append(job)
    states: Dict[str, str] = {}
    if not by_host:
        return states
    pool = ThreadPoolExecutor(max_workers=len(by_host), thread_name_prefix="host")
    launch = slurm.run_host if ctx.cluster.launcher == "slurm" else run_host  # launchers/__init__.py
    futures = [pool.submit(launch, ctx, name, host_jobs) for name, host_jobs in by_host.items()]
    try:
        wait(futures)
    except KeyboardInterrupt:
        ctx.cancel.set()
        print("interrupted: stopping the containers this run started...", file=sys.stderr, flush=True)
        while True:
            try:
                wait(futures)
                break
            except KeyboardInterrupt:
                print("still stopping containers; finished jobs are stored", file=sys.stderr, flush=True)
        raise
    finally:
        pool.shutdown()
    for future in futures:
        states.update(future.result())
    return states
