"""Launcher ``slurm``: one sbatch job per benchmark job, followed until Slurm says it ended.

The job's command is ``HostWorker.job_command`` (``docker run ...`` or, bare,
``env ... python -m runner_in_container ...``) with its device left as the placeholder
``jobcommand.DEVICE``, handed to sbatch as the arguments of a constant batch script
(``slurm_job.sh``), never as shell text; the script puts in the device Slurm allocated.
The submit host (the host entry's ``address``: local or SSH) runs sbatch, squeue, sacct, scancel and srun; the
job's folder, data, weights and workdir are on a filesystem it shares with the nodes,
so the job's output file and result.json are read there. Environment capture and the
job's monitors (the vendor's SMI, the host's /proc) run on the allocated node as
``srun --jobid J --overlap`` steps.
"""

import base64
import dataclasses
import itertools
import posixpath
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from orchestrator.host import envinfo, images
from orchestrator.host import prepare as hostprep
from orchestrator.host.monitors import JobMonitors
from orchestrator.job import containers
from orchestrator.job.command import DEVICE, CommandError
from orchestrator.job.launch import Built
from orchestrator.job.plan import Job
from orchestrator.job.runner_output import JobLog, RunnerOutcome
from orchestrator.job.stages import RunContext, stage_errors
from orchestrator.launchers import slurm_settings
from orchestrator.launchers.base import Launcher
from orchestrator.launchers.queues import run_queues
from orchestrator.launchers.slurm_settings import SlurmJobSpec, SlurmSettings
from orchestrator.launchers.slurmctl import JobStatus, SlurmClient, SrunTransport
from orchestrator.model.cluster import Cluster, Host
from orchestrator.outcome import INTERRUPTED, Stage, StageFailure
from orchestrator.safeio.text import one_line
from orchestrator.transport.base import MAX_LINE_BYTES, Cancelled, Transport, TransportError

BATCH_SCRIPT = Path(__file__).with_name("slurm_job.sh")
OUTPUT_NAME = "slurm.out"
#: how long a cancelled job may take to end (Slurm's KillWait is 30 s by default)
CANCEL_WAIT_S = 60.0
#: the batch script's first line: where the job runs and which device it got
PREAMBLE = re.compile(r"^rn50bench-slurm: job=(\S+) node=(\S+) device=(\S+) visible=(\S+)$")
#: the most of the job's output file read in one poll (a job that writes faster is followed with a lag)
READ_BYTES = 4 << 20
#: ``sh -c FOLLOW_SCRIPT rn50bench-follow START PATH COUNT``: at most COUNT bytes of PATH from byte START
#: (1-based) as base64, so that every byte arrives as it is; fails while PATH is not there
FOLLOW_SCRIPT = 'test -f "$2" || exit 1; tail -c +"$1" -- "$2" | head -c "$3" | base64 -w 0'
#: squeue states in which the batch script has started
_STARTED = ("RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT")


class OutputFollower:
    """The lines a job appends to its output file, read by byte offset through the submit host.

    What the job writes is untrusted: each poll reads at most READ_BYTES (the bytes exact, as base64), and a
    line longer than MAX_LINE_BYTES is cut there like a streamed one (transport.base).
    """

    def __init__(self, transport: Transport, path: str, timeout: float) -> None:
        self.transport = transport
        self.path = path
        self.timeout = timeout
        self.offset = 0
        self._partial = b""
        self._cut = 0  # bytes dropped so far of the line in _partial

    def read(self, final: bool = False) -> List[str]:
        """Complete new lines (all of the rest when ``final``); none while the file does not exist."""
        lines: List[str] = []
        while True:
            data = self._next()
            lines += self._split(data)
            if not final or len(data) < READ_BYTES:
                break
        if final and self._partial:
            lines.append(self._line(self._partial))
            self._partial, self._cut = b"", 0
        return lines

    def _next(self) -> bytes:
        argv = ["sh", "-c", FOLLOW_SCRIPT, "rn50bench-follow"]
        done = self.transport.run(argv + [str(self.offset + 1), self.path, str(READ_BYTES)], self.timeout)
        if done.returncode != 0:
            return b""
        data = base64.b64decode(done.stdout)
        self.offset += len(data)
        return data

    def _split(self, data: bytes) -> List[str]:
        """The lines ``data`` completes; a line growing past MAX_LINE_BYTES keeps its start only."""
        pieces = (self._partial + data).split(b"\n")
        self._partial = pieces.pop()
        lines = []
        for piece in pieces:
            lines.append(self._line(piece))
            self._cut = 0
        if len(self._partial) > MAX_LINE_BYTES:
            self._cut += len(self._partial) - MAX_LINE_BYTES
            self._partial = self._partial[:MAX_LINE_BYTES]
        return lines

    def _line(self, piece: bytes) -> str:
        """A line as text; one that was cut says how much of it was dropped."""
        dropped = self._cut + max(0, len(piece) - MAX_LINE_BYTES)
        if dropped:
            piece = piece[:MAX_LINE_BYTES] + b" [line cut: %d more bytes dropped]" % dropped
        return piece.rstrip(b"\r").decode("utf-8", "replace")


