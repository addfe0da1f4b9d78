"""Getting a host ready for its jobs: reaching it, checking docker and the input paths, the image it runs.

Shared by the launchers (their ``check_host`` and ``build``), ``doctor`` and ``cli``.
"""

import logging
from pathlib import Path
from typing import Dict, Optional

from orchestrator.host import envinfo, images, orphans
from orchestrator.model.cluster import Host
from orchestrator.outcome import Stage, StageFailure
from orchestrator.safeio.text import one_line
from orchestrator.transport import make_transport
from orchestrator.transport.base import Transport, TransportError
from runner_in_container.contract import weights_is_file
from vendors.vendor import Vendor

_log = logging.getLogger(__name__)


def host_transport(host: Host, connect_timeout: float) -> Transport:
    """The transport that reaches ``host`` (nothing connects until its first command)."""
    jump = None
    if host.jump:
        from orchestrator.transport.hops import Jump  # paramiko, imported where SSH is used

        jump = [Jump(j.address, j.port, j.user, j.key_file) for j in host.jump]
    return make_transport(
        host.name,
        host.address,
        port=host.port,
        user=host.user,
        key_file=host.key_file,
        known_hosts=host.known_hosts,
        strict_host_keys=host.strict_host_keys,
        connect_timeout=connect_timeout,
        jump=jump,
    )


def image_overrides(host: Host) -> Dict[str, str]:
    """The image variables ``host`` sets over its image stack's (base image, pip index, pins)."""
    overrides = {"%s_version" % name: version for name, version in host.image.pins.items()}
    if host.image.base_image:
        overrides["base_image"] = host.image.base_image
    if host.image.pip_index_url:
        overrides["pip_index_url"] = host.image.pip_index_url
    return overrides


def base_image(host: Host, vendor: Vendor) -> str:
    """The base image ``host``'s vendor image is built from: the host's, else its image stack's."""
    stack = vendor.image_stack(host.image.stack)
    return host.image.base_image or stack.image_vars.get("base_image") or "(none: set image.base_image)"


def host_image_spec(host: Host, vendor: Vendor) -> images.ImageSpec:
    """The vendor image ``host`` runs: its image stack's template, the host's overrides and SDK files."""
    return images.image_spec(
        vendor,
        image_overrides(host),
        Path(host.image.sdk_dir) if host.image.sdk_dir else None,
        host.image.sdk_checksums,
        host.image.stack,
    )


def driver_dir(host: Host, vendor: Vendor) -> Optional[str]:
    """The host's driver folder its containers mount when they reach the GPUs through their device nodes
    (docker.gpu_access: nodes): docker.driver_dir, else the vendor's driver_mount; None otherwise."""
    if host.docker.gpu_access != "nodes":
        return None
    return host.docker.driver_dir or vendor.driver_mount


def check_docker(transport: Transport, host: Host, timeout: float) -> None:
    """The host's docker client must reach its engine."""
    done = transport.run(envinfo.DOCKER_VERSION, timeout=timeout)
    if done.returncode != 0:
        said = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise StageFailure(
            Stage.CONNECT, one_line("docker on host %s does not answer: %s" % (host.name, said[0]))
        )


def remove_orphans(transport: Transport, host: Host, timeout: float) -> None:
    """Remove the job containers on ``host`` whose orchestrator is gone (host/orphans.py), saying so. Docker
    failing to list them is a warning: the run goes on."""
    try:
        removed = orphans.sweep(transport, timeout)
    except TransportError as exc:
        _log.warning("host %s: job containers of stopped orchestrators not looked for: %s", host.name, exc)
        return
    if removed:
        _log.warning(
            "host %s: removed %d job container(s) left by orchestrators that are gone: %s",
            host.name,
            len(removed),
            ", ".join(removed),
        )


def login_user(transport: Transport, timeout: float) -> str:
    """``uid:gid`` of the SSH (or local) user, who then owns the results a container writes."""
    ids = [transport.run(["id", flag], timeout=timeout) for flag in ("-u", "-g")]
    return ":".join(done.check().stdout.strip() for done in ids)


def check_paths(transport: Transport, host: Host, timeout: float) -> None:
    """Data, labels, weights and the host's own artefacts must exist on the host before anything is built
    or started (a case entry's are checked by the runner)."""
    paths = [("data.path", host.data.path), ("data.labels", host.data.labels)]
    paths += [("onnx_path", host.onnx_path), ("engine_path", host.engine_path)]
    if weights_is_file(host.weights):
        paths.append(("weights", host.weights))
    for field_name, path in paths:
        if path and transport.run(["test", "-e", path], timeout=timeout).returncode != 0:
            raise StageFailure(Stage.START, "%s %s does not exist on host %s" % (field_name, path, host.name))


def missing_base(transport: Transport, host: Host, vendor: Vendor) -> str:
    """After a failed build: a note when the base image is not on the host (and so had to be pulled)."""
    base = base_image(host, vendor)
    try:
        if images.image_exists(transport, base):
            return ""
    except TransportError:
        return ""
    return "base image %s is not on host %s and was not pulled: " % (base, host.name)
