"""``python -m orchestrator doctor``: check every host of a cluster file before a run, all hosts at once.

Per host: SSH reachable with a known host key; docker answers (its version); the vendor's
SMI answers and lists the configured devices; the device nodes docker would be given
exist; free space in the workdir and the docker root; data, labels and weights exist,
with their md5 / sha256 where the cluster file states them; with ``mps`` on, the MPS
daemon's control pipe is there; and, on this machine, the
image's inputs (template, SDK files and their checksums). Every probe is an argv run
through the host's transport, exactly as a run reaches the host. Each failure comes with
a one-line fix. On the control machine: results_dir and the store's folder are writable.
"""

import os
import posixpath
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from rich.console import Console
from rich.table import Table
from rich.text import Text

from runner_in_container.contract import HASH_IN_NAME, weights_is_file
from vendors.base import Vendor

from . import envinfo, images
from . import workdir as workdirs
from .config import Cluster, Host
from .hostrun import host_transport, image_overrides, one_line
from .safetext import shown
from .transport.base import Completed, Transport, TransportError

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
STYLES = {PASS: "green", WARN: "yellow", FAIL: "bold red", SKIP: "dim"}
#: the checks of a host, in table order
COLUMNS = (
    "ssh",
    "docker",
    "smi",
    "device nodes",
    "workdir",
    "docker disk",
    "data",
    "weights",
    "mps",
    "image",
)
#: md5sum / sha256sum of a whole ImageNet tar (6.4 GB) may take minutes on a slow disk
CHECKSUM_TIMEOUT = 1800.0
#: a sha256 prefix in a torch.hub-style weights name (as runner_in_container.cases checks it)
GIB = 1024.0**3


@dataclass(frozen=True)
class Check:
    """The outcome of one check: status, a short summary for the table, the full reason and the fix."""

    name: str
    status: str
    summary: str
    detail: str = ""
    fix: str = ""


@dataclass(frozen=True)
class Limits:
    """Free space a host needs (fail below it, warn below twice it) and whether to verify checksums."""

    docker_gib: float = 20.0
    workdir_gib: float = 2.0
    checksums: bool = True


@dataclass(frozen=True)
class Report:
    """Checks of the control machine and of every host (host name -> checks in COLUMNS order)."""

    control: List[Check]
    hosts: Dict[str, List[Check]]


def failed(report: Report) -> bool:
    """True when any check failed (warnings do not fail)."""
    checks = report.control + [c for checks in report.hosts.values() for c in checks]
    return any(c.status == FAIL for c in checks)


def run_checks(cluster: Cluster, vendors: Dict[str, Vendor], limits: Limits) -> Report:
    """Check the control machine and every host (in parallel)."""
    with ThreadPoolExecutor(max_workers=len(cluster.hosts), thread_name_prefix="doctor") as pool:
        futures = {
            h.name: pool.submit(check_host, cluster, h, vendors[h.vendor], limits) for h in cluster.hosts
        }
        return Report(check_control(cluster), {name: future.result() for name, future in futures.items()})


def check_control(cluster: Cluster) -> List[Check]:
    """results_dir and the store's folder must take a file."""
    return [
        _writable_here("results_dir", Path(cluster.results_dir)),
        _writable_here("store", Path(cluster.store).parent),
    ]


def _writable_here(name: str, path: Path) -> Check:
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, os.strerror(20), str(existing))
        with tempfile.TemporaryFile(dir=str(existing)):
            pass
    except OSError as exc:
        return Check(
            name, FAIL, "not writable", "%s: %s" % (path, exc.strerror or exc), "choose a writable %s" % name
        )
    return Check(name, PASS, str(path))


