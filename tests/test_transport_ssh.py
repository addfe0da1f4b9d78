"""SshTransport against real sshd hosts in network namespaces (tests/fixtures/sshd.py)."""

import logging
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Iterator, List

import pytest

from bench.sshlab import SshHost
from orchestrator.transport import CommandTimeout, TransportError, make_transport
from orchestrator.transport.ssh import SshTransport
from tests.test_transport_local import TransportContract, read_pid, wait_gone

pytestmark = pytest.mark.ssh


def connect(host: SshHost, **overrides: Any) -> SshTransport:
    kwargs = dict(host.transport_kwargs(), connect_timeout=60.0)  # a live sshd answers well within it
    kwargs.update(overrides)
    transport = make_transport(**kwargs)
    assert isinstance(transport, SshTransport)
    return transport


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


class TestSshTransport(TransportContract):
    @pytest.fixture
    def transport(self, ssh_host: SshHost) -> Iterator[SshTransport]:
        transport = connect(ssh_host)
        transport.kill_grace = 0.5
        with transport:
            yield transport

    def test_runs_on_the_remote_address(self, transport: SshTransport, ssh_host: SshHost) -> None:
        out = transport.run(["sh", "-c", 'echo "$SSH_CONNECTION"']).check().stdout.split()
        assert out[2:] == [ssh_host.address, str(ssh_host.port)]

    def test_one_connection_shared_by_threads(self, transport: SshTransport, ssh_host: SshHost) -> None:
        results: List[str] = []
        errors: List[BaseException] = []

        def job(i: int) -> None:
            try:
                results.append(transport.run(["sh", "-c", f"sleep 0.5; echo {i}"]).check().stdout)
            except BaseException as exc:  # noqa: B036 - handed to the main thread
                errors.append(exc)

        threads = [threading.Thread(target=job, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        sessions = ssh_host.session_pids()
        for thread in threads:
            thread.join()
        assert errors == []
        assert sorted(results) == sorted(f"{i}\n" for i in range(8))
        assert len(sessions) == 1

    def test_connection_lost_mid_command(
        self, transport: SshTransport, ssh_host: SshHost, tmp_path: Path
    ) -> None:
        """The stream fails with one clear line; the orphaned remote command is killed after reconnecting."""
        pidfile = tmp_path / "orphan.pid"
        started = time.monotonic()
        with pytest.raises(TransportError, match="connection lost while a command ran"):
            transport.stream(
                ["sh", "-c", 'echo $$ > "$1"; echo started; exec sleep 600', "sh", str(pidfile)],
                lambda line: ssh_host.drop_connections(),
                print,
                timeout=300,
            )
        assert time.monotonic() - started < 120  # the loss is seen, not the timeout or the command's end
        assert wait_gone(read_pid(pidfile)) == []

    def test_reconnects_after_drop(self, transport: SshTransport, ssh_host: SshHost) -> None:
        assert transport.run(["true"]).returncode == 0
        before = ssh_host.session_pids()
        ssh_host.drop_connections()
        assert transport.run(["echo", "again"]).check().stdout == "again\n"
        assert ssh_host.session_pids() != before


def test_get_stops_at_its_timeout_and_leaves_nothing(ssh_host: SshHost, tmp_path: Path) -> None:
    big = tmp_path / "big"
    with big.open("wb") as handle:
        handle.truncate(1 << 30)  # sparse: a GiB that takes far longer than the timeout to send
    back = tmp_path / "back"
    back.mkdir()
    with connect(ssh_host) as transport, pytest.raises(CommandTimeout, match="stopped after 0.5 s"):
        transport.get(str(big), back / "big", 2 << 30, timeout=0.5)
    assert list(back.iterdir()) == []


def test_two_hosts(ssh_host: SshHost, second_ssh_host: SshHost, tmp_path: Path) -> None:
    assert (ssh_host.address, ssh_host.port) != (second_ssh_host.address, second_ssh_host.port)
    with connect(ssh_host) as first, connect(second_ssh_host) as second:
        for transport, host in ((first, ssh_host), (second, second_ssh_host)):
            transport.put(Path(host.known_hosts), str(tmp_path / host.name / "copied"))
            ssh_connection = transport.run(["sh", "-c", 'echo "$SSH_CONNECTION"']).check().stdout
            assert ssh_connection.split()[2:] == [host.address, str(host.port)]
        assert (tmp_path / "sshd-b" / "copied").read_text() == Path(second_ssh_host.known_hosts).read_text()


def host_key_fingerprint(host: SshHost) -> str:
    listing = subprocess.run(
        ["ssh-keygen", "-lf", host.host_key_pub], capture_output=True, text=True, check=True
    )
    return listing.stdout.split()[1]  # "256 SHA256:... comment (ED25519)"


def test_unknown_host_key_refused(ssh_host: SshHost, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(TransportError) as caught, connect(ssh_host, known_hosts=str(empty)) as transport:
        transport.run(["true"])
    message = str(caught.value)
    assert f"host key for sshd-a (root@{ssh_host.address}:{ssh_host.port}) not known: ssh-ed25519 " in message
    assert host_key_fingerprint(ssh_host) in message and "ssh-keyscan" in message
    assert "\n" not in message


def test_changed_host_key_refused(ssh_host: SshHost, tmp_path: Path) -> None:
    other = keygen(tmp_path / "other_host_key")
    known = tmp_path / "known_hosts"
    entry = Path(ssh_host.known_hosts).read_text().split()[0]  # "address" or "[address]:port"
    known.write_text(f"{entry} {' '.join(Path(str(other) + '.pub').read_text().split()[:2])}\n")
    with pytest.raises(TransportError, match="changed") as caught, connect(
        ssh_host, known_hosts=str(known)
    ) as t:
        t.run(["true"])
    assert host_key_fingerprint(ssh_host) in str(caught.value)


def test_unknown_host_key_accepted_with_warning_when_not_strict(
    ssh_host: SshHost, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    caplog.set_level(logging.WARNING)
    with connect(ssh_host, known_hosts=str(empty), strict_host_keys=False) as transport:
        with pytest.warns(UserWarning, match="Unknown ssh-ed25519 host key"):
            assert transport.run(["echo", "ok"]).stdout == "ok\n"
    assert "strict_host_keys is off" in caplog.text


def test_wrong_key_refused(ssh_host: SshHost, tmp_path: Path) -> None:
    stranger = keygen(tmp_path / "stranger")
    with pytest.raises(TransportError, match="authentication refused") as caught:
        with connect(ssh_host, key_file=str(stranger)) as transport:
            transport.run(["true"])
    assert str(stranger) in str(caught.value)


def test_missing_key_file(ssh_host: SshHost, tmp_path: Path) -> None:
    with pytest.raises(TransportError, match="key file .*no-key not found"):
        connect(ssh_host, key_file=str(tmp_path / "no-key")).run(["true"])


def test_connection_refused(ssh_host: SshHost) -> None:
    with pytest.raises(
        TransportError, match=f"sshd-a \\(root@{ssh_host.address}:2\\): cannot connect: .*refused"
    ):
        connect(ssh_host, port=2).run(["true"])


def test_host_down(ssh_host: SshHost, unreachable_address: str) -> None:
    started = time.monotonic()
    with pytest.raises(
        TransportError, match=f"{unreachable_address}:\\d+\\): (no answer within 1 s|cannot connect)"
    ):
        connect(ssh_host, address=unreachable_address, connect_timeout=1.0).run(["true"])
    assert time.monotonic() - started < 60  # the connect timeout, not the kernel's minutes of SYN retries


def test_name_not_resolved(ssh_host: SshHost) -> None:
    with pytest.raises(TransportError, match="cannot resolve rn50b-no-such-host.invalid"):
        connect(ssh_host, address="rn50b-no-such-host.invalid").get("/etc/hostname", Path("/dev/null"), 100)


def test_ssh_config_supplies_hostname_user_port_key(ssh_host: SshHost, tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host bench-alias\n  HostName {ssh_host.address}\n  User root\n  Port 2\n"
        f"  IdentityFile {ssh_host.key_file}\n"
    )
    common = dict(known_hosts=ssh_host.known_hosts, ssh_config=str(config), connect_timeout=60.0)
    with SshTransport("alias", "bench-alias", **common) as from_config:
        assert (from_config.address, from_config.port, from_config.user) == (ssh_host.address, 2, "root")
        with pytest.raises(TransportError, match="refused"):
            from_config.run(["true"])
    with SshTransport("alias", "bench-alias", port=ssh_host.port, **common) as explicit_port:
        assert explicit_port.run(["echo", "via config"]).stdout == "via config\n"
