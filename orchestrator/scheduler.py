"""Fan jobs out: hosts in parallel, the devices of a host in parallel, one job at a time per device."""

import sys
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Dict, List

from .hostrun import HostWorker, RunContext
from .launchers import slurm
from .launchers.queues import run_queues
from .plan import Job


def run_host(ctx: RunContext, host_name: str, jobs: List[Job]) -> Dict[str, str]:
    """Launcher ssh: prepare one host and run its jobs, one queue per device; job id -> final state."""
    host = next(h for h in ctx.cluster.hosts if h.name == host_name)
    queues: OrderedDict[int, List[Job]] = OrderedDict()
    for job in jobs:
        queues.setdefault(job.device, []).append(job)
    worker = HostWorker(ctx, host)
    return run_queues(ctx, worker, jobs, list(queues.values()), len(queues), lambda job: job.device)


def run_all(ctx: RunContext, jobs: List[Job]) -> Dict[str, str]:
    """Run every job; returns job id -> final state.

    On KeyboardInterrupt (Ctrl-C, or any terminating signal: signals.py) it sets
    ``ctx.cancel``, waits until every host has stopped its containers and stored its
    jobs, then raises it again.
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
        wait(futures)
        raise
    finally:
        pool.shutdown()
    for future in futures:
        states.update(future.result())
    return states
