"""Talking to Slurm through a host's Transport: sbatch, squeue, sacct, scancel, srun steps.

Every command is an argv list run on the submit host (local or over SSH). Job states
come from ``squeue --states=all`` while slurmctld still holds the job (MinJobAge, 300 s
by default) and from ``sacct`` after that, when the cluster keeps accounting.
"""

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from orchestrator.outcome import Stage
from orchestrator.transport.base import Completed, LineHandler, Readable, Transport, TransportError

#: states after which a job never runs again (squeue/sacct JOB STATE CODES)
TERMINAL = frozenset(
    (
        "COMPLETED", "FAILED", "TIMEOUT", "CANCELLED", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
        "BOOT_FAIL", "DEADLINE", "REVOKED", "SPECIAL_EXIT",
    )
)  # fmt: skip
#: squeue --Format fields, each followed by the separator "|"
SQUEUE_FIELDS = ("JobID", "State", "Reason", "NodeList", "TimeLimit", "TimeUsed", "exit_code")
SACCT_FIELDS = ("JobID", "State", "Reason", "NodeList", "Timelimit", "Elapsed", "ExitCode")
#: polls a job may be missing from squeue and sacct before it counts as lost
MISSING_POLLS = 5

_WHY = {
    "TIMEOUT": "time limit {limit} reached after {used}",
    "CANCELLED": "cancelled outside the orchestrator (scancel or an administrator) after {used}",
    "NODE_FAIL": "node {node} failed",
    "OUT_OF_MEMORY": "the job went over its memory limit",
    "PREEMPTED": "preempted by a job of higher priority",
    "BOOT_FAIL": "node {node} failed to boot",
    "DEADLINE": "the job missed its deadline",
    "REVOKED": "revoked (the job ran on another cluster of a federation)",
}


class SlurmError(TransportError):
    """A Slurm command failed; the message is its last line."""


@dataclass(frozen=True)
class JobStatus:
    """One job as squeue or sacct reports it."""

    job_id: str
    state: str
    reason: str = ""
    node: str = ""
    time_limit: str = ""
    time_used: str = ""
    exit_code: Optional[int] = None  # the batch script's exit status
    signal: Optional[int] = None  # the signal that ended it, if one did

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def returncode(self) -> int:
        """Exit status as a shell reports it: 128 + signal when a signal ended the job."""
        if self.signal:
            return 128 + self.signal
        return self.exit_code or 0

    def failure(self, ran: bool) -> Optional[Tuple[Stage, str]]:
        """(stage, one-line reason) when Slurm, not the command, ended the job; None otherwise.

        COMPLETED and FAILED end with the command's own exit status, which the caller
        judges like any runner's. Any other end state is Slurm's doing: stage RUN when
        the job had started running, START when it never did.
        """
        if self.state in ("COMPLETED", "FAILED"):
            return None
        where = {"limit": self.time_limit or "?", "used": self.time_used or "?", "node": self.node or "?"}
        why = _WHY.get(self.state, "ended in state {state}" + (" ({reason})" if self.reason else ""))
        text = why.format(state=self.state, reason=self.reason, **where)
        if self.node and "{node}" not in why:
            text += " on " + self.node
        return Stage.runner_ended(ran), "slurm %s: %s (slurm job %s)" % (self.state, text, self.job_id)


