"""A stored run read once from the store, with each job's stored result, derived figures and samples."""

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from ..store import Store


class ReportError(Exception):
    """A report cannot be made as asked; the message is one line naming the run, file or field."""


@dataclass
class JobData:
    """One job: its store row, and its result document, derived figures and monitor summary when stored."""

    job: Dict[str, Any]
    result: Optional[Dict[str, Any]]
    derived: Optional[Dict[str, Any]]
    samples: Optional[Dict[str, Any]]

    @property
    def job_id(self) -> str:
        return self.job["job_id"]

    @property
    def ok(self) -> bool:
        """A result with figures is stored (the runner finished both stages)."""
        return self.result is not None and self.derived is not None

    def label(self) -> str:
        """host (vendor) device toolkit precision bs: how plots and timelines name the job."""
        spec = self.job["spec"]
        return "%s (%s) d%s %s %s bs%s" % (
            self.job["host"],
            self.job["vendor"],
            spec["device"],
            spec["toolkit"],
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
    jobs = []
    for job in store.jobs(run_id):
        found = results.get(job["job_id"]) or {}
        jobs.append(JobData(job, found.get("result"), found.get("derived"), samples.get(job["job_id"])))
    return RunData(store, run_id, run, jobs, store.environments(run_id))


def dig(doc: Optional[Dict[str, Any]], *path: str) -> Any:
    """``doc[path[0]][path[1]]...`` or None where any level is missing or null."""
    node: Any = doc
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node
