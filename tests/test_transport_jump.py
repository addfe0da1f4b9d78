"""Hosts behind jump hosts: real sshd daemons in network namespaces where the host is reachable only through
the jump host (bench/sshlab.py ``Lab.host_behind``), reached with ``jump:``, a ProxyJump chain from an
ssh_config file and a ProxyCommand; every hop's host key is checked."""

import ipaddress
import re
import sys
from pathlib import Path
from typing import Any, List, Tuple

import pytest

import vendors
from bench.sshlab import Lab, SshHost
from orchestrator.config.load import load_cluster
from orchestrator.host import doctor
from orchestrator.model.fields import ConfigError
from orchestrator.store import Store
from orchestrator.transport import TransportError, make_transport
from orchestrator.transport.hops import Hop, Jump, jumps_from_config, proxy_argv
from orchestrator.transport.ssh import SshTransport
from runner_in_container.data.generate import generate
from tests.test_doctor import SMALL
from tests.test_faults import CASE, local_entry, orchestrator, write_cluster
from tests.test_transport_ssh import keygen

pytestmark = pytest.mark.ssh
TIMEOUT = 60.0  # a live sshd answers well within it


@pytest.fixture(scope="module")
def bastion(ssh_lab: Lab) -> SshHost:
    return ssh_lab.host("bastion")


@pytest.fixture(scope="module")
def inner(ssh_lab: Lab, bastion: SshHost) -> SshHost:
    """Reachable only from ``bastion``'s namespace."""
    return ssh_lab.host_behind(bastion, "inner")


@pytest.fixture(scope="module")
def second_bastion(ssh_lab: Lab, bastion: SshHost) -> SshHost:
    """A second jump host reachable only from ``bastion``."""
    return ssh_lab.host_behind(bastion, "bastion2")


@pytest.fixture(scope="module")
def deepest(ssh_lab: Lab, second_bastion: SshHost) -> SshHost:
    """Reachable only from ``second_bastion``: two jumps away."""
    return ssh_lab.host_behind(second_bastion, "deepest")


def known_hosts(path: Path, *hosts: SshHost) -> str:
    """One known_hosts file holding the keys of ``hosts``."""
    path.write_text("".join(Path(h.known_hosts).read_text() for h in hosts))
    return str(path)


def jump_of(host: SshHost) -> Jump:
    return Jump(host.address, host.port, host.user, host.key_file)


def through(target: SshHost, jumps: List[SshHost], known: str, **overrides: Any) -> SshTransport:
    kwargs = dict(target.transport_kwargs(), known_hosts=known, connect_timeout=TIMEOUT)
    kwargs["jump"] = [jump_of(j) for j in jumps]
    kwargs.update(overrides)
    transport = make_transport(**kwargs)
    assert isinstance(transport, SshTransport)
    return transport


def ssh_connection(transport: SshTransport) -> Tuple[str, str]:
    """(client address, server address) of the session the command ran in."""
    words = transport.run(["sh", "-c", 'echo "$SSH_CONNECTION"']).check().stdout.split()
    return words[0], words[2]


