"""The life of a host's jobs, whatever launches them: prepare the host once, then run each job to a
stored final state (start, run, fetch the result, validate it, derive and store its figures).

What differs between launchers -- how the host is checked, its environment captured, its image
prepared, a job's command run and followed -- the worker asks of its launcher, through the narrow
interface of ``launch.Launch`` whose methods return what they found or made.
"""

import dataclasses
import hashlib
import posixpath
import time
from pathlib import Path
from typing import Any, Dict, Optional

from orchestrator.host import conditions, envinfo, images, mps
from orchestrator.host import prepare as hostprep
from orchestrator.host import workdir as workdirs
from orchestrator.host.monitors import JobMonitors
from orchestrator.job import collect, mlperf_logs
from orchestrator.job import command as jobcommand
from orchestrator.job.launch import Launch
from orchestrator.job.plan import Job
from orchestrator.job.runner_output import RunnerOutcome, show_event
from orchestrator.job.stages import RunContext, stage_errors
from orchestrator.metrics.table import BY_KEY
from orchestrator.model.cluster import Host
from orchestrator.outcome import INTERRUPTED, JobState, Stage, StageFailure
from orchestrator.safeio.text import one_line
from orchestrator.store import StoreError
from orchestrator.transport.base import Cancelled, CommandTimeout, FetchRefused, Transport, TransportError
from runner_in_container.protocol import EXIT_FAILED_ACCURACY, RESULT_FILE


