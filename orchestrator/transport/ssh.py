"""Run commands and copy files on a host over SSH (paramiko), one reused connection per host.

The remote login shell must be POSIX (sh, bash, dash, ash). Each command is sent as
``WRAPPER`` followed by the argv, every element ``shlex.quote``-d: the shell prints its
PID (sshd starts every command in a new session, so the PID is also the process group)
and then ``exec``-s the argv. A timeout or cancel kills that group through a second channel.
"""

import base64
import contextlib
import getpass
import hashlib
import logging
import os
import posixpath
import shlex
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import paramiko
from paramiko.ssh_exception import NoValidConnectionsError

from ..bounded import size_text
from .base import (
    CommandTimeout,
    FetchRefused,
    Process,
    ProcessTransport,
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
SYSTEM_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"
USER_KNOWN_HOSTS = "~/.ssh/known_hosts"
_LINK_ERRORS = (paramiko.SSHException, EOFError, OSError)
#: bytes asked for per SFTP read (the most one request carries)
_CHUNK = 32768


def fingerprint(key: paramiko.PKey) -> str:
    """``<type> SHA256:<base64>``, the form ``ssh-keygen -l`` and ``ssh`` print."""
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"{key.get_name()} SHA256:{digest}"


def quote_argv(argv: List[str]) -> str:
    """The argv as one shell command line in which every element is exactly one word."""
    return " ".join(shlex.quote(item) for item in argv)


class SshTransport(ProcessTransport):
    """A host reached with SSH; HostName/User/Port/IdentityFile may come from ~/.ssh/config.

    Explicit arguments win over the ssh config; ``port=None`` means the config's Port, else 22.
    Host keys are checked against the system and user known_hosts and ``known_hosts``;
    an unknown key is refused unless ``strict_host_keys=False`` (then only a warning is logged).
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
    ) -> None:
        found = _ssh_config(address, ssh_config)
        self.host = host_name
        self.address: str = found.get("hostname", address)
        self.port: int = port if port is not None else int(found.get("port", 22))
        self.user: str = user or found.get("user") or getpass.getuser()
        if key_file:
            self.key_files = [os.path.expanduser(key_file)]
        else:  # like ssh: IdentityFile entries that do not exist are skipped
            paths = [os.path.expanduser(path) for path in found.get("identityfile", [])]
            self.key_files = [path for path in paths if os.path.isfile(path)]
        extra = [known_hosts] if known_hosts else []
        self.known_hosts_files = [
            os.path.expanduser(p) for p in [SYSTEM_KNOWN_HOSTS, USER_KNOWN_HOSTS, *extra]
        ]
        self.strict_host_keys = strict_host_keys
        self.connect_timeout = connect_timeout
        self.kill_grace = kill_grace
        self._lock = threading.Lock()
        self._client: Optional[paramiko.SSHClient] = None

    def describe(self) -> str:
        """``name (user@address:port)`` for messages."""
        return f"{self.host} ({self.user}@{self.address}:{self.port})"

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
                link = self._client.get_transport()
                link.set_keepalive(30)
            return link

    def _connect(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        for path in self.known_hosts_files:
            if os.path.isfile(path):
                client.load_system_host_keys(path)
        if self.strict_host_keys:
            client.set_missing_host_key_policy(_RefuseUnknownKey(self))
        else:
            log.warning("%s: strict_host_keys is off: an unknown host key is accepted", self.describe())
            client.set_missing_host_key_policy(paramiko.WarningPolicy())
        for path in self.key_files:
            if not os.path.isfile(path):
                raise TransportError(f"{self.describe()}: key file {path} not found")
        try:
            client.connect(
                self.address,
                port=self.port,
                username=self.user,
                key_filename=self.key_files or None,
                look_for_keys=not self.key_files,
                allow_agent=True,
                timeout=self.connect_timeout,
                banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout,
            )
        except (TransportError, *_LINK_ERRORS) as exc:
            client.close()
            raise self._connect_error(exc) from exc
        return client

    def _connect_error(self, exc: BaseException) -> TransportError:
        where = self.describe()
        if isinstance(exc, TransportError):
            return exc
        if isinstance(exc, paramiko.BadHostKeyException):
            return TransportError(
                f"host key for {where} changed: {fingerprint(exc.key)} "
                f"(known_hosts has {fingerprint(exc.expected_key)}); if the host was reinstalled, "
                f"check the new key and remove the old one with ssh-keygen -R {self._known_name()}"
            )
        if isinstance(exc, paramiko.AuthenticationException):
            keys = ", ".join(self.key_files) or "ssh-agent and ~/.ssh/id_*"
            return TransportError(f"{where}: authentication refused (tried {keys})")
        if isinstance(exc, socket.gaierror):
            return TransportError(f"{where}: cannot resolve {self.address}: {exc.strerror}")
        if isinstance(exc, NoValidConnectionsError):
            reasons = sorted({os.strerror(e.errno) if e.errno else str(e) for e in exc.errors.values()})
            return TransportError(f"{where}: cannot connect: {'; '.join(reasons)}")
        if isinstance(exc, socket.timeout):
            return TransportError(
                f"{where}: no answer within {self.connect_timeout:g} s (host down or port filtered)"
            )
        if isinstance(exc, OSError) and not isinstance(exc, paramiko.SSHException):
            return TransportError(f"{where}: cannot connect: {_one_line(exc)}")
        return TransportError(f"{where}: ssh connection failed: {_one_line(exc)}")

    def _known_name(self) -> str:
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"

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
        self, local: Path, remote: str, mode: int = 0o644, progress: Optional[Callable[[int], None]] = None
    ) -> None:
        directory, name = posixpath.split(remote)
        if not name:
            raise ValueError(f"remote path {remote!r} names a directory, not a file")
        tmp = posixpath.join(directory, temp_name(name))
        with self._sftp(f"copy {local} to {remote}") as sftp:
            try:
                _makedirs(sftp, directory)
                sftp.put(str(local), tmp, callback=(lambda done, _: progress(done)) if progress else None)
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


class _RefuseUnknownKey(paramiko.MissingHostKeyPolicy):
    """Refuse a host whose key is in no known_hosts file, naming its fingerprint."""

    def __init__(self, owner: SshTransport) -> None:
        self._owner = owner

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        owner = self._owner
        raise TransportError(
            f"host key for {owner.describe()} not known: {fingerprint(key)}; check it, then add it with "
            f"ssh-keyscan -p {owner.port} -t {key.get_name()} {owner.address} >> ~/.ssh/known_hosts "
            "(or name a known_hosts file)"
        )


def _ssh_config(address: str, path: Optional[str]) -> Dict[str, Any]:
    """What ~/.ssh/config says about ``address`` (empty without a config file)."""
    if not path or not os.path.isfile(os.path.expanduser(path)):
        return {}
    return dict(paramiko.SSHConfig.from_path(os.path.expanduser(path)).lookup(address))


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


def _one_line(exc: BaseException) -> str:
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
    return " ".join(text.split())