def check_host(cluster: Cluster, host: Host, vendor: Vendor, limits: Limits) -> List[Check]:
    """Every check of COLUMNS for one host; after a failed ssh check the host's checks are skipped."""
    timeout = cluster.host_timeouts(host).connect
    transport = host_transport(host, timeout)
    try:
        probe = _HostProbe(cluster, host, vendor, limits, transport, timeout)
        first = probe.ssh()
        if first.status == FAIL:
            rest = [Check(name, SKIP, "needs ssh") for name in COLUMNS[1:-1]]
            return [first] + rest + [probe.image()]
        remote = (
            probe.docker,
            probe.smi,
            probe.nodes,
            probe.workdir,
            probe.docker_disk,
            probe.data,
            probe.weights,
            probe.mps,
        )
        checks = [first] + [probe.guard(name, method) for name, method in zip(COLUMNS[1:-1], remote)]
        return checks + [probe.guard("image", lambda: probe.image(on_host=checks[1].status == PASS))]
    finally:
        transport.close()


class _HostProbe:
    """The checks of one host, run through its transport."""

    def __init__(
        self,
        cluster: Cluster,
        host: Host,
        vendor: Vendor,
        limits: Limits,
        transport: Transport,
        timeout: float,
    ) -> None:
        self.cluster = cluster
        self.host = host
        self.vendor = vendor
        self.limits = limits
        self.transport = transport
        self.timeout = timeout

    def run(self, argv: List[str], timeout: Optional[float] = None) -> Completed:
        return self.transport.run(argv, timeout=timeout or self.timeout)

    @staticmethod
    def guard(name: str, method: Callable[[], Check]) -> Check:
        """Run one check; a lost connection or a timeout fails that check, not the doctor."""
        try:
            return method()
        except TransportError as exc:
            return Check(
                name, FAIL, "no answer", one_line(str(exc)), "check that the host is still reachable"
            )

    # -- the checks, in COLUMNS order -------------------------------------------------
    def ssh(self) -> Check:
        host = self.host
        if host.is_local:
            return Check("ssh", PASS, "local (no ssh)")
        try:
            self.run(["true"]).check()
        except TransportError as exc:
            summary, fix = _ssh_fix(exc, host)
            return Check("ssh", FAIL, summary, one_line(str(exc)), fix)
        where = "%s:%s" % (host.address, host.port or 22)
        if not host.strict_host_keys:
            return Check(
                "ssh",
                WARN,
                "host key NOT verified",
                "%s: strict_host_keys is false, so any host key is accepted" % where,
                "add the host's key to known_hosts, then remove strict_host_keys: false",
            )
        return Check("ssh", PASS, "%s, host key known" % where)

    def docker(self) -> Check:
        if self.host.runtime != "docker":
            argv = [
                self.host.python,
                "-c",
                "import sys, torch; print(sys.version.split()[0], torch.__version__)",
            ]
            done = self.run(argv)
            if done.returncode != 0:
                return Check(
                    "docker",
                    FAIL,
                    "no python with torch",
                    "%s: %s" % (self.host.python, _last_line(done)),
                    "install python3 with torch >= 1.13 on the host, or name it in hosts[].python",
                )
            version, torch = (done.stdout.split() + ["?", "?"])[:2]
            return Check("docker", PASS, "bare: python %s, torch %s" % (version, torch))
        done = self.run(envinfo.DOCKER_VERSION)
        if done.returncode == 0:
            return Check("docker", PASS, "docker %s" % done.stdout.strip())
        if done.returncode == 127:
            return Check("docker", FAIL, "not installed", _last_line(done), "install docker on the host")
        return Check(
            "docker",
            FAIL,
            "engine does not answer",
            _last_line(done),
            "start the docker daemon (systemctl start docker) and let user %s use it (docker group)"
            % (self.host.user or "of the run"),
        )

    def smi(self) -> Check:
        argv = self.vendor.inventory_argv()
        if argv is None:
            return Check("smi", PASS, "vendor %s has no SMI" % self.vendor.name)
        done = self.run(argv)
        if done.returncode != 0:
            return Check(
                "smi",
                FAIL,
                "%s failed" % argv[0],
                "%s exited %d: %s" % (argv[0], done.returncode, _last_line(done)),
                "install the %s driver and %s, on the PATH of the ssh user" % (self.vendor.label, argv[0]),
            )
        found = {d.index: d for d in self.vendor.parse_inventory(done.stdout)}
        missing = sorted(set(self.host.devices) - set(found))
        if missing:
            return Check(
                "smi",
                FAIL,
                "devices %s missing" % ",".join(map(str, missing)),
                "%s lists devices %s; hosts[].devices asks for %s"
                % (
                    argv[0],
                    ",".join(map(str, sorted(found))) or "none",
                    ",".join(map(str, self.host.devices)),
                ),
                "fix hosts[].devices, or check that the driver sees every device",
            )
        models = sorted({found[d].model for d in self.host.devices})
        drivers = sorted({found[d].driver for d in self.host.devices if found[d].driver})
        driver = ", driver %s" % ", ".join(drivers) if drivers else ""
        return Check("smi", PASS, "%d x %s%s" % (len(self.host.devices), ", ".join(models), driver))

    def nodes(self) -> Check:
        args = self.vendor.docker_device_args(self.host.devices)
        nodes = [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == "--device"]
        if not nodes:
            how = " ".join(args) if args else "none needed"
            return Check("device nodes", PASS, how)
        missing = [node for node in nodes if self.run(["test", "-e", node]).returncode != 0]
        if missing:
            return Check(
                "device nodes",
                FAIL,
                "%d missing" % len(missing),
                "missing: %s" % ", ".join(missing),
                "load the %s kernel driver (it creates the nodes), or fix hosts[].devices"
                % self.vendor.label,
            )
        return Check("device nodes", PASS, ", ".join(nodes))

    def workdir(self) -> Check:
        """Safe (workdir.py: only the run's user can write there), writable, and with room."""
        try:
            configured = self.cluster.host_workdir(self.host)
            path = configured or workdirs.default_workdir(self.transport, self.timeout)
            found = workdirs.inspect(self.transport, path, self.timeout)
        except workdirs.WorkdirRefused as exc:
            return Check("workdir", FAIL, "cannot check", str(exc), "check that stat, readlink and find work")
        if found:
            return Check("workdir", FAIL, "unsafe", "%s: %s" % (path, found.reason), found.fix)
        existing = self._nearest_existing(path)
        if self.run(["test", "-d", existing]).returncode != 0:
            return Check(
                "workdir",
                FAIL,
                "not a directory",
                "%s cannot be created: %s is not a directory" % (path, existing),
                "set workdir to a folder the ssh user can create",
            )
        probe = self.run(["mktemp", "-p", existing, ".rn50bench-doctor.XXXXXX"])
        if probe.returncode != 0:
            return Check(
                "workdir",
                FAIL,
                "not writable",
                "%s cannot be made: no file can be written in %s: %s" % (path, existing, _last_line(probe)),
                "set workdir to a folder the run's user can write, or leave it unset",
            )
        self.run(["rm", "-f", "--", probe.stdout.strip()])
        return self._space_check("workdir", path, self._free_gib(existing), self.limits.workdir_gib)

    def docker_disk(self) -> Check:
        if self.host.runtime != "docker":
            return Check("docker disk", PASS, "n/a (bare runtime)")
        done = self.run(["docker", "info", "--format", "{{.DockerRootDir}}"])
        root = done.stdout.strip()
        if done.returncode != 0 or not root.startswith("/"):
            return Check(
                "docker disk",
                FAIL,
                "docker root unknown",
                "docker info: %s" % _last_line(done),
                "start the docker daemon (see the docker check)",
            )
        return self._space_check("docker disk", root, self._free_gib(root), self.limits.docker_gib)

    def data(self) -> Check:
        spec = self.host.data
        for field, path in (("data.path", spec.path), ("data.labels", spec.labels)):
            if path and self.run(["test", "-e", path]).returncode != 0:
                return Check(
                    "data",
                    FAIL,
                    "%s missing" % field,
                    "%s %s does not exist on %s" % (field, path, self.host.name),
                    "copy it there, or fix %s" % field,
                )
        if not (spec.md5 and self.limits.checksums):
            return Check("data", PASS, "present" + (" (md5 not checked)" if spec.md5 else ""))
        if self.run(["test", "-f", spec.path]).returncode != 0:
            return Check(
                "data",
                FAIL,
                "md5 needs a file",
                "data.md5 is set but data.path %s is not a file (the md5 is of a tar)" % spec.path,
                "point data.path at the tar, or remove data.md5",
            )
        return self._digest("data", "md5sum", spec.path, spec.md5.lower(), "data.md5")

    def weights(self) -> Check:
        weights = self.host.weights
        if not weights_is_file(weights):
            return Check("weights", PASS, weights)
        if self.run(["test", "-f", weights]).returncode != 0:
            return Check(
                "weights",
                FAIL,
                "missing",
                "weights %s is not a file on %s" % (weights, self.host.name),
                "copy the weights there, or fix weights",
            )
        match = HASH_IN_NAME.search(posixpath.basename(weights))
        if not (match and self.limits.checksums):
            return Check("weights", PASS, "present" + (" (sha256 not checked)" if match else ""))
        return self._digest("weights", "sha256sum", weights, match.group(1), "the sha256 prefix in its name")

    def mps(self) -> Check:
        """With ``mps`` on, the MPS daemon's control pipe must be in its pipe directory."""
        if self.host.mps is not True:
            auto = self.host.mps == "auto" and self.vendor.mps
            return Check(
                "mps", PASS, "auto: a daemon of each job's own where the GPU allows" if auto else "off"
            )
        directory = self.host.mps_pipe_directory
        pipe = posixpath.join(directory, "control")
        if self.run(["test", "-e", pipe]).returncode != 0:
            return Check(
                "mps",
                FAIL,
                "no daemon",
                "mps is on but %s is missing: the jobs' decoding would be time-sliced with the model" % pipe,
                "start it as the jobs' user (CUDA_MPS_PIPE_DIRECTORY=%s nvidia-cuda-mps-control -d), or set "
                "mps: false" % directory,
            )
        return Check("mps", PASS, pipe)

    def image(self, on_host: bool = False) -> Check:
        """On this machine: the image's template renders and its SDK files are there with their checksums.
        ``on_host`` (its docker answers): the image is there, or the base image to build it from (no
        registry may be reachable)."""
        if self.host.runtime != "docker":
            return Check("image", PASS, "n/a (bare: the runner is copied)")
        image = self.host.image
        try:
            spec = images.image_spec(
                self.vendor,
                image_overrides(self.host),
                Path(image.sdk_dir) if image.sdk_dir else None,
                image.sdk_checksums,
            )
        except images.ImageError as exc:
            return Check(
                "image",
                FAIL,
                "inputs incomplete",
                one_line(str(exc)),
                "put the vendor's SDK files in image.sdk_dir with the sha256 stated in image.sdk_checksums",
            )
        if not on_host or images.image_exists(self.transport, spec.tag):
            return Check("image", PASS, spec.tag)
        base = image_overrides(self.host).get("base_image") or self.vendor.image_vars["base_image"]
        if not images.image_exists(self.transport, base):
            return Check(
                "image",
                FAIL,
                "no base image",
                "%s is not built on %s and its base image %s is not there either"
                % (spec.tag, self.host.name, base),
                "load the base image on the host (docker load or docker import), or set image.base_image "
                "to one it has",
            )
        return Check("image", PASS, "%s (to build from %s)" % (spec.tag, base))

    # -- helpers ----------------------------------------------------------------------
    def _nearest_existing(self, path: str) -> str:
        """``path`` or its nearest ancestor that exists on the host."""
        while path != "/" and self.run(["test", "-e", path]).returncode != 0:
            path = posixpath.dirname(path.rstrip("/")) or "/"
        return path

    def _free_gib(self, path: str) -> float:
        """Free space (for unprivileged users) on the filesystem of ``path``, from ``df -P -k``."""
        done = self.run(["df", "-P", "-k", "--", path])
        fields = done.stdout.splitlines()[-1].split() if done.returncode == 0 and done.stdout.strip() else []
        if len(fields) < 4 or not fields[3].isdigit():
            raise TransportError("df -P -k %s: %s" % (path, _last_line(done)))
        return int(fields[3]) * 1024.0 / GIB

    def _space_check(self, name: str, path: str, free: float, need: float) -> Check:
        summary = "%.1f GiB free" % free
        detail = "%s: %.1f GiB free, needs %.1f GiB" % (path, free, need)
        fix = "free space there, or move it to a larger filesystem"
        if free < need:
            return Check(name, FAIL, summary, detail, fix)
        if free < 2 * need:
            return Check(name, WARN, summary, detail + " (warns below %.1f)" % (2 * need), fix)
        return Check(name, PASS, summary)

    def _digest(self, name: str, tool: str, path: str, expected: str, what: str) -> Check:
        done = self.run([tool, "--", path], timeout=CHECKSUM_TIMEOUT)
        if done.returncode != 0:
            return Check(name, FAIL, "%s failed" % tool, _last_line(done), "install coreutils on the host")
        actual = done.stdout.split()[0] if done.stdout.split() else ""
        if not actual.startswith(expected):
            return Check(
                name,
                FAIL,
                "checksum differs",
                "%s of %s is %s, %s says %s" % (tool, path, actual, what, expected),
                "copy the file again (it differs), or fix %s" % what,
            )
        return Check(name, PASS, "present, %s ok" % tool[:-3])


