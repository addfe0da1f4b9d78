"""Transports: how the orchestrator runs commands and moves files on a host (local or SSH)."""

from typing import TYPE_CHECKING, Optional, Sequence

from orchestrator.transport.base import (
    Cancelled,
    CommandTimeout,
    Completed,
    FetchRefused,
    LineHandler,
    Transport,
    TransportError,
)
from orchestrator.transport.local import LocalTransport

if TYPE_CHECKING:
    from orchestrator.transport.hops import Jump

__all__ = [
    "Cancelled",
    "CommandTimeout",
    "Completed",
    "FetchRefused",
    "LineHandler",
    "LocalTransport",
    "Transport",
    "TransportError",
    "make_transport",
]


def make_transport(
    name: str,
    address: str,
    port: Optional[int] = None,
    user: Optional[str] = None,
    key_file: Optional[str] = None,
    known_hosts: Optional[str] = None,
    strict_host_keys: bool = True,
    connect_timeout: float = 10.0,
    jump: Optional[Sequence["Jump"]] = None,
) -> Transport:
    """The transport for one host of the cluster file: address "local" runs here, anything else over SSH.

    ``port=None`` lets ~/.ssh/config choose the port (else 22); ``jump``: the jump hosts on the way
    (else ~/.ssh/config's ProxyJump or ProxyCommand); nothing connects until first use.
    """
    if address == "local":
        return LocalTransport(name)
    from orchestrator.transport.ssh import SshTransport  # paramiko is needed only for remote hosts

    return SshTransport(
        name,
        address,
        port=port,
        user=user,
        key_file=key_file,
        known_hosts=known_hosts,
        strict_host_keys=strict_host_keys,
        connect_timeout=connect_timeout,
        jump=jump,
    )
