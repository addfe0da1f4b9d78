"""Where a cluster file's paths point: control-machine paths resolved against the file's folder, host
paths of local hosts too, remote ones checked (absolute, normalised, no ``..``)."""

import posixpath
from pathlib import Path
from typing import TYPE_CHECKING, Optional

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


def _check_remote(field: str, value: Optional[str]) -> None:
    if value is None:
        return
    if not value.startswith("/"):
        raise ValueError("%s: remote paths must be absolute, got %r" % (field, value))
    if ".." in value.split("/"):
        raise ValueError("%s: remote paths may not contain '..', got %r" % (field, value))
    if posixpath.normpath(value) != value.rstrip("/") and value != "/":
        raise ValueError("%s: path is not normalised (%r)" % (field, value))


def localise(cluster: "Cluster", base: Path) -> "Cluster":
    """Resolve relative paths: host paths on local hosts, control paths always; check remote ones, and the
    MPS pipe directory on every host (the daemon's own path, never resolved)."""
    hosts = []
    for index, host in enumerate(cluster.hosts):
        where = "hosts[%d]" % index
        _check_remote(where + ".mps_pipe_directory", host.mps_pipe_directory)
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
        else:
            _check_remote(where + ".data.path", host.data.path)
            _check_remote(where + ".data.labels", host.data.labels)
            _check_remote(
                where + ".workdir" if host.workdir else "defaults.workdir", cluster.host_workdir(host)
            )
            if weights_is_file(host.weights):
                _check_remote(where + ".weights", host.weights)
            for name in ARTEFACTS:
                _check_remote("%s.%s" % (where, name), getattr(host, name))
        image = host.image.model_copy(update={"sdk_dir": _resolve_local(base, host.image.sdk_dir)})
        key_file = _resolve_local(base, host.key_file)
        known_hosts = _resolve_local(base, host.known_hosts)
        hosts.append(
            host.model_copy(update={"image": image, "key_file": key_file, "known_hosts": known_hosts})
        )
    for index, case in enumerate(cluster.cases):  # on any host of the case: absolute
        for name in ARTEFACTS:
            _check_remote("cases[%d].%s" % (index, name), getattr(case, name))
    return cluster.model_copy(
        update={
            "hosts": hosts,
            "store": _resolve_local(base, cluster.store),
            "results_dir": _resolve_local(base, cluster.results_dir),
        }
    )
