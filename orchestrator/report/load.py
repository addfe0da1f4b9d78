"""A stored run read once from the store, with each job's stored result, derived figures and samples.

Every stored cell is read through the same checks as a fetched result (``store.read_cell``: within bounds;
``collect.read`` and ``collect.read_derived``: typed, within physical bounds; ``StoredSpec``: the job's
spec), so a store edited by hand or by another program shows its job as unreadable, in one line, and every
report goes on.
"""

import math
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Dict, List, Optional, Tuple, TypeGuard

from orchestrator.host import conditions as jobconditions
from orchestrator.job import collect
from orchestrator.metrics.derived import Derived
from orchestrator.model import options
from orchestrator.store import Store
from runner_in_container import schema


class ReportError(Exception):
    """A report cannot be made as asked; the message is one line naming the run, file or field."""


@dataclass(frozen=True)
class StoredSpec:
    """A job's stored spec (``plan.Job.as_dict``), as the reports read it."""

    job_id: str = schema.text()
    host: str = schema.text()
    device: int = schema.counted()
    case: str = schema.text()
    toolkit: str = schema.text()
    precision: str = schema.text()
    batch_size: int = schema.counted(low=1)
    repeat: int = schema.counted(low=1)
    warmup: int = schema.counted()
    toolkit_options: List[List[str]] = schema.items()
    decoder: str = schema.text()
    scenario: Optional[str] = schema.text(present="optional")  # the LoadGen settings: plan.Job
    mlperf: Optional[str] = schema.text(present="optional")
    mlperf_duration_s: Optional[float] = schema.seconds(present="optional")
    server_target_qps: Optional[float] = schema.qps(present="optional")
    server_latency_ms: Optional[float] = schema.seconds(present="optional")  # ms, under the same ceiling
    weights_sha256: Optional[str] = schema.text(present="optional")
    onnx_path: Optional[str] = schema.text(present="optional")
    engine_path: Optional[str] = schema.text(present="optional")
    stages: Optional[str] = schema.text(present="optional")
    #: which of its series' runs the job is, and the series (absent: one run, stored before runs)
    run: Optional[int] = schema.counted(low=1, present="optional")
    runs: Optional[int] = schema.counted(low=1, present="optional")
    series: Optional[str] = schema.text(present="optional")


@dataclass(frozen=True)
class StoredTimings:
    """A job's stored timings (lifecycle: the image build, the runner, the collection, the whole job)."""

    build_s: Optional[float] = schema.seconds(present="optional")
    runner_s: Optional[float] = schema.seconds(present="optional")
    collect_s: Optional[float] = schema.seconds(present="optional")
    job_s: Optional[float] = schema.seconds(present="optional")


@dataclass(frozen=True)
class Accelerator:
    """One device of a host's captured environment (``envinfo``); a vendor's own fields pass unread."""

    EXTRA_KEYS: ClassVar[bool] = True

    index: int = schema.counted()
    model: Optional[str] = schema.text()
    memory_total_mib: Optional[float] = schema.gib()  # MiB, under the same ceiling (1e6)
    driver: Optional[str] = schema.text()


@dataclass(frozen=True)
class HostEnvironment:
    """The fields of a host's captured environment (``envinfo.capture_host``, the image's origin) that
    the reports show; other keys (a launcher's) pass unread."""

    EXTRA_KEYS: ClassVar[bool] = True

    hostname: Optional[str] = schema.text(present="optional")
    os: Optional[str] = schema.text(present="optional")
    kernel: Optional[str] = schema.text(present="optional")
    arch: Optional[str] = schema.text(present="optional")
    cpu_model: Optional[str] = schema.text(present="optional")
    cpu_count: Optional[int] = schema.counted(present="optional")
    memory_gib: Optional[float] = schema.gib(present="optional")
    runtime: Optional[str] = schema.text(present="optional")
    docker: Optional[str] = schema.text(present="optional")
    vendor: Optional[str] = schema.text(present="optional")
    accelerators: Optional[List[Accelerator]] = schema.items(present="optional")
    driver: Optional[str] = schema.text(present="optional")
    image: Optional[str] = schema.text(present="optional")
    bundle: Optional[str] = schema.text(present="optional")


