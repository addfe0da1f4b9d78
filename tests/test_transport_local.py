"""Transport behaviour, checked on LocalTransport here and on SshTransport in test_transport_ssh.py.

Every check runs real processes; the SSH "remote" shares this machine's filesystem and PIDs,
so both transports are checked the same way (files under tmp_path, /proc for liveness).
"""

import json
import os
import stat
import sys
import threading
import time
from pathlib import Path
from typing import List

import pytest

from orchestrator.transport import (
    Cancelled,
    CommandTimeout,
    FetchRefused,
    LocalTransport,
    Transport,
    TransportError,
    make_transport,
)
from orchestrator.transport.base import MAX_LINE_BYTES
from orchestrator.transport.ssh import SshTransport

HOSTILE = [
    "a b",
    "$(touch {pwned})",
    "`touch {pwned}`",
    "; touch {pwned}",
    ";",
    "&&",
    "|",
    "> {pwned}",
    "line1\nline2",
    "'",
    '"',
    "'\"'\"'",
    "\\",
    "*",
    "$HOME",
    "${{IFS}}",
    "",
    "-c",
    "--",
    "ünïcödé ✓",
    "\t",
]
PRINT_ARGS = "import sys, json; print(json.dumps(sys.argv[1:]))"


def alive(pid: int) -> bool:
    """Whether pid runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rindex(")") + 2] != "Z"


def wait_gone(*pids: int, within: float = 120.0) -> List[int]:
    """The pids still alive after ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.05)
    return [pid for pid in pids if alive(pid)]


def read_pid(path: Path, within: float = 120.0) -> int:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        if text.endswith("\n"):
            return int(text)
        time.sleep(0.02)
    raise AssertionError(f"{path} was not written")


