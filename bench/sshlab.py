"""Real SSH hosts on this machine: OpenSSH's sshd, each in its own network namespace.

The tests' SSH hosts (tests/fixtures/sshd.py, the pytest fixtures over a ``Lab``) and the fan-out bench
(bench/fanout.py) both use it. ``Lab(workdir)`` makes and, on ``close()``, tears down:

- ``host(name="", env=None)`` -> SshHost: a new namespace ``rn50b-<hex>`` joined to this machine by a veth
  pair with a /30 out of the 198.18.0.0/15 benchmark range (.1 here, .2 in the namespace), sshd on port 22
  of the .2 address with a fresh ed25519 host key, root login with a fresh client key, and a known_hosts
  file holding the host key.
- ``host_behind(jump)``: an sshd host in a namespace joined only to ``jump``'s namespace, so only that jump
  host can reach it (a node behind a bastion).
- ``lan()``: a switched /24 that namespaces join (``Lan.join``).
- ``unreachable_address()``: an address routed into a namespace where nothing holds it (ARP goes
  unanswered, so a connect hangs like one to a powered-off machine).

A process in a namespace sees this machine's filesystem, users and docker socket, so a "remote" command
can read files the caller wrote and run docker against the same dockerd. ``close()`` kills every host's
processes and deletes its veth and namespace. Needs root (``ip netns add``) and /usr/sbin/sshd.

Fallback: where ``ip netns add`` is not permitted (an unprivileged container), sshd listens on 127.0.0.1
at a free port instead (``netns`` is None) and ``unreachable_address`` is an unrouted 198.18 address
(connects fail at once instead of hanging).
"""

import ipaddress
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

SSHD = "/usr/sbin/sshd"
BENCH_NET = ipaddress.ip_network("198.18.0.0/15")


@dataclass(frozen=True)
class SshHost:
    """One running sshd of a ``Lab`` and how to reach it."""

    name: str
    address: str
    port: int
    user: str
    key_file: str
    known_hosts: str
    host_key_pub: str
    netns: Optional[str]
    sshd_pid: int

    def transport_kwargs(self) -> Dict[str, Any]:
        """Keyword arguments for ``make_transport``."""
        return {
            "name": self.name,
            "address": self.address,
            "port": self.port,
            "user": self.user,
            "key_file": self.key_file,
            "known_hosts": self.known_hosts,
        }

    def session_pids(self) -> List[int]:
        """PIDs of this sshd's per-connection processes (one unprivileged ``sshd: user@...`` each)."""
        return [pid for pid in _descendants(self.sshd_pid) if _cmdline(pid).startswith(f"sshd: {self.user}@")]

    def drop_connections(self) -> None:
        """Kill this sshd's connection processes, as a network drop or sshd restart would."""
        for pid in _descendants(self.sshd_pid):
            if _cmdline(pid).startswith("sshd: "):
                _signal(pid, signal.SIGKILL)


