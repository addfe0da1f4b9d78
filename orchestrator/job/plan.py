"""Expand a cluster file into jobs: cases x hosts x devices, filtered by what each vendor runs."""

from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Tuple

from orchestrator.host import images
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
    #: the sha256 the weights file must have where it is not the case's reference weights
    weights_sha256: Optional[str] = None
    #: a vendor's own ONNX graph / engine file on the host, run instead of one exported / built
    onnx_path: Optional[str] = None
    engine_path: Optional[str] = None
    #: the runner's --stages where not both ("infer": no val stage)
    stages: Optional[str] = None

    def as_dict(self) -> Dict[str, object]:
        """The job as stored; a field left None is left out (a spec stored before it existed reads alike)."""
        return {key: value for key, value in asdict(self).items() if value is not None}


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
    host: str, device: int, case: str, toolkit: str, precision: str, batch_size: int, decoder: str = "auto"
) -> str:
    """Stable, filesystem- and docker-safe identifier of a job within a run (a decoder other than auto
    is named at the end)."""
    name = "%s.d%d.%s.%s.%s.bs%d" % (host, device, case, toolkit, precision, batch_size)
    return name if decoder == "auto" else "%s.%s" % (name, decoder)


def expand(cluster: Cluster, vendors: Dict[str, Vendor]) -> Tuple[List[Job], List[Skipped]]:
    """All jobs of the cluster file in a stable order, and what was skipped and why."""
    jobs: List[Job] = []
    skipped: List[Skipped] = []
    for entry in cluster.cases:
        for host in cluster.hosts:
            if entry.hosts is not None and host.name not in entry.hosts:
                continue
            vendor = vendors[host.vendor]
            validated = set()  # (toolkit, precision) of this entry whose val stage a job already runs here
            for combo in entry.matrix():
                toolkit, precision, bs = combo["toolkit"], combo["precision"], combo["batch_size"]
                reason = vendor.unsupported(toolkit, precision)
                reason = reason or images.lacks_sdk_file(host, vendor, toolkit)
                if reason:
                    skipped.append(Skipped(host.name, entry.case, toolkit, precision, bs, reason))
                    continue
                # across a batch-size list, the val stage runs with the first batch size only
                stages = entry.stages_option() if (toolkit, precision) not in validated else STAGE_INFER
                validated.add((toolkit, precision))
                for device in host.devices:
                    jobs.append(
                        Job(
                            job_id=job_id(
                                host.name, device, entry.case, toolkit, precision, bs, entry.decoder
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
                            weights_sha256=entry.own_or_host("weights_sha256", host),
                            onnx_path=entry.own_or_host("onnx_path", host),
                            engine_path=entry.own_or_host("engine_path", host),
                            stages=stages,
                        )
                    )
    return jobs, skipped  # distinct: Cluster refuses entries that make one job twice
