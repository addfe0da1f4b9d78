"""``python -m orchestrator doctor``: check every host of a cluster file before a run, all hosts at once.

Per host: SSH reachable with a known host key; docker answers (its version; job containers
left there by orchestrators that are gone are removed, host/orphans.py); the vendor's
SMI answers and lists the configured devices; the device nodes docker would be given
exist; free space in the workdir and the docker root; data, labels and weights exist,
with their md5 / sha256 where the cluster file states them; with ``mps`` on, the MPS
daemon's control pipe is there; docker.memory caps the job's memory (a warning without); and, on this
machine, the
image's inputs (template, SDK files: regular, readable, with their checksums), then the
image on the host (unknown, a skip, where docker does not answer). Every probe is an argv run
through the host's transport, exactly as a run reaches the host. Each failure comes with
a one-line fix. On the control machine: results_dir and the store's folder are writable.
"""

import os
import posixpath
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

from rich.console import Console
from rich.text import Text

from orchestrator.host import envinfo, images, orphans
from orchestrator.host import python as hostpython
from orchestrator.host.checks import FAIL, PASS, SKIP, WARN, Check, Limits, StorageChecks, last_line
from orchestrator.host.images import lacks_sdk_file
from orchestrator.host.prepare import base_image, driver_dir, host_image_spec, host_transport
from orchestrator.model.cluster import Cluster, Host
from orchestrator.safeio.fit import Cell, FittedTable
from orchestrator.safeio.text import one_line, shown
from orchestrator.transport.base import TransportError
from vendors.vendor import Vendor

#: what a driver folder (docker.driver_dir) holds: the driver's libraries and its tools (nvidia-smi)
DRIVER_PARTS = ("lib64", "bin")
STYLES = {PASS: "green", WARN: "yellow", FAIL: "bold red", SKIP: "dim"}
#: the checks of a host, in table order
COLUMNS = (
    "ssh",
    "docker",
    "smi",
    "device nodes",
    "gpu access",
    "workdir",
    "docker disk",
    "data",
    "weights",
    "mps",
    "memory cap",
    "image",
)


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
            probe.gpu_access,
            probe.workdir,
            probe.docker_disk,
            probe.data,
            probe.weights,
            probe.mps,
            probe.memory_cap,
        )
        checks = [first] + [probe.guard(name, method) for name, method in zip(COLUMNS[1:-1], remote)]
        return checks + [probe.guard("image", lambda: probe.image(on_host=checks[1].status == PASS))]
    finally:
        transport.close()