def _last_line(done: Completed) -> str:
    lines = (done.stderr.strip() or done.stdout.strip()).splitlines()
    return one_line(lines[-1]) if lines else "exit status %d, no output" % done.returncode


def _ssh_fix(exc: TransportError, host: Host) -> Tuple[str, str]:
    """(summary, fix) for a failed ssh connection."""
    import paramiko  # only remote hosts get here

    cause, text = exc.__cause__, str(exc)
    port = host.port or 22
    known = host.known_hosts or "~/.ssh/known_hosts"
    if isinstance(cause, paramiko.BadHostKeyException):
        return "host key changed", (
            "if %s was reinstalled, verify its new key, then replace the old one in %s"
            % (host.address, known)
        )
    if "host key" in text and "not known" in text:
        return "unknown host key", (
            "verify the key with the host's admin, then: ssh-keyscan -p %d %s >> %s"
            % (port, host.address, known)
        )
    if isinstance(cause, paramiko.AuthenticationException):
        return "authentication refused", (
            "append %s.pub to ~%s/.ssh/authorized_keys on %s, or fix user / key_file"
            % (host.key_file or "your public key", host.user or "", host.address)
        )
    if "key file" in text and "not found" in text:
        return "key file missing", "fix key_file: that file does not exist on this machine"
    return "unreachable", (
        "check that %s is up and sshd listens on port %d (address, port, firewall)" % (host.address, port)
    )


def render(console: Console, report: Report) -> None:
    """The host x check table, then every failure and warning with its fix."""
    table = Table(title="rn50bench doctor", show_lines=True)
    table.add_column("host")
    for name in COLUMNS:
        table.add_column(name, overflow="fold")
    for host, checks in report.hosts.items():
        table.add_row(host, *[_cell(check) for check in checks])
    console.print(table)
    problems = [("control", c) for c in report.control if c.status != PASS]
    problems += [
        (host, c) for host, checks in report.hosts.items() for c in checks if c.status in (FAIL, WARN)
    ]
    for where, check in problems:
        line = Text.assemble(
            (check.status.upper(), STYLES[check.status]),
            shown(" %s / %s: %s" % (where, check.name, check.detail)),
        )
        console.print(line)
        console.print(Text(shown("    fix: " + check.fix)))
    fails = sum(1 for _, c in problems if c.status == FAIL)
    warns = len(problems) - fails
    if not problems:
        console.print(Text("all checks pass on %d hosts" % len(report.hosts), style="green"))
    else:
        console.print("%d failed, %d warnings" % (fails, warns))


def _cell(check: Check) -> Text:
    return Text.assemble((check.status, STYLES[check.status]), shown(" " + check.summary))