def parse_squeue(text: str) -> Dict[str, JobStatus]:
    """Jobs in ``squeue --noheader --Format=<SQUEUE_FIELDS each with suffix |>`` output."""
    out = {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < len(SQUEUE_FIELDS) or not parts[0].strip():
            continue
        job_id, state, reason, node, limit, used, raw = (p.strip() for p in parts[: len(SQUEUE_FIELDS)])
        code = int(raw) if raw.isdigit() else None  # a wait(2) status: exit << 8 | signal
        out[job_id] = JobStatus(
            job_id,
            state,
            "" if reason == "None" else reason,
            "" if node in ("", "(null)") else node,
            limit,
            used,
            None if code is None else code >> 8,
            None if code is None else code & 0x7F,
        )
    return out


def parse_sacct(text: str) -> Dict[str, JobStatus]:
    """Jobs in ``sacct --noheader --parsable2 --allocations --format=<SACCT_FIELDS>`` output."""
    out = {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) != len(SACCT_FIELDS) or not parts[0].strip():
            continue
        job_id, state, reason, node, limit, used, code = (p.strip() for p in parts)
        exit_code, _, signal = code.partition(":")
        out[job_id] = JobStatus(
            job_id,
            state.split()[0] if state else "",  # "CANCELLED by 1000" -> CANCELLED
            "" if reason == "None" else reason,
            "" if node in ("None assigned", "(null)") else node,
            limit,
            used,
            int(exit_code) if exit_code.isdigit() else None,
            int(signal) if signal.isdigit() else None,
        )
    return out


def _said(done: Completed) -> str:
    """A failed Slurm command's error lines on one line (sbatch says what and then why, on two)."""
    lines = [line.strip() for line in (done.stderr.strip() or done.stdout.strip()).splitlines()]
    return " ".join("; ".join(line for line in lines if line).split())[:300] or "no output"


class SlurmClient:
    """sbatch, squeue/sacct and scancel on one submit host, shared by a host entry's job threads.

    ``status`` answers from one ``squeue`` call for every watched job per poll
    interval, so a host entry costs slurmctld one query per interval, not one per job.
    """

    def __init__(self, transport: Transport, poll_interval_s: float, timeout: float) -> None:
        self.transport = transport
        self.poll_interval_s = poll_interval_s
        self.timeout = timeout
        self._lock = threading.Lock()
        self._watched: Dict[str, int] = {}  # job id -> polls it was missing
        self._seen: Dict[str, JobStatus] = {}
        self._polled_at = float("-inf")

    def submit(self, argv: Sequence[str]) -> str:
        """Run ``sbatch --parsable ...``; the job id, watched from now on. SlurmError if refused."""
        done = self.transport.run(argv, timeout=self.timeout)
        job_id = done.stdout.strip().split(";")[0]  # --parsable prints "id" or "id;cluster"
        if done.returncode != 0 or not job_id.isdigit():
            raise SlurmError("sbatch exited %d: %s" % (done.returncode, _said(done)))
        with self._lock:
            self._watched[job_id] = 0
        return job_id

    def status(self, job_id: str) -> Optional[JobStatus]:
        """The job's latest status (None before squeue first lists it). SlurmError once it is lost."""
        with self._lock:
            if time.monotonic() - self._polled_at >= self.poll_interval_s:
                self._poll()
            if self._watched.get(job_id, 0) > MISSING_POLLS:
                raise SlurmError(
                    "slurm job %s is neither in squeue nor in sacct (no accounting, and slurmctld"
                    " forgot it)" % job_id
                )
            return self._seen.get(job_id)

    def forget(self, job_id: str) -> None:
        with self._lock:
            self._watched.pop(job_id, None)
            self._seen.pop(job_id, None)

    def cancel(self, job_id: str) -> None:
        """scancel the job (its steps get SIGTERM, then SIGKILL after KillWait)."""
        done = self.transport.run(["scancel", job_id], timeout=self.timeout)
        if done.returncode != 0:
            raise SlurmError("scancel %s exited %d: %s" % (job_id, done.returncode, _said(done)))

    def _poll(self) -> None:
        ids = sorted(self._watched, key=int)
        self._polled_at = time.monotonic()
        if not ids:
            return
        found = self._query(squeue_argv(ids), parse_squeue)
        missing = [i for i in ids if i not in found]
        if missing:
            found.update(self._query(sacct_argv(missing), parse_sacct))
        for job_id in ids:
            if job_id in found:
                self._seen[job_id] = found[job_id]
                self._watched[job_id] = 0
            else:
                self._watched[job_id] += 1

    def _query(self, argv: List[str], parse: Callable[[str], Dict[str, JobStatus]]) -> Dict[str, JobStatus]:
        """Parsed output; empty when the command fails (squeue: ids it forgot; sacct: no accounting)."""
        try:
            done = self.transport.run(argv, timeout=self.timeout)
        except TransportError:
            return {}
        return parse(done.stdout) if done.returncode == 0 else {}


def squeue_argv(job_ids: Iterable[str]) -> List[str]:
    fields = ",".join(name + ":|" for name in SQUEUE_FIELDS)
    return ["squeue", "--noheader", "--states=all", "--jobs=" + ",".join(job_ids), "--Format=" + fields]


def sacct_argv(job_ids: Iterable[str]) -> List[str]:
    return [
        "sacct", "--noheader", "--parsable2", "--allocations", "--jobs=" + ",".join(job_ids),
        "--format=" + ",".join(SACCT_FIELDS),
    ]  # fmt: skip


class SrunTransport(Transport):
    """Runs commands as steps of a running job (``srun --jobid J --overlap``), on its allocated node.

    ``--overlap`` (Slurm 20.11 and later; in 22.05 it shares CPUs, memory and GRES)
    lets a probe step run next to the batch step that holds the allocation; without
    it the step would wait until the job ends. Files move through the submit host's
    transport: the job's folders are on the filesystem it shares with the nodes.
    """

    def __init__(self, inner: Transport, job_id: str) -> None:
        self.inner = inner
        self.job_id = job_id
        self.host = "%s/slurm-%s" % (inner.host, job_id)

    def wrap(self, argv: Sequence[str]) -> List[str]:
        step = ["srun", "--jobid=" + self.job_id, "--overlap", "--nodes=1", "--ntasks=1", "--quiet"]
        return step + ["--"] + list(argv)

    def run(
        self, argv: Sequence[str], timeout: Optional[float] = None, stdin: Optional[bytes] = None
    ) -> Completed:
        return self.inner.run(self.wrap(argv), timeout=timeout, stdin=stdin)

    def stream(
        self,
        argv: Sequence[str],
        on_stdout: LineHandler,
        on_stderr: LineHandler,
        timeout: Optional[float] = None,
        cancel: Optional[Callable[[], bool]] = None,
    ) -> int:
        return self.inner.stream(self.wrap(argv), on_stdout, on_stderr, timeout=timeout, cancel=cancel)

    def put(
        self,
        local: "Path | Readable",
        remote: str,
        mode: int = 0o644,
        progress: Optional[Callable[[int], None]] = None,
    ) -> None:
        self.inner.put(local, remote, mode, progress)

    def get(self, remote: str, local: Path, max_bytes: int, timeout: Optional[float] = None) -> None:
        self.inner.get(remote, local, max_bytes, timeout)
