"""Vendor images: render the Dockerfile, tag it by content, build it on a host when missing (or pull it
from a lab registry, ``registry.py``), one build of a tag at a time on a host (``lock.py``).

Docker is driven through its command-line client, one argv per call, over the host's
``Transport`` -- not through the docker SDK. That gives one code path for the local
machine and for SSH hosts: the SSH transport verifies host keys against the cluster
file's known_hosts and runs ``docker`` on the far side like any other command, so no
docker API port is exposed on the network and no docker socket is forwarded (the SDK
would need one of the two, or its ``ssh://`` mode, which shells out to the system ssh
with its own host-key policy). Every value reaches docker as its own argv element,
never through a shell.

The tag is ``rn50bench/<vendor>:<hash>``, where the hash covers everything that goes
into the build (the rendered Dockerfile, every runner file, every SDK file): changing
any of them builds a new image, changing anything else reuses the old one. Provenance
(git revision, content hash, vendor, creator) is attached as image labels, outside
the hash.
"""

import contextlib
import hashlib
import io
import os
import posixpath
import re
import stat
import subprocess
import tarfile
import tempfile
import threading
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable, ContextManager, Deque, Dict, List, Mapping, Optional, Sequence, Tuple

import jinja2

from orchestrator.host import lock as hostlock
from orchestrator.host import registry as registry_io
from orchestrator.model.cluster import Host
from orchestrator.transport.base import ProcessTransport, Transport, TransportError
from vendors.errors import VendorError
from vendors.image import ImageStack, SdkFile
from vendors.vendor import Vendor

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "dockerfiles"
RUNNER = REPO / "runner_in_container"
SDK_PREFIX = "sdk"
#: the label that ties an image to the content hash its tag names (checked before any tag is trusted)
CONTENT_HASH_LABEL = "rn50bench.content_hash"
STEP_TIMEOUT = 120.0
_CHUNK = 1 << 20
# docker build chatter that says nothing about why a build failed
_NOISE = re.compile(r"^(-+>|Removing intermediate container|Step \d+/\d+|#\d+ (DONE|CACHED))")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class ImageError(ValueError):
    """The image cannot be specified: bad template, variable or SDK file (message names it)."""


class ImageBuildError(RuntimeError):
    """``docker build`` failed on a host; the message carries its last meaningful line."""


class ImageMissing(ImageError):
    """Offline, the host lacks the image and may not build it; the message names the bundle command."""


@dataclass(frozen=True)
class ContextFile:
    """One file of the build context: its name there, its sha256 and its bytes.

    Small files (Dockerfile, runner) are held in memory, so the image holds exactly
    what was hashed; SDK installers can be large and are read from ``path``.
    """

    name: str
    sha256: str
    data: Optional[bytes] = None
    path: Optional[Path] = None

    def open(self) -> BinaryIO:
        return io.BytesIO(self.data) if self.data is not None else Path(str(self.path)).open("rb")

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else Path(str(self.path)).stat().st_size


@dataclass(frozen=True)
class ImageSpec:
    """Everything needed to build one vendor image; ``tag`` identifies its content."""

    vendor: str
    tag: str
    dockerfile: str
    files: Tuple[ContextFile, ...]  # sorted by name, Dockerfile included
    labels: Tuple[Tuple[str, str], ...]
    #: the image stack, its pins and what it lacks, in one line (ImageStack.describe); empty where the vendor
    #: has one stack (nothing was chosen)
    stack: str = ""
    #: False: the build fetches nothing and gets no network (ImageStack.fetches)
    network: bool = True

    @property
    def content_hash(self) -> str:
        return self.tag.rsplit(":", 1)[1]


