"""What every launcher does with one host entry's jobs: prepare, then drain queues in parallel."""

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List, Optional

from orchestrator.job.lifecycle import HostWorker
from orchestrator.job.plan import Job
from orchestrator.job.stages import RunContext
from orchestrator.outcome import INTERRUPTED, JobState, Stage, StageFailure
from orchestrator.transport.base import Cancelled


def run_queues(
    ctx: RunContext,
    worker: HostWorker,
    jobs: List[Job],
    queues: List[List[Job]],
    threads: int,
    device_of: Callable[[Job], int],
) -> Dict[str, str]:
    """Prepare ``worker``'s host, then run ``queues`` on ``threads`` threads, each queue's jobs one at a
    time; returns job id -> final state. A failed preparation ends every job with its stage and reason;
    after Ctrl-C the jobs not started yet end CANCELLED. ``device_of``: the display line of a job."""
    states: Dict[str, str] = {}
    lock = threading.Lock()

    def end(job: Job, state: JobState, reason: str, log_path: Optional[str] = None) -> None:
        ctx.store.finish_job(ctx.run_id, job.job_id, state, reason, log_path, {})
        with lock:
            states[job.job_id] = state
        ctx.progress(worker.host.name, device_of(job), {"stage": state, "job": job.job_id, "note": reason})

    def drain(queue: List[Job]) -> None:
        for job in queue:
            if ctx.cancel.is_set():
                end(job, JobState.CANCELLED, INTERRUPTED)
                continue
            state = worker.run_job(job)
            with lock:
                states[job.job_id] = state

    try:
        try:
            worker.prepare()
        except StageFailure as exc:
            log = worker.build_log if exc.stage == Stage.BUILD and worker.build_log else None
            for job in jobs:
                end(job, JobState.failed(exc.stage), str(exc), str(log) if log else None)
            return states
        except Cancelled:
            for job in jobs:
                end(job, JobState.CANCELLED, INTERRUPTED)
            return states
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="jobs-" + worker.host.name) as pool:
            for future in [pool.submit(drain, queue) for queue in queues]:
                future.result()
    finally:
        worker.close()
    return states
