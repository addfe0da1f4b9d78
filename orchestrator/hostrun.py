"""Everything that happens on one host: connect, capture facts, prepare the image, run jobs.

A job ends in a state and a one-line reason, never in an exception: OK, or
FAILED_<stage> for the stage that broke (connect, build, start, run, collect,
validate, accuracy), or CANCELLED. Other jobs and hosts carry on.
"""

import json
import posixpath
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from runner_in_container.protocol import RESULT_FILE, parse_event
from vendors.base import Vendor

from . import collect, containers, envinfo, images
from .config import Cluster, Host
from .monitor import Monitor
from .plan import Job
from .store import OK, Store
from .transport import make_transport
from .transport.base import Cancelled, CommandTimeout, Transport, TransportError

CONTAINER_RESULTS = "/results"
RUNNER_EXIT_ACCURACY = 3  # the runner's exit status for status "failed_accuracy" (docs/result_schema.md)
CONTAINER_CACHE = "/cache"

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


class HostWorker:
    """Runs the jobs of one host; one instance per host, shared by its device threads."""

    def __init__(self, ctx: RunContext, host: Host) -> None:
        self.ctx = ctx
        self.host = host
        self.vendor = ctx.vendors[host.vendor]
        self.timeouts = ctx.cluster.defaults.timeouts
        self.workdir = ctx.cluster.host_workdir(host)
        self.transport: Optional[Transport] = None
        self._device_transports: Dict[int, Transport] = {}
        self.env: Dict[str, Any] = {}
        self.image: Optional[str] = None
        self.runner_path: Optional[str] = None
        self.user: Optional[str] = host.docker.user
        self.build_s: Optional[float] = None  # image build (or runner install) on this host, once per run

    # -- host preparation -------------------------------------------------------
    def prepare(self) -> None:
        """Connect, capture the environment and prepare the image; raises StageFailure."""
        self._say(None, stage="connect")
        try:
            self.transport = self._connect()
            self.transport.run(["true"], timeout=self.timeouts.connect).check()
            if self.host.runtime == "docker" and self.user is None:
                uid = self.transport.run(["id", "-u"], timeout=self.timeouts.connect).check().stdout.strip()
                gid = self.transport.run(["id", "-g"], timeout=self.timeouts.connect).check().stdout.strip()
                self.user = "%s:%s" % (uid, gid)
        except TransportError as exc:
            raise StageFailure("connect", one_line(str(exc))) from None
        self._check_paths()
        self.env = envinfo.capture_host(self.transport, self.vendor, self.host.runtime, self.timeouts.connect)
        self.ctx.store.put_environment(self.ctx.run_id, self.host.name, self.env)
        self._say(None, stage="build")
        build_started = time.time()
        log = self._host_log("build.log")
        try:
            if self.host.runtime == "docker":
                spec = images.image_spec(
                    self.vendor,
                    self._image_overrides(),
                    Path(self.host.image.sdk_dir) if self.host.image.sdk_dir else None,
                    self.host.image.sdk_checksums,
                )
                with log.open("a") as handle:
                    built = images.ensure_image(
                        self.transport, spec, self.timeouts.build, lambda line: handle.write(line + "\n")
                    )
                self.image = spec.tag
                self._say(None, stage="image", note=("built " if built else "cached ") + spec.tag)
            else:
                self.runner_path = images.install_runner(
                    self.transport, posixpath.join(self.workdir, "runner")
                )
        except (TransportError, images.ImageError) as exc:
            raise StageFailure("build", one_line(str(exc))) from None
        self.build_s = time.time() - build_started

    def _check_paths(self) -> None:
        """Data, labels and weights must exist on the host before anything is built or started."""
        assert self.transport is not None
        paths = [("data.path", self.host.data.path), ("data.labels", self.host.data.labels)]
        if self.host.weights not in ("random", "package"):
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
        return make_transport(
            self.host.name,
            self.host.address,
            port=self.host.port,
            user=self.host.user,
            key_file=self.host.key_file,
            known_hosts=self.host.known_hosts,
            strict_host_keys=self.host.strict_host_keys,
            connect_timeout=self.timeouts.connect,
        )

    def transport_for(self, device: int) -> Transport:
        """One connection per device: an SSH server caps the sessions of one connection (MaxSessions)."""
        if device not in self._device_transports:
            self._device_transports[device] = self._connect()
        return self._device_transports[device]

    def _image_overrides(self) -> Dict[str, str]:
        overrides = {}
        if self.host.image.base_image:
            overrides["base_image"] = self.host.image.base_image
        if self.host.image.pip_index_url:
            overrides["pip_index_url"] = self.host.image.pip_index_url
        return overrides

    def close(self) -> None:
        for transport in [self.transport] + list(self._device_transports.values()):
            if transport is not None:
                transport.close()

    # -- jobs -------------------------------------------------------------------
    def run_job(self, job: Job) -> str:
        """Run one job to a stored final state; returns the state."""
        store, run_id = self.ctx.store, self.ctx.run_id
        store.start_job(run_id, job.job_id)
        job_dir = self.ctx.results_dir / job.job_id
        job_dir.mkdir(parents=True, exist_ok=True)
        log_path = job_dir / "runner.log"
        timings: Dict[str, float] = {} if self.build_s is None else {"build_s": self.build_s}
        start = time.time()
        try:
            doc = self._run_stages(job, job_dir, log_path, timings)
            state, reason = OK, None
            failure = collect.accuracy_failure(doc)
            if failure:
                state, reason = "FAILED_ACCURACY", failure
        except StageFailure as exc:
            state, reason = "FAILED_" + exc.stage.upper(), str(exc)
        except Cancelled:
            state, reason = "CANCELLED", "run interrupted"
        timings["job_s"] = time.time() - start
        store.finish_job(run_id, job.job_id, state, reason, str(log_path), timings)
        self._say(job.device, stage=state, note=reason or "")
        return state

    def _run_stages(
        self, job: Job, job_dir: Path, log_path: Path, timings: Dict[str, float]
    ) -> Dict[str, Any]:
        transport = self.transport_for(job.device)
        remote_dir = posixpath.join(self.workdir, "runs", self.ctx.run_id, job.job_id)
        try:
            transport.run(["mkdir", "-p", remote_dir], timeout=self.timeouts.connect).check()
        except TransportError as exc:
            raise StageFailure("start", one_line("cannot create %s: %s" % (remote_dir, exc))) from None
        self._say(job.device, stage="start", job=job.job_id, note="")
        t0 = time.time()
        outcome = self._run_runner(transport, job, remote_dir, log_path)
        timings["runner_s"] = time.time() - t0
        t0 = time.time()
        local_result = job_dir / RESULT_FILE
        try:
            transport.get(posixpath.join(remote_dir, RESULT_FILE), local_result)
        except TransportError as exc:
            if outcome.returncode != 0:
                raise StageFailure(outcome.failed_stage(), outcome.reason()) from None
            raise StageFailure("collect", one_line("result.json not fetched: %s" % exc)) from None
        timings["collect_s"] = time.time() - t0
        try:
            doc = collect.validate(json.loads(local_result.read_text()))
        except (ValueError, collect.ResultInvalid) as exc:
            raise StageFailure("validate", one_line(str(exc))) from None
        if doc["status"] not in collect.FIGURES_PRESENT or outcome.returncode not in (
            0,
            RUNNER_EXIT_ACCURACY,
        ):
            raise StageFailure(outcome.failed_stage(), outcome.reason(doc))
        model = envinfo.accelerator_models(self.env, [job.device]).get(job.device)
        derived = collect.derive(doc, self.vendor, model)
        derived["samples_source"] = outcome.monitor.source if outcome.monitor else None
        self.ctx.store.put_result(self.ctx.run_id, job.job_id, doc, derived)
        if outcome.monitor is not None:
            summary = outcome.monitor.summary(infer_images=doc["stages"]["infer"]["images"])
            self.ctx.store.put_samples(self.ctx.run_id, job.job_id, summary)
        self._say(job.device, note="infer %.0f img/s" % derived["p_infer_core"])
        return doc

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

        Shared by every launcher (direct fan-out here, Slurm's batch step).
        """
        cache_dir = posixpath.join(self.workdir, "cache", self.vendor.name)
        spec = self.host.data
        if self.host.runtime != "docker":
            assert self.runner_path is not None
            command = self._runner_argv(job, remote_dir, spec.path, spec.labels, self.host.weights, cache_dir)
            env = {"PYTHONPATH": self.runner_path}
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
        if weights not in ("random", "package"):
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
        )

    def _run_runner(self, transport: Transport, job: Job, remote_dir: str, log_path: Path) -> "RunnerOutcome":
        outcome = RunnerOutcome()
        cache_dir = posixpath.join(self.workdir, "cache", self.vendor.name)
        transport.run(["mkdir", "-p", cache_dir], timeout=self.timeouts.connect)
        name = containers.container_name(self.ctx.run_id, job.job_id)
        argv = self.job_command(job, remote_dir)
        monitor = Monitor.start(
            transport, self.vendor, job.device, self.ctx.cluster.defaults.monitor_interval_s
        )
        outcome.monitor = monitor
        with log_path.open("w", buffering=1) as log:  # line-buffered: follow a live job with tail -f
            on_out = outcome.stdout_handler(log, lambda ev: self._on_event(job, ev, monitor))
            on_err = outcome.stderr_handler(log)
            try:
                if self.host.runtime == "docker":
                    outcome.returncode = containers.run_container(
                        transport, name, argv, on_out, on_err, self.timeouts.run, self.ctx.cancel.is_set
                    )
                else:
                    outcome.returncode = transport.stream(
                        argv, on_out, on_err, timeout=self.timeouts.run, cancel=self.ctx.cancel.is_set
                    )
            except CommandTimeout:
                raise StageFailure(
                    "run", "runner exceeded the run timeout of %.0f s" % self.timeouts.run
                ) from None
            except Cancelled:
                raise
            except TransportError as exc:
                raise StageFailure("start", one_line(str(exc))) from None
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


class RunnerOutcome:
    """What the runner process said: exit status, last error event, last stderr line."""

    def __init__(self) -> None:
        self.returncode = -1
        self.started = False
        self.error: Optional[Dict[str, Any]] = None
        self.last_stderr = ""
        self.monitor: Optional[Monitor] = None

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
        return one_line("exit status %d: %s" % (self.returncode, self.last_stderr or "no output"))