def render_dockerfile(
    vendor: Vendor,
    overrides: Mapping[str, str],
    sdk_names: Optional[Sequence[str]] = None,
    stack: Optional[str] = None,
) -> str:
    """Render the template of ``vendor``'s image ``stack`` (None: its first) with the stack's image_vars,
    ``overrides`` and ``sdk_files``.

    ``sdk_names`` are the SDK files present in the build context (default: all declared).
    """
    chosen = _stack(vendor, stack)
    variables: Dict[str, object] = dict(chosen.image_vars)
    variables.update(overrides)
    for key, value in variables.items():
        if not isinstance(value, str) or any(ch in value for ch in "\n\r\x00"):
            raise ImageError(f"image variable {key} of vendor {vendor.name} must be one line of text")
    variables["sdk_files"] = list(sdk_names) if sdk_names is not None else [s.name for s in chosen.sdk_files]
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - a Dockerfile, not HTML
    )
    where = f"dockerfiles/{chosen.template}"
    owner = f"image stack {chosen.name} of vendor {vendor.name}"
    try:
        return env.get_template(chosen.template).render(**variables)
    except jinja2.TemplateNotFound:
        raise ImageError(f"{where} (template of {owner}) not found") from None
    except jinja2.UndefinedError as exc:
        hint = "set image.base_image" if "base_image" in str(exc.message) else "set it in its image_vars"
        raise ImageError(f"{where}: {exc.message} ({owner}: {hint})") from None
    except jinja2.TemplateError as exc:
        raise ImageError(f"{where}: {exc}") from None


def _stack(vendor: Vendor, name: Optional[str]) -> ImageStack:
    """``vendor``'s image stack ``name`` (None: its first); ImageError naming the vendor's otherwise."""
    try:
        return vendor.image_stack(name)
    except VendorError as exc:
        raise ImageError(str(exc)) from None


def image_spec(
    vendor: Vendor,
    overrides: Mapping[str, str],
    sdk_dir: Optional[Path],
    sdk_checksums: Mapping[str, str],
    stack: Optional[str] = None,
) -> ImageSpec:
    """Render, collect and hash the build context of ``vendor``'s image of image ``stack`` (None: its first).

    SDK files come from ``sdk_dir`` on the control machine and are checked against
    ``sdk_checksums`` (per host) or else the sha256 the vendor declares.
    """
    chosen = _stack(vendor, stack)
    sdk = _sdk_files(vendor, chosen, sdk_dir, sdk_checksums)
    names = [f.name[len(SDK_PREFIX) + 1 :] for f in sdk]
    dockerfile = render_dockerfile(vendor, overrides, names, chosen.name)
    data = dockerfile.encode("utf-8")
    files = [ContextFile("Dockerfile", hashlib.sha256(data).hexdigest(), data=data)]
    files.extend(runner_files())
    files.extend(sdk)
    files.sort(key=lambda f: f.name)
    digest = content_hash(files)
    labels = (
        ("org.opencontainers.image.revision", git_revision()),
        (CONTENT_HASH_LABEL, digest),
        ("rn50bench.vendor", vendor.name),
        ("rn50bench.created_by", "rn50bench orchestrator.host.images"),
    )
    tag = f"rn50bench/{vendor.name}:{digest}"
    stack = chosen.describe(overrides) if len(vendor.stacks()) > 1 else ""
    return ImageSpec(vendor.name, tag, dockerfile, tuple(files), labels, stack, chosen.fetches)


def content_hash(files: Sequence[ContextFile]) -> str:
    """First 16 hex digits of sha256 over the sorted (name, sha256) list."""
    digest = hashlib.sha256()
    for item in sorted(files, key=lambda f: f.name):
        digest.update(f"{item.name}\0{item.sha256}\n".encode())
    return digest.hexdigest()[:16]