class TransportContract:
    """What every transport must do; a subclass provides the ``transport`` fixture."""

    def test_argv_reaches_program_verbatim(self, transport: Transport, tmp_path: Path) -> None:
        pwned = tmp_path / "pwned"
        args = [item.format(pwned=pwned) for item in HOSTILE]
        done = transport.run([sys.executable, "-c", PRINT_ARGS, *args]).check()
        assert json.loads(done.stdout) == args
        assert not pwned.exists()
        assert not (Path.cwd() / "pwned").exists()

    def test_exit_status(self, transport: Transport) -> None:
        done = transport.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
        assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
        with pytest.raises(TransportError, match="sh exited 3: err"):
            done.check()
        assert transport.stream(["sh", "-c", "exit 5"], print, print) == 5

    def test_missing_program_exits_127(self, transport: Transport) -> None:
        done = transport.run(["rn50b-no-such-program", "x"])
        assert done.returncode == 127
        assert "rn50b-no-such-program" in done.stderr

    def test_stdin_and_large_output(self, transport: Transport) -> None:
        data = os.urandom(300_000).hex().encode()  # 600 kB: more than any pipe or window buffer
        done = transport.run(["cat"], stdin=data)
        assert done.stdout.encode() == data
        assert transport.run(["cat"]).stdout == ""  # no stdin: EOF at once

    def test_stream_lines_in_order_per_stream(self, transport: Transport) -> None:
        code = (
            "import sys\nfor i in range(300): print(f'o{i}', flush=True); print(f'e{i}', file=sys.stderr)\n"
        )
        out: List[str] = []
        err: List[str] = []
        assert transport.stream([sys.executable, "-c", code], out.append, err.append) == 0
        assert out == [f"o{i}" for i in range(300)]
        assert err == [f"e{i}" for i in range(300)]

    def test_stream_line_ends(self, transport: Transport) -> None:
        out: List[str] = []
        transport.stream(["printf", "a\\r\\nb\\n\\nlast"], out.append, print)
        assert out == ["a", "b", "", "last"]
        assert transport.run(["printf", "a\\nlast"]).stdout == "a\nlast"

    def test_stream_delivers_lines_as_they_come(self, transport: Transport, tmp_path: Path) -> None:
        """The command writes its second line only once the first has been delivered (a file says so)."""
        delivered = tmp_path / "first-delivered"
        seen: List[str] = []

        def on_line(line: str) -> None:
            seen.append(line)
            delivered.write_text("")

        script = 'echo first; while [ ! -e "$1" ]; do sleep 0.05; done; echo second'
        transport.stream(["sh", "-c", script, "sh", str(delivered)], on_line, print, timeout=300)
        assert seen == ["first", "second"]

    def test_timeout_kills_process_group(self, transport: Transport, tmp_path: Path) -> None:
        script = 'echo $$ > "$1"; sleep 60 & echo $! > "$2"; wait'
        leader, child = tmp_path / "leader.pid", tmp_path / "child.pid"
        started = time.monotonic()
        with pytest.raises(CommandTimeout, match="timed out after 1 s"):
            transport.run(["sh", "-c", script, "sh", str(leader), str(child)], timeout=1)
        assert time.monotonic() - started < 30  # well before the 60 s sleep would have ended
        assert wait_gone(read_pid(leader), read_pid(child)) == []

    def test_timeout_escalates_to_kill(self, transport: Transport, tmp_path: Path) -> None:
        pidfile = tmp_path / "stubborn.pid"
        script = 'trap "" TERM; echo $$ > "$1"; while :; do sleep 0.1; done'
        with pytest.raises(CommandTimeout):
            transport.stream(["sh", "-c", script, "sh", str(pidfile)], print, print, timeout=0.5)
        assert wait_gone(read_pid(pidfile)) == []

    def test_cancel_kills_process(self, transport: Transport, tmp_path: Path) -> None:
        pidfile = tmp_path / "cancel.pid"
        started = threading.Event()
        with pytest.raises(Cancelled, match="cancelled"):
            transport.stream(
                ["sh", "-c", 'echo $$ > "$1"; echo started; exec sleep 60', "sh", str(pidfile)],
                lambda line: started.set(),
                print,
                cancel=started.is_set,
            )
        assert wait_gone(read_pid(pidfile)) == []

    def test_handler_error_kills_process(self, transport: Transport, tmp_path: Path) -> None:
        pidfile = tmp_path / "handler.pid"

        def explode(line: str) -> None:
            raise KeyError(line)

        with pytest.raises(KeyError, match="boom"):
            transport.stream(
                ["sh", "-c", 'echo $$ > "$1"; echo boom; exec sleep 60', "sh", str(pidfile)], explode, print
            )
        assert wait_gone(read_pid(pidfile)) == []

    def test_put_get_round_trip(self, transport: Transport, tmp_path: Path) -> None:
        payload = os.urandom(5 * 1024 * 1024)
        source = tmp_path / "source.bin"
        source.write_bytes(payload)
        remote = tmp_path / "remote" / "deep" / "er" / "file.bin"
        transport.put(source, str(remote), mode=0o600)
        assert remote.read_bytes() == payload
        assert stat.S_IMODE(remote.stat().st_mode) == 0o600
        transport.put(tmp_path / "source.bin", str(remote), mode=0o755)  # replaces in place
        assert stat.S_IMODE(remote.stat().st_mode) == 0o755
        back = tmp_path / "back" / "again" / "file.bin"
        transport.get(str(remote), back, len(payload))
        assert back.read_bytes() == payload
        assert stat.S_IMODE(back.stat().st_mode) == 0o600  # what a host hands back is for root's eyes
        assert sorted(p.name for p in remote.parent.iterdir()) == ["file.bin"]  # no temp files left
        assert sorted(p.name for p in back.parent.iterdir()) == ["file.bin"]

    def test_copy_errors_name_the_path(self, transport: Transport, tmp_path: Path) -> None:
        with pytest.raises(TransportError, match="nothing-here"):
            transport.get(str(tmp_path / "nothing-here"), tmp_path / "out", 100)
        assert not (tmp_path / "out").exists()
        blocker = tmp_path / "a-file"
        blocker.write_text("x")
        with pytest.raises(TransportError, match="a-file"):
            transport.put(blocker, str(blocker / "below" / "f"))

    def test_get_refuses_links_special_and_large_files_at_once(self, transport: Transport, tmp_path: Path):
        secret = tmp_path / "secret"
        secret.write_text("root's secret\n")
        secret.chmod(0o600)
        job = tmp_path / "job"
        job.mkdir()
        (job / "to-secret").symlink_to(secret)
        (job / "to-zero").symlink_to("/dev/zero")
        os.mkfifo(job / "fifo")  # nobody writes it: opening it for reading would wait for ever
        (job / "big").write_bytes(b"x" * 101)
        back = tmp_path / "back"
        back.mkdir()
        for name, why in [
            ("to-secret", "a symbolic link"),
            ("to-zero", "a symbolic link"),
            ("fifo", "not a regular file"),
            ("big", "larger than 100 bytes"),
        ]:
            with pytest.raises(FetchRefused, match="%s refused: %s" % (job / name, why)):
                transport.get(str(job / name), back / name, 100, timeout=60)
        with pytest.raises(FetchRefused, match="/dev/zero refused: not a regular file"):
            transport.get("/dev/zero", back / "zero", 100, timeout=60)
        assert list(back.iterdir()) == []  # no copy, no .part

    def test_stream_cuts_a_long_line(self, transport: Transport) -> None:
        code = "import sys; sys.stdout.write('x' * 3000000 + '\\nnext\\n' + 'y' * 70000)"
        out: List[str] = []
        assert transport.stream([sys.executable, "-c", code], out.append, print, timeout=300) == 0
        cut = "x" * MAX_LINE_BYTES + " [line cut: %d more bytes dropped]"
        assert out == [
            cut % (3000000 - MAX_LINE_BYTES),
            "next",
            cut.replace("x", "y") % (70000 - MAX_LINE_BYTES),
        ]

    def test_stream_ends_when_the_command_exits(self, transport: Transport, tmp_path: Path) -> None:
        """A child left behind that holds the output open is killed after drain_s, not waited for."""
        pidfile = tmp_path / "child.pid"
        script = 'sleep 600 & echo $! > "$1"; echo done'
        out: List[str] = []
        started = time.monotonic()
        assert transport.stream(["sh", "-c", script, "sh", str(pidfile)], out.append, print, timeout=300) == 0
        assert time.monotonic() - started < 60  # well before the sleep (or the timeout) would end
        assert out == ["done"]
        assert wait_gone(read_pid(pidfile)) == []

    def test_argv_must_be_a_list(self, transport: Transport) -> None:
        for bad in ("echo hi", [], ["echo", b"bytes"], ["echo", "nul\x00"], ["-rf"]):
            with pytest.raises(ValueError):
                transport.run(bad)  # type: ignore[arg-type]


class TestLocalTransport(TransportContract):
    @pytest.fixture
    def transport(self) -> Transport:
        return LocalTransport("local", kill_grace=0.5)

    def test_runs_with_own_process_group(self) -> None:
        done = LocalTransport().run([sys.executable, "-c", "import os; print(os.getpgid(0) == os.getpid())"])
        assert done.stdout == "True\n"


def test_make_transport() -> None:
    assert isinstance(make_transport("here", "local"), LocalTransport)
    remote = make_transport("gpu1", "198.18.0.2", port=2222, user="bench", key_file="/k", connect_timeout=3)
    assert isinstance(remote, SshTransport)
    assert (remote.host, remote.address, remote.port, remote.user, remote.key_files) == (
        "gpu1",
        "198.18.0.2",
        2222,
        "bench",
        ["/k"],
    )
    assert remote.connect_timeout == 3 and remote.strict_host_keys
