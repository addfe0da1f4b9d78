"""The cluster file (``host_configs/*.yaml``): pydantic models and the only YAML reader.

Every string that later reaches a command line is validated here: names are
restricted to a safe alphabet, paths may not carry newlines or NUL bytes, and
remote paths must be absolute and free of ``..``. Values are then passed as argv
elements, never through a shell.
"""

import math
import re
from collections import Counter
from typing import Any, Dict, List, Literal, Optional, TypeVar, Union

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from typing_extensions import Annotated  # typing's from Python 3.9

from orchestrator.model.fields import (
    Model,
    Problem,
    Problems,
    WithSections,
    mount_path,
    runner_option,
    safe_name,
    safe_text,
    unknown,
)
from orchestrator.model.options import measured
from runner_in_container.contract import (
    DECODERS,
    LAYOUTS,
    MLPERF_MODES,
    MPS_DEFAULT_PIPE_DIRECTORY,
    OPTION,
    PEAK_PRECISIONS,
    STAGE_CHOICES,
    scenario_settings,
)
from runner_in_container.protocol import PASS_STAGES
from runner_in_container.schema import MAX_FLOPS_PER_S

#: the most jobs one cluster file may make
MAX_JOBS = 10000
#: the most items of any list (hosts, cases, devices, a case's toolkits, precisions, batch sizes)
MAX_ITEMS = 1000
#: the longest any stage may be given (a week): longer is a typo, and past what a clock can add (1e12)
MAX_TIMEOUT_S = 7 * 24 * 3600.0

#: fresh runner processes per job by default (metrics.md "Spread": K runs give a 95% interval over runs;
#: 3 is the fewest that give one a lab can use) and at most (a Student t interval narrows little beyond)
DEFAULT_RUNS = 3
MAX_RUNS = 30

#: what a busy host does to a job (host/conditions.py): warn marks its figures, error fails it
Isolation = Literal["warn", "error"]

#: seconds a stage may take
Seconds = Annotated[float, Field(gt=0, le=MAX_TIMEOUT_S)]


_T = TypeVar("_T")
#: a list of 1 to MAX_ITEMS items: ``Items[int]``
Items = Annotated[List[_T], Field(min_length=1, max_length=MAX_ITEMS)]


def sha256(value: Optional[str]) -> Optional[str]:
    """A sha256 as the runner takes it (--weights-sha256), lowercased as it compares it."""
    return None if value is None else OPTION["weights_sha256"].check(value)


class Timeouts(Model):
    """Seconds each stage of a job may take before it is stopped (at most MAX_TIMEOUT_S)."""

    connect: Seconds = 20
    build: Seconds = 3600
    start: Seconds = 300
    run: Seconds = 7200
    collect: Seconds = 300


class DataSpec(Model):
    """Where the ImageNet val set lies on the host."""

    path: str
    # a Literal of the contract's tuple: pydantic reads it, mypy takes it as Any
    layout: Literal[LAYOUTS] = OPTION["layout"].default  # type: ignore[valid-type]
    labels: Optional[str] = None
    md5: Optional[str] = None
    max_images: Optional[int] = None

    _md5 = field_validator("md5")(runner_option("data_md5"))
    _max_images = field_validator("max_images")(runner_option("max_images"))

    _paths = field_validator("path", "labels")(mount_path)