def file_sha256(path: Path, advance: Optional[Callable[[int], None]] = None) -> str:
    """sha256 of a file read in chunks; ``advance`` is called with each chunk's size (progress bars)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
            if advance is not None:
                advance(len(chunk))
    return digest.hexdigest()


def runner_files() -> List[ContextFile]:
    """Every file of runner_in_container/, minus bytecode and hidden files."""
    out = []
    for path in sorted(RUNNER.rglob("*")):
        rel = path.relative_to(REPO)
        if not path.is_file() or path.suffix == ".pyc":
            continue
        if any(part == "__pycache__" or part.startswith(".") for part in rel.parts):
            continue
        data = path.read_bytes()
        out.append(ContextFile(rel.as_posix(), hashlib.sha256(data).hexdigest(), data=data))
    return out


def _sdk_files(
    vendor: Vendor, stack: ImageStack, sdk_dir: Optional[Path], checksums: Mapping[str, str]
) -> List[ContextFile]:
    names = [sdk.name for sdk in stack.sdk_files]
    unknown = sorted(set(checksums) - set(names))
    if unknown:
        raise ImageError(
            f"sdk_checksums names {', '.join(unknown)}, which vendor {vendor.name} does not use"
            f" (its image stack {stack.name} uses: {', '.join(names) or 'none'})"
        )
    required = [sdk.name for sdk in stack.sdk_files if not sdk.optional]
    if required and sdk_dir is None:
        raise ImageError(f"vendor {vendor.name} needs SDK files ({', '.join(required)}): set image.sdk_dir")
    out = []
    absent = absent_sdk_files(vendor, sdk_dir, stack.name)
    for sdk in stack.sdk_files:
        if sdk in absent or sdk_dir is None:  # no sdk_dir: every file is optional (checked above), absent
            continue  # left out of the image (anything there, even a broken link, is checked)
        path = Path(sdk_dir) / sdk.name
        expected = (checksums.get(sdk.name) or sdk.sha256).lower()
        if not expected:
            raise ImageError(
                f"SDK file {sdk.name} of vendor {vendor.name}: state its sha256 in image.sdk_checksums"
            )
        actual = _sdk_sha256(path, vendor)
        if actual != expected:
            raise ImageError(f"SDK file {path}: sha256 {actual}, expected {expected}")
        out.append(ContextFile(f"{SDK_PREFIX}/{sdk.name}", actual, path=path))
    return out


def absent_sdk_files(vendor: Vendor, sdk_dir: Optional[Path], stack: Optional[str] = None) -> List[SdkFile]:
    """The optional SDK files of ``vendor``'s image ``stack`` that ``sdk_dir`` lacks: its image is built
    without them."""
    return [
        sdk
        for sdk in _stack(vendor, stack).sdk_files
        if sdk.optional and (sdk_dir is None or not os.path.lexists(Path(sdk_dir) / sdk.name))
    ]


def _sdk_sha256(path: Path, vendor: Vendor) -> str:
    """sha256 of the SDK file ``path`` (a link to one is fine); ImageError unless it is a regular file this
    process can read (a FIFO would hang the hash, a folder or a device is no installer)."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise ImageError(
                f"SDK file {path} is not a regular file (vendor {vendor.name} needs the installer)"
            )
        return file_sha256(path)
    except FileNotFoundError:
        raise ImageError(f"SDK file {path} not found (vendor {vendor.name} needs it)") from None
    except OSError as exc:
        raise ImageError(f"SDK file {path} cannot be read: {exc.strerror or exc}") from None


