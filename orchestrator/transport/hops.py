"""The SSH servers on the way to a host: jump hosts (``jump:`` in the cluster file, else ProxyJump from
~/.ssh/config) and a ProxyCommand, each connection checked against known_hosts like the host itself.

The first server is reached over TCP or through the ProxyCommand (run as an argv, never through a shell),
every later one through a ``direct-tcpip`` channel of the one before. Errors name the server they concern:
``jump host bastion (user@address:port): ...``.
"""

import base64
import getpass
import hashlib
import logging
import os
import re
import shlex
import socket
from dataclasses import dataclass, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

import paramiko
from paramiko.ssh_exception import NoValidConnectionsError

from orchestrator.transport.base import TransportError

log = logging.getLogger(__name__)

SYSTEM_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"
USER_KNOWN_HOSTS = "~/.ssh/known_hosts"
LINK_ERRORS = (paramiko.SSHException, EOFError, OSError)
#: what a host name or address in a ProxyJump value may look like (the cluster file's ``address`` alphabet)
_ADDRESS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.:_-]{0,253}$")
_USER = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
#: ProxyCommand tokens substituted here; ``%%`` is a percent sign, any other token is refused
_TOKEN = re.compile(r"%(.)")


@dataclass(frozen=True)
class Jump:
    """A jump host as ``jump:`` in the cluster file or a ProxyJump names it; unset fields: ~/.ssh/config."""

    address: str
    port: Optional[int] = None
    user: Optional[str] = None
    key_file: Optional[str] = None


@dataclass(frozen=True)
class Hop:
    """One SSH server to log in to: ``label`` names it in messages (the host, or ``jump host ADDRESS``)."""

    label: str
    address: str
    port: int
    user: str
    key_files: Tuple[str, ...]
    #: ~/.ssh/config's ProxyCommand for this server (raw, tokens unsubstituted); used for the first hop only
    proxy_command: Optional[str] = None
    #: the label of the jump host this server is reached through (``linked``), None: reached from here
    via: Optional[str] = None

    def describe(self) -> str:
        """``label (user@address:port)``, with `` via jump host J`` behind one, for messages."""
        via = f" via {self.via}" if self.via else ""
        return f"{self.label} ({self.user}@{self.address}:{self.port}{via})"

    def known_name(self) -> str:
        """The server's name in known_hosts."""
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"


def fingerprint(key: paramiko.PKey) -> str:
    """``<type> SHA256:<base64>``, the form ``ssh-keygen -l`` and ``ssh`` print."""
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"{key.get_name()} SHA256:{digest}"


class _RawProxyConfig(paramiko.SSHConfig):
    """paramiko's ssh_config reader, leaving ProxyCommand's %-tokens alone: ``proxy_argv`` substitutes
    them into single argv words (paramiko would substitute into the text before it is split)."""

    TOKENS_BY_CONFIG_KEY = dict(paramiko.SSHConfig.TOKENS_BY_CONFIG_KEY, proxycommand=[])


def ssh_config(address: str, path: Optional[str]) -> Dict[str, Any]:
    """What ~/.ssh/config says about ``address`` (empty without a config file)."""
    if not path or not os.path.isfile(os.path.expanduser(path)):
        return {}
    return dict(_RawProxyConfig.from_path(os.path.expanduser(path)).lookup(address))


def resolve(
    label: str,
    address: str,
    port: Optional[int],
    user: Optional[str],
    key_file: Optional[str],
    found: Dict[str, Any],
) -> Hop:
    """The server ``address`` with explicit values over the ssh config's ``found`` (HostName, Port, User,
    IdentityFile, ProxyCommand); port 22 and the local user where neither says."""
    if key_file:
        key_files = [os.path.expanduser(key_file)]
    else:  # like ssh: IdentityFile entries that do not exist are skipped
        paths = [os.path.expanduser(path) for path in found.get("identityfile", [])]
        key_files = [path for path in paths if os.path.isfile(path)]
    proxy = found.get("proxycommand")
    return Hop(
        label=label,
        address=found.get("hostname", address),
        port=port if port is not None else int(found.get("port", 22)),
        user=user or found.get("user") or getpass.getuser(),
        key_files=tuple(key_files),
        proxy_command=None if proxy is None or proxy.strip().lower() == "none" else proxy,
    )


def resolve_jump(jump: Jump, config_path: Optional[str]) -> Hop:
    """The jump host ``jump``, what it leaves unset taken from the ssh config at ``config_path``."""
    found = ssh_config(jump.address, config_path)
    return resolve(f"jump host {jump.address}", jump.address, jump.port, jump.user, jump.key_file, found)


