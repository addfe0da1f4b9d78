"""``bundle import DIR --cluster F``: carry a verified bundle onto the lab's hosts and load it there.

The bundle is verified first (a changed byte stops everything; ``--expect`` pins the manifest's
sha256). Then every host, in parallel: its files are copied over the host's transport (SFTP for SSH hosts)
into ``<workdir>/bundles/<manifest sha256>/``, skipping any already there with the right sha256, so an
interrupted import resumes where it stopped; ``manifest.json`` goes last, the very bytes that were
verified. Each file is sent from one open descriptor, hashed as it is sent, and its sha256 is checked on
the host after the copy, before anything uses it: a file swapped after verify is refused and removed.

A docker host then loads its image archive, which names no image (archive.py), so the load tags nothing;
only when docker reports the one image ID the manifest names, labelled with its content hash, does
import tag that ID with the image's tag and the bundle's (host/origin.py), and remove the archive. A host that
holds that image ID, so labelled, already gets nothing but the tags. A bare host receives the wheels its
Python needs and the pip command that installs them.
"""

import contextlib
import io
import os
import posixpath
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from rich.console import Console
from rich.progress import Progress, TaskID

from orchestrator.bundle import export, tree, verify
from orchestrator.bundle.manifest import MANIFEST, Bundle, BundleError, BundleImage, Manifest, wheel_path
from orchestrator.bundle.progress import byte_bars
from orchestrator.host import images
from orchestrator.host import workdir as workdirs
from orchestrator.host.origin import origin_tag
from orchestrator.host.prepare import host_image_spec, host_transport
from orchestrator.model.cluster import Cluster, Host
from orchestrator.transport.base import Transport, TransportError
from vendors.vendor import Vendor


@dataclass
class HostPlan:
    """What one host gets from the bundle: files (bundle-relative paths) and the image to load."""

    host: Host
    files: List[str]
    image: Optional[BundleImage]


def import_bundle(
    root: Path, cluster: Cluster, known: Dict[str, Vendor], console: Console, expect: Optional[str] = None
) -> List[str]:
    """Import the bundle in ``root`` onto the hosts of ``cluster``'s plan; returns one line per failure."""
    bundle, problems = verify.check(root, console, expect)
    if problems:
        raise BundleError("%s: %s (bundle verify lists every mismatch)" % (root, problems[0]))
    _, hosts = export.planned(cluster, known)
    if not hosts:
        raise BundleError("the cluster file has no job to run, so no host to import onto")
    plans = [_host_plan(host, known[host.vendor], bundle.manifest) for host in hosts]
    total = {plan.host.name: sum(bundle.manifest.file(rel).size for rel in plan.files) for plan in plans}
    with byte_bars(console) as bars, ThreadPoolExecutor(max_workers=len(plans)) as pool:
        tasks = {name: bars.add_task("%s: copy" % name, total=size) for name, size in total.items()}
        carried = [
            pool.submit(_HostImport(plan, cluster, bundle, root, bars, tasks[plan.host.name]).run)
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
        return HostPlan(host, [wheel_path(host.name, name) for name in wheels], None)
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
        bundle: Bundle,
        root: Path,
        bars: Progress,
        task: TaskID,
    ) -> None:
        self.plan = plan
        self.host = plan.host
        self.bundle = bundle
        self.manifest = bundle.manifest
        self.digest = bundle.digest
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
        if image is not None and self._holds(transport, image):
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
        loaded = transport.run(["docker", "load", "--quiet", "--input", archive], timeout=self.timeouts.build)
        said = loaded.check().stdout.strip()
        if said != "Loaded image ID: %s" % image.image_id or not self._holds(transport, image):
            raise BundleError(
                "docker load of %s said %r; the bundle says image ID %s, labelled %s=%s: nothing tagged"
                % (image.file, said[:300], image.image_id, images.CONTENT_HASH_LABEL, image.content_hash)
            )
        self._tag(transport, image)
        with contextlib.suppress(TransportError):  # the image is there now; the archive only takes space
            transport.run(["rm", "-f", "--", archive], timeout=self.timeouts.connect)
        self._say("done")
        return "%s; loaded %s, image ID %s verified" % (done, image.tag, image.image_id)

    def _copy(self, transport: Transport) -> Tuple[int, int]:
        """Send the host's files, then manifest.json, each checked on the host; (sent, already there)."""
        sent = there = 0
        root_fd = tree.open_root(str(self.root))
        try:
            for rel in self.plan.files:
                entry = self.manifest.file(rel)
                remote = posixpath.join(self.remote, rel)
                if self._remote_sha256(transport, remote) == entry.sha256:
                    there += 1
                    self.bars.advance(self.task, entry.size)
                    continue
                self._say("copy %s" % rel)
                try:
                    handle = tree.open_file(root_fd, rel)
                except tree.Refused as exc:
                    raise BundleError("%s: %s" % (rel, exc)) from None
                with handle:
                    self._send(transport, tree.HashingReader(handle), rel, entry.sha256, self._advance())
                sent += 1
        finally:
            os.close(root_fd)
        manifest = tree.HashingReader(io.BytesIO(self.bundle.data))
        self._send(transport, manifest, MANIFEST, self.digest, None)
        return sent, there

    def _send(
        self,
        transport: Transport,
        reader: tree.HashingReader,
        rel: str,
        sha256: str,
        progress: Optional[Callable[[int], None]],
    ) -> None:
        """Put ``reader`` at ``rel`` on the host, then check that what was sent and what the host holds
        both have ``sha256``; BundleError (and the host's copy removed) otherwise."""
        remote = posixpath.join(self.remote, rel)
        transport.put(reader, remote, mode=0o600, progress=progress)
        sent = reader.sha256.hexdigest()
        if sent != sha256:
            problem = "%s changed after it was verified: sent sha256 %s" % (rel, sent)
        else:
            there = self._remote_sha256(transport, remote)
            if there == sha256:
                return
            problem = "%s: sha256 %s on the host after the copy" % (rel, there)
        with contextlib.suppress(TransportError):
            transport.run(["rm", "-f", "--", remote], timeout=self.timeouts.connect)
        raise BundleError("%s, the manifest says %s; the copy is removed, nothing used" % (problem, sha256))

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

    def _holds(self, transport: Transport, image: BundleImage) -> bool:
        """True when the host has the image ID, labelled with the content hash its tag names."""
        return images.image_identity(transport, image.image_id) == (image.image_id, image.content_hash)

    def _tag(self, transport: Transport, image: BundleImage) -> None:
        """Tag the verified image ID with its tag, and as this bundle's, so a run's environment table names
        the bundle."""
        for tag in (image.tag, origin_tag(self.digest, image.tag)):
            transport.run(["docker", "tag", image.image_id, tag], timeout=self.timeouts.connect).check()