class _HostProbe(StorageChecks):
    """The checks of one host, run through its transport: its storage and inputs (StorageChecks), its
    software and devices (here)."""

    # -- the checks of software and devices ----------------------------------------------
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
            argv = hostpython.code_argv(
                self.host.python, "import torch; print(sys.version.split()[0], torch.__version__)"
            )
            done = self.run(argv)
            if done.returncode != 0:
                return Check(
                    "docker",
                    FAIL,
                    "no python with torch",
                    "%s: %s" % (self.host.python, last_line(done)),
                    "install python3 with torch >= 1.13 on the host, or name it in hosts[].python",
                )
            version, torch = (done.stdout.split() + ["?", "?"])[:2]
            return Check("docker", PASS, "bare: python %s, torch %s" % (version, torch))
        done = self.run(envinfo.DOCKER_VERSION)
        if done.returncode == 0:
            return self._orphans("docker %s" % done.stdout.strip())
        if done.returncode == 127:
            return Check("docker", FAIL, "not installed", last_line(done), "install docker on the host")
        return Check(
            "docker",
            FAIL,
            "engine does not answer",
            last_line(done),
            "start the docker daemon (systemctl start docker) and let user %s use it (docker group)"
            % (self.host.user or "of the run"),
        )

    def _orphans(self, version: str) -> Check:
        """Docker answers: remove the job containers of orchestrators that are gone (host/orphans.py)."""
        try:
            removed = orphans.sweep(self.transport, self.timeout)
        except TransportError as exc:
            return Check(
                "docker",
                WARN,
                version,
                "cannot list job containers: %s" % one_line(str(exc)),
                "check that docker ps works for user %s" % (self.host.user or "of the run"),
            )
        if removed:
            return Check(
                "docker",
                PASS,
                "%s; removed %d left-behind job container(s)" % (version, len(removed)),
                "removed job containers whose orchestrator is gone: %s" % ", ".join(removed),
            )
        return Check("docker", PASS, version)

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
                "%s exited %d: %s" % (argv[0], done.returncode, last_line(done)),
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
        infos = [found[d] for d in self.host.devices]
        models = sorted({info.model for info in infos})
        drivers = sorted({info.driver for info in infos if info.driver})
        driver = ", driver %s" % ", ".join(drivers) if drivers else ""
        return Check("smi", PASS, "%d x %s%s" % (len(self.host.devices), ", ".join(models), driver))

    def nodes(self) -> Check:
        by_nodes = driver_dir(self.host, self.vendor) is not None
        vendor = self.vendor
        args = (vendor.device_node_args if by_nodes else vendor.docker_device_args)(self.host.devices)
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

    def gpu_access(self) -> Check:
        """Which ways the host has to give a container its GPUs (the vendor's container toolkit; device nodes
        and a driver folder), and a warning when docker.gpu_access asks for one it has not."""
        toolkit, mount = self.vendor.container_toolkit, self.vendor.driver_mount
        if self.host.runtime != "docker" or toolkit is None or mount is None:
            return Check("gpu access", PASS, "n/a (no choice)")
        name, runtime, cli = toolkit
        runtimes = self.run(["docker", "info", "--format", "{{json .Runtimes}}"])
        found = runtimes.returncode == 0 and ('"%s"' % runtime) in runtimes.stdout
        found = found or self.run(["sh", "-c", 'command -v "$1"', "sh", cli]).returncode == 0
        folder = self.host.docker.driver_dir or mount
        nodes = all(
            self.run(["test", "-d", posixpath.join(folder, part)]).returncode == 0 for part in DRIVER_PARTS
        )
        offers = ([name] if found else []) + (["driver folder %s" % folder] if nodes else [])
        neither = "neither %s nor driver folder %s" % (name, folder)
        said = "host %s has %s" % (self.host.name, " and ".join(offers) or neither)
        chosen = self.host.docker.gpu_access
        if chosen == "toolkit" and not found:
            fix = "set docker.gpu_access: nodes"
            fix += "" if nodes else ", with docker.driver_dir: the folder of the driver's lib64/ and bin/"
            detail = "%s (no docker runtime %s, no %s): docker.gpu_access is toolkit" % (said, runtime, cli)
            return Check("gpu access", WARN, "no %s" % name, detail, fix)
        if chosen == "nodes" and not nodes:
            fix = "set docker.driver_dir to the folder of the driver's lib64/ and bin/"
            fix += ", or docker.gpu_access: toolkit" if found else ""
            detail = "%s: docker.gpu_access is nodes, but %s lacks lib64/ or bin/" % (said, folder)
            return Check("gpu access", WARN, "no driver folder", detail, fix)
        return Check("gpu access", PASS, "%s (%s)" % (chosen, said))

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

    def memory_cap(self) -> Check:
        """docker.memory set, or a warning: without it a job (a padded batch, a leak) can take the host's
        whole memory, and the kernel's OOM killer may then end other processes than the job's."""
        if self.host.runtime != "docker":
            return Check("memory cap", PASS, "n/a (bare runtime)")
        if self.host.docker.memory:
            return Check("memory cap", PASS, "docker.memory %s" % self.host.docker.memory)
        done = self.run(["cat", "/proc/meminfo"])
        total = envinfo.parse_meminfo_gib(done.stdout) if done.returncode == 0 else None
        example = "%dg (3/4 of its %.0f GiB)" % (total * 0.75, total) if total else "3/4 of its memory"
        return Check(
            "memory cap",
            WARN,
            "none",
            "hosts[].docker.memory is not set: a job can take all the memory of host %s, and the kernel may "
            "then end other processes than the job's" % self.host.name,
            "set hosts[].docker.memory, e.g. %s: a job over it is killed alone and reported (exit 137)"
            % example,
        )

    def image(self, on_host: bool = False) -> Check:
        """On this machine: the image's template renders and its SDK files are there (regular, readable)
        with their checksums. ``on_host`` (its docker answers): the image is there, or the base image to
        build it from (no registry may be reachable); without it, whether it is there is unknown (skip)."""
        if self.host.runtime != "docker":
            return Check("image", PASS, "n/a (bare: the runner is copied)")
        try:
            spec = host_image_spec(self.host, self.vendor)
        except images.ImageError as exc:
            return Check(
                "image",
                FAIL,
                "inputs incomplete",
                one_line(str(exc)),
                "put the vendor's SDK files in image.sdk_dir with the sha256 stated in image.sdk_checksums",
            )
        lacking = self._lacking_toolkits()
        if lacking:
            return Check(
                "image",
                WARN,
                "a toolkit will be skipped",
                lacking[0],
                "put that SDK file in image.sdk_dir, or leave the toolkit out of this host's cases",
            )
        if not on_host:
            return Check("image", SKIP, "inputs complete; on the host: unknown (docker not reached)")
        if images.image_exists(self.transport, spec.tag):
            return Check("image", PASS, spec.tag)
        base = base_image(self.host, self.vendor)
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

    def _lacking_toolkits(self) -> List[str]:
        """Why toolkits or scenarios the cases ask of this host will be skipped: an optional SDK file is
        absent."""
        asked = {
            (combo["toolkit"], combo["scenario"])
            for case in self.cluster.cases
            if case.hosts is None or self.host.name in case.hosts
            for combo in case.matrix()
        }
        reasons = (lacks_sdk_file(self.host, self.vendor, *pair) for pair in sorted(asked))
        return list(dict.fromkeys(reason for reason in reasons if reason))