@dataclass
class JobData:
    """One job: its store row, and its result document, derived figures and monitor summaries when stored;
    ``unreadable``: why a stored cell of it cannot be read (it then shows no spec, result or figures)."""

    job: Dict[str, Any]
    result: Optional[Dict[str, Any]]
    derived: Optional[Derived]
    samples: Optional[Dict[str, Any]]
    unreadable: Optional[str] = None
    #: the host monitor's summary (None: not stored, as in runs before the host monitor)
    host_samples: Optional[Dict[str, Any]] = None
    #: the conditions it ran under; None where none were checked or their cell is unreadable
    conditions: Optional[jobconditions.Conditions] = None

    @property
    def job_id(self) -> str:
        return self.job["job_id"]

    @property
    def ok(self) -> bool:
        """A result with figures is stored (the runner finished both stages)."""
        return self.result is not None and self.derived is not None

    def seconds(self) -> Optional[float]:
        """How long the job ran: its stored job time, else (cancelled, interrupted: no timings) its start to
        its end; None where it never started or never ended."""
        timings = self.job.get("timings") or {}
        if timings.get("job_s") is not None:
            return float(timings["job_s"])  # read typed (StoredTimings)
        started, finished = self.job.get("started_at"), self.job.get("finished_at")
        if not (finite(started) and finite(finished)):
            return None  # never started or ended, or a column edited to another type
        return max(0.0, float(finished) - float(started))

    def options(self) -> options.Options:
        """The toolkit options the job was measured with (``options.measured``); none where its spec is
        unreadable."""
        spec = self.job["spec"]
        return () if spec is None else options.measured(spec["toolkit"], spec["toolkit_options"])

    def toolkit(self) -> str:
        """The job's toolkit with the options it was measured with (``options.labelled``): how every report
        names it; "?" where its spec is unreadable."""
        spec = self.job["spec"]
        return "?" if spec is None else options.labelled(spec["toolkit"], self.options())

    def label(self) -> str:
        """host (vendor) device toolkit precision bs: how plots and timelines name the job."""
        spec = self.job["spec"]
        if spec is None:
            return "%s (%s) %s" % (self.job["host"], self.job["vendor"], self.job_id)
        return "%s (%s) d%s %s %s bs%s" % (
            self.job["host"],
            self.job["vendor"],
            spec["device"],
            self.toolkit(),
            spec["precision"],
            spec["batch_size"],
        )


@dataclass
class RunData:
    """Everything stored about one run."""

    store: Store
    run_id: str
    run: Dict[str, Any]
    jobs: List[JobData]
    environments: Dict[str, Dict[str, Any]]

    def ok_jobs(self) -> List[JobData]:
        return [j for j in self.jobs if j.ok]


def load_run(store: Store, run_id: str) -> RunData:
    """The run ``run_id``; ReportError when the store does not hold it."""
    run = store.run(run_id)
    if run is None:
        raise ReportError("run %s: not in %s (see 'ls')" % (run_id, store.path))
    results = store.results(run_id)
    samples = store.samples(run_id)
    host_samples = store.host_samples(run_id)
    conditions = store.conditions(run_id)
    jobs = []
    for job in store.jobs(run_id):
        found = results.get(job["job_id"]) or {"result": None, "derived": None, "unreadable": None}
        result, derived, why = _typed(job, found)
        if why is not None:
            job = dict(job, spec=None, timings={})
        checked = _conditions(conditions.get(job["job_id"]))
        host = host_samples.get(job["job_id"])
        jobs.append(JobData(job, result, derived, samples.get(job["job_id"]), why, host, checked))
    environments = {host: _host_environment(env) for host, env in store.environments(run_id).items()}
    return RunData(store, run_id, run, jobs, environments)


