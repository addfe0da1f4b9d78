"""Expand a cluster file into jobs: cases x hosts x devices, filtered by what each vendor runs."""

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from vendors.vendor import Vendor

from . import images
from .config import Cluster, Host


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
    host: str, device: int, case: str, toolkit: str, precision: str, batch_size: int, decoder: str = "auto"
) -> str:
    """Stable, filesystem- and docker-safe identifier of a job within a run (a decoder other than auto
    is named at the end)."""
    name = "%s.d%d.%s.%s.%s.bs%d" % (host, device, case, toolkit, precision, batch_size)
    return name if decoder == "auto" else "%s.%s" % (name, decoder)


def lacks_sdk_file(host: Host, vendor: Vendor, toolkit: str) -> Optional[str]:
    """Why ``host``'s image will not have ``toolkit``: an optional SDK file it needs is not in image.sdk_dir
    (the image is built without it); None when nothing is missing."""
    if host.runtime != "docker":
        return None
    sdk_dir = Path(host.image.sdk_dir) if host.image.sdk_dir else None
    for sdk in images.absent_sdk_files(vendor, sdk_dir):
        if toolkit in sdk.toolkits:
            return "toolkit %s needs SDK file %s in image.sdk_dir (%s), which lacks it" % (
                toolkit,
                sdk.name,
                host.image.sdk_dir or "not set",
            )
    return None


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
                reason = vendor.unsupported(toolkit, precision) or lacks_sdk_file(host, vendor, toolkit)
                if reason:
                    skipped.append(Skipped(host.name, entry.case, toolkit, precision, bs, reason))
                    continue
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
                        )
                    )
    return jobs, skipped  # distinct: Cluster refuses entries that make one job twice
