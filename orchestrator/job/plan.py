"""Expand a cluster file into jobs: cases x hosts x devices x runs, filtered by what each vendor runs.

The K runs of a job (``runs: K``) are K jobs of one series, each a fresh runner process; they are
interleaved (run 1 of every job, then run 2 ...), so that drift over the run (heat, the page cache, other
work) spreads over every job instead of biasing the last ones.
"""

from dataclasses import asdict, dataclass, replace
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from orchestrator.host import images
from orchestrator.model import options as toolkit_options
from orchestrator.model.cluster import Cluster
from runner_in_container.protocol import STAGE_INFER
from vendors.vendor import Vendor


@dataclass(frozen=True)
class Job:
    """One runner invocation on one device of one host."""

    job_id: str
    host: str
    device: int
    case: str
    toolkit: str
    precision: str
    batch_size: int
    repeat: int
    warmup: int
    toolkit_options: Tuple[Tuple[str, str], ...] = ()
    decoder: str = "auto"
    #: runner --scenario and the LoadGen settings beside it (None: the runner's default)
    scenario: str = "flagperf"
    mlperf: str = "short"
    mlperf_duration_s: Optional[float] = None
    server_target_qps: Optional[float] = None
    server_latency_ms: Optional[float] = None
    #: the sha256 the weights file must have where it is not the case's reference weights
    weights_sha256: Optional[str] = None
    #: a vendor's own ONNX graph / engine file on the host, run instead of one exported / built
    onnx_path: Optional[str] = None
    engine_path: Optional[str] = None
    #: the runner's --stages where not both ("infer": no val stage)
    stages: Optional[str] = None
    #: which of the series' runs this is (1-based), of how many
    run: int = 1
    runs: int = 1

    @property
    def series(self) -> str:
        """The id the K runs of this job share (the job id without its run)."""
        return job_id(
            self.host,
            self.device,
            self.case,
            self.toolkit,
            self.precision,
            self.batch_size,
            self.decoder,
            self.scenario,
            self.toolkit_options,
        )

    @property
    def toolkit_label(self) -> str:
        """The toolkit with the options it is measured with: "cudnn_fused (cudnn_fused_benchmark=1)"."""
        return toolkit_options.labelled(self.toolkit, self.toolkit_options)

    def as_dict(self) -> Dict[str, object]:
        """The job as stored, with its series; a field left None is left out (a spec stored before it
        existed reads alike)."""
        stored = {key: value for key, value in asdict(self).items() if value is not None}
        return dict(stored, series=self.series)


@dataclass(frozen=True)
class Skipped:
    """A case combination that a host's vendor cannot run, with the reason."""

    host: str
    case: str
    toolkit: str
    precision: str
    batch_size: int
    reason: str
    toolkit_options: Tuple[Tuple[str, str], ...] = ()

    def line(self) -> str:
        """ "skipped resnet50 tensorrt (knob=1)/fp16/bs256 on gpu: why" as plan and run print it."""
        toolkit = toolkit_options.labelled(self.toolkit, self.toolkit_options)
        return "skipped %s %s/%s/bs%d on %s: %s" % (
            self.case, toolkit, self.precision, self.batch_size, self.host, self.reason
        )


def job_id(
    host: str,
    device: int,
    case: str,
    toolkit: str,
    precision: str,
    batch_size: int,
    decoder: str = "auto",
    scenario: str = "flagperf",
    options: Iterable[Sequence[str]] = (),
    run: int = 1,
    runs: int = 1,
) -> str:
    """Stable, filesystem- and docker-safe identifier of a job within a run (a decoder other than auto,
    then a scenario other than flagperf, then the toolkit options it is measured with
    (``options.id_part``: ".cudnn_fused_benchmark-1"), are named at the end, then the run of a series of
    several: ".r2")."""
    name = "%s.d%d.%s.%s.%s.bs%d" % (host, device, case, toolkit, precision, batch_size)
    name = name if decoder == "auto" else "%s.%s" % (name, decoder)
    name = name if scenario == "flagperf" else "%s.%s" % (name, scenario)
    written = toolkit_options.id_part(toolkit_options.measured(toolkit, options))
    name = "%s.%s" % (name, written) if written else name
    return name if runs == 1 else "%s.r%d" % (name, run)


def expand(cluster: Cluster, vendors: Dict[str, Vendor]) -> Tuple[List[Job], List[Skipped]]:
    """All jobs of the cluster file in a stable order (runs interleaved), and what was skipped and why."""
    series: List[Job] = []  # each job's first run
    skipped: List[Skipped] = []
    for entry in cluster.cases:
        for host in cluster.hosts:
            if entry.hosts is not None and host.name not in entry.hosts:
                continue
            vendor = vendors[host.vendor]
            validated = set()  # (toolkit, precision, scenario) of this entry whose val stage a job runs here
            options = tuple(sorted(entry.toolkit_options.items()))
            for combo in entry.matrix():
                toolkit, precision, bs = combo["toolkit"], combo["precision"], combo["batch_size"]
                reason = vendor.unsupported(toolkit, precision)
                reason = reason or images.lacks_sdk_file(host, vendor, toolkit, combo["scenario"])
                if reason:
                    skipped.append(Skipped(host.name, entry.case, toolkit, precision, bs, reason, options))
                    continue
                # across a batch-size list, the val stage runs with the first batch size only
                kind = (toolkit, precision, combo["scenario"])
                stages = entry.stages_option() if kind not in validated else STAGE_INFER
                validated.add(kind)
                for device in host.devices:
                    series.append(
                        Job(
                            job_id="",
                            host=host.name,
                            device=device,
                            case=entry.case,
                            toolkit=toolkit,
                            precision=precision,
                            batch_size=bs,
                            repeat=entry.repeat,
                            warmup=entry.warmup,
                            toolkit_options=options,
                            decoder=entry.decoder,
                            scenario=combo["scenario"],
                            **entry.settings_for(combo["scenario"]),
                            weights_sha256=entry.own_or_host("weights_sha256", host),
                            onnx_path=entry.own_or_host("onnx_path", host),
                            engine_path=entry.own_or_host("engine_path", host),
                            stages=stages,
                            runs=entry.runs,
                        )
                    )
    most = max((job.runs for job in series), default=0)
    jobs = [
        replace(job, run=run, job_id=_run_id(job, run))
        for run in range(1, most + 1)
        for job in series
        if run <= job.runs
    ]
    return jobs, skipped  # distinct: Cluster refuses entries that make one job twice


def _run_id(job: Job, run: int) -> str:
    """The id of run ``run`` of ``job``'s series."""
    return job_id(
        job.host,
        job.device,
        job.case,
        job.toolkit,
        job.precision,
        job.batch_size,
        job.decoder,
        job.scenario,
        job.toolkit_options,
        run,
        job.runs,
    )
