"""Expand a cluster file into jobs: cases x hosts x devices, filtered by what each vendor runs."""

from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Tuple

from orchestrator.host import images
from orchestrator.model.cluster import Cluster
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

    def as_dict(self) -> Dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Skipped:
    """A case combination that a host's vendor cannot run, with the reason."""

    host: str
    case: str
    toolkit: str
    precision: str
    batch_size: int
    reason: str


def job_id(
    host: str,
    device: int,
    case: str,
    toolkit: str,
    precision: str,
    batch_size: int,
    decoder: str = "auto",
    scenario: str = "flagperf",
) -> str:
    """Stable, filesystem- and docker-safe identifier of a job within a run (a decoder other than auto,
    then a scenario other than flagperf, is named at the end)."""
    name = "%s.d%d.%s.%s.%s.bs%d" % (host, device, case, toolkit, precision, batch_size)
    name = name if decoder == "auto" else "%s.%s" % (name, decoder)
    return name if scenario == "flagperf" else "%s.%s" % (name, scenario)


def expand(cluster: Cluster, vendors: Dict[str, Vendor]) -> Tuple[List[Job], List[Skipped]]:
    """All jobs of the cluster file in a stable order, and what was skipped and why."""
    jobs: List[Job] = []
    skipped: List[Skipped] = []
    for entry in cluster.cases:
        for host in cluster.hosts:
            if entry.hosts is not None and host.name not in entry.hosts:
                continue
            vendor = vendors[host.vendor]
            for combo in entry.matrix():
                toolkit, precision, bs = combo["toolkit"], combo["precision"], combo["batch_size"]
                reason = vendor.unsupported(toolkit, precision)
                reason = reason or images.lacks_sdk_file(host, vendor, toolkit, combo["scenario"])
                if reason:
                    skipped.append(Skipped(host.name, entry.case, toolkit, precision, bs, reason))
                    continue
                for device in host.devices:
                    jobs.append(
                        Job(
                            job_id=job_id(
                                host.name,
                                device,
                                entry.case,
                                toolkit,
                                precision,
                                bs,
                                entry.decoder,
                                combo["scenario"],
                            ),
                            host=host.name,
                            device=device,
                            case=entry.case,
                            toolkit=toolkit,
                            precision=precision,
                            batch_size=bs,
                            repeat=entry.repeat,
                            warmup=entry.warmup,
                            toolkit_options=tuple(sorted(entry.toolkit_options.items())),
                            decoder=entry.decoder,
                            scenario=combo["scenario"],
                            **entry.settings_for(combo["scenario"]),
                        )
                    )
    return jobs, skipped  # distinct: Cluster refuses entries that make one job twice
