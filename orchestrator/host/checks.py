"""What the doctor's checks are made of: a check's outcome, the limits it holds a host to, and the probe
that runs each check's argv through the host's transport, with the checks of the host's storage and
inputs (workdir, docker disk, data, weights). ``doctor`` adds the checks of its software and devices."""

import posixpath
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

from orchestrator.host import workdir as workdirs
from orchestrator.model.cluster import Cluster, Host
from orchestrator.safeio.text import one_line
from orchestrator.transport.base import Completed, Transport, TransportError
from runner_in_container.contract import expected_weights, weights_is_file, weights_refusal
from vendors.vendor import Vendor

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
#: md5sum / sha256sum of a whole ImageNet tar (6.4 GB) may take minutes on a slow disk
CHECKSUM_TIMEOUT = 1800.0
GIB = 1024.0**3
#: how a file torch.save writes starts: a zip archive (torch >= 1.6), or the legacy pickle (protocol 2, then
#: torch's magic number as a 10-byte long)
TORCH_SAVE_ZIP = b"PK\x03\x04"
TORCH_SAVE_LEGACY = bytes.fromhex("80028a0a6cfc9c46f9206aa85019")


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


class StorageChecks:
    """The checks of one host's storage and inputs, run through its transport."""

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
                "%s cannot be made: no file can be written in %s: %s" % (path, existing, last_line(probe)),
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
                "docker info: %s" % last_line(done),
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
        """A file torch.save wrote (by its first bytes: the runner loads it as a state dict), whose sha256 is
        that of the weights each case run here takes (contract.weights_refusal), whatever it is called."""
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
        cases = self.cluster.host_cases(self.host)
        head = self.run(["od", "-A", "n", "-t", "x1", "-N", str(len(TORCH_SAVE_LEGACY)), "--", weights])
        first = bytes.fromhex("".join(head.stdout.split())) if head.returncode == 0 else b""
        if not first.startswith((TORCH_SAVE_ZIP, TORCH_SAVE_LEGACY)):
            expected = " or ".join(sorted({expected_weights(case.case) for case in cases}))
            return Check(
                "weights",
                FAIL,
                "not a state dict",
                "%s is not a file torch.save writes (it starts with %s); expected a state dict%s"
                % (weights, first[:4].hex() or "nothing readable", ", e.g. " + expected if expected else ""),
                "copy the weights again, or point weights at a state dict saved with torch.save",
            )
        if not self.limits.checksums:
            return Check("weights", PASS, "present (sha256 not checked)")
        sha256, failed = self._sum("weights", "sha256sum", weights)
        if failed is not None:
            return failed
        for case in cases:
            refused = weights_refusal(
                case.case, weights, sha256, case.own_or_host("weights_sha256", self.host)
            )
            if refused is not None:
                return Check(
                    "weights",
                    FAIL,
                    "checksum differs",
                    refused,
                    "copy the file again (it differs), or give weights_sha256 for weights of your own",
                )
        return Check("weights", PASS, "present, sha256 ok")

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
            raise TransportError("df -P -k %s: %s" % (path, last_line(done)))
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

    def _sum(self, name: str, tool: str, path: str) -> Tuple[str, Optional[Check]]:
        """The hex digest of ``path`` by ``tool`` (md5sum, sha256sum), or the failed check where it fails."""
        done = self.run([tool, "--", path], timeout=CHECKSUM_TIMEOUT)
        if done.returncode != 0 or not done.stdout.split():
            return "", Check(name, FAIL, "%s failed" % tool, last_line(done), "install coreutils on the host")
        return done.stdout.split()[0], None

    def _digest(self, name: str, tool: str, path: str, expected: str, what: str) -> Check:
        actual, failed = self._sum(name, tool, path)
        if failed is not None:
            return failed
        if not actual.startswith(expected):
            return Check(
                name,
                FAIL,
                "checksum differs",
                "%s of %s is %s, %s says %s" % (tool, path, actual, what, expected),
                "copy the file again (it differs), or fix %s" % what,
            )
        return Check(name, PASS, "present, %s ok" % tool[:-3])


def last_line(done: Completed) -> str:
    lines = (done.stderr.strip() or done.stdout.strip()).splitlines()
    return one_line(lines[-1]) if lines else "exit status %d, no output" % done.returncode
