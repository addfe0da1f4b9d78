"""Everything that happens on one host: connect, capture facts, prepare the image, run jobs.

A job ends in a state and a one-line reason, never in an exception: OK, or
FAILED_<stage> for the stage that broke (connect, build, start, run, collect,
validate, accuracy), or CANCELLED. Other jobs and hosts carry on.
"""

import contextlib
import json
import logging
import posixpath
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, Iterator, List, Optional

from runner_in_container.contract import weights_is_file
from runner_in_container.protocol import EXIT_BAD_INPUT, EXIT_FAILED_ACCURACY, RESULT_FILE, parse_event
from vendors.base import Vendor

from . import collect, containers, envinfo, images, mps
from . import workdir as workdirs
from .bundle import origin
from .config import Cluster, Host
from .monitor import Monitor
from .plan import Job
from .store import CANCELLED, OK, RUNNING, Store, StoreError
from .transport import make_transport
from .transport.base import Cancelled, CommandTimeout, Transport, TransportError

CONTAINER_RESULTS = "/results"
CONTAINER_CACHE = "/cache"
INTERRUPTED = "run interrupted"

log = logging.getLogger(__name__)

#: called with (host, device, field updates) to drive the live display
Progress = Callable[[str, int, Dict[str, Any]], None]


class StageFailure(Exception):
    """A job stage failed; ``stage`` names it and the message is the one-line reason."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(reason)
        self.stage = stage


@dataclass
class RunContext:
    """What all host workers of one run share."""

    run_id: str
    cluster: Cluster
    store: Store
    vendors: Dict[str, Vendor]
    results_dir: Path
    progress: Progress
    cancel: threading.Event = field(default_factory=threading.Event)


def one_line(text: str) -> str:
    """Collapse a message to one line of at most 300 characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= 300 else line[:297] + "..."


@contextlib.contextmanager
def stage_errors(stage: str) -> Iterator[None]:
    """Turn an unexpected error inside ``stage`` into StageFailure(stage), so that no job ends by raising."""
    try:
        yield
    except (StageFailure, Cancelled, StoreError):
        raise
    except OSError as exc:  # a file here (full disk, no permission): named, with no traceback
        raise StageFailure(stage, one_line(os_error(exc))) from None
    except Exception as exc:
        log.warning("unexpected error in stage %s", stage, exc_info=True)
        raise StageFailure(stage, one_line("%s: %s" % (type(exc).__name__, exc))) from exc


def os_error(exc: OSError, path: Optional[Path] = None) -> str:
    """``PATH: reason`` of a failed file operation on this machine."""
    where = path or exc.filename
    return "%s: %s" % (where, exc.strerror or exc) if where else str(exc.strerror or exc)


def exit_meaning(code: int, memory: Optional[str]) -> str:
    """What the runner's (or the container's) exit status says about how it ended."""
    if code == 137:
        limit = " (docker.memory %s)" % memory if memory else ""
        return "exit status 137: killed by SIGKILL, out of memory%s or killed from outside" % limit
    if code == 125:
        return "exit status 125: docker could not start the container"
    if code in (126, 127):
        return "exit status %d: the runner command could not be run" % code
    if code == EXIT_BAD_INPUT:
        return "exit status 2: the runner refused its input"
    if code > 128:
        return "exit status %d: killed by signal %d" % (code, code - 128)
    return "exit status %d" % code


def host_transport(host: Host, connect_timeout: float) -> Transport:
    """The transport that reaches ``host`` (nothing connects until its first command)."""
    return make_transport(
        host.name,
        host.address,
        port=host.port,
        user=host.user,
        key_file=host.key_file,
        known_hosts=host.known_hosts,
        strict_host_keys=host.strict_host_keys,
        connect_timeout=connect_timeout,
    )