def git_revision() -> str:
    """Commit of the repository the orchestrator runs from, or "unknown"."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--verify", "--quiet", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    commit = proc.stdout.strip()
    return commit if proc.returncode == 0 and re.match(r"^[0-9a-f]{40,64}$", commit) else "unknown"


def write_tar(files: Sequence[ContextFile], fileobj: BinaryIO) -> None:
    """Write ``files`` as a tar that depends only on their content (order, times, owners fixed)."""
    with tarfile.open(fileobj=fileobj, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for item in sorted(files, key=lambda f: f.name):
            info = tarfile.TarInfo(item.name)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o644
            info.size = item.size
            with item.open() as handle:
                tar.addfile(info, handle)


_locks: Dict[Tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock_for(host: str, tag: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault((host, tag), threading.Lock())


def image_exists(transport: Transport, tag: str) -> bool:
    """True when ``tag`` is present on the host; TransportError if docker itself does not answer."""
    return image_identity(transport, tag) is not None


#: ``docker image inspect`` format of image_identity (an image without labels has no map to index)
_IDENTITY = '{{.Id}} {{with .Config.Labels}}{{index . "%s"}}{{end}}' % CONTENT_HASH_LABEL


def image_identity(transport: Transport, ref: str) -> Optional[Tuple[str, str]]:
    """(image ID, its content-hash label or '') of ``ref`` (a tag or an ID) on the host, None when it is not
    there; TransportError if docker itself does not answer."""
    done = transport.run(["docker", "image", "inspect", "--format", _IDENTITY, ref], timeout=STEP_TIMEOUT)
    if done.returncode != 0:
        if not re.search(r"no such (image|object)", done.stderr, re.IGNORECASE):
            done.check()  # docker itself failed: raises with its message
        return None
    image_id, _, label = done.stdout.rstrip("\n").partition(" ")
    return image_id, label


#: what ensure_image did
CACHED, PULLED, BUILT = "cached", "pulled", "built"


def ensure_image(
    transport: Transport,
    spec: ImageSpec,
    timeout: float,
    on_line: Callable[[str], None],
    offline: bool = False,
    registry: Optional[str] = None,
    lock_dir: Optional[str] = None,
    on_status: Callable[[str], None] = lambda note: None,
) -> str:
    """Make ``spec``'s tag present on the host: CACHED (it was there, on an image labelled with its content
    hash: a tag on any other image is not trusted, but built over, or refused offline), PULLED (from
    ``registry``) or BUILT (then pushed to ``registry``, if set).

    Jobs sharing a transport wait for each other, so one tag is built once; with ``lock_dir`` (a folder
    on the host) so do orchestrator processes on that host, through a lock file there (``hostlock``).
    Build, pull and push output lines (terminal colour codes removed) go to ``on_line``; short notes
    on what is happening (waiting for another build, pulling, pushing) to ``on_status``.
    ``offline``: never build, pull or pip; ImageMissing when the tag is not there.
    """
    with _lock_for(transport.host, spec.tag):
        found = image_identity(transport, spec.tag)
        if found is not None and found[1] == spec.content_hash:
            return CACHED
        if offline:
            where = (
                f"is not on host {transport.host}" if found is None
                else f"on host {transport.host} is image {found[0]}, labelled {CONTENT_HASH_LABEL}="
                f"{found[1]!r}, not the image its tag names,"
            )  # fmt: skip
            raise ImageMissing(
                f"image {spec.tag} {where} and offline forbids building it: "
                "bring it with: python -m orchestrator bundle import BUNDLE_DIR --cluster FILE "
                "(a bundle made by: python -m orchestrator bundle export --cluster FILE --out BUNDLE_DIR)"
            )
        with _host_lock(transport, spec, lock_dir, timeout, on_status):
            made = image_identity(transport, spec.tag)  # another run may have made it while this one waited
            if made is not None and made[1] == spec.content_hash:
                return CACHED
            pulled = None
            if registry:
                on_status(f"pulling {spec.tag} from {registry}")
                pulled = registry_io.pull(
                    transport, registry, spec.tag, spec.content_hash, timeout, _clean(on_line)
                )
                if pulled == registry_io.PULLED:
                    return PULLED
            _build(transport, spec, timeout, on_line)
            if registry and pulled == registry_io.MISSING:
                on_status(f"pushing {spec.tag} to {registry}")
                registry_io.push(transport, registry, spec.tag, timeout, _clean(on_line))
            return BUILT


def _host_lock(
    transport: Transport,
    spec: ImageSpec,
    lock_dir: Optional[str],
    timeout: float,
    on_status: Callable[[str], None],
) -> ContextManager[None]:
    """The lock of ``spec``'s build on the host, shared by orchestrator processes (none without a lock_dir
    or on a transport that cannot hold a command open)."""
    if lock_dir is None or not isinstance(transport, ProcessTransport):
        return contextlib.nullcontext()
    path = posixpath.join(lock_dir, f"build-{spec.vendor}-{spec.content_hash}.lock")
    return hostlock.held(
        transport, path, timeout, lambda: on_status(f"waiting for another run's build of {spec.tag} ({path})")
    )


def _clean(on_line: Callable[[str], None]) -> Callable[[str], None]:
    """``on_line`` for docker's output: terminal colour codes and carriage returns removed."""
    return lambda text: on_line(_plain(text))


def _plain(text: str) -> str:
    return _ANSI.sub("", text).replace("\r", "")


