"""Fan jobs out: hosts in parallel, the devices of a host in parallel, one job at a time per device."""

import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List

from .hostrun import HostWorker, RunContext, StageFailure
from .plan import Job


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
    try:
        try:
            worker.prepare()
        except StageFailure as exc:
            for job in jobs:
                ctx.store.finish_job(
                    ctx.run_id, job.job_id, "FAILED_" + exc.stage.upper(), str(exc), None, {}
                )
                states[job.job_id] = "FAILED_" + exc.stage.upper()
                ctx.progress(host_name, job.device, {"stage": states[job.job_id], "note": str(exc)})
            return states

        def drain(queue: List[Job]) -> None:
            for job in queue:
                if ctx.cancel.is_set():
                    ctx.store.finish_job(ctx.run_id, job.job_id, "CANCELLED", "run interrupted", None, {})
                    state = "CANCELLED"
                else:
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
    """Run every job; returns job id -> final state."""
    by_host: OrderedDict[str, List[Job]] = OrderedDict()
    for job in jobs:
        by_host.setdefault(job.host, []).append(job)
    states: Dict[str, str] = {}
    if not by_host:
        return states
    with ThreadPoolExecutor(max_workers=len(by_host), thread_name_prefix="host") as pool:
        futures = [pool.submit(run_host, ctx, name, host_jobs) for name, host_jobs in by_host.items()]
        try:
            for future in futures:
                states.update(future.result())
        except KeyboardInterrupt:
            # Workers stop their containers when they see the flag; the pool then drains.
            ctx.cancel.set()
            raise
    return states
