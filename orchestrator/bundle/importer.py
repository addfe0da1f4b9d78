"""``bundle import DIR --cluster F``: carry a verified bundle onto the lab's hosts and load it there.

The bundle is verified first (a changed byte stops everything). Then every host, in parallel:
its files are copied over the host's transport (SFTP for SSH hosts) into
``<workdir>/bundles/<manifest sha256>/``, skipping any already there with the right sha256, so an
interrupted import resumes where it stopped; ``manifest.json`` goes last. A docker host then loads
its image, checks that docker reports the image ID the manifest names, tags it with the bundle
(origin.py) and removes the archive; a host that holds that image ID already gets nothing.
A bare host receives the wheels its Python needs and the pip command that installs them.
"""

import contextlib
import posixpath
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from rich.console import Console
from rich.progress import Progress, TaskID

from vendors.base import Vendor

from .. import images
from .. import workdir as workdirs
from ..config import Cluster, Host
from ..hostprep import host_image_spec, host_transport
from ..transport.base import Transport, TransportError
from . import export, verify
from .manifest import MANIFEST, BundleError, BundleImage, Manifest
from .origin import origin_tag
from .progress import byte_bars


@dataclass
class HostPlan:
    """What one host gets from the bundle: files (bundle-relative paths) and the image to load."""

    host: Host
    files: List[str]
    image: Optional[BundleImage]


def import_bundle(root: Path, cluster: Cluster, known: Dict[str, Vendor], console: Console) -> List[str]:
    """Import the bundle in ``root`` onto the hosts of ``cluster``'s plan; returns one line per failure."""
    manifest, digest, problems = verify.check(root, console)
    if problems:
        raise BundleError("%s: %s (bundle verify lists every mismatch)" % (root, problems[0]))
    _, hosts = export.planned(cluster, known)
    if not hosts:
        raise BundleError("the cluster file has no job to run, so no host to import onto")
    plans = [_host_plan(host, known[host.vendor], manifest) for host in hosts]
    total = {plan.host.name: sum(manifest.file(rel).size for rel in plan.files) for plan in plans}
    with byte_bars(console) as bars, ThreadPoolExecutor(max_workers=len(plans)) as pool:
        tasks = {name: bars.add_task("%s: copy" % name, total=size) for name, size in total.items()}
        carried = [
            pool.submit(_HostImport(plan, cluster, manifest, digest, root, bars, tasks[plan.host.name]).run)
            for plan in plans
        ]
        outcomes = [future.result() for future in carried]
    for line in outcomes:
        print(line, file=sys.stderr if line.startswith("error: ") else sys.stdout)
    return [line for line in outcomes if line.startswith("error: ")]


def _host_plan(host: Host, vendor: Vendor, manifest: Manifest) -> HostPlan:
    """The host's files and image; BundleError when the bundle was made for something else."""
    if host.runtime == "bare":
        runner = images.content_hash(images.runner_files())
        if runner != manifest.runner:
            raise BundleError(
                "the runner of this checkout (%s) is not the bundle's (%s, project revision %s): run the "
                "orchestrator of that revision" % (runner, manifest.runner, manifest.project["revision"])
            )
        wheels = manifest.wheels.get(host.name)
        if wheels is None:
            raise BundleError(
                "the bundle has no wheels for bare host %s: export it with that host" % host.name
            )
        return HostPlan(host, ["wheels/%s/%s" % (host.name, name) for name in wheels], None)
    try:
        tag = host_image_spec(host, vendor).tag
    except images.ImageError as exc:
        raise BundleError(
            "host %s: %s (image.sdk_dir may name the bundle's sdk/%s)" % (host.name, exc, vendor.name)
        ) from None
    found = [image for image in manifest.images if image.tag == tag]
    if not found:
        held = ", ".join(image.tag for image in manifest.images) or "none"
        raise BundleError(
            "host %s needs image %s; the bundle holds %s (export it from this cluster file and revision %s)"
            % (host.name, tag, held, manifest.project["revision"])
        )
    return HostPlan(host, [found[0].file], found[0])