def linked(chain: Sequence[Hop]) -> List[Hop]:
    """``chain`` (jump hosts first, the host last), each server naming the jump host it is reached through."""
    return [replace(hop, via=chain[index - 1].label if index else None) for index, hop in enumerate(chain)]


def jumps_from_config(label: str, found: Dict[str, Any]) -> List[Jump]:
    """The ProxyJump chain ``found`` names (``[user@]host[:port]`` or ``ssh://...``, comma-separated)."""
    value = found.get("proxyjump")
    if value is None or value.strip().lower() == "none":
        return []
    if found.get("proxycommand") is not None:
        raise TransportError(f"{label}: ~/.ssh/config sets both ProxyJump and ProxyCommand: keep one")
    return [_parse_jump(label, item.strip()) for item in value.split(",")]


def _parse_jump(label: str, text: str) -> Jump:
    spec = text[len("ssh://") :] if text.startswith("ssh://") else text
    user, _, rest = spec.rpartition("@")
    address, port = rest, None
    if rest.startswith("["):  # [IPv6]:port
        address, _, tail = rest[1:].partition("]")
        port = tail[1:] if tail.startswith(":") else tail or None
    elif rest.count(":") == 1:
        address, port = rest.split(":")
    bad_port = port is not None and not (port.isdigit() and 1 <= int(port) <= 65535)
    if bad_port or not _ADDRESS.match(address) or (user and not _USER.match(user)):
        raise TransportError(f"{label}: ProxyJump entry {text!r} is not [user@]host[:port]")
    return Jump(address, int(port) if port is not None else None, user or None)


def proxy_argv(command: str, hop: Hop) -> List[str]:
    """``command`` split into words like a shell would (no expansion) with %h, %p, %r and %% substituted
    in each word; shell syntax (pipes, redirections, ``;``, ``&``), any other token, an empty command
    are refused. A leading ``exec`` (ssh runs the command through a shell) is dropped."""
    values = {"h": hop.address, "p": str(hop.port), "r": hop.user, "%": "%"}

    def substitute(match: "re.Match[str]") -> str:
        if match.group(1) not in values:
            raise TransportError(
                f"{hop.describe()}: ProxyCommand token %{match.group(1)} is not supported (only %h %p %r %%)"
            )
        return values[match.group(1)]

    try:
        lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        operators = [word for word in lexer if word and set(word) <= set("();<>|&")]
        words = shlex.split(command)
    except ValueError as exc:
        raise TransportError(f"{hop.describe()}: ProxyCommand cannot be split into words: {exc}") from None
    if operators:
        raise TransportError(
            f"{hop.describe()}: ProxyCommand uses shell syntax ({operators[0]}), which is not run through "
            "a shell here: give one program and its arguments"
        )
    if words[:1] == ["exec"]:
        words = words[1:]
    if not words:
        raise TransportError(f"{hop.describe()}: ProxyCommand is empty")
    return [os.path.expanduser(_TOKEN.sub(substitute, word)) for word in words]


class Chain:
    """The SSH clients of one connection: the jump hosts', then the host's (``client``); closed together."""

    def __init__(self) -> None:
        self.clients: List[paramiko.SSHClient] = []
        self._proxy: Optional[paramiko.ProxyCommand] = None

    @property
    def client(self) -> paramiko.SSHClient:
        return self.clients[-1]

    def get_transport(self) -> Optional[paramiko.Transport]:
        return self.client.get_transport()

    def close(self) -> None:
        for client in reversed(self.clients):
            client.close()
        if self._proxy is not None:
            self._proxy.close()


def live(client: "paramiko.SSHClient | Chain", who: str) -> paramiko.Transport:
    """The connection of ``client``; TransportError naming ``who`` when it is closed already."""
    link = client.get_transport()
    if link is None:
        raise TransportError(f"{who}: the connection closed")
    return link


def connect(
    hops: Sequence[Hop], known_hosts: Sequence[str], strict: bool, timeout: float
) -> Chain:
    """Log in to each of ``hops`` in turn, the last being the host; TransportError naming the hop."""
    chain = Chain()
    try:
        sock: Any = None
        first = hops[0]
        if first.proxy_command is not None:
            argv = proxy_argv(first.proxy_command, first)
            try:
                sock = chain._proxy = paramiko.ProxyCommand(" ".join(shlex.quote(word) for word in argv))
            except OSError as exc:
                raise TransportError(f"{first.describe()}: ProxyCommand {argv[0]}: {one_line(exc)}") from exc
        for index, hop in enumerate(hops):
            if index > 0:
                sock = _forward(hops[index - 1], chain.client, hop, timeout)
            via = hops[index - 1] if index > 0 else None
            chain.clients.append(_login(hop, via, sock, known_hosts, strict, timeout))
            live(chain.client, hop.describe()).set_keepalive(30)
    except BaseException:
        chain.close()
        raise
    return chain