def gather(runs: List[RunData]) -> RunData:
    """Several runs as one: their jobs in run order, each keeping its ``run_id`` (the tables name it), each
    series named "RUN_ID/SERIES" so that no series spans runs; a host's environment as its first run
    captured it; the run's state and span over all."""
    if len(runs) == 1:
        return runs[0]
    jobs = []
    for data in runs:
        for item in data.jobs:
            spec = item.job["spec"]
            if spec is not None:
                spec = dict(spec, series="%s/%s" % (data.run_id, spec.get("series") or item.job_id))
            jobs.append(replace(item, job=dict(item.job, spec=spec)))
    environments: Dict[str, Dict[str, Any]] = {}
    for data in runs:
        for host, env in data.environments.items():
            environments.setdefault(host, env)
    created = [d.run["created_at"] for d in runs if d.run.get("created_at") is not None]
    finished = [d.run["finished_at"] for d in runs if d.run.get("finished_at") is not None]
    run = dict(
        runs[0].run,
        created_at=min(created, default=None),
        finished_at=max(finished, default=None) if len(finished) == len(runs) else None,
        state=", ".join(sorted({str(d.run.get("state")) for d in runs})),
        cluster_path=", ".join(sorted({str(d.run.get("cluster_path")) for d in runs})),
    )
    return RunData(runs[0].store, " + ".join(d.run_id for d in runs), run, jobs, environments)


def gathered(data: RunData) -> bool:
    """Whether ``data`` holds the jobs of several runs (``gather``)."""
    return len({job.job.get("run_id") for job in data.jobs}) > 1


def _conditions(doc: Optional[Dict[str, Any]]) -> Optional[jobconditions.Conditions]:
    """A job's stored conditions, typed; None where none are stored or they do not read as conditions."""
    try:
        return jobconditions.read(doc) if doc is not None else None
    except schema.Invalid:
        return None


def _host_environment(env: Dict[str, Any]) -> Dict[str, Any]:
    """``env`` when it follows ``HostEnvironment``, else {} (nothing of it is known: shown as unknown)."""
    try:
        schema.parse_as(HostEnvironment, env)
    except schema.Invalid:
        return {}
    return env


def _typed(
    job: Dict[str, Any], found: Dict[str, Any]
) -> Tuple[Optional[Dict], Optional[Derived], Optional[str]]:
    """(result, derived, None) of a job whose stored cells read typed, or (None, None, why not)."""
    why = job["unreadable"] or found["unreadable"] or _problem(job)
    derived = None
    if why is None and found["result"] is not None:
        try:
            if collect.read(found["result"]).figures is None:
                why = "result_json: a result without figures"
            else:
                derived = collect.read_derived(found["derived"])
        except collect.ResultInvalid as exc:
            why = str(exc)
    if why is not None:
        return None, None, "a stored cell is unreadable: %s" % why
    return found["result"], derived, None


def _problem(job: Dict[str, Any]) -> Optional[str]:
    """Why a job's decoded spec or timings do not read typed (one line), or None."""
    for column, cls, doc in (
        ("spec_json", StoredSpec, job["spec"]),
        ("timings_json", StoredTimings, job["timings"]),
    ):
        try:
            schema.parse_as(cls, doc)
        except schema.Invalid as exc:
            return "%s: %s" % (column, exc)
    pairs = job["spec"]["toolkit_options"]
    odd = next((index for index, pair in enumerate(pairs) if len(pair) != 2), None)
    return None if odd is None else "spec_json: toolkit_options.%d: not a (name, value) pair" % odd


def finite(value: Any) -> TypeGuard[float]:
    """A stored figure that is a finite number (a column edited by hand may hold anything)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def dig(doc: Optional[Dict[str, Any]], *path: str) -> Any:
    """``doc[path[0]][path[1]]...`` or None where any level is missing or null."""
    node: Any = doc
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node
