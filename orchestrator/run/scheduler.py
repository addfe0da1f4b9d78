"""Fan jobs out: the host entries in parallel, each through the cluster file's launcher."""

import sys
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Dict, List

from orchestrator import launchers
from orchestrator.job.plan import Job
from orchestrator.job.stages import RunContext


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
    launcher = launchers.get(ctx.cluster.launcher)
    hosts = {host.name: host for host in ctx.cluster.hosts}
    pool = ThreadPoolExecutor(max_workers=len(by_host), thread_name_prefix="host")
    futures = [pool.submit(launcher(ctx, hosts[name]).run, host_jobs) for name, host_jobs in by_host.items()]
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