class _HostImport:
    """The import onto one host, on its own transport; run() returns the host's one-line outcome."""

    def __init__(
        self,
        plan: HostPlan,
        cluster: Cluster,
        manifest: Manifest,
        digest: str,
        root: Path,
        bars: Progress,
        task: TaskID,
    ) -> None:
        self.plan = plan
        self.host = plan.host
        self.manifest = manifest
        self.digest = digest
        self.root = root
        self.timeouts = cluster.host_timeouts(plan.host)
        self.workdir = cluster.host_workdir(plan.host)  # None: the host's default, found there
        self.remote = ""  # <workdir>/bundles/<digest>, once the workdir is checked
        self.bars = bars
        self.task = task

    def run(self) -> str:
        try:
            with host_transport(self.host, self.timeouts.connect) as transport:
                workdir = workdirs.secure(transport, self.workdir, self.timeouts.connect)
                self.remote = posixpath.join(workdir, "bundles", self.digest)
                return "host %s: %s" % (self.host.name, self._carry(transport))
        except (TransportError, BundleError, workdirs.WorkdirRefused) as exc:
            return "error: host %s: %s" % (self.host.name, " ".join(str(exc).split()))

    def _say(self, what: str) -> None:
        self.bars.update(self.task, description="%s: %s" % (self.host.name, what))

    def _carry(self, transport: Transport) -> str:
        image = self.plan.image
        if image is not None and self._image_id(transport, image.tag) == image.image_id:
            self.bars.update(self.task, completed=self.bars.tasks[self.task].total)
            self._tag(transport, image)
            return "image %s (%s) was loaded already; nothing sent" % (image.tag, image.image_id)
        sent, there = self._copy(transport)
        done = "sent %d files, %d were there already" % (sent, there)
        if image is None:
            wheels = posixpath.join(self.remote, "wheels", self.host.name)
            requirements = " ".join(export.BARE_REQUIREMENTS)
            return "%s; install them with: %s -m pip install --no-index --find-links %s %s" % (
                done, self.host.python, wheels, requirements
            )  # fmt: skip
        archive = posixpath.join(self.remote, image.file)
        self._say("docker load")
        transport.run(["docker", "load", "-i", archive], timeout=self.timeouts.build).check()
        loaded = self._image_id(transport, image.tag)
        if loaded != image.image_id:
            raise BundleError(
                "docker load of %s gave image ID %s, the bundle says %s"
                % (image.file, loaded, image.image_id)
            )
        self._tag(transport, image)
        with contextlib.suppress(TransportError):  # the image is there now; the archive only takes space
            transport.run(["rm", "-f", "--", archive], timeout=self.timeouts.connect)
        self._say("done")
        return "%s; loaded %s, image ID %s verified" % (done, image.tag, image.image_id)

    def _copy(self, transport: Transport) -> Tuple[int, int]:
        """Send the host's files, then manifest.json; (sent, already there)."""
        sent = there = 0
        for rel in self.plan.files:
            entry = self.manifest.file(rel)
            remote = posixpath.join(self.remote, rel)
            if self._remote_sha256(transport, remote) == entry.sha256:
                there += 1
                self.bars.advance(self.task, entry.size)
                continue
            self._say("copy %s" % rel)
            transport.put(self.root / rel, remote, mode=0o600, progress=self._advance())
            sent += 1
        transport.put(self.root / MANIFEST, posixpath.join(self.remote, MANIFEST), mode=0o600)
        return sent, there

    def _advance(self) -> Callable[[int], None]:
        """A progress callback taking bytes-so-far of one file and advancing the host's bar by the change."""
        last = [0]

        def advance(done: int) -> None:
            self.bars.advance(self.task, done - last[0])
            last[0] = done

        return advance

    def _remote_sha256(self, transport: Transport, path: str) -> Optional[str]:
        done = transport.run(["sha256sum", "--", path], timeout=self.timeouts.build)
        return done.stdout.split()[0] if done.returncode == 0 and done.stdout else None

    def _image_id(self, transport: Transport, tag: str) -> Optional[str]:
        """The ID of ``tag`` on the host, None when it is not there."""
        done = transport.run(["docker", "image", "inspect", "--format", "{{.Id}}", tag], timeout=60)
        return done.stdout.strip() if done.returncode == 0 else None

    def _tag(self, transport: Transport, image: BundleImage) -> None:
        """Mark the image as this bundle's, so that a run's environment table names the bundle."""
        marker = origin_tag(self.digest, image.tag)
        transport.run(["docker", "tag", image.tag, marker], timeout=self.timeouts.connect).check()