def _forward(jump: Hop, client: paramiko.SSHClient, hop: Hop, timeout: float) -> paramiko.Channel:
    """A ``direct-tcpip`` channel from the jump host ``jump`` to ``hop``'s SSH port."""
    try:
        return live(client, jump.describe()).open_channel(
            "direct-tcpip", (hop.address, hop.port), ("127.0.0.1", 0), timeout=timeout
        )
    except LINK_ERRORS as exc:
        raise TransportError(
            f"{jump.describe()}: cannot reach {hop.address}:{hop.port} for {hop.label}: {one_line(exc)}"
        ) from exc


def _login(
    hop: Hop, via: Optional[Hop], sock: Any, known_hosts: Sequence[str], strict: bool, timeout: float
) -> paramiko.SSHClient:
    """Log in to ``hop`` over ``sock`` (None: TCP from here; else a channel through the jump host ``via``)."""
    client = paramiko.SSHClient()
    for path in known_hosts:
        if os.path.isfile(path):
            client.load_system_host_keys(path)
    if strict:
        client.set_missing_host_key_policy(_RefuseUnknownKey(hop, via))
    else:
        log.warning("%s: strict_host_keys is off: an unknown host key is accepted", hop.describe())
        client.set_missing_host_key_policy(paramiko.WarningPolicy())
    for path in hop.key_files:
        if not os.path.isfile(path):
            raise TransportError(f"{hop.describe()}: key file {path} not found")
    try:
        client.connect(
            hop.address,
            port=hop.port,
            username=hop.user,
            key_filename=list(hop.key_files) or None,  # type: ignore[arg-type]  # a list too: paramiko's docs
            look_for_keys=not hop.key_files,
            allow_agent=True,
            sock=sock,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
        )
    except (TransportError, *LINK_ERRORS) as exc:
        client.close()
        raise connect_error(hop, exc, timeout) from exc
    return client


def connect_error(hop: Hop, exc: BaseException, timeout: float) -> TransportError:
    """One line saying why logging in to ``hop`` failed, with the fix where there is one."""
    where = hop.describe()
    if isinstance(exc, TransportError):
        return exc
    if isinstance(exc, paramiko.BadHostKeyException):
        return TransportError(
            f"host key for {where} changed: {fingerprint(exc.key)} "
            f"(known_hosts has {fingerprint(exc.expected_key)}); if the host was reinstalled, "
            f"check the new key and remove the old one with ssh-keygen -R {hop.known_name()}"
        )
    if isinstance(exc, paramiko.AuthenticationException):
        keys = ", ".join(hop.key_files) or "ssh-agent and ~/.ssh/id_*"
        return TransportError(f"{where}: authentication refused (tried {keys})")
    if isinstance(exc, socket.gaierror):
        return TransportError(f"{where}: cannot resolve {hop.address}: {exc.strerror}")
    if isinstance(exc, NoValidConnectionsError):
        errors = exc.errors.values()
        reasons = sorted(
            {os.strerror(e.errno) if isinstance(e, OSError) and e.errno else str(e) for e in errors}
        )
        return TransportError(f"{where}: cannot connect: {'; '.join(reasons)}")
    if isinstance(exc, socket.timeout):
        return TransportError(f"{where}: no answer within {timeout:g} s (host down or port filtered)")
    if isinstance(exc, OSError) and not isinstance(exc, paramiko.SSHException):
        return TransportError(f"{where}: cannot connect: {one_line(exc)}")
    return TransportError(f"{where}: ssh connection failed: {one_line(exc)}")


class _RefuseUnknownKey(paramiko.MissingHostKeyPolicy):
    """Refuse a server whose key is in no known_hosts file, naming its fingerprint and how to fetch it
    (through the jump host ``via`` where the server is behind one)."""

    def __init__(self, hop: Hop, via: Optional[Hop]) -> None:
        self._hop = hop
        self._via = via

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        hop, via = self._hop, self._via
        scan = f"ssh-keyscan -p {hop.port} -t {key.get_name()} {hop.address}"
        if via is not None:
            scan = f"ssh -p {via.port} {via.user}@{via.address} {scan}"
        raise TransportError(
            f"host key for {hop.describe()} not known: {fingerprint(key)}; check it, then add it with "
            f"{scan} >> ~/.ssh/known_hosts (or name a known_hosts file)"
        )


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line."""
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
    return " ".join(text.split())