@dataclasses.dataclass
class _Watch:
    """What one Slurm job has shown so far."""

    slurm_id: str
    node: Optional[str] = None
    ran: bool = False
    running_since: float = 0.0
    stage: str = ""  # the runner's last stage event
    monitors: Optional[JobMonitors] = None


class SlurmLauncher(Launcher):
    """A host entry whose jobs Slurm runs: its ``address`` is the submit host."""

    name = "slurm"
    private_mps = False  # a node's MPS is the site's: only mps: true joins a daemon there
    reaches_job_host = False  # the job's node is Slurm's pick: its conditions are not checked
    settings_class = SlurmSettings
    host_settings_class = SlurmJobSpec

    def __init__(self, ctx: RunContext, host: Host) -> None:
        super().__init__(ctx, host)
        self.settings = slurm_settings.settings(ctx.cluster)
        self.spec = slurm_settings.job_spec(ctx.cluster, host)
        self.slurm: Optional[SlurmClient] = None
        self.script: Optional[str] = None  # the batch script on the submit host
        self.context: Optional[str] = None  # the image's build context (a tar) on the shared filesystem
        self.labels: Tuple[Tuple[str, str], ...] = ()
        self.network = True  # False: the image's build gets no network (ImageSpec.network)
        self._env_lock = threading.Lock()
        self._env_node: Optional[str] = None
        self._slots = threading.local()
        self._next_slot = itertools.count()

    def run(self, jobs: List[Job]) -> Dict[str, str]:
        """Prepare the submit host, then keep up to ``slurm.max_jobs`` jobs in Slurm at once."""
        threads = min(len(jobs), self.settings.max_jobs)
        return run_queues(self.ctx, self.worker, jobs, [[job] for job in jobs], threads, lambda job: -1)

    # -- preparation: on the submit host; the nodes do the rest -------------------
    @classmethod
    def check(cls, cluster: Cluster) -> None:
        slurm_settings.check(cluster)

    def check_docker(self, transport: Transport) -> None:
        """Nothing to check here: docker runs on the nodes (the batch script fails there without it)."""

    def capture_environment(self, transport: Transport) -> Optional[Dict[str, Any]]:
        """Deferred: the facts are the allocated node's, captured when the first job runs (_on_node)."""
        return None

    def build(self, transport: Transport, log: Path) -> Built:
        """Install the batch script; stage the image's build context (docker) or install the runner (bare)."""
        worker, timeouts = self.worker, self.worker.timeouts
        self.slurm = SlurmClient(transport, self.settings.poll_interval_s, timeouts.connect)
        self.script = posixpath.join(worker.workdir, "slurm", BATCH_SCRIPT.name)
        transport.put(BATCH_SCRIPT, self.script, mode=0o755)
        if self.host.runtime != "docker":
            return super().build(transport, log)
        spec = hostprep.host_image_spec(self.host, worker.vendor)
        self.context = posixpath.join(worker.workdir, "images", spec.content_hash + ".tar")
        if transport.run(["test", "-f", self.context], timeout=timeouts.connect).returncode != 0:
            with tempfile.TemporaryDirectory(prefix="rn50bench-context.") as tmp:
                tar = Path(tmp) / "context.tar"
                with tar.open("wb") as handle:
                    images.write_tar(spec.files, handle)
                transport.put(tar, self.context, mode=0o644)
        self.labels = spec.labels
        self.network = spec.network
        worker.say(None, stage=Stage.IMAGE, note="%s: built on each node that lacks it" % spec.tag)
        return Built(image=spec.tag)

    # -- one connection and one progress row per job thread ------------------------
    def _slot(self) -> int:
        if not hasattr(self._slots, "index"):
            self._slots.index = next(self._next_slot)
        return self._slots.index

    def transport_for(self, device: int) -> Transport:
        """One connection per job thread: each follows its own job (SSH caps sessions per connection)."""
        return super().transport_for(self._slot())

    def row(self, device: Optional[int]) -> int:
        """Jobs of one host entry run at once under Slurm: their rows are the job threads, not devices."""
        return -1 if device is None else self._slot()

    # -- the job's sbatch command --------------------------------------------------
    def sbatch_argv(self, job: Job, remote_dir: str) -> List[str]:
        """``sbatch ... slurm_job.sh [options] -- <job command>``: every value is its own argv element."""
        assert self.script is not None
        try:
            command, uses_device = self.worker.job_command(job, remote_dir).with_placeholder()
        except CommandError as exc:
            raise StageFailure(Stage.START, one_line(str(exc))) from None
        vendor = self.worker.vendor
        if uses_device and not self.spec.gres:
            raise StageFailure(
                Stage.START,
                "vendor %s runs on a device: ask Slurm for one with gres (slurm.vendors.%s.gres, e.g. gpu:1)"
                % (vendor.name, vendor.name),
            )
        spec = self.spec
        output = posixpath.join(remote_dir, OUTPUT_NAME).replace("%", "%%")  # sbatch expands %j, %x, ...
        argv = ["sbatch", "--parsable", "--job-name=rn50bench." + job.job_id, "--output=" + output]
        argv += ["--chdir=" + remote_dir, "--nodes=1", "--ntasks=1", "--no-requeue"]
        options = (
            ("--partition", spec.partition), ("--account", spec.account), ("--qos", spec.qos),
            ("--reservation", spec.reservation), ("--time", spec.time_limit), ("--gres", spec.gres),
            ("--constraint", spec.constraint), ("--cpus-per-task", spec.cpus_per_task), ("--mem", spec.mem),
        )  # fmt: skip
        argv += ["%s=%s" % (name, value) for name, value in options if value is not None]
        argv += ["--exclusive"] if spec.exclusive else []
        argv.append(self.script)
        docker = self.host.runtime == "docker"
        if uses_device:
            argv += ["--device-token", str(DEVICE), "--device-from", "docker" if docker else "visible"]
        if docker:
            assert self.worker.image is not None and self.context is not None
            argv += ["--image", self.worker.image, "--context", self.context]
            for key, value in self.labels:
                argv += ["--label", "%s=%s" % (key, value)]
            argv += [] if self.network else ["--no-network"]
            argv += ["--container", containers.container_name(self.ctx.run_id, job.job_id)]
        return argv + ["--"] + command

    # -- running: submit, follow, map the end state ---------------------------------
    def run_command(self, transport: Transport, job: Job, remote_dir: str, log_path: Path) -> RunnerOutcome:
        """Submit the job and follow it to its end; StageFailure when Slurm ended it, Cancelled on Ctrl-C."""
        assert self.slurm is not None
        outcome = RunnerOutcome(self.host.docker.memory if self.host.runtime == "docker" else None)
        with stage_errors(Stage.START):
            argv = self.sbatch_argv(job, remote_dir)
        try:
            watch = _Watch(self.slurm.submit(argv))
        except TransportError as exc:
            raise StageFailure(Stage.START, one_line(str(exc))) from None
        self.worker.say(job.device, stage=Stage.QUEUED, note="slurm job %s" % watch.slurm_id)
        timeouts = self.worker.timeouts
        follower = OutputFollower(transport, posixpath.join(remote_dir, OUTPUT_NAME), timeouts.connect)
        with JobLog(log_path) as log:
            on_line = self._line_handler(transport, job, watch, outcome, log)
            try:
                status = self._follow(job, watch, follower, on_line)
            except BaseException as exc:
                self._cancel(watch.slurm_id)
                if isinstance(exc, TransportError) and not isinstance(exc, Cancelled):
                    raise StageFailure(Stage.runner_ended(watch.ran), one_line(str(exc))) from None
                raise
            finally:
                if watch.monitors is not None:
                    watch.monitors.stop()
                self.slurm.forget(watch.slurm_id)
        outcome.monitors = watch.monitors
        failure = status.failure(watch.ran or status.state == "TIMEOUT")
        if failure is not None:
            stage, reason = failure
            raise StageFailure(
                stage, reason + ("; the runner was in stage %s" % watch.stage if watch.stage else "")
            )
        outcome.returncode = status.returncode()
        return outcome

    def _cancel(self, slurm_id: str) -> None:
        """scancel the job and wait (up to CANCEL_WAIT_S) until Slurm has ended it and its container."""
        assert self.slurm is not None
        try:
            self.slurm.cancel(slurm_id)
            deadline = time.monotonic() + CANCEL_WAIT_S
            while time.monotonic() < deadline:
                status = self.slurm.status(slurm_id)
                if status is not None and status.terminal:
                    return
                time.sleep(self.settings.poll_interval_s)
        except TransportError:
            pass  # the submit host is out of reach: nothing more can be done from here

    def _follow(
        self, job: Job, watch: _Watch, follower: OutputFollower, on_line: Callable[[str], None]
    ) -> JobStatus:
        """Poll squeue/sacct and the output file until the job ends; its final status."""
        assert self.slurm is not None
        shown: Tuple[str, str] = ("", "")
        while True:
            if self.ctx.cancel.is_set():
                raise Cancelled(
                    "%s: %s; slurm job %s cancelled" % (self.host.name, INTERRUPTED, watch.slurm_id)
                )
            status = self.slurm.status(watch.slurm_id)
            if status is not None:
                if status.state in _STARTED and not watch.ran:
                    watch.ran, watch.running_since = True, time.monotonic()
                if (status.state, status.reason) != shown and not status.terminal:
                    shown = (status.state, status.reason)
                    note = "slurm job %s %s" % (watch.slurm_id, status.state)
                    self.worker.say(
                        job.device, note=note + (" (%s)" % status.reason if status.reason else "")
                    )
            for line in follower.read():
                on_line(line)
            if status is not None and status.terminal:
                for line in follower.read(final=True):
                    on_line(line)
                return status
            run_timeout = self.worker.timeouts.run
            if watch.ran and time.monotonic() - watch.running_since > run_timeout:
                raise StageFailure(
                    Stage.RUN,
                    "runner exceeded the run timeout of %g s (timeouts.run); slurm job %s cancelled"
                    % (run_timeout, watch.slurm_id),
                )
            self.ctx.cancel.wait(self.settings.poll_interval_s)

    def _line_handler(
        self, transport: Transport, job: Job, watch: _Watch, outcome: RunnerOutcome, log: Any
    ) -> Callable[[str], None]:
        """Feed output lines to the runner's event handling; the preamble starts the node-side probes."""

        def on_event(event: Dict[str, Any]) -> None:
            if event["ev"] == "stage":
                watch.stage = str(event.get("stage", ""))
            self.worker.on_event(job, event, watch.monitors)

        handle = outcome.stdout_handler(log, on_event)

        def on_line(line: str) -> None:
            match = PREAMBLE.match(line)
            if match and watch.node is None:
                self._on_node(transport, job, watch, match.group(2), match.group(4))
            handle(line)
            if line.strip() and not line.lstrip().startswith("{"):
                outcome.last_stderr = line.strip()  # the job's output mixes stdout and stderr; not events

        return on_line

    def _on_node(self, transport: Transport, job: Job, watch: _Watch, node: str, visible: str) -> None:
        """The job runs on ``node``: start the job's monitors there and capture its facts once."""
        watch.node, watch.ran = node, True
        watch.running_since = watch.running_since or time.monotonic()
        worker = self.worker
        worker.say(job.device, stage=Stage.RUNNING, note="slurm job %s on %s" % (watch.slurm_id, node))
        probe = SrunTransport(transport, watch.slurm_id)
        device = int(visible) if visible.isdigit() else 0  # the index the job's own steps see
        watch.monitors = JobMonitors.start(
            probe, worker.vendor, device, self.ctx.cluster.defaults.monitor_interval_s, job.scenario
        )
        with self._env_lock:
            if self._env_node is not None:
                return
            env = envinfo.capture_host(probe, worker.vendor, self.host.runtime, worker.timeouts.connect)
            if env.get("hostname") is None:
                return  # the step did not run (the job already ended): the next job tries
            env.update(launcher="slurm", slurm_node=node, slurm_job=watch.slurm_id)
            worker.record_environment(env)
            self._env_node = node


LAUNCHER = SlurmLauncher