def same_link(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` are the two ends of one veth pair (one /30)."""
    return ipaddress.ip_interface(f"{a}/30").network == ipaddress.ip_interface(f"{b}/30").network


def wrong_key_line(host: SshHost, tmp_path: Path) -> str:
    """A known_hosts line giving ``host`` a key that is not its own."""
    other = keygen(tmp_path / f"not-{host.name}")
    return f"{host.address} {' '.join(Path(str(other) + '.pub').read_text().split()[:2])}\n"


def test_inner_host_is_not_reachable_directly(inner: SshHost, tmp_path: Path) -> None:
    """No route from here (what answers, if anything, is this machine's default gateway, not the sshd)."""
    direct = make_transport(**dict(inner.transport_kwargs(), connect_timeout=2.0))
    with pytest.raises(TransportError, match=f"^inner \\(root@{inner.address}:22\\): "):
        direct.run(["true"])


def test_runs_and_copies_through_a_jump_host(bastion: SshHost, inner: SshHost, tmp_path: Path) -> None:
    with through(inner, [bastion], known_hosts(tmp_path / "known", bastion, inner)) as transport:
        client, server = ssh_connection(transport)
        assert server == inner.address and same_link(client, inner.address)  # from the bastion's end
        transport.put(Path(inner.known_hosts), str(tmp_path / "copied"))
        assert (tmp_path / "copied").read_text() == Path(inner.known_hosts).read_text()


@pytest.mark.parametrize("wrong", ["bastion", "inner"])
def test_wrong_host_key_on_either_hop_refused(
    wrong: str, bastion: SshHost, inner: SshHost, tmp_path: Path
) -> None:
    hosts = {"bastion": bastion, "inner": inner}
    known = tmp_path / "known"
    known.write_text(
        "".join(
            wrong_key_line(h, tmp_path) if name == wrong else Path(h.known_hosts).read_text()
            for name, h in hosts.items()
        )
    )
    with pytest.raises(TransportError) as caught, through(inner, [bastion], str(known)) as transport:
        transport.run(["true"])
    message = str(caught.value)
    where = {
        "bastion": f"jump host {bastion.address} (root@{bastion.address}:22)",
        "inner": f"inner (root@{inner.address}:22 via jump host {bastion.address})",
    }
    assert message.startswith(f"host key for {where[wrong]} changed: ")
    assert "\n" not in message


def test_host_the_jump_host_cannot_reach(bastion: SshHost, inner: SshHost, tmp_path: Path) -> None:
    known = known_hosts(tmp_path / "known", bastion, inner)
    with pytest.raises(TransportError) as caught:
        through(inner, [bastion], known, port=2).run(["true"])
    message = str(caught.value)
    assert message.startswith(f"jump host {bastion.address} (root@{bastion.address}:22): cannot reach ")
    assert f"{inner.address}:2 for inner: " in message and "\n" not in message


def test_unknown_host_keys_refused_with_how_to_fetch_them(
    bastion: SshHost, inner: SshHost, tmp_path: Path
) -> None:
    known = known_hosts(tmp_path / "known", inner)  # the bastion's key missing
    with pytest.raises(TransportError, match=f"host key for jump host {bastion.address} .* not known"):
        through(inner, [bastion], known).run(["true"])
    known = known_hosts(tmp_path / "known", bastion)  # the inner host's key missing: scanned via the bastion
    with pytest.raises(TransportError, match="host key for inner .* not known") as caught:
        through(inner, [bastion], known).run(["true"])
    scan = f"ssh -p 22 root@{bastion.address} ssh-keyscan -p 22 -t ssh-ed25519 {inner.address} >> "
    assert scan in str(caught.value)


def test_proxy_jump_chain_from_ssh_config(
    bastion: SshHost, second_bastion: SshHost, deepest: SshHost, tmp_path: Path
) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(
        "".join(
            f"Host {alias}\n  HostName {h.address}\n  User root\n  IdentityFile {h.key_file}\n"
            for alias, h in (("gate", bastion), ("gate2", second_bastion), ("node", deepest))
        )
        + "Host node\n  ProxyJump gate,root@gate2:22\n"
    )
    known = known_hosts(tmp_path / "known", bastion, second_bastion, deepest)
    with SshTransport(
        "node", "node", known_hosts=known, ssh_config=str(config), connect_timeout=TIMEOUT
    ) as transport:
        assert [hop.address for hop in transport.jumps] == [bastion.address, second_bastion.address]
        client, server = ssh_connection(transport)
        assert server == deepest.address and same_link(client, deepest.address)  # from gate2's end


def test_proxy_command(bastion: SshHost, inner: SshHost, tmp_path: Path) -> None:
    """OpenSSH's client as the ProxyCommand (``ssh -W``), its words given as an argv, %h %p substituted."""
    known = known_hosts(tmp_path / "known", bastion, inner)
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host node\n  HostName {inner.address}\n  User root\n  IdentityFile {inner.key_file}\n"
        f'  ProxyCommand ssh -F none -i "{bastion.key_file}" -o BatchMode=yes -o UserKnownHostsFile={known}'
        f" -o StrictHostKeyChecking=yes -W %h:%p root@{bastion.address}\n"
    )
    with SshTransport(
        "node", "node", known_hosts=known, ssh_config=str(config), connect_timeout=TIMEOUT
    ) as transport:
        assert ssh_connection(transport)[1] == inner.address
        assert transport.run(["echo", "via", "proxy"]).check().stdout == "via proxy\n"


HOP = Hop("node", "10.0.0.7", 2222, "bench", ())


def test_proxy_argv_substitutes_in_words() -> None:
    argv = proxy_argv("exec nc -X connect 'proxy host' %h %p %r 100%%", HOP)
    assert argv == ["nc", "-X", "connect", "proxy host", "10.0.0.7", "2222", "bench", "100%"]


@pytest.mark.parametrize(
    "command, refusal",
    [
        ("nc %h %p | tee log", "shell syntax (|)"),
        ("nc %h %p; rm -rf x", "shell syntax (;)"),
        ("nc %n %p", "token %n is not supported"),
        ("nc 'open", "cannot be split"),
        ("exec", "empty"),
    ],
)
def test_proxy_argv_refusals(command: str, refusal: str) -> None:
    with pytest.raises(TransportError, match="node \\(bench@10.0.0.7:2222\\): ProxyCommand") as caught:
        proxy_argv(command, HOP)
    assert refusal in str(caught.value)


def test_proxy_jump_values() -> None:
    chain = jumps_from_config("node", {"proxyjump": "gate, bob@10.1.2.3:2200,ssh://root@[fd00::1]:22"})
    assert chain == [Jump("gate"), Jump("10.1.2.3", 2200, "bob"), Jump("fd00::1", 22, "root")]
    assert jumps_from_config("node", {"proxyjump": "none"}) == []
    with pytest.raises(TransportError, match="node: ProxyJump entry 'gate:x' is not"):
        jumps_from_config("node", {"proxyjump": "gate:x"})
    with pytest.raises(TransportError, match="both ProxyJump and ProxyCommand"):
        jumps_from_config("node", {"proxyjump": "gate", "proxycommand": "nc %h %p"})


# -- the cluster file's jump: field, and a real job through it ---------------------------------------------
def cluster_with(tmp_path: Path, entry: dict) -> Path:
    return write_cluster(tmp_path / "hosts.yaml", tmp_path, [entry])


@pytest.mark.parametrize(
    "change, refusal",
    [
        ({"address": "local"}, "jump hosts need an SSH address"),
        ({"jump": [{"address": "bad host"}]}, "hosts[0].jump[0].address: must be a host name"),
        ({"jump": [{"address": "gate", "user": "Root;"}]}, "hosts[0].jump[0].user"),
        ({"jump": [{"address": "gate", "shell": "x"}]}, "hosts[0].jump[0].shell"),
    ],
)
def test_jump_field_validated(tmp_path: Path, change: dict, refusal: str) -> None:
    entry = local_entry("node", tmp_path, tmp_path / "work", {}, address="node", jump=[{"address": "gate"}])
    entry.update(change)
    with pytest.raises(ConfigError, match=re.escape(refusal)) as caught:
        load_cluster(cluster_with(tmp_path, entry))
    assert "\n" not in str(caught.value)


def test_doctor_names_the_hop_and_fetches_keys_through_the_jump_host(
    bastion: SshHost, inner: SshHost, tmp_path: Path
) -> None:
    entry = local_entry(
        "inner", tmp_path, tmp_path / "work", {}, address=inner.address, key_file=inner.key_file,
        known_hosts=known_hosts(tmp_path / "known", bastion),  # the inner host's key not known
        jump=[{"address": bastion.address, "user": bastion.user, "key_file": bastion.key_file}],
    )  # fmt: skip
    cluster = load_cluster(cluster_with(tmp_path, entry))
    host = cluster.hosts[0]
    first = doctor.check_host(cluster, host, vendors.get("cpu"), SMALL)[0]
    assert (first.name, first.status, first.summary) == ("ssh", "fail", "unknown host key")
    assert f"ssh -p 22 root@{bastion.address} ssh-keyscan -p 22 -t ssh-ed25519 {inner.address}" in first.fix


@pytest.mark.slow
def test_job_runs_on_a_host_behind_a_jump_host(bastion: SshHost, inner: SshHost, tmp_path: Path) -> None:
    """``orchestrator run`` with ``jump:``: a bare CPU job on a host only the jump host can reach."""
    data = Path(generate(str(tmp_path / "set"), images=4, layout="imagefolder"))
    entry = local_entry(
        "inner",
        data,
        tmp_path / "work",
        {},
        address=inner.address,
        user=inner.user,
        key_file=inner.key_file,
        known_hosts=known_hosts(tmp_path / "known", bastion, inner),
        jump=[{"address": bastion.address, "user": bastion.user, "key_file": bastion.key_file}],
        runtime="bare",
        python=sys.executable,
    )
    done = orchestrator("run", "--cluster", str(cluster_with(tmp_path, entry)))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    store = Store(str(tmp_path / "store.sqlite"))
    (run,) = store.runs()
    (job,) = store.jobs(run["run_id"])
    assert (job["state"], job["reason"]) == ("OK", None)
    result = store.results(run["run_id"])[job["job_id"]]["result"]
    assert result["config"]["batch_size"] == CASE["batch_size"] and result["stages"]["infer"]["images"] == 4