class HostWorker:
    """Runs the jobs of one host entry; one instance per host, shared by its job threads."""

    def __init__(self, ctx: RunContext, host: Host, launcher: Launch) -> None:
        self.ctx = ctx
        self.host = host
        self.launcher = launcher
        self.vendor = ctx.vendors[host.vendor]
        self.timeouts = ctx.cluster.host_timeouts(host)
        self.workdir = ctx.cluster.host_workdir(host) or ""  # set by prepare (_secure_workdir)
        self.transport: Optional[Transport] = None
        self._mps_pipes: Dict[Optional[int], Optional[str]] = {}  # the MPS daemon each device's job joins
        self.env: Dict[str, Any] = {}
        self.image: Optional[str] = None
        self.runner_path: Optional[str] = None
        self.user: Optional[str] = None  # docker: the login user's uid:gid, who owns the job folder
        self.build_s: Optional[float] = None  # image build (or runner install) on this host, once per run
        self.build_log: Optional[Path] = None  # where the build wrote its output, once it started

    # -- host preparation -------------------------------------------------------
    def prepare(self) -> None:
        """Connect, check docker and paths, capture the environment, prepare the image.

        Raises StageFailure (connect, start or build), or Cancelled when the run is
        interrupted between steps (a build that started runs to its end or its timeout).
        """
        self.say(None, stage=Stage.CONNECT)
        with stage_errors(Stage.CONNECT):
            try:
                self.transport = transport = self.connect()
                transport.run(["true"], timeout=self.timeouts.connect).check()
                if self.host.runtime == "docker":
                    self.launcher.check_docker(transport)
                    self.user = hostprep.login_user(transport, self.timeouts.connect)
            except TransportError as exc:
                raise StageFailure(Stage.CONNECT, one_line(str(exc))) from None
        with stage_errors(Stage.START):
            self._secure_workdir()
            hostprep.check_paths(transport, self.host, self.timeouts.connect)
        self._check_cancel()
        with stage_errors(Stage.CONNECT):
            facts = self.launcher.capture_environment(transport)
            if facts is not None:
                self.record_environment(facts)
        self._check_cancel()
        build_started = time.monotonic()
        with stage_errors(Stage.BUILD):
            self.build_log = self.host_log("build.log")
            self.say(None, stage=Stage.BUILD, note="", log=str(self.build_log))
            try:
                built = self.launcher.build(transport, self.build_log)
            except images.ImageBuildError as exc:
                missing = hostprep.missing_base(transport, self.host, self.vendor)
                raise StageFailure(Stage.BUILD, one_line(missing + str(exc))) from None
            except (TransportError, images.ImageError) as exc:
                raise StageFailure(Stage.BUILD, one_line(str(exc))) from None
            self.image, self.runner_path = built.image, built.runner_path
            if built.environment:
                self.record_environment(built.environment)
        self.build_s = time.monotonic() - build_started

    def record_environment(self, facts: Dict[str, Any]) -> None:
        """Add ``facts`` to the host's environment and store it (a launcher that captures it where the jobs
        run hands it here)."""
        self.env = {**self.env, **facts}
        self.ctx.store.put_environment(self.ctx.run_id, self.host.name, self.env)

    def _check_cancel(self) -> None:
        if self.ctx.cancel.is_set():
            raise Cancelled("%s: %s" % (self.host.name, INTERRUPTED))

    def _secure_workdir(self) -> None:
        """The host's workdir, made if missing; refused where anyone but the run's user could write in it."""
        assert self.transport is not None
        try:
            self.workdir = workdirs.secure(self.transport, self.workdir or None, self.timeouts.connect)
        except workdirs.WorkdirRefused as exc:
            raise StageFailure(Stage.START, one_line(str(exc))) from None

    def connect(self) -> Transport:
        """A new connection to the host."""
        return hostprep.host_transport(self.host, self.timeouts.connect)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.launcher.close()

    # -- jobs -------------------------------------------------------------------
    def run_job(self, job: Job) -> str:
        """Run one job to a stored final state; returns the state.

        A StoreError (the store cannot be written: disk full, read-only) stops the whole run: its results
        could not be kept. A job left RUNNING by such a run, or by one that was killed, whose result file
        was fetched and recorded in the store (its sha256, ``Store.record_fetch``) is not run again: that
        result is stored (``--resume``). Any other file there is not this orchestrator's: the job runs again.
        """
        try:
            return self._run_job(job)
        except StoreError:
            self.ctx.cancel.set()
            raise

    def _run_job(self, job: Job) -> str:
        store, run_id = self.ctx.store, self.ctx.run_id
        recorded = store.fetched(run_id, job.job_id)
        before = store.start_job(run_id, job.job_id)
        job_dir = self.ctx.results_dir / job.job_id
        log_path = job_dir / "runner.log"
        timings: Dict[str, float] = {} if self.build_s is None else {"build_s": self.build_s}
        start = time.monotonic()
        try:
            left_running = before == JobState.RUNNING
            unstored = _finished_result(job_dir / RESULT_FILE, recorded) if left_running else None
            if unstored is not None:
                result = self._store_result(job, unstored, None)
            else:
                with stage_errors(Stage.START):
                    _clear_earlier_attempt(job_dir, log_path)
                result = self._run_watched(job, job_dir, log_path, timings)
            state, reason = JobState.OK, None
            failure = collect.accuracy_failure(result)
            if failure:
                state, reason = JobState.failed(Stage.ACCURACY), failure
        except StageFailure as exc:
            state, reason = JobState.failed(exc.stage), str(exc)
        except Cancelled:
            state, reason = JobState.CANCELLED, INTERRUPTED
        timings["job_s"] = time.monotonic() - start
        log = str(log_path) if log_path.exists() else None
        store.finish_job(run_id, job.job_id, state, reason, log, timings)
        self.say(job.device, stage=state, note=reason or "")
        return state

    def _run_watched(
        self, job: Job, job_dir: Path, log_path: Path, timings: Dict[str, float]
    ) -> collect.Result:
        """``_run_stages`` between the checks of the job's conditions, which are stored with it (a launcher
        that does not reach the job's node checks none)."""
        if not self.launcher.reaches_job_host:
            return self._run_stages(job, job_dir, log_path, timings)
        with stage_errors(Stage.START):
            transport = self.launcher.transport_for(job.device)
        watch = conditions.Watch(
            transport,
            self.vendor,
            job.device,
            self.ctx.run_id,
            self.host.runtime == "docker",
            self.ctx.cluster.host_isolation(self.host),
            self.ctx.cluster.host_clear_caches(self.host),
            self.timeouts.connect,
        )
        try:
            self.say(job.device, stage=Stage.ISOLATION, job=job.job_id, note="")
            with stage_errors(Stage.ISOLATION):
                watch.before()
            result = self._run_stages(job, job_dir, log_path, timings)
            with stage_errors(Stage.ISOLATION):
                watch.after()
        finally:
            self.ctx.store.put_conditions(self.ctx.run_id, job.job_id, watch.conditions.as_stored())
        busy = watch.conditions.busy()
        if busy:
            self.say(job.device, note="busy: " + busy[0])
        return result

    def _run_stages(
        self, job: Job, job_dir: Path, log_path: Path, timings: Dict[str, float]
    ) -> collect.Result:
        remote_dir = posixpath.join(self.workdir, "runs", self.ctx.run_id, job.job_id)
        with stage_errors(Stage.START):
            transport = self.launcher.transport_for(job.device)
            self._make_remote_dirs(transport, remote_dir)
        self.say(job.device, stage=Stage.START, job=job.job_id, note="")
        t0 = time.monotonic()
        mode = self.host.mps if self.launcher.private_mps else self.host.mps is True
        with stage_errors(Stage.RUN), mps.job_sharing(
            transport, mode, self.host.mps_pipe_directory, self.vendor.mps, job.device, self.ctx.run_id
        ) as sharing:
            self._mps_pipes[job.device] = sharing.pipe
            if self.vendor.mps:
                self.say(job.device, note="MPS: " + sharing.note)
            outcome = self.launcher.run_command(transport, job, remote_dir, log_path)
            outcome.mps = sharing.note
        timings["runner_s"] = time.monotonic() - t0
        t0 = time.monotonic()
        local_result = job_dir / RESULT_FILE
        with stage_errors(Stage.COLLECT):
            error = self._fetch(transport, posixpath.join(remote_dir, RESULT_FILE), local_result)
        if error is not None:
            if outcome.returncode != 0:
                raise StageFailure(outcome.failed_stage(), outcome.reason())
            raise StageFailure(Stage.COLLECT, one_line("result.json not fetched: %s" % error))
        timings["collect_s"] = time.monotonic() - t0
        try:
            data = collect.load_file(str(local_result))
            self.ctx.store.record_fetch(self.ctx.run_id, job.job_id, hashlib.sha256(data).hexdigest())
            result = collect.read_bytes(data)
        except (OSError, collect.ResultInvalid) as exc:
            raise StageFailure(Stage.VALIDATE, one_line(str(exc))) from None
        mlperf_logs.fetch(transport, remote_dir, job_dir, result.typed, self.timeouts.collect)
        if result.figures is None or outcome.returncode not in (0, EXIT_FAILED_ACCURACY):
            raise StageFailure(outcome.failed_stage(), outcome.reason(result.doc))
        return self._store_result(job, result, outcome)

    def _store_result(
        self, job: Job, result: collect.Result, outcome: Optional[RunnerOutcome]
    ) -> collect.Result:
        """Store a valid result with its derived figures (and the monitors' samples); ``outcome`` None: a
        result that an earlier orchestrator fetched but could not store."""
        monitors = outcome.monitors if outcome is not None else None
        assert result.figures is not None
        images = collect.window_images(result.typed)
        host = monitors.host.summary(images) if monitors is not None else None
        device = monitors.device if monitors is not None else None
        with stage_errors(Stage.COLLECT):
            model = envinfo.accelerator_models(self.env, [job.device]).get(job.device)
            try:
                own_peaks = {p: (peak.flops, peak.source) for p, peak in self.host.peaks.items()}
                figure_host = host["stages"].get(host["figure_window"]) if host else None
                derived = collect.derive(result, self.vendor, model, figure_host, own_peaks)
            except collect.ResultInvalid as exc:
                raise StageFailure(Stage.VALIDATE, one_line(str(exc))) from None
            derived = dataclasses.replace(
                derived,
                samples_source=device.source if device else None,
                mps=outcome.mps if outcome is not None else None,
            )
            self.ctx.store.put_result(self.ctx.run_id, job.job_id, result.doc, derived.as_stored())
            if device is not None:
                summary = device.summary(images)
                self.ctx.store.put_samples(self.ctx.run_id, job.job_id, summary)
            if host is not None:
                self.ctx.store.put_host_samples(self.ctx.run_id, job.job_id, host)
        self.say(
            job.device, figure="infer %s img/s" % BY_KEY["p_infer_core"].show(derived.figure("p_infer_core"))
        )
        return result

    def _make_remote_dirs(self, transport: Transport, remote_dir: str) -> None:
        """The job's results folder and the engine cache on the host, without an earlier attempt's result."""
        for path in (remote_dir, self.cache_dir()):
            try:
                transport.run(["mkdir", "-p", "--", path], timeout=self.timeouts.connect).check()
            except TransportError as exc:
                raise StageFailure(
                    Stage.START, one_line("cannot create %s on host %s: %s" % (path, self.host.name, exc))
                ) from None
        stale = posixpath.join(remote_dir, RESULT_FILE)
        transport.run(["rm", "-f", "--", stale], timeout=self.timeouts.connect).check()

    def cache_dir(self) -> str:
        """The host's engine cache of this vendor."""
        return posixpath.join(self.workdir, "cache", self.vendor.name)

    def _fetch(self, transport: Transport, remote: str, local: Path) -> Optional[str]:
        """Copy the result to ``local`` (a regular file within collect.MAX_RESULT_BYTES, never through a link,
        made 0600); None when done, else why not. StageFailure when the file was refused (what a job hands
        back is untrusted) or not fetched within timeouts.collect."""
        collect_s = self.timeouts.collect
        try:
            transport.get(remote, local, collect.MAX_RESULT_BYTES, timeout=collect_s)
        except CommandTimeout:
            raise StageFailure(
                Stage.COLLECT, "result.json not fetched within %g s (timeouts.collect)" % collect_s
            ) from None
        except FetchRefused as exc:
            raise StageFailure(Stage.COLLECT, one_line("result.json not fetched: %s" % exc)) from None
        except TransportError as exc:
            return str(exc)
        return None

    def job_command(self, job: Job, remote_dir: str) -> jobcommand.JobCommand:
        """The command that runs ``job`` on the host, its device open (shared by every launcher). With MPS
        (mps.py) the job joins a CUDA MPS daemon through its pipe directory."""
        lab_pipe = self.host.mps_pipe_directory if self.host.mps is True else None
        return jobcommand.build(
            job,
            self.host,
            self.vendor,
            remote_dir,
            self.cache_dir(),
            self.ctx.run_id,
            self.image,
            self.user,
            self.runner_path,
            self._mps_pipes.get(job.device, lab_pipe),
        )

    # -- what the job shows -------------------------------------------------------
    def on_event(self, job: Job, event: Dict[str, Any], monitors: Optional[JobMonitors]) -> None:
        """A runner event of ``job``: onto its display line, and into the monitors' stage windows."""
        show_event(event, monitors, lambda **fields: self.say(job.device, **fields))

    def say(self, device: Optional[int], **fields: Any) -> None:
        """Update the display line of ``device`` (None: the host's line), as the launcher lays them out."""
        self.ctx.progress(self.host.name, self.launcher.row(device), fields)

    def host_log(self, name: str) -> Path:
        path = self.ctx.results_dir / ("host-" + self.host.name) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


def _finished_result(path: Path, sha256: Optional[str]) -> Optional[collect.Result]:
    """The valid result with figures at ``path`` if it is the file this orchestrator fetched (``sha256``, as
    recorded in the store), or None (none recorded, another file, missing, partial, a failed run's)."""
    try:
        data = collect.load_file(str(path))
        if sha256 is None or hashlib.sha256(data).hexdigest() != sha256:
            return None
        result = collect.read_bytes(data)
    except (OSError, collect.ResultInvalid):
        return None
    return result if result.figures is not None else None


def _clear_earlier_attempt(job_dir: Path, log_path: Path) -> None:
    """Make ``job_dir``; keep an earlier attempt's log as runner.<n>.log and drop its result."""
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / RESULT_FILE).unlink(missing_ok=True)
    if log_path.exists():
        attempt = 1
        while log_path.with_name("%s.%d%s" % (log_path.stem, attempt, log_path.suffix)).exists():
            attempt += 1
        log_path.rename(log_path.with_name("%s.%d%s" % (log_path.stem, attempt, log_path.suffix)))