def _build(transport: Transport, spec: ImageSpec, timeout: float, on_line: Callable[[str], None]) -> None:
    workdir = transport.run(["mktemp", "-d", "-t", "rn50bench-build.XXXXXXXX"], timeout=STEP_TIMEOUT)
    remote = workdir.check().stdout.strip()
    if not (remote.startswith("/") and PurePosixPath(remote).name.startswith("rn50bench-build.")):
        raise TransportError(f"mktemp on {transport.host} returned {remote!r}")
    try:
        context = remote + "/context"
        _unpack_on_host(transport, spec.files, context, timeout)
        argv = ["docker", "build", "--force-rm"]  # no intermediate containers left when a step fails
        argv += [] if spec.network else ["--network", "none"]
        for key, value in spec.labels:
            argv += ["--label", f"{key}={value}"]
        argv += ["-t", spec.tag, context]
        tail: Deque[str] = deque(maxlen=50)

        def line(text: str) -> None:
            text = _plain(text)
            tail.append(text)
            on_line(text)

        code = transport.stream(argv, line, line, timeout=timeout)
        if code != 0:
            reason = _last_meaningful(tail)
            raise ImageBuildError(f"docker build of {spec.tag} on {transport.host} exited {code}: {reason}")
    finally:
        with contextlib.suppress(TransportError):  # a failed clean-up must not hide the build's outcome
            transport.run(["rm", "-rf", "--", remote], timeout=STEP_TIMEOUT)


#: install_runner's one remote command: unless DEST is there (it appears by an atomic rename, so it is
#: complete), unpack the tar on stdin into STAGING and rename that to DEST (losing the race to another
#: installer is fine), then remove what is left of STAGING. Constant text; the paths are its arguments.
INSTALL_SCRIPT = (
    'dest=$1 staging=$2; test -d "$dest" && exit 0; '
    'mkdir -p -- "$staging" && tar -x --no-same-owner -f - -C "$staging" '
    '&& { mv -T -- "$staging" "$dest" 2>/dev/null || test -d "$dest"; }; '
    'status=$?; rm -rf -- "$staging"; exit $status'
)


def install_runner(transport: Transport, target: str) -> str:
    """Copy runner_in_container/ to ``<target>/<content hash>/`` on the host, for hosts without docker.

    Returns that folder (the PYTHONPATH of the runner). A folder that is there already
    is complete (it appears by an atomic rename), so nothing is copied twice. One remote
    command with the files as a tar on its stdin: a host costs one round trip here.
    """
    files = runner_files()
    dest = posixpath.join(target, content_hash(files))
    staging = f"{dest}.part-{uuid.uuid4().hex[:8]}"
    tar = io.BytesIO()
    write_tar(files, tar)
    argv = ["sh", "-c", INSTALL_SCRIPT, "rn50bench-install", dest, staging]
    transport.run(argv, timeout=STEP_TIMEOUT, stdin=tar.getvalue()).check()
    return dest


def _unpack_on_host(
    transport: Transport, files: Sequence[ContextFile], remote_dir: str, timeout: float
) -> None:
    """Send ``files`` as one tar and unpack them into ``remote_dir`` (created) on the host."""
    remote_tar = remote_dir + ".tar"
    with tempfile.TemporaryDirectory(prefix="rn50bench-tar.") as local:
        tar_path = Path(local) / "files.tar"
        with tar_path.open("wb") as handle:
            write_tar(files, handle)
        transport.put(tar_path, remote_tar, mode=0o600)
    try:
        transport.run(["mkdir", "-p", "--", remote_dir], timeout=STEP_TIMEOUT).check()
        untar = ["tar", "-x", "--no-same-owner", "-f", remote_tar, "-C", remote_dir]
        transport.run(untar, timeout=timeout).check()
    finally:
        with contextlib.suppress(TransportError):
            transport.run(["rm", "-f", "--", remote_tar], timeout=STEP_TIMEOUT)


def _last_meaningful(lines: Sequence[str]) -> str:
    for text in reversed(lines):
        text = text.strip()
        if text and not _NOISE.match(text):
            return text
    return "(no output)"


def lacks_sdk_file(host: Host, vendor: Vendor, toolkit: str, scenario: str = "flagperf") -> Optional[str]:
    """Why ``host``'s image will not have ``toolkit`` or ``scenario``: an optional SDK file it needs is not
    in image.sdk_dir (the image is built without it); None when nothing is missing."""
    if host.runtime != "docker":
        return None
    sdk_dir = Path(host.image.sdk_dir) if host.image.sdk_dir else None
    for sdk in absent_sdk_files(vendor, sdk_dir, host.image.stack):
        for kind, name, needs in (("toolkit", toolkit, sdk.toolkits), ("scenario", scenario, sdk.scenarios)):
            if name in needs:
                return "%s %s needs SDK file %s in image.sdk_dir (%s), which lacks it" % (
                    kind,
                    name,
                    sdk.name,
                    host.image.sdk_dir or "not set",
                )
    return None
