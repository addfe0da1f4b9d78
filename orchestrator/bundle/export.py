"""``bundle export``: everything the plan needs, on the connected side, into one verified folder.

The folder is written as a hidden sibling and renamed into place at the end, so a failed or
interrupted export leaves nothing that looks like a bundle.
"""

import contextlib
import gzip
import json
import os
import re
import shutil
import sys
import uuid
from importlib import metadata
from pathlib import Path
from typing import Dict, List, Tuple

from rich.console import Console

from orchestrator.bundle import archive
from orchestrator.bundle import manifest as mf
from orchestrator.bundle.progress import byte_bars
from orchestrator.host import envinfo, images
from orchestrator.host.prepare import host_image_spec, host_transport
from orchestrator.host.python import code_argv
from orchestrator.job.plan import Job, expand
from orchestrator.model.cluster import Cluster, Host
from orchestrator.transport.base import Transport
from orchestrator.transport.local import LocalTransport
from runner_in_container.contract import HASH_IN_NAME
from vendors.vendor import Vendor

#: what a bare host's Python needs to run the runner (its toolkits come from the vendor's SDK)
BARE_REQUIREMENTS = ("torch", "torchvision", "numpy", "pillow", "mlcommons-loadgen")
#: gzip level of image archives: the fastest (the 1.82 GB CPU image becomes 874 MB)
GZIP_LEVEL = 1
_CHUNK = 1 << 20
#: a bare host's interpreter, asked for its version and glibc (pip download's --python-version and --platform)
_PY_PROBE = (
    "import os, platform, sys; "
    "print('%d.%d' % sys.version_info[:2], os.confstr('CS_GNU_LIBC_VERSION'), platform.machine())"
)


def export(cluster: Cluster, cluster_path: str, known: Dict[str, Vendor], out: Path, console: Console) -> str:
    """Write the bundle of ``cluster``'s plan to ``out`` (absent or empty); returns its manifest sha256."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise mf.BundleError("--out %s exists and is not an empty folder" % out)
    jobs, hosts = planned(cluster, known)
    if not jobs:
        raise mf.BundleError("%s: no job to run, so nothing to bundle" % cluster_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(".%s.part-%s" % (out.name, uuid.uuid4().hex[:8]))
    staging.mkdir()
    try:
        plan = [job.as_dict() for job in jobs]
        digest = _write(cluster, cluster_path, known, hosts, plan, staging, console)
        if out.exists():
            out.rmdir()
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return digest


def planned(cluster: Cluster, known: Dict[str, Vendor]) -> Tuple[List[Job], List[Host]]:
    """The plan's jobs and the hosts that run at least one of them."""
    jobs, _ = expand(cluster, known)
    used = {job.host for job in jobs}
    return jobs, [host for host in cluster.hosts if host.name in used]


def _write(
    cluster: Cluster,
    cluster_path: str,
    known: Dict[str, Vendor],
    hosts: List[Host],
    plan: List[Dict[str, object]],
    root: Path,
    console: Console,
) -> str:
    local = LocalTransport("control machine")
    bundle_images, archives = _images(cluster, known, hosts, local, root, console)
    runner = _runner(root)
    wheels = {h.name: _wheels(h, cluster, local, root, console) for h in hosts if h.runtime == "bare"}
    for host in hosts:  # the SDK installers the images were built from, for the lab's image.sdk_dir
        if host.runtime == "docker" and host.image.sdk_dir:
            _sdk(host_image_spec(host, known[host.vendor]), Path(host.image.sdk_dir), root)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    manifest = mf.Manifest(
        project={
            "name": "rn50bench",
            "version": _version(),
            "revision": images.git_revision(),
            "python": sys.version.split()[0],
        },
        cluster=Path(cluster_path).name,
        plan=plan,
        images=bundle_images,
        runner=runner,
        wheels=wheels,
        expected=[_expected(host) for host in hosts],
        files=[archives.get(rel) or mf.describe(root, rel) for rel in files],
    )
    return mf.write(root, manifest)


def _images(
    cluster: Cluster,
    known: Dict[str, Vendor],
    hosts: List[Host],
    local: Transport,
    root: Path,
    console: Console,
) -> Tuple[List[mf.BundleImage], Dict[str, mf.BundleFile]]:
    """Build (unless there, or offline) and save every image the docker hosts need, once per tag; the
    images and the manifest entries of their archives, each checked to hold its image and name none."""
    specs: Dict[str, Tuple[images.ImageSpec, List[str]]] = {}
    for host in hosts:
        if host.runtime == "docker":
            spec = host_image_spec(host, known[host.vendor])
            specs.setdefault(spec.tag, (spec, []))[1].append(host.name)
    out, archives = [], {}
    for tag, (spec, names) in sorted(specs.items()):
        vendor = known[spec.vendor]
        with console.status("building %s on this machine (unless it is here)" % tag):
            images.ensure_image(local, spec, cluster.defaults.timeouts.build, lambda line: None,
                                offline=cluster.defaults.offline)  # fmt: skip
        inspect = local.run(["docker", "image", "inspect", "--format", "{{json .}}", tag], timeout=60).check()
        facts = json.loads(inspect.stdout)
        labels = (facts.get("Config") or {}).get("Labels") or {}
        if labels.get(images.CONTENT_HASH_LABEL) != spec.content_hash:  # the tag moved since ensure_image
            raise mf.BundleError("%s: image %s is not labelled with its content hash" % (tag, facts["Id"]))
        rel = "images/%s-%s.tar.gz" % (spec.vendor, spec.content_hash)
        archives[rel] = _save(local, facts["Id"], root, rel, cluster.defaults.timeouts.build, console)
        built_on = envinfo.capture_host(local, vendor, "docker")
        built_on.update(created=facts["Created"], labels=labels)
        out.append(mf.BundleImage(
            vendor=spec.vendor, tag=tag, image_id=facts["Id"], file=rel, hosts=names,
            built_on=built_on,
        ))  # fmt: skip
    return out, archives


