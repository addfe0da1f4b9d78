"""Run commands and copy files on a host over SSH (paramiko), one reused connection per host.

The remote login shell must be POSIX (sh, bash, dash, ash). Each command is sent as
``WRAPPER`` followed by the argv, every element ``shlex.quote``-d: the shell prints its
PID (sshd starts every command in a new session, so the PID is also the process group)
and then ``exec``-s the argv. A timeout or cancel kills that group through a second channel.
"""

import contextlib
import logging
import os
import posixpath
import shlex
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence

import paramiko

from orchestrator.safeio.bounded import size_text
from orchestrator.transport import hops
from orchestrator.transport.base import (
    CommandTimeout,
    FetchRefused,
    Process,
    ProcessTransport,
    Readable,
    TransportError,
    private_file,
    show_argv,
    temp_name,
)

log = logging.getLogger(__name__)

PID_MARK = "rn50bench-pid="
#: the only shell text besides quoted argv elements; constant
WRAPPER = f"echo {PID_MARK}$$; exec "
#: run as ``sh -c KILL_SCRIPT rn50bench-kill PID STEPS``: TERM the group, wait for the leader
#: up to STEPS tenths of a second, then KILL the group.
KILL_SCRIPT = (
    'kill -TERM -"$1" 2>/dev/null || kill -TERM "$1" 2>/dev/null; n=0; '
    'while [ "$n" -lt "$2" ] && kill -0 "$1" 2>/dev/null; do sleep 0.1; n=$((n + 1)); done; '
    'kill -KILL -"$1" 2>/dev/null; kill -KILL "$1" 2>/dev/null; exit 0'
)
_LINK_ERRORS = hops.LINK_ERRORS
_one_line = hops.one_line
#: bytes asked for per SFTP read (the most one request carries)
_CHUNK = 32768


def quote_argv(argv: List[str]) -> str:
    """The argv as one shell command line in which every element is exactly one word."""
    return " ".join(shlex.quote(item) for item in argv)


