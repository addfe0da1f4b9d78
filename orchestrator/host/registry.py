"""A lab registry for vendor images (``image.registry: host:port[/prefix]``): a host pulls an image by its
content-hash tag before building it, and pushes what it built, so one host's build serves the others.

The tag names the build's inputs (``images.content_hash``), so an image found under it is the one the
build would make, as far as the registry is trusted: whoever can push there can plant an image, like
whoever can write to a host's docker. The pulled image's ``rn50bench.content_hash`` label must equal
the tag's hash; a mismatch is refused (and the build replaces it). Pulling and pushing are best effort:
a registry that cannot be reached costs one warning line and the host builds the image itself.
"""

import logging
import re
from typing import Callable, List, Tuple

from orchestrator.transport.base import Transport

log = logging.getLogger(__name__)

HASH_LABEL = "rn50bench.content_hash"
STEP_TIMEOUT = 120.0
#: what docker says when the registry answers but has no such tag (a normal miss, not worth a warning)
_MISSING = re.compile(r"manifest unknown|not found", re.IGNORECASE)


def remote_tag(registry: str, tag: str) -> str:
    """``tag`` as it is named in ``registry`` (``host:port[/prefix]/rn50bench/<vendor>:<hash>``)."""
    return f"{registry}/{tag}"


#: what ``pull`` found
PULLED, MISSING, UNREACHABLE = "pulled", "missing", "unreachable"


def pull(
    transport: Transport,
    registry: str,
    tag: str,
    content_hash: str,
    timeout: float,
    on_line: Callable[[str], None],
) -> str:
    """Pull ``tag`` from ``registry`` and tag it ``tag`` on the host: PULLED; MISSING when the registry
    lacks it or holds a wrong image; UNREACHABLE (warned) when the registry cannot be used."""
    remote = remote_tag(registry, tag)
    code, last = _stream(transport, ["docker", "pull", remote], timeout, on_line)
    if code != 0:
        if _MISSING.search(last):
            return MISSING
        log.warning("registry %s: cannot pull %s on host %s (%s); building it there", registry, tag,
                    transport.host, last)  # fmt: skip
        return UNREACHABLE
    try:
        inspect = ["docker", "image", "inspect", "--format", '{{index .Config.Labels "%s"}}' % HASH_LABEL]
        found = transport.run([*inspect, remote], timeout=STEP_TIMEOUT).check().stdout.strip()
        if found != content_hash:
            log.warning("registry %s: %s carries content hash %r, not %s; not used, building it on host %s",
                        registry, remote, found[:64], content_hash, transport.host)  # fmt: skip
            return MISSING
        transport.run(["docker", "tag", remote, tag], timeout=STEP_TIMEOUT).check()
    finally:
        _untag(transport, remote)
    return PULLED


def push(
    transport: Transport, registry: str, tag: str, timeout: float, on_line: Callable[[str], None]
) -> bool:
    """Push the host's ``tag`` to ``registry``; False (warned) when that fails."""
    remote = remote_tag(registry, tag)
    transport.run(["docker", "tag", tag, remote], timeout=STEP_TIMEOUT).check()
    try:
        code, last = _stream(transport, ["docker", "push", remote], timeout, on_line)
    finally:
        _untag(transport, remote)
    if code != 0:
        log.warning("registry %s: cannot push %s from host %s (%s)", registry, tag, transport.host, last)
        return False
    return True


def _stream(
    transport: Transport, argv: List[str], timeout: float, on_line: Callable[[str], None]
) -> Tuple[int, str]:
    """Run ``argv``, its lines to ``on_line``; its exit status and its last non-empty line."""
    last = ["no output"]

    def line(text: str) -> None:
        if text.strip():
            last[0] = " ".join(text.split())[:300]
        on_line(text)

    return transport.stream(argv, line, line, timeout=timeout), last[0]


def _untag(transport: Transport, remote: str) -> None:
    """Remove the registry's name for the image on the host (the image stays under its own tag)."""
    transport.run(["docker", "image", "rm", "--no-prune", remote], timeout=STEP_TIMEOUT)