def image_overrides(host: Host) -> Dict[str, str]:
    """The image variables ``host`` sets over its vendor's (base image, pip index)."""
    overrides = {}
    if host.image.base_image:
        overrides["base_image"] = host.image.base_image
    if host.image.pip_index_url:
        overrides["pip_index_url"] = host.image.pip_index_url
    return overrides


def host_image_spec(host: Host, vendor: Vendor) -> images.ImageSpec:
    """The vendor image ``host`` runs: its template, the host's overrides and SDK files."""
    return images.image_spec(
        vendor,
        image_overrides(host),
        Path(host.image.sdk_dir) if host.image.sdk_dir else None,
        host.image.sdk_checksums,
    )


class HostWorker:
    """Runs the jobs of one host; one instance per host, shared by its device threads.

    Launchers other than the direct one subclass it (launchers/slurm.py): they override
    _check_docker, _capture_environment, _build and _run_runner (Slurm also transport_for
    and _say: its jobs run at once, not one per device) and reuse the rest.
    """

    #: this launcher starts a job's own MPS daemon on its host (mps: auto); a batch system's does not
    private_mps = True

    def __init__(self, ctx: RunContext, host: Host) -> None:
        self.ctx = ctx
        self.host = host
        self.vendor = ctx.vendors[host.vendor]
        self.timeouts = ctx.cluster.host_timeouts(host)
        self.workdir = ctx.cluster.host_workdir(host) or ""  # set by prepare (_secure_workdir)
        self.transport: Optional[Transport] = None
        self._device_transports: Dict[int, Transport] = {}
        self._mps_pipes: Dict[Optional[int], Optional[str]] = {}  # the MPS daemon each device's job joins
        self.env: Dict[str, Any] = {}
        self.image: Optional[str] = None
        self.runner_path: Optional[str] = None
        self.user: Optional[str] = host.docker.user
        self.build_s: Optional[float] = None  # image build (or runner install) on this host, once per run
        self.build_log: Optional[Path] = None  # where the build wrote its output, once it started

    # -- host preparation -------------------------------------------------------
    def prepare(self) -> None:
        """Connect, check docker and paths, capture the environment, prepare the image.

        Raises StageFailure (connect, start or build), or Cancelled when the run is
        interrupted between steps (a build that started runs to its end or its timeout).
        """
        self._say(None, stage="connect")
        with stage_errors("connect"):
            try:
                self.transport = transport = self._connect()
                transport.run(["true"], timeout=self.timeouts.connect).check()
                if self.host.runtime == "docker":
                    self._check_docker()
                    if self.user is None:  # results are written as the SSH (or local) user
                        ids = [
                            transport.run(["id", flag], timeout=self.timeouts.connect)
                            for flag in ("-u", "-g")
                        ]
                        self.user = ":".join(done.check().stdout.strip() for done in ids)
            except TransportError as exc:
                raise StageFailure("connect", one_line(str(exc))) from None
        with stage_errors("start"):
            self._secure_workdir()
            self._check_paths()
        self._check_cancel()
        with stage_errors("connect"):
            self._capture_environment()
        self._check_cancel()
        self._say(None, stage="build")
        build_started = time.time()
        with stage_errors("build"):
            self.build_log = self._host_log("build.log")
            try:
                self._build()
            except images.ImageBuildError as exc:
                raise StageFailure("build", one_line(self._missing_base() + str(exc))) from None
            except (TransportError, images.ImageError) as exc:
                raise StageFailure("build", one_line(str(exc))) from None
        self.build_s = time.time() - build_started

    def _capture_environment(self) -> None:
        """Capture and store the host's facts (the Slurm launcher does it on the allocated node instead)."""
        assert self.transport is not None
        self.env = envinfo.capture_host(self.transport, self.vendor, self.host.runtime, self.timeouts.connect)
        self.ctx.store.put_environment(self.ctx.run_id, self.host.name, self.env)

    def _image_spec(self) -> images.ImageSpec:
        return host_image_spec(self.host, self.vendor)

    def _build(self) -> None:
        """Build (or find) the image, or install the runner on a bare host."""
        assert self.transport is not None and self.build_log is not None
        if self.host.runtime != "docker":
            self.runner_path = images.install_runner(self.transport, posixpath.join(self.workdir, "runner"))
            return
        spec = self._image_spec()
        with self.build_log.open("a") as handle:
            built = images.ensure_image(
                self.transport,
                spec,
                self.timeouts.build,
                lambda line: handle.write(line + "\n"),
                offline=self.ctx.cluster.defaults.offline,
            )
        self.image = spec.tag
        self.env.update(origin.image_origin(self.transport, spec.tag, self.timeouts.connect))
        self.ctx.store.put_environment(self.ctx.run_id, self.host.name, self.env)
        self._say(None, stage="image", note=("built " if built else "cached ") + spec.tag)

    def _missing_base(self) -> str:
        """After a failed build: a note when the base image is not on the host (and so had to be pulled)."""
        assert self.transport is not None
        base = image_overrides(self.host).get("base_image") or self.vendor.image_vars["base_image"]
        try:
            if images.image_exists(self.transport, base):
                return ""
        except TransportError:
            return ""
        return "base image %s is not on host %s and was not pulled: " % (base, self.host.name)

    def _check_docker(self) -> None:
        """The host's docker client must reach its engine."""
        assert self.transport is not None
        done = self.transport.run(envinfo.DOCKER_VERSION, timeout=self.timeouts.connect)
        if done.returncode != 0:
            said = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
            raise StageFailure(
                "connect", one_line("docker on host %s does not answer: %s" % (self.host.name, said[0]))
            )

    def _check_cancel(self) -> None:
        if self.ctx.cancel.is_set():
            raise Cancelled("%s: %s" % (self.host.name, INTERRUPTED))

    def _secure_workdir(self) -> None:
        """The host's workdir, made if missing; refused where anyone but the run's user could write in it."""
        assert self.transport is not None
        try:
            self.workdir = workdirs.secure(self.transport, self.workdir or None, self.timeouts.connect)
        except workdirs.WorkdirRefused as exc:
            raise StageFailure("start", one_line(str(exc))) from None

    def _check_paths(self) -> None:
        """Data, labels and weights must exist on the host before anything is built or started."""
        assert self.transport is not None
        paths = [("data.path", self.host.data.path), ("data.labels", self.host.data.labels)]
        if weights_is_file(self.host.weights):
            paths.append(("weights", self.host.weights))
        for field_name, path in paths:
            if (
                path
                and self.transport.run(["test", "-e", path], timeout=self.timeouts.connect).returncode != 0
            ):
                raise StageFailure(
                    "start", "%s %s does not exist on host %s" % (field_name, path, self.host.name)
                )

    def _connect(self) -> Transport:
        return host_transport(self.host, self.timeouts.connect)

    def transport_for(self, device: int) -> Transport:
        """One connection per device: an SSH server caps the sessions of one connection (MaxSessions)."""
        if device not in self._device_transports:
            self._device_transports[device] = self._connect()
        return self._device_transports[device]

    def close(self) -> None:
        for transport in [self.transport] + list(self._device_transports.values()):
            if transport is not None:
                transport.close()

    # -- jobs -------------------------------------------------------------------
    def run_job(self, job: Job) -> str:
        """Run one job to a stored final state; returns the state.

        A StoreError (the store cannot be written: disk full, read-only) stops the whole run: its results
        could not be kept. A job left RUNNING by such a run, or by one that was killed, whose result file
        was fetched, is not run again: that result is stored (``--resume``).
        """
        try:
            return self._run_job(job)
        except StoreError:
            self.ctx.cancel.set()
            raise

    def _run_job(self, job: Job) -> str:
        store, run_id = self.ctx.store, self.ctx.run_id
        before = store.start_job(run_id, job.job_id)
        job_dir = self.ctx.results_dir / job.job_id
        log_path = job_dir / "runner.log"
        timings: Dict[str, float] = {} if self.build_s is None else {"build_s": self.build_s}
        start = time.time()
        try:
            unstored = _finished_result(job_dir / RESULT_FILE) if before == RUNNING else None
            if unstored is not None:
                doc = self._store_result(job, unstored, None)
            else:
                with stage_errors("start"):
                    _clear_earlier_attempt(job_dir, log_path)
                doc = self._run_stages(job, job_dir, log_path, timings)
            state, reason = OK, None
            failure = collect.accuracy_failure(doc)
            if failure:
                state, reason = "FAILED_ACCURACY", failure
        except StageFailure as exc:
            state, reason = "FAILED_" + exc.stage.upper(), str(exc)
        except Cancelled:
            state, reason = CANCELLED, INTERRUPTED
        timings["job_s"] = time.time() - start
        log = str(log_path) if log_path.exists() else None
        store.finish_job(run_id, job.job_id, state, reason, log, timings)
        self._say(job.device, stage=state, note=reason or "")
        return state

    def _run_stages(
        self, job: Job, job_dir: Path, log_path: Path, timings: Dict[str, float]
    ) -> Dict[str, Any]:
        remote_dir = posixpath.join(self.workdir, "runs", self.ctx.run_id, job.job_id)
        with stage_errors("start"):
            transport = self.transport_for(job.device)
            self._make_remote_dirs(transport, remote_dir)
        self._say(job.device, stage="start", job=job.job_id, note="")
        t0 = time.time()
        mode = self.host.mps if self.private_mps else self.host.mps is True
        with stage_errors("run"), mps.job_sharing(
            transport, mode, self.host.mps_pipe_directory, self.vendor.mps, job.device, self.ctx.run_id
        ) as sharing:
            self._mps_pipes[job.device] = sharing.pipe
            if self.vendor.mps:
                self._say(job.device, note="MPS: " + sharing.note)
            outcome = self._run_runner(transport, job, remote_dir, log_path)
            outcome.mps = sharing.note
        timings["runner_s"] = time.time() - t0
        t0 = time.time()
        local_result = job_dir / RESULT_FILE
        with stage_errors("collect"):
            error = self._fetch(transport, posixpath.join(remote_dir, RESULT_FILE), local_result)
        if error is not None:
            if outcome.returncode != 0:
                raise StageFailure(outcome.failed_stage(), outcome.reason())
            raise StageFailure("collect", one_line("result.json not fetched: %s" % error))
        timings["collect_s"] = time.time() - t0
        try:
            doc = collect.validate(json.loads(local_result.read_text()))
        except (ValueError, collect.ResultInvalid) as exc:
            raise StageFailure("validate", one_line(str(exc))) from None
        if doc["status"] not in collect.FIGURES_PRESENT or outcome.returncode not in (
            0,
            EXIT_FAILED_ACCURACY,
        ):
            raise StageFailure(outcome.failed_stage(), outcome.reason(doc))
        return self._store_result(job, doc, outcome)

    def _store_result(
        self, job: Job, doc: Dict[str, Any], outcome: Optional["RunnerOutcome"]
    ) -> Dict[str, Any]:
        """Store a valid result with its derived figures (and the monitor's samples); ``outcome`` None: a
        result that an earlier orchestrator fetched but could not store."""
        monitor = outcome.monitor if outcome is not None else None
        with stage_errors("collect"):
            model = envinfo.accelerator_models(self.env, [job.device]).get(job.device)
            derived = collect.derive(doc, self.vendor, model)
            derived["samples_source"] = monitor.source if monitor else None
            derived["mps"] = outcome.mps if outcome is not None else None
            self.ctx.store.put_result(self.ctx.run_id, job.job_id, doc, derived)
            if monitor is not None:
                summary = monitor.summary(infer_images=doc["stages"]["infer"]["images"])
                self.ctx.store.put_samples(self.ctx.run_id, job.job_id, summary)
        self._say(job.device, note="infer %.0f img/s" % derived["p_infer_core"])
        return doc

    def _make_remote_dirs(self, transport: Transport, remote_dir: str) -> None:
        """The job's results folder and the engine cache on the host, without an earlier attempt's result."""
        for path in (remote_dir, self._cache_dir()):
            try:
                transport.run(["mkdir", "-p", "--", path], timeout=self.timeouts.connect).check()
            except TransportError as exc:
                raise StageFailure(
                    "start", one_line("cannot create %s on host %s: %s" % (path, self.host.name, exc))
                ) from None
        stale = posixpath.join(remote_dir, RESULT_FILE)
        transport.run(["rm", "-f", "--", stale], timeout=self.timeouts.connect).check()

    def _cache_dir(self) -> str:
        return posixpath.join(self.workdir, "cache", self.vendor.name)

    def _fetch(self, transport: Transport, remote: str, local: Path) -> Optional[str]:
        """Copy the result to ``local``; None when done, else why not. StageFailure past timeouts.collect."""
        outcome: List[Optional[str]] = []

        def fetch() -> None:
            try:
                transport.get(remote, local)
                outcome.append(None)
            except TransportError as exc:
                outcome.append(str(exc))

        thread = threading.Thread(target=fetch, name="fetch-" + self.host.name, daemon=True)
        thread.start()
        thread.join(self.timeouts.collect)
        if thread.is_alive():
            raise StageFailure(
                "collect", "result.json not fetched within %g s (timeouts.collect)" % self.timeouts.collect
            )
        return outcome[0]

    def _runner_argv(
        self, job: Job, out_dir: str, data: str, labels: Optional[str], weights: str, cache: str
    ):
        spec = self.host.data
        argv = [
            self.host.python if self.host.runtime == "bare" else "python3",
            "-m",
            "runner_in_container",
            "--case", job.case,
            "--data", data,
            "--layout", spec.layout,
            "--weights", weights,
            "--toolkit", job.toolkit,
            "--precision", job.precision,
            "--batch-size", str(job.batch_size),
            "--repeat", str(job.repeat),
            "--warmup", str(job.warmup),
            "--device", self.vendor.runner_device,
            "--workers", str(self.host.workers),
            "--decoder", job.decoder,
            "--decode-processes", str(self.host.decode_processes),
            "--engine-cache", cache,
            "--out", out_dir,
        ]  # fmt: skip
        for key, value in job.toolkit_options:
            argv += ["--toolkit-option", "%s=%s" % (key, value)]
        if labels:
            argv += ["--labels", labels]
        if spec.md5:
            argv += ["--data-md5", spec.md5]
        if spec.max_images:
            argv += ["--max-images", str(spec.max_images)]
        return argv

    def job_command(self, job: Job, remote_dir: str) -> List[str]:
        """The argv that runs ``job`` on the host: ``docker run ...`` or, bare, ``env ... python -m runner``.

        Shared by every launcher (direct fan-out here, Slurm's batch step). With MPS (mps.py) the job joins
        a CUDA MPS daemon through its pipe directory.
        """
        cache_dir = self._cache_dir()
        spec = self.host.data
        lab_pipe = self.host.mps_pipe_directory if self.host.mps is True else None
        mps_pipe = self._mps_pipes.get(job.device, lab_pipe)
        if self.host.runtime != "docker":
            assert self.runner_path is not None
            command = self._runner_argv(job, remote_dir, spec.path, spec.labels, self.host.weights, cache_dir)
            env = {"PYTHONPATH": self.runner_path}
            if mps_pipe is not None:
                env["CUDA_MPS_PIPE_DIRECTORY"] = mps_pipe
            env.update(self.vendor.device_env([job.device]))
            return ["env"] + ["%s=%s" % kv for kv in sorted(env.items())] + command
        assert self.image is not None
        mounts = [
            containers.Mount(spec.path, "/data/" + posixpath.basename(spec.path.rstrip("/"))),
            containers.Mount(remote_dir, CONTAINER_RESULTS, read_only=False),
            containers.Mount(cache_dir, CONTAINER_CACHE, read_only=False),
        ]
        data, labels, weights = mounts[0].target, None, self.host.weights
        if spec.labels:
            mounts.append(containers.Mount(spec.labels, "/labels/" + posixpath.basename(spec.labels)))
            labels = mounts[-1].target
        if weights_is_file(weights):
            mounts.append(containers.Mount(weights, "/weights/" + posixpath.basename(weights)))
            weights = mounts[-1].target
        return containers.docker_run_argv(
            containers.container_name(self.ctx.run_id, job.job_id),
            self.image,
            self.vendor,
            [job.device],
            mounts,
            dict(self.vendor.container_env([job.device]), HOME="/tmp"),
            self._runner_argv(job, CONTAINER_RESULTS, data, labels, weights, CONTAINER_CACHE),
            user=self.user,
            shm_size=self.host.docker.shm_size,
            privileged=self.host.docker.privileged,
            memory=self.host.docker.memory,
            mps_pipe=mps_pipe,
        )

    def _run_runner(self, transport: Transport, job: Job, remote_dir: str, log_path: Path) -> "RunnerOutcome":
        """Run the job's command to its end; StageFailure on timeouts, Cancelled when the run stops.

        The start timeout runs from launching the command to the runner's "start" event,
        the run timeout over the whole command; either way the container is removed.
        """
        outcome = RunnerOutcome(self.host.docker.memory if self.host.runtime == "docker" else None)
        with stage_errors("start"):
            name = containers.container_name(self.ctx.run_id, job.job_id)
            argv = self.job_command(job, remote_dir)
        start_deadline = time.monotonic() + self.timeouts.start
        late: List[bool] = []

        def stop() -> bool:
            if not outcome.started and time.monotonic() > start_deadline:
                late.append(True)
                return True
            return self.ctx.cancel.is_set()

        monitor = Monitor.start(
            transport, self.vendor, job.device, self.ctx.cluster.defaults.monitor_interval_s
        )
        outcome.monitor = monitor
        with log_path.open("wb", buffering=0) as handle:  # unbuffered: follow a live job with tail -f
            log = JobLog(handle, log_path)
            on_out = outcome.stdout_handler(log, lambda ev: self._on_event(job, ev, monitor))
            on_err = outcome.stderr_handler(log)
            try:
                if self.host.runtime == "docker":
                    outcome.returncode = containers.run_container(
                        transport, name, argv, on_out, on_err, self.timeouts.run, stop
                    )
                else:
                    outcome.returncode = transport.stream(
                        argv, on_out, on_err, timeout=self.timeouts.run, cancel=stop
                    )
            except CommandTimeout:
                raise StageFailure(
                    "run",
                    "runner exceeded the run timeout of %g s (timeouts.run); stopped" % self.timeouts.run,
                ) from None
            except Cancelled:
                if late:
                    raise StageFailure(
                        "start",
                        "runner did not start within %g s (timeouts.start); stopped" % self.timeouts.start,
                    ) from None
                raise
            except TransportError as exc:
                raise StageFailure(outcome.failed_stage(), one_line(str(exc))) from None
            finally:
                if monitor is not None:
                    monitor.stop()
        return outcome

    def _on_event(self, job: Job, event: Dict[str, Any], monitor: Optional[Monitor]) -> None:
        kind = event["ev"]
        stage = event.get("stage", "?")
        if kind == "stage":
            if monitor is not None and event.get("step") == "passes":
                monitor.mark(stage, "start")  # the timed passes of this stage begin
            self._say(job.device, stage=stage, note=event.get("step") or "")
        elif kind == "progress":
            rate = event.get("img_per_s")
            note = "%s/%s" % (event.get("images_done"), event.get("images_total"))
            self._say(job.device, stage=stage, note=note + (" %.0f img/s" % rate if rate else ""))
        elif kind == "metric":
            if monitor is not None:
                monitor.mark(stage, "end")  # the stage's figures are final: its passes ended
            rate = event.get("throughput_core_img_per_s")
            self._say(job.device, stage=stage, note="core %.1f img/s" % rate if rate else "")

    def _say(self, device: Optional[int], **fields: Any) -> None:
        self.ctx.progress(self.host.name, -1 if device is None else device, fields)

    def _host_log(self, name: str) -> Path:
        path = self.ctx.results_dir / ("host-" + self.host.name) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