class ImageSpecConfig(Model):
    """Inputs of the vendor image build on this host."""

    #: the vendor's image stack (Vendor.stacks; unset: its first)
    stack: Optional[str] = Field(None, pattern=r"^[a-z0-9][a-z0-9._-]{0,39}$")
    base_image: Optional[str] = Field(None, pattern=r"^[a-z0-9][a-z0-9._/:@-]{0,200}$")
    #: package -> version (a prefix) of the packages the stack pins (ImageStack.pins), over its own
    pins: Dict[str, Annotated[str, Field(pattern=r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$")]] = Field(
        default_factory=dict
    )
    pip_index_url: Optional[str] = Field(None, pattern=r"^https?://[^\s'\"`$;\\]+$")
    sdk_dir: Optional[str] = None
    sdk_checksums: Dict[str, str] = Field(default_factory=dict)
    #: a lab registry, host:port[/prefix]: pull by content-hash tag before building, push after (registry.py)
    registry: Optional[str] = Field(
        None, pattern=r"^[a-z0-9][a-z0-9.-]{0,252}(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*){0,8}$"
    )

    _text = field_validator("sdk_dir")(safe_text)

    @field_validator("pip_index_url")
    @classmethod
    def _no_credentials(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and "@" in value.split("://", 1)[1].split("/", 1)[0]:
            raise ValueError(
                "must not carry credentials (user:password@): the URL ends up in the image, build logs and "
                "stored results; serve the index without them on the lab network or put wheels in sdk_dir"
            )
        return value

    @field_validator("sdk_checksums")
    @classmethod
    def _checksums(cls, value: Dict[str, str]) -> Dict[str, str]:
        for name, digest in value.items():
            if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$", name):
                raise ValueError("SDK file name %r: letters, digits, '.', '_', '+', '-' only" % name)
            if not re.match(r"^[0-9a-f]{64}$", digest):
                raise ValueError("sha256 of %s must be 64 lowercase hex digits" % name)
        return value


class DockerOptions(Model):
    """How the job container is started. It runs as the host's login user (SSH or local), who owns the job
    folder it writes its results to: there is no other user that could write there (``user`` is refused)."""

    shm_size: str = Field("8g", pattern=r"^[0-9]+[bkmg]?$")
    privileged: bool = False
    memory: Optional[str] = Field(None, pattern=r"^[0-9]+[bkmg]?$")  # docker --memory (and --memory-swap)
    #: how the container reaches the GPUs: toolkit, the vendor's own way (NVIDIA: --gpus, through the NVIDIA
    #: Container Toolkit); nodes, their device nodes and the host's driver folder (vendors with driver_mount)
    gpu_access: Literal["toolkit", "nodes"] = "toolkit"
    #: nodes: the host's driver folder (lib64/, bin/), mounted read-only; unset: the vendor's driver_mount
    driver_dir: Optional[str] = None

    _driver_dir = field_validator("driver_dir")(mount_path)

    @model_validator(mode="before")
    @classmethod
    def _no_user(cls, value: Any) -> Any:
        if not isinstance(value, dict) or "user" not in value:
            return value
        if value["user"] is not None:
            raise ValueError(
                "user: the container runs as the host's login user, who owns the job folder; another user "
                "could not write its results there: remove docker.user (log in as that user instead)"
            )
        return {key: item for key, item in value.items() if key != "user"}  # null: stored by earlier versions


SSH_USER = r"^[a-z_][a-z0-9_.-]{0,31}$"


ADDRESS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.:_-]{0,253}$")


def ssh_address(value: str) -> str:
    """A host name or IP address (what ``ssh`` and ~/.ssh/config take)."""
    if not ADDRESS_RE.match(value):
        raise ValueError("must be a host name / IP address")
    return value


class JumpHost(Model):
    """A jump host on the way to a host (``hosts[].jump``, first to last); unset fields: ~/.ssh/config."""

    address: str
    port: Optional[int] = Field(None, ge=1, le=65535)
    user: Optional[str] = Field(None, pattern=SSH_USER)
    key_file: Optional[str] = None

    _address = field_validator("address")(ssh_address)
    _text = field_validator("key_file")(safe_text)


class HostPeak(Model):
    """A device's dense peak at one precision, as the lab states it (``hosts[].peaks``), with its source."""

    flops: float = Field(gt=0, le=MAX_FLOPS_PER_S)  # FLOP/s (OP/s for int8), dense, no sparsity
    source: str = Field(min_length=1, max_length=500)

    _text = field_validator("source")(safe_text)

    @field_validator("flops", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        """YAML reads 1.28e14 (no dot before the e, no sign after it) as text: take it as the number."""
        return float(value) if isinstance(value, str) and re.match(r"^[0-9.]+[eE][0-9]+$", value) else value


class Host(WithSections):
    """One machine: how to reach it and what runs there; its launcher's own section (``slurm:``) beside."""

    name: str
    #: always said, never assumed
    address: str = Field(description="local (this machine), or a host name or IP address reached over SSH")
    port: Optional[int] = Field(None, ge=1, le=65535)  # None: ~/.ssh/config or 22
    user: Optional[str] = Field(None, pattern=SSH_USER)
    key_file: Optional[str] = None
    known_hosts: Optional[str] = None
    strict_host_keys: bool = True
    #: jump hosts on the way (over ~/.ssh/config's ProxyJump/ProxyCommand), host keys checked like this one's
    jump: List[JumpHost] = Field(default_factory=list, max_length=8)
    vendor: str
    devices: Items[int] = Field(default_factory=lambda: [0])
    runtime: Literal["docker", "bare"] = "docker"
    python: str = Field("python3", pattern=r"^[A-Za-z0-9_./+-]+$")  # bare runtime: a name on PATH or a path
    workdir: Optional[str] = None
    data: DataSpec
    weights: str
    #: the sha256 of a weights file other than its case's reference weights (contract.weights_refusal)
    weights_sha256: Optional[str] = None
    #: a vendor's own ONNX graph / engine file on this host, run instead of one exported / built in the run
    onnx_path: Optional[str] = None
    engine_path: Optional[str] = None
    #: runner --workers (8 here, where the runner alone would take min(4, CPUs))
    workers: int = 8
    #: runner --decode-processes: processes decoding with nvJPEG (0: the runner's default, by CPUs and MPS)
    decode_processes: int = OPTION["decode_processes"].default
    #: CUDA MPS on NVIDIA hosts (host/mps.py): true, the host runs its own daemon and jobs join it;
    #: false, none; auto, the host's own daemon when there, else one of each job's own where the GPU allows
    mps: Union[bool, Literal["auto"]] = "auto"
    #: the daemon's CUDA_MPS_PIPE_DIRECTORY on the host (absolute, on a local host too)
    mps_pipe_directory: str = MPS_DEFAULT_PIPE_DIRECTORY
    #: the devices' dense peaks by precision, for MFU where the vendor's table has none (or in its place)
    # a Literal of the contract's tuple: pydantic reads it, mypy takes it as Any
    peaks: Dict[Literal[PEAK_PRECISIONS], HostPeak] = Field(default_factory=dict)  # type: ignore[valid-type]
    image: ImageSpecConfig = Field(default_factory=ImageSpecConfig)
    docker: DockerOptions = Field(default_factory=DockerOptions)
    #: defaults.isolation and defaults.clear_caches, where this host differs
    isolation: Optional[Isolation] = None
    clear_caches: Optional[bool] = None
    #: this host's stage timeouts where they differ from defaults.timeouts (e.g. a slow build)
    timeouts: Dict[Literal["connect", "build", "start", "run", "collect"], Seconds] = Field(
        default_factory=dict
    )

    _name = field_validator("name", "vendor")(safe_name)
    _workers = field_validator("workers")(runner_option("workers"))
    _weights_sha256 = field_validator("weights_sha256")(sha256)
    _decode_processes = field_validator("decode_processes")(runner_option("decode_processes"))
    _text = field_validator("key_file", "known_hosts")(safe_text)
    _paths = field_validator("weights", "workdir", "mps_pipe_directory", "onnx_path", "engine_path")(
        mount_path
    )

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if value != "local" and not ADDRESS_RE.match(value):
            raise ValueError("must be 'local' or a host name / IP address")
        return value

    @field_validator("jump")
    @classmethod
    def _jump_needs_ssh(cls, value: List[JumpHost], info: ValidationInfo) -> List[JumpHost]:
        if value and info.data.get("address") == "local":
            raise ValueError("jump hosts need an SSH address (address is local)")
        return value

    @field_validator("python")
    @classmethod
    def _python(cls, value: str) -> str:
        if value.startswith("-") or ("/" in value and not value.startswith("/")):
            raise ValueError("must be a program name or an absolute path")
        if any(part in (".", "..") for part in value.split("/")):
            raise ValueError("must not contain '.' or '..' path parts")
        return value

    @field_validator("devices")
    @classmethod
    def _devices(cls, value: List[int]) -> List[int]:
        if len(set(value)) != len(value) or min(value) < 0:
            raise ValueError("device indices must be distinct and >= 0")
        return value

    @property
    def is_local(self) -> bool:
        return self.address == "local"


class Case(Model):
    """One case entry; list values expand into a matrix of jobs."""

    case: str = "resnet50"
    toolkit: Union[str, Items[str]] = OPTION["toolkit"].default
    precision: Union[str, Items[str]] = OPTION["precision"].default
    batch_size: Union[int, Items[int]] = OPTION["batch_size"].default
    repeat: int = OPTION["repeat"].default
    #: fresh runner processes of each job, results kept apart: their mean, 95% interval and CV per figure
    runs: int = DEFAULT_RUNS
    #: runner --warmup (5 here, where the runner alone would take 10)
    warmup: int = 5
    hosts: Optional[Items[str]] = None  # restrict to these host names
    toolkit_options: Dict[str, str] = Field(default_factory=dict)  # --toolkit-option KEY=VALUE
    #: runner --decoder: auto (nvJPEG on a CUDA device where torchvision decodes there, else PIL), nvjpeg, pil
    # a Literal of the contract's tuple: pydantic reads it, mypy takes it as Any
    decoder: Literal[DECODERS] = OPTION["decoder"].default  # type: ignore[valid-type]
    #: runner --scenario: flagperf, or an MLPerf scenario LoadGen runs (offline, server, singlestream,
    #: multistream); a list expands like toolkit
    scenario: Union[str, Items[str]] = OPTION["scenario"].default
    #: runner --mlperf and the LoadGen settings beside it (contract.OPTIONS)
    mlperf: Literal[MLPERF_MODES] = OPTION["mlperf"].default  # type: ignore[valid-type]
    mlperf_duration_s: Optional[float] = None
    server_target_qps: Optional[float] = None
    server_latency_ms: Optional[float] = None
    #: the hosts' weights_sha256, onnx_path and engine_path for this case's jobs (the hosts' own where unset)
    weights_sha256: Optional[str] = None
    onnx_path: Optional[str] = None
    engine_path: Optional[str] = None
    #: the runner's stages: both, or infer alone (no val stage: its figures absent, shown as not run)
    # a Literal of the contract's tuple: pydantic reads it, mypy takes it as Any
    stages: Items[Literal[PASS_STAGES]] = Field(default_factory=lambda: list(PASS_STAGES))  # type: ignore[valid-type]

    _name = field_validator("case")(safe_name)
    _paths = field_validator("onnx_path", "engine_path")(mount_path)

    @field_validator("stages")
    @classmethod
    def _stages(cls, value: List[str]) -> List[str]:
        if ",".join(value) not in STAGE_CHOICES:
            raise ValueError("must be [val, infer] or [infer] (the infer stage is the measurement)")
        return value

    def stages_option(self) -> Optional[str]:
        """The runner's --stages for this entry's jobs; None for both stages (its default)."""
        text = ",".join(self.stages)
        return None if text == OPTION["stages"].default else text

    _weights_sha256 = field_validator("weights_sha256")(sha256)
    _toolkits = field_validator("toolkit")(runner_option("toolkit"))
    _precisions = field_validator("precision")(runner_option("precision"))
    _batch_sizes = field_validator("batch_size")(runner_option("batch_size"))
    _repeat = field_validator("repeat")(runner_option("repeat"))
    _warmup = field_validator("warmup")(runner_option("warmup"))
    _scenarios = field_validator("scenario")(runner_option("scenario"))
    _mlperf_duration_s = field_validator("mlperf_duration_s")(runner_option("mlperf_duration_s"))
    _server_target_qps = field_validator("server_target_qps")(runner_option("server_target_qps"))
    _server_latency_ms = field_validator("server_latency_ms")(runner_option("server_latency_ms"))

    @field_validator("runs")
    @classmethod
    def _runs(cls, value: int) -> int:
        if not 1 <= value <= MAX_RUNS:
            raise ValueError("%d: give 1 to %d runs (1: no interval over runs)" % (value, MAX_RUNS))
        return value

    @field_validator("toolkit_options")
    @classmethod
    def _options(cls, value: Dict[str, str]) -> Dict[str, str]:
        for key, item in value.items():
            if not re.match(r"^[a-z][a-z0-9_]{0,63}$", key):
                raise ValueError("option name %r: lowercase letters, digits and '_'" % key)
            if not re.match(r"^[A-Za-z0-9._:+-]{0,200}$", str(item)):
                raise ValueError("option %s: value %r has characters outside [A-Za-z0-9._:+-]" % (key, item))
        return value

    @field_validator("toolkit", "precision", "batch_size", "scenario")
    @classmethod
    def _distinct(cls, value: Any, info: ValidationInfo) -> Any:
        items = value if isinstance(value, list) else [value]
        twice = [item for item, count in Counter(items).items() if count > 1]
        if twice:
            raise ValueError("%r is listed twice in %s" % (twice[0], info.field_name))
        return value

    def own_or_host(self, name: str, host: Host) -> Any:
        """This entry's field ``name`` for its jobs on ``host``: its own value, else the host's."""
        value = getattr(self, name)
        return getattr(host, name) if value is None else value

    def jobs_per_device(self) -> int:
        """How many jobs this entry makes on each device of each of its hosts (without making them): one per
        combination and run."""
        lists = (self.toolkit, self.precision, self.batch_size, self.scenario)
        return self.runs * math.prod(len(v) if isinstance(v, list) else 1 for v in lists)

    def settings_for(self, scenario: str) -> Dict[str, Any]:
        """This entry's LoadGen settings that a job of ``scenario`` reads (contract.scenario_settings)."""
        return {name: getattr(self, name) for name in scenario_settings(scenario)}

    def matrix(self) -> List[Dict[str, Any]]:
        """The (toolkit, precision, batch_size, scenario) combinations this entry stands for."""

        def as_list(value: Any) -> List[Any]:
            return value if isinstance(value, list) else [value]

        return [
            {"toolkit": t, "precision": p, "batch_size": b, "scenario": s}
            for t in as_list(self.toolkit)
            for p in as_list(self.precision)
            for b in as_list(self.batch_size)
            for s in as_list(self.scenario)
        ]


class Defaults(Model):
    """Values every host shares unless it says otherwise."""

    #: unset: the run user's own state folder on each host (orchestrator/host/workdir.py), never a shared /tmp
    workdir: Optional[str] = None
    timeouts: Timeouts = Field(default_factory=Timeouts)
    monitor_interval_s: Seconds = 1.0
    #: air-gapped lab: no build, no pull, no pip; images come from a bundle (python -m orchestrator bundle)
    offline: bool = False
    #: a job whose host or device is busy just before or after it (host/conditions.py): warn marks its
    #: figures with the reason, error fails it (FAILED_ISOLATION)
    isolation: Isolation = "warn"
    #: drop the host's page cache before each job (sync; 3 > /proc/sys/vm/drop_caches: root only)
    clear_caches: bool = False

    _paths = field_validator("workdir")(mount_path)


class Cluster(WithSections):
    """The whole cluster file; the launcher's own section (``slurm:``) beside its fields."""

    store: str = "results/rn50bench.sqlite"
    results_dir: str = "results"
    defaults: Defaults = Field(default_factory=Defaults)
    hosts: Items[Host]
    cases: Items[Case]
    #: a module of orchestrator/launchers: ssh (the orchestrator starts every job itself, on local or SSH
    #: hosts), slurm (it submits them with sbatch)
    launcher: str = "ssh"

    _launcher = field_validator("launcher")(safe_name)

    @model_validator(mode="after")
    def _names_and_jobs(self) -> "Cluster":
        """Host names unique, the hosts a case names known, the jobs few and each made once: Problems."""
        problems: List[Problem] = []
        first: Dict[str, int] = {}
        for index, host in enumerate(self.hosts):
            if first.setdefault(host.name, index) != index:
                taken = "name %r is taken by hosts[%d]; names must be unique" % (host.name, first[host.name])
                problems.append(Problem(("hosts", index, "name"), taken))
        for index, case in enumerate(self.cases):
            for item, name in enumerate(case.hosts or []):
                if name not in first:
                    problems.append(Problem(("cases", index, "hosts", item), unknown("host", name, first)))
        problems += self._job_problems()
        if problems:
            raise Problems(problems)
        return self

    def _job_problems(self) -> List[Problem]:
        """At most MAX_JOBS jobs (before vendors skip some): a few lines of lists must not make millions;
        and no two case entries make the same job (the same measured options too: ``options.measured``)."""
        total = 0
        for index, case in enumerate(self.cases):
            devices = sum(len(h.devices) for h in self.hosts if case.hosts is None or h.name in case.hosts)
            total += case.jobs_per_device() * devices
            if total > MAX_JOBS:
                return [Problem(
                    ("cases", index),
                    "the cases make more than %d jobs (lists multiply: toolkit x precision x batch_size x "
                    "scenario x runs x devices); split the file into several runs" % MAX_JOBS,
                )]  # fmt: skip
        made: Dict[tuple, int] = {}
        for index, case in enumerate(self.cases):
            for host in self.hosts:
                if case.hosts is not None and host.name not in case.hosts:
                    continue
                for combo in case.matrix():
                    key = (host.name, case.case, combo["toolkit"], combo["precision"], combo["batch_size"])
                    options = measured(combo["toolkit"], case.toolkit_options.items())
                    first = made.setdefault(key + (case.decoder, combo["scenario"], options), index)
                    if first != index:
                        return [Problem(
                            ("cases", index),
                            "makes the job of cases[%d] again (host %s, %s %s %s batch size %d)"
                            % ((first,) + key),
                        )]  # fmt: skip
        return []

    def host_cases(self, host: Host) -> List[Case]:
        """The case entries that run on ``host``."""
        return [case for case in self.cases if case.hosts is None or host.name in case.hosts]

    def host_workdir(self, host: Host) -> Optional[str]:
        """The workdir the file sets for ``host``; None: the default, found on the host (workdir.py)."""
        return host.workdir or self.defaults.workdir

    def shared_machines(self) -> List[str]:
        """One warning line for each group of host entries that are one machine, as the file tells without
        connecting (the same address; every ``local`` entry is this machine): their jobs run at once and
        share its CPUs, memory and page cache."""
        by_address: Dict[str, List[str]] = {}
        for host in self.hosts:
            by_address.setdefault(host.address, []).append(host.name)
        return [
            "warning: hosts %s are one machine (address %s): their jobs run at the same time and share it"
            % (", ".join(names), address)
            for address, names in by_address.items()
            if len(names) > 1
        ]

    def host_isolation(self, host: Host) -> str:
        """The isolation policy of ``host``: its own, else defaults.isolation."""
        return host.isolation or self.defaults.isolation

    def host_clear_caches(self, host: Host) -> bool:
        """Whether ``host``'s page cache is dropped before each job: its own setting, else the default."""
        return self.defaults.clear_caches if host.clear_caches is None else host.clear_caches

    def host_timeouts(self, host: Host) -> Timeouts:
        """defaults.timeouts with the host's own overrides applied."""
        return self.defaults.timeouts.model_copy(update=dict(host.timeouts.items()))
