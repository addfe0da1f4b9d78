"""Where a cluster file's paths point: control-machine paths resolved against the file's folder, host
paths of local hosts too (``localise``); remote ones checked: absolute, normalised, no ``..``
(``problems``)."""

import posixpath
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

from orchestrator.model.fields import Keys, Problem
from runner_in_container.contract import weights_is_file

if TYPE_CHECKING:
    from orchestrator.model.cluster import Cluster

#: a vendor's own files, per host (resolved on local hosts) and per case entry (absolute)
ARTEFACTS = ("onnx_path", "engine_path")


def _resolve_local(base: Path, value: Optional[str]) -> Optional[str]:
    """Resolve a control-machine path against the cluster file's folder."""
    if value is None:
        return None
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def _remote(keys: Keys, value: Optional[str]) -> List[Problem]:
    """What is wrong with ``value`` as a path on a remote host (or the MPS daemon's own)."""
    if value is None:
        return []
    if not value.startswith("/"):
        return [Problem(keys, "remote paths must be absolute, got %r" % value)]
    if ".." in value.split("/"):
        return [Problem(keys, "remote paths may not contain '..', got %r" % value)]
    if posixpath.normpath(value) != value.rstrip("/") and value != "/":
        return [Problem(keys, "path is not normalised (%r)" % value)]
    return []


def problems(cluster: "Cluster") -> List[Problem]:
    """The paths of remote hosts, and the MPS pipe directory and driver folder on every host (paths as the
    host has them, never resolved), that are not absolute, normalised and free of ``..``."""
    found: List[Problem] = []
    for index, host in enumerate(cluster.hosts):
        found += _remote(("hosts", index, "mps_pipe_directory"), host.mps_pipe_directory)
        found += _remote(("hosts", index, "docker", "driver_dir"), host.docker.driver_dir)
        if host.is_local:
            continue
        found += _remote(("hosts", index, "data", "path"), host.data.path)
        found += _remote(("hosts", index, "data", "labels"), host.data.labels)
        workdir: Keys = ("hosts", index, "workdir") if host.workdir else ("defaults", "workdir")
        found += _remote(workdir, cluster.host_workdir(host))
        if weights_is_file(host.weights):
            found += _remote(("hosts", index, "weights"), host.weights)
        for name in ARTEFACTS:
            found += _remote(("hosts", index, name), getattr(host, name))
    for index, case in enumerate(cluster.cases):  # on any host of the case: absolute
        for name in ARTEFACTS:
            found += _remote(("cases", index, name), getattr(case, name))
    return found


def localise(cluster: "Cluster", base: Path) -> "Cluster":
    """Resolve relative paths: host paths on local hosts, control paths always (remote ones: ``problems``)."""
    hosts = []
    for host in cluster.hosts:
        if host.is_local:
            data = host.data.model_copy(
                update={
                    "path": _resolve_local(base, host.data.path),
                    "labels": _resolve_local(base, host.data.labels),
                }
            )
            weights = _resolve_local(base, host.weights) if weights_is_file(host.weights) else host.weights
            workdir = _resolve_local(base, host.workdir or cluster.defaults.workdir)
            update = {name: _resolve_local(base, getattr(host, name)) for name in ARTEFACTS}
            host = host.model_copy(update=dict(update, data=data, weights=weights, workdir=workdir))
        image = host.image.model_copy(update={"sdk_dir": _resolve_local(base, host.image.sdk_dir)})
        key_file = _resolve_local(base, host.key_file)
        known_hosts = _resolve_local(base, host.known_hosts)
        hosts.append(
            host.model_copy(update={"image": image, "key_file": key_file, "known_hosts": known_hosts})
        )
    return cluster.model_copy(
        update={
            "hosts": hosts,
            "store": _resolve_local(base, cluster.store),
            "results_dir": _resolve_local(base, cluster.results_dir),
        }
    )