def _ssh_fix(exc: TransportError, host: Host) -> Tuple[str, str]:
    """(summary, fix) for a failed ssh connection; through a jump host, the error itself is the fix (it
    names the hop, and how to fetch a key through the jump host; the advice below assumes a direct one)."""
    summary, fix = _direct_ssh_fix(exc, host)
    return (summary, str(exc)) if "jump host" in str(exc) else (summary, fix)


def _direct_ssh_fix(exc: TransportError, host: Host) -> Tuple[str, str]:
    """(summary, fix) for a failed ssh connection straight from here."""
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
    """The host x check table, then every failure and warning with its fix, and what a check did."""
    rows: List[Dict[str, Cell]] = [
        dict({"host": host}, **{name: _cell(check) for name, check in zip(COLUMNS, checks)})
        for host, checks in report.hosts.items()
    ]
    columns = [("host", "host")] + [(name, name) for name in COLUMNS]
    console.print(FittedTable("rn50bench doctor", rows, columns, lines=True))
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
    for where, check in ((h, c) for h, checks in report.hosts.items() for c in checks):
        if check.status == PASS and check.detail:  # something the check did (removed containers)
            console.print(Text(shown("note %s / %s: %s" % (where, check.name, check.detail))))
    fails = sum(1 for _, c in problems if c.status == FAIL)
    warns = len(problems) - fails
    if not problems:
        console.print(Text("all checks pass on %d hosts" % len(report.hosts), style="green"))
    else:
        console.print("%d failed, %d warnings" % (fails, warns))


def _cell(check: Check) -> Text:
    return Text.assemble((check.status, STYLES[check.status]), shown(" " + check.summary))