class JobLog:
    """The job's runner.log on this machine. A write that fails (the results disk is full) ends the job
    FAILED_COLLECT naming the file: its output can no longer be kept."""

    def __init__(self, handle: BinaryIO, path: Path) -> None:
        self.handle = handle
        self.path = path

    def write(self, text: str) -> None:
        try:
            self.handle.write(text.encode("utf-8", "replace"))
        except OSError as exc:
            raise StageFailure(
                "collect", one_line("cannot keep the job's log: " + os_error(exc, self.path))
            ) from None


class RunnerOutcome:
    """What the runner process said: exit status, last error event, last stderr line."""

    def __init__(self, memory: Optional[str] = None) -> None:
        self.memory = memory  # the container's memory limit, to explain a SIGKILL
        self.returncode = -1
        self.started = False
        self.error: Optional[Dict[str, Any]] = None
        self.last_stderr = ""
        self.monitor: Optional[Monitor] = None
        self.mps: Optional[str] = None  # the MPS daemon the job joined (mps.py's note)

    def stdout_handler(self, log, on_event: Callable[[Dict[str, Any]], None]) -> Callable[[str], None]:
        def handle(line: str) -> None:
            log.write(line + "\n")
            event = parse_event(line)
            if event is None:
                return
            if event["ev"] == "start":
                self.started = True
            elif event["ev"] == "error":
                self.error = event
            on_event(event)

        return handle

    def stderr_handler(self, log) -> Callable[[str], None]:
        def handle(line: str) -> None:
            log.write("[stderr] " + line + "\n")
            if line.strip():
                self.last_stderr = line.strip()

        return handle

    def failed_stage(self) -> str:
        """'start' when the runner never began (docker or interpreter failed), else 'run'."""
        return "run" if self.started else "start"

    def reason(self, doc: Optional[Dict[str, Any]] = None) -> str:
        error = (doc or {}).get("error") or self.error
        if error:
            where = error.get("stage", "?")
            return one_line("%s: %s: %s" % (where, error.get("type", "error"), error.get("message", "")))
        return one_line(
            "%s: %s" % (exit_meaning(self.returncode, self.memory), self.last_stderr or "no output")
        )


def _finished_result(path: Path) -> Optional[Dict[str, Any]]:
    """The valid result with figures at ``path``, or None (missing, partial, a failed run's)."""
    try:
        doc = collect.validate(json.loads(path.read_text()))
    except (OSError, ValueError, collect.ResultInvalid):
        return None
    return doc if doc["status"] in collect.FIGURES_PRESENT else None


def _clear_earlier_attempt(job_dir: Path, log_path: Path) -> None:
    """Make ``job_dir``; keep an earlier attempt's log as runner.<n>.log and drop its result."""
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / RESULT_FILE).unlink(missing_ok=True)
    if log_path.exists():
        attempt = 1
        while log_path.with_name("%s.%d%s" % (log_path.stem, attempt, log_path.suffix)).exists():
            attempt += 1
        log_path.rename(log_path.with_name("%s.%d%s" % (log_path.stem, attempt, log_path.suffix)))