def _save(
    local: Transport, image_id: str, root: Path, rel: str, timeout: float, console: Console
) -> mf.BundleFile:
    """``docker save`` the image by its ID (so the archive names no image), then gzip it (fixed header: the
    same image gives the same bytes); its manifest entry, after checking that it holds that image ID."""
    dest = root / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    raw = dest.with_name("." + dest.name + ".tar")
    try:
        with console.status("docker save %s" % image_id):
            local.run(["docker", "save", "-o", str(raw), image_id], timeout=timeout).check()
        with byte_bars(console) as bars, raw.open("rb") as src, dest.open("wb") as sink:
            task = bars.add_task("compressing %s" % dest.name, total=raw.stat().st_size)
            with gzip.GzipFile(filename="", mode="wb", fileobj=sink, compresslevel=GZIP_LEVEL, mtime=0) as gz:
                for chunk in iter(lambda: src.read(_CHUNK), b""):
                    gz.write(chunk)
                    bars.advance(task, len(chunk))
    finally:
        with contextlib.suppress(FileNotFoundError):
            raw.unlink()
    with byte_bars(console) as bars, dest.open("rb") as handle:
        task = bars.add_task("checking %s" % dest.name, total=dest.stat().st_size)
        try:
            sha256, holds = archive.inspect(handle, lambda n: bars.advance(task, n))
        except archive.Refused as exc:
            raise mf.BundleError("docker save of %s: %s" % (image_id, exc)) from None
    if holds != image_id:
        raise mf.BundleError(
            "docker save of %s holds image %s: docker's containerd image store is not supported"
            % (image_id, holds)
        )
    return mf.BundleFile(path=rel, sha256=sha256, size=dest.stat().st_size)


def _runner(root: Path) -> str:
    """runner_in_container/ as one tar; returns its content hash (the folder install_runner makes)."""
    files = images.runner_files()
    digest = images.content_hash(files)
    path = root / "runner" / ("runner-%s.tar" % digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        images.write_tar(files, handle)
    return digest


def _sdk(spec: images.ImageSpec, sdk_dir: Path, root: Path) -> None:
    for item in spec.files:
        if item.name.startswith(images.SDK_PREFIX + "/"):
            dest = root / "sdk" / spec.vendor / item.name.split("/", 1)[1]
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(sdk_dir / dest.name, dest)


def _wheels(host: Host, cluster: Cluster, local: Transport, root: Path, console: Console) -> List[str]:
    """Wheels of BARE_REQUIREMENTS for the bare host's Python version, glibc and machine (asked there)."""
    timeout = cluster.host_timeouts(host).connect
    with host_transport(host, timeout) as transport:
        said = transport.run(code_argv(host.python, _PY_PROBE), timeout=timeout).check().stdout.split()
    match = re.match(r"^glibc (\d+)\.(\d+)$", " ".join(said[1:3])) if len(said) == 4 else None
    if not match:
        raise mf.BundleError(
            "host %s: %s said %r, not its version, glibc and machine"
            % (host.name, host.python, " ".join(said))
        )
    dest = root / "wheels" / host.name
    argv = [
        sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--dest", str(dest),
        "--python-version", said[0], "--implementation", "cp",
        "--platform", "manylinux_%s_%s_%s" % (match.group(1), match.group(2), said[3]),
    ]  # fmt: skip
    if host.image.pip_index_url:
        argv += ["--index-url", host.image.pip_index_url]
    with console.status("pip download %s for host %s" % (" ".join(BARE_REQUIREMENTS), host.name)):
        local.run(argv + list(BARE_REQUIREMENTS), timeout=cluster.host_timeouts(host).build).check()
    return sorted(p.name for p in dest.iterdir())


def _expected(host: Host) -> mf.Expected:
    match = HASH_IN_NAME.search(os.path.basename(host.weights))
    return mf.Expected(
        host=host.name,
        data=host.data.path,
        data_md5=host.data.md5,
        weights=host.weights,
        weights_sha256_prefix=match.group(1) if match else None,
    )


def _version() -> str:
    try:
        return metadata.version("rn50bench")
    except metadata.PackageNotFoundError:
        return "unknown"