class SshTransport(ProcessTransport):
    """A host reached with SSH; HostName/User/Port/IdentityFile/ProxyJump/ProxyCommand may come from
    ~/.ssh/config.

    Explicit arguments win over the ssh config; ``port=None`` means the config's Port, else 22.
    ``jump``: the jump hosts on the way, first to last (over the config's ProxyJump; each one's own
    HostName/User/Port/IdentityFile/ProxyCommand from the config too, see ``hops``).
    Host keys of the host and of every jump host are checked against the system and user known_hosts
    and ``known_hosts``; an unknown key is refused unless ``strict_host_keys=False`` (then only a
    warning is logged).
    """

    def __init__(
        self,
        host_name: str,
        address: str,
        port: Optional[int] = None,
        user: Optional[str] = None,
        key_file: Optional[str] = None,
        known_hosts: Optional[str] = None,
        strict_host_keys: bool = True,
        connect_timeout: float = 10.0,
        ssh_config: Optional[str] = "~/.ssh/config",
        kill_grace: float = 5.0,
        jump: Optional[Sequence[hops.Jump]] = None,
    ) -> None:
        found = hops.ssh_config(address, ssh_config)
        jumps = list(jump) if jump else hops.jumps_from_config(host_name, found)
        if jumps:
            found.pop("proxycommand", None)  # the jump hosts are the way there
        *self.jumps, self.target = hops.linked(
            [*(hops.resolve_jump(j, ssh_config) for j in jumps),
             hops.resolve(host_name, address, port, user, key_file, found)]
        )  # fmt: skip
        self.host = host_name
        self.address: str = self.target.address
        self.port: int = self.target.port
        self.user: str = self.target.user
        self.key_files = list(self.target.key_files)
        extra = [known_hosts] if known_hosts else []
        self.known_hosts_files = [
            os.path.expanduser(p) for p in [hops.SYSTEM_KNOWN_HOSTS, hops.USER_KNOWN_HOSTS, *extra]
        ]
        self.strict_host_keys = strict_host_keys
        self.connect_timeout = connect_timeout
        self.kill_grace = kill_grace
        self._lock = threading.Lock()
        self._client: Optional[hops.Chain] = None

    def describe(self) -> str:
        """``name (user@address:port)`` for messages."""
        return self.target.describe()

    # -- connection ---------------------------------------------------------------------------

    def _link(self) -> paramiko.Transport:
        """The live connection, made on first use and again after it dropped."""
        with self._lock:
            link = self._client.get_transport() if self._client is not None else None
            if link is None or not link.is_active():
                if self._client is not None:
                    self._client.close()
                self._client = None
                self._client = self._connect()
                link = hops.live(self._client, self.describe())
            return link

    def _connect(self) -> hops.Chain:
        return hops.connect(
            [*self.jumps, self.target], self.known_hosts_files, self.strict_host_keys, self.connect_timeout
        )

    def _channel(self) -> paramiko.Channel:
        """A new session channel; reconnects once if the connection turns out to be dead."""
        for attempt in (1, 2):
            link = self._link()
            try:
                return link.open_session(timeout=self.connect_timeout)
            except paramiko.ChannelException as exc:  # the connection is fine, sshd said no (MaxSessions)
                raise TransportError(f"{self.describe()}: sshd refused a new session: {exc}") from exc
            except _LINK_ERRORS as exc:
                if attempt == 2:
                    raise TransportError(
                        f"{self.describe()}: cannot open an ssh session: {_one_line(exc)}"
                    ) from exc
                self._forget(link)
        raise AssertionError("unreachable")

    def _forget(self, link: paramiko.Transport) -> None:
        """Drop ``link`` so that the next use reconnects (it may not know yet that it is dead)."""
        with self._lock:
            if self._client is not None and self._client.get_transport() is link:
                log.info("%s: connection dropped, reconnecting", self.describe())
                self._client.close()
                self._client = None

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # -- commands -----------------------------------------------------------------------------

    def start(self, argv: List[str]) -> Process:
        chan = self._channel()
        try:
            chan.exec_command(WRAPPER + quote_argv(argv))
            stdout = chan.makefile("rb")
            stderr = chan.makefile_stderr("rb")
            chan.settimeout(self.connect_timeout)
            pid = self._read_pid(stdout, argv)
            chan.settimeout(None)
        except _LINK_ERRORS as exc:
            chan.close()
            raise TransportError(
                f"{self.describe()}: cannot start {show_argv(argv)}: {_one_line(exc)}"
            ) from exc
        except BaseException:
            chan.close()
            raise
        return _SshProcess(self, chan, stdout, stderr, pid)

    def _read_pid(self, stdout: Any, argv: List[str]) -> int:
        """Read up to the wrapper's PID line; lines a noisy login shell prints before it are dropped."""
        last = ""
        while True:
            try:
                line = stdout.readline()
            except socket.timeout:
                raise TransportError(
                    f"{self.describe()}: the remote shell did not start {show_argv(argv)} "
                    f"within {self.connect_timeout:g} s"
                ) from None
            if not line:
                raise TransportError(
                    f"{self.describe()}: the remote shell ended before starting {show_argv(argv)} "
                    f"(is the login shell POSIX?) {last}"
                )
            text = line.decode("utf-8", "replace").strip()
            if text.startswith(PID_MARK) and text[len(PID_MARK) :].isdigit():
                return int(text[len(PID_MARK) :])
            log.warning("%s: login shell printed %r before the command", self.describe(), text)
            last = text

    def kill_group(self, pid: int) -> None:
        """TERM the remote process group ``pid``, wait for its leader up to kill_grace, then KILL it."""
        steps = str(max(1, int(self.kill_grace * 10)))
        chan = self._channel()
        try:
            chan.exec_command(quote_argv(["sh", "-c", KILL_SCRIPT, "rn50bench-kill", str(pid), steps]))
            chan.shutdown_write()
            if not chan.status_event.wait(self.kill_grace + self.connect_timeout):
                log.warning("%s: no answer from kill of process group %d", self.describe(), pid)
        except _LINK_ERRORS as exc:
            raise TransportError(
                f"{self.describe()}: cannot kill process group {pid}: {_one_line(exc)}"
            ) from exc
        finally:
            chan.close()

    # -- files --------------------------------------------------------------------------------

    def put(
        self,
        local: "Path | Readable",
        remote: str,
        mode: int = 0o644,
        progress: Optional[Callable[[int], None]] = None,
    ) -> None:
        directory, name = posixpath.split(remote)
        if not name:
            raise ValueError(f"remote path {remote!r} names a directory, not a file")
        tmp = posixpath.join(directory, temp_name(name))
        with self._sftp(f"copy {local} to {remote}") as sftp:
            try:
                _makedirs(sftp, directory)
                callback = (lambda done, _: progress(done)) if progress else None
                if isinstance(local, (str, os.PathLike)):
                    sftp.put(str(local), tmp, callback=callback)
                else:
                    sftp.putfo(local, tmp, callback=callback)
                sftp.chmod(tmp, mode)
                sftp.posix_rename(tmp, remote)
            except BaseException:
                with contextlib.suppress(*_LINK_ERRORS):
                    sftp.remove(tmp)
                raise

    def get(self, remote: str, local: Path, max_bytes: int, timeout: Optional[float] = None) -> None:
        """lstat ``remote`` (a link, a non-regular or too large file is refused before it is opened), open
        it, and check that the opened file is the one checked (type, owner, mode, size, time): a swap
        in between is refused. Then read at most ``max_bytes`` within ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        late = f"{self.describe()}: copy of {remote} stopped after {timeout:g} s" if timeout else ""
        with self._sftp(f"copy {remote} to {local}") as sftp:
            if timeout is not None:
                sftp.get_channel().settimeout(timeout)  # a read that stalls raises socket.timeout
            checked = sftp.lstat(remote)
            why = _refusal(checked, max_bytes)
            if why:
                raise FetchRefused(f"{self.describe()}: {remote} refused: {why}")
            with sftp.open(remote, "rb") as source, private_file(Path(local)) as dest:
                if _identity(source.stat()) != _identity(checked):
                    raise FetchRefused(f"{self.describe()}: {remote} refused: replaced while it was opened")
                received = 0
                while True:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise CommandTimeout(late)
                    try:
                        chunk = source.read(min(_CHUNK, max_bytes + 1 - received))
                    except socket.timeout:
                        raise CommandTimeout(late) from None
                    if not chunk:
                        return
                    received += len(chunk)
                    if received > max_bytes:  # it grew since it was checked
                        raise FetchRefused(
                            f"{self.describe()}: {remote} refused: larger than {size_text(max_bytes)}"
                        )
                    dest.write(chunk)

    @contextlib.contextmanager
    def _sftp(self, what: str) -> Any:
        """An SFTP session on a new channel; errors inside become one-line TransportErrors naming ``what``."""
        chan = self._channel()
        try:
            chan.invoke_subsystem("sftp")
            sftp = paramiko.SFTPClient(chan)
        except _LINK_ERRORS as exc:
            chan.close()
            raise TransportError(f"{self.describe()}: no sftp: {_one_line(exc)}") from exc
        try:
            yield sftp
        except _LINK_ERRORS as exc:
            raise TransportError(f"{self.describe()}: cannot {what}: {_one_line(exc)}") from exc
        finally:
            sftp.close()


class _SshProcess(Process):
    def __init__(
        self, owner: SshTransport, chan: paramiko.Channel, stdout: Any, stderr: Any, pid: int
    ) -> None:
        self._owner = owner
        self._chan = chan
        self._pid = pid
        self.stdout = stdout
        self.stderr = stderr

    def feed(self, data: bytes) -> None:
        with contextlib.suppress(*_LINK_ERRORS):
            self._chan.sendall(data)
            self._chan.shutdown_write()

    def poll(self) -> Optional[int]:
        if not self._chan.exit_status_ready():
            return None
        status = self._chan.recv_exit_status()
        if status == -1:  # no exit status: killed by a signal, or the connection died
            link = self._chan.get_transport()
            link.join(0.5)  # the thread of a dead connection ends at once
            if not link.is_active():
                raise TransportError(f"{self._owner.describe()}: connection lost while a command ran")
        return status

    def kill(self) -> None:
        try:
            self._owner.kill_group(self._pid)
        except TransportError as exc:
            log.warning("%s", exc)
        finally:
            self._chan.close()

    def close(self) -> None:
        self._chan.close()


def _makedirs(sftp: paramiko.SFTPClient, directory: str) -> None:
    """mkdir -p over SFTP."""
    if directory in ("", "/") or _exists(sftp, directory):
        return
    _makedirs(sftp, posixpath.dirname(directory))
    try:
        sftp.mkdir(directory)
    except OSError:
        if not _exists(sftp, directory):  # not made meanwhile by a concurrent put
            raise


def _exists(sftp: paramiko.SFTPClient, path: str) -> bool:
    try:
        sftp.stat(path)
    except FileNotFoundError:
        return False
    return True

def _refusal(attrs: paramiko.SFTPAttributes, max_bytes: int) -> str:
    """Why a file with these attributes is not fetched ('' when it is fetched)."""
    if stat.S_ISLNK(attrs.st_mode or 0):
        return "a symbolic link: only regular files are read"
    if not stat.S_ISREG(attrs.st_mode or 0):
        return "not a regular file"
    if (attrs.st_size or 0) > max_bytes:
        return "larger than %s" % size_text(max_bytes)
    return ""


def _identity(attrs: paramiko.SFTPAttributes) -> tuple:
    """What SFTP tells of a file that a swap for another would change (it has no inode numbers)."""
    return (attrs.st_mode, attrs.st_uid, attrs.st_gid, attrs.st_size, attrs.st_mtime)
