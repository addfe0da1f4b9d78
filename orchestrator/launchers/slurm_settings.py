"""What launcher slurm takes from a cluster file: its ``slurm:`` section, a host entry's own sbatch options
(``hosts[].slurm``), and the rules joining them with the rest of the file."""

from typing import Any, Dict, List, Optional

from pydantic import Field, field_validator

from orchestrator.model.cluster import Cluster, Host
from orchestrator.model.fields import Model, Problem, Problems, safe_name

SLURM_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_GRES = r"[A-Za-z0-9_]+(:[A-Za-z0-9_.-]+)*"  # name[:type][:count]


def _slurm_time(value: Any) -> Any:
    """A Slurm time limit as a quoted string: YAML reads an unquoted 1:00:00 as the number 3600."""
    if value is not None and not isinstance(value, str):
        raise ValueError(
            'give the time limit as a quoted string such as "90" (minutes) or "02:00:00"'
            " (YAML reads an unquoted 2:00:00 as the number 7200)"
        )
    return value


class SlurmJobSpec(Model):
    """sbatch options of one job. Unset fields fall back: host -> slurm.vendors.<vendor> -> slurm."""

    partition: Optional[str] = Field(None, pattern=SLURM_NAME)
    account: Optional[str] = Field(None, pattern=SLURM_NAME)
    qos: Optional[str] = Field(None, pattern=SLURM_NAME)
    reservation: Optional[str] = Field(None, pattern=SLURM_NAME)
    #: sbatch --time: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS or UNLIMITED
    time_limit: Optional[str] = Field(None, pattern=r"^(\d+(-\d+)?(:\d{1,2}){0,2}|UNLIMITED|INFINITE)$")
    #: sbatch --gres, e.g. "gpu:1" or "gpu:h100:1"
    gres: Optional[str] = Field(None, pattern=r"^%s(,%s)*$" % (_GRES, _GRES))
    #: sbatch --constraint: node features with & | , * [ ] ( ), e.g. "h100&nvlink"
    constraint: Optional[str] = Field(None, pattern=r"^[A-Za-z0-9_.][A-Za-z0-9_.&|,*\[\]()]{0,255}$")
    cpus_per_task: Optional[int] = Field(None, ge=1, le=4096)
    mem: Optional[str] = Field(None, pattern=r"^[0-9]+[KMGT]?$")  # sbatch --mem (per node)
    exclusive: Optional[bool] = None  # sbatch --exclusive: no other job shares the node

    _time = field_validator("time_limit", mode="before")(_slurm_time)

    def over(self, base: "SlurmJobSpec") -> "SlurmJobSpec":
        """``base`` with this spec's set fields on top."""
        return base.model_copy(update=self.model_dump(exclude_none=True))


class SlurmSettings(SlurmJobSpec):
    """``slurm:`` of a cluster file with ``launcher: slurm``: sbatch defaults, per-vendor options, polling."""

    vendors: Dict[str, SlurmJobSpec] = Field(default_factory=dict)
    poll_interval_s: float = Field(2.0, ge=0.2, le=60)  # squeue and job-output polling
    max_jobs: int = Field(8, ge=1, le=1000)  # jobs of one host entry in Slurm's queue at once

    @field_validator("vendors")
    @classmethod
    def _vendor_names(cls, value: Dict[str, SlurmJobSpec]) -> Dict[str, SlurmJobSpec]:
        for name in value:
            safe_name(name)
        return value


def settings(cluster: Cluster) -> SlurmSettings:
    """``cluster``'s ``slurm:`` section (its defaults where absent)."""
    return SlurmSettings.model_validate(cluster.section("slurm") or {})


def job_spec(cluster: Cluster, host: Host) -> SlurmJobSpec:
    """The sbatch options of ``host``'s jobs: slurm, then slurm.vendors.<vendor>, then hosts[].slurm."""
    given = settings(cluster)
    spec = SlurmJobSpec(**given.model_dump(include=set(SlurmJobSpec.model_fields)))
    vendor = given.vendors.get(host.vendor)
    if vendor is not None:
        spec = vendor.over(spec)
    own = host.section("slurm")
    return SlurmJobSpec.model_validate(own).over(spec) if own else spec


def check(cluster: Cluster) -> None:
    """Under launcher slurm, Slurm, not the file, picks devices, and images are built on the nodes; every
    vendor of slurm.vendors is one a host uses. Problems naming each field."""
    problems: List[Problem] = []
    for index, host in enumerate(cluster.hosts):
        if cluster.defaults.offline and host.runtime == "docker":
            problems.append(Problem(
                ("defaults", "offline"),
                "under launcher slurm, images are built on the allocated nodes; hosts[%d] runs docker, so "
                "offline runs need launcher: ssh" % index,
            ))  # fmt: skip
        if host.devices != [0]:
            problems.append(Problem(
                ("hosts", index, "devices"),
                "under launcher slurm, Slurm allocates the device (ask for it with gres); leave devices out",
            ))  # fmt: skip
    used = {h.vendor for h in cluster.hosts}
    for vendor in sorted(set(settings(cluster).vendors) - used):
        problems.append(Problem(("slurm", "vendors", vendor), "no host uses vendor %s" % vendor))
    if problems:
        raise Problems(problems)