def _run(*argv: str) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        return raw.replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _descendants(root: int) -> List[int]:
    """Live (non-zombie) descendants of ``root``, from /proc."""
    children: Dict[int, List[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


START_S = 120  # how long sshd may take to listen, also on a loaded machine


def _wait_port(address: str, port: int, sshd: "subprocess.Popen[bytes]", log: Path) -> None:
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        if sshd.poll() is not None:
            raise RuntimeError(f"sshd exited {sshd.returncode}: {log.read_text().strip()}")
        try:
            socket.create_connection((address, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"sshd did not answer on {address}:{port} within {START_S} s: {log.read_text()}")


def _wait_listening(sshd: "subprocess.Popen[bytes]", log: Path) -> None:
    """Until sshd logs "Server listening on" (its address may be unreachable from here)."""
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        if "Server listening on" in log.read_text(errors="replace"):
            return
        if sshd.poll() is not None:
            raise RuntimeError(f"sshd exited {sshd.returncode}: {log.read_text().strip()}")
        time.sleep(0.05)
    raise RuntimeError(f"sshd did not listen within {START_S} s: {log.read_text()}")


def _delete_namespace(netns: str) -> None:
    """Kill what still runs in the namespace (orphans of remote commands too), then delete it."""
    for pid in _run("ip", "netns", "pids", netns).split():
        _signal(int(pid), signal.SIGKILL)
    _run("ip", "netns", "del", netns)


def _keygen(path: Path, comment: str) -> None:
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path))


def _netns_allowed() -> bool:
    probe = f"rn50b-probe-{uuid.uuid4().hex[:6]}"
    try:
        _run("ip", "netns", "add", probe)
    except (RuntimeError, OSError):
        return False
    _run("ip", "netns", "del", probe)
    return True


class Lan:
    """Namespaces on one switched /24 (``Lab.lan``): each gets the next address."""

    def __init__(self, lab: "Lab", switch: str, net: ipaddress.IPv4Network) -> None:
        self.lab = lab
        self.switch = switch
        self.net = net
        self._free = iter(net.hosts())
        self.gateway = str(next(self._free))  # this machine's address on the LAN

    def plug(self, link: str) -> None:
        """Move ``link`` (one end of a veth pair) into the switch and onto its bridge."""
        _run("ip", "link", "set", link, "netns", self.switch)
        inside = ["ip", "netns", "exec", self.switch, "ip", "link", "set", link]
        _run(*inside, "master", "br0")
        _run(*inside, "up")

    def join(self) -> Tuple[str, str]:
        """A new namespace on the LAN; (netns, its address)."""
        netns, tag = self.lab._netns()
        outer, inner = self.lab._veth(tag)
        self.plug(outer)
        address = str(next(self._free))
        _run("ip", "link", "set", inner, "netns", netns)
        inside = ["ip", "netns", "exec", netns, "ip"]
        _run(*inside, "addr", "add", f"{address}/{self.net.prefixlen}", "dev", inner)
        _run(*inside, "link", "set", inner, "up")
        return netns, address


class Lab:
    """Namespaces, veth pairs and sshd processes made under ``workdir``, and their teardown (``close``)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.use_netns = _netns_allowed()
        self._undo: List[Callable[[], None]] = []

    def _subnet(self, prefix: int = 30) -> ipaddress.IPv4Network:
        """A /``prefix`` of 198.18.0.0/15 no interface here uses yet."""
        used = [
            ipaddress.ip_interface(word)
            for word in _run("ip", "-4", "-o", "addr", "show").split()
            if "/" in word
        ]
        for _ in range(100):
            offset = 2 ** (32 - prefix) * random.randrange(2 ** (prefix - BENCH_NET.prefixlen))
            net = ipaddress.ip_network((int(BENCH_NET.network_address) + offset, prefix))
            if not any(iface.network.overlaps(net) for iface in used):
                return net
        raise RuntimeError(f"no free /{prefix} in {BENCH_NET}")

    def _netns(self) -> Tuple[str, str]:
        """A new namespace with its loopback up; (its name, a tag for its links)."""
        tag = uuid.uuid4().hex[:6]
        netns = f"rn50b-{tag}"
        _run("ip", "netns", "add", netns)
        self._undo.append(lambda: _delete_namespace(netns))
        _run("ip", "netns", "exec", netns, "ip", "link", "set", "lo", "up")
        return netns, tag

    def _veth(self, tag: str) -> Tuple[str, str]:
        """A veth pair here; (outer, inner). It goes with the namespace an end moves to, or at the end."""
        outer, inner = f"rn50b-{tag}o", f"rn50b-{tag}i"
        _run("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
        self._undo.append(lambda: subprocess.run(["ip", "link", "del", outer], capture_output=True))
        return outer, inner

    def namespace(self, address_inside: bool = True) -> Tuple[str, str]:
        """Make a namespace joined by a veth pair; returns (netns, address of its end)."""
        netns, tag = self._netns()
        outer, inner = self._veth(tag)
        here, there = list(self._subnet().hosts())
        _run("ip", "link", "set", inner, "netns", netns)
        _run("ip", "addr", "add", f"{here}/30", "dev", outer)
        _run("ip", "link", "set", outer, "up")
        inside = ["ip", "netns", "exec", netns, "ip"]
        if address_inside:
            _run(*inside, "addr", "add", f"{there}/30", "dev", inner)
        _run(*inside, "link", "set", inner, "up")
        return netns, str(there)

    def lan(self) -> "Lan":
        """A switched /24: a bridge in a namespace of its own (so this machine's firewall rules for
        bridged traffic do not apply), with this machine on its first address."""
        switch, tag = self._netns()
        _run("ip", "netns", "exec", switch, "ip", "link", "add", "br0", "type", "bridge")
        _run("ip", "netns", "exec", switch, "ip", "link", "set", "br0", "up")
        lan = Lan(self, switch, self._subnet(24))
        outer, inner = self._veth(tag)
        lan.plug(inner)
        _run("ip", "addr", "add", f"{lan.gateway}/24", "dev", outer)
        _run("ip", "link", "set", outer, "up")
        return lan

    def host(self, name: str = "", env: Optional[Dict[str, str]] = None) -> SshHost:
        """Start an sshd host; ``env`` is set in every session it runs (sshd_config SetEnv)."""
        name = name or f"sshd-{uuid.uuid4().hex[:6]}"
        if self.use_netns:
            netns, address = self.namespace()
            return self.sshd(name, netns, address, 22, env)
        return self.sshd(name, None, "127.0.0.1", free_port(), env)

    def host_behind(self, jump: SshHost, name: str = "") -> SshHost:
        """Start an sshd host that only ``jump``'s namespace can reach: a veth pair joins the two
        namespaces, with no route to it from here (as an accelerator node behind a bastion)."""
        if jump.netns is None:
            raise RuntimeError("a host behind a jump host needs network namespaces (ip netns add)")
        netns, tag = self._netns()
        near_end, far_end = self._veth(tag)
        near, far = list(self._subnet().hosts())
        for end, inside, address in ((near_end, jump.netns, near), (far_end, netns, far)):
            _run("ip", "link", "set", end, "netns", inside)
            _run("ip", "netns", "exec", inside, "ip", "addr", "add", f"{address}/30", "dev", end)
            _run("ip", "netns", "exec", inside, "ip", "link", "set", end, "up")
        return self.sshd(name or f"sshd-{tag}", netns, str(far), 22, probe_here=False)

    def sshd(
        self,
        name: str,
        netns: Optional[str],
        address: str,
        port: int,
        env: Optional[Dict[str, str]] = None,
        probe_here: bool = True,
    ) -> SshHost:
        """Start sshd on ``address:port`` inside ``netns`` (None: here) with fresh keys and ``env`` set in
        every session; stopped by close. ``probe_here=False``: the address is not reachable from here,
        so sshd's own log says when it listens."""
        home = self.workdir / name
        home.mkdir()
        _keygen(home / "host_key", "rn50bench-lab-host")
        _keygen(home / "client_key", "rn50bench-lab-client")
        shutil.copyfile(home / "client_key.pub", home / "authorized_keys")
        prefix = ["ip", "netns", "exec", netns] if netns else []
        config = home / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {port}",
                    f"ListenAddress {address}",
                    f"HostKey {home / 'host_key'}",
                    "PermitRootLogin prohibit-password",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    f"AuthorizedKeysFile {home / 'authorized_keys'}",
                    "StrictModes no",
                    "UsePAM no",
                    f"PidFile {home / 'sshd.pid'}",
                    "Subsystem sftp internal-sftp",
                    "PrintMotd no",
                    "MaxSessions 64",
                    "LogLevel VERBOSE",
                    *[f"SetEnv {key}={value}" for key, value in (env or {}).items()],
                    "",
                ]
            )
        )
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        log = home / "sshd.log"
        with log.open("wb") as log_file:
            sshd = subprocess.Popen([*prefix, SSHD, "-D", "-e", "-f", str(config)], stderr=log_file)
        self._undo.append(lambda: self._stop(sshd))
        if probe_here:
            _wait_port(address, port, sshd, log)
        else:
            _wait_listening(sshd, log)
        key = (home / "host_key.pub").read_text().split()
        known = address if port == 22 else f"[{address}]:{port}"
        (home / "known_hosts").write_text(f"{known} {key[0]} {key[1]}\n")
        return SshHost(
            name=name,
            address=address,
            port=port,
            user="root",
            key_file=str(home / "client_key"),
            known_hosts=str(home / "known_hosts"),
            host_key_pub=str(home / "host_key.pub"),
            netns=netns,
            sshd_pid=sshd.pid,
        )

    def unreachable_address(self) -> str:
        """An address in 198.18.0.0/15 where nothing answers."""
        if not self.use_netns:
            return str(BENCH_NET.broadcast_address - 1)
        return self.namespace(address_inside=False)[1]

    @staticmethod
    def _stop(sshd: "subprocess.Popen[bytes]") -> None:
        """Kill sshd and what its sessions left running, children first (so that their parents reap them)."""
        for pid in reversed(_descendants(sshd.pid)):
            _signal(pid, signal.SIGKILL)
            deadline = time.monotonic() + 0.5
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
        sshd.kill()
        sshd.wait(timeout=10)

    def close(self) -> None:
        """Undo everything, newest first; one RuntimeError naming whatever could not be undone."""
        errors = []
        for undo in reversed(self._undo):
            try:
                undo()
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                errors.append(str(exc))
        if errors:
            raise RuntimeError("ssh lab teardown: " + "; ".join(errors))
