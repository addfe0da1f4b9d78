"""Job containers whose orchestrator is gone: who started a container, and removing those it left behind.

A job container is created without ``--rm`` (containers.run_container), so an orchestrator killed with
SIGKILL leaves it running for good. Every job container carries two labels: the run it belongs to and the
identity of the orchestrator process that started it (``identity``: the control machine's host name and
machine id, its boot, the process id and the process's start time). The next ``run`` and ``doctor`` on a
host remove the labelled containers whose orchestrator is gone (``sweep``): it ran on this machine and
this machine has rebooted since, or no process with that id and start time is left. Containers of a live
orchestrator, of an orchestrator on another control machine (it cannot be checked from here) and
containers without the label are never touched.
"""

import os
import socket
from dataclasses import dataclass
from functools import lru_cache
from typing import List, Optional

from orchestrator.transport.base import Transport

#: label of every job container: the run it belongs to
RUN_LABEL = "rn50bench.run"
#: label of every job container: ``identity()`` of the orchestrator that started it
OWNER_LABEL = "rn50bench.orchestrator"
DOCKER_TIMEOUT = 60.0


@dataclass(frozen=True)
class Owner:
    """An orchestrator process: the machine (host name, machine id), its boot, process id and start time."""

    host: str
    machine: str
    boot: str
    pid: int
    start: str

    def label(self) -> str:
        return "%s/%s/%s/%d/%s" % (self.host, self.machine, self.boot, self.pid, self.start)

    @classmethod
    def parse(cls, text: str) -> Optional["Owner"]:
        """The owner a label names; None when it is not one (then the container is not touched)."""
        parts = text.split("/")
        if len(parts) != 5 or not parts[3].isdigit():
            return None
        return cls(parts[0], parts[1], parts[2], int(parts[3]), parts[4])


@lru_cache(maxsize=None)
def _machine() -> Owner:
    """This machine, with pid 0: its host name, machine id and boot id (empty where unknown)."""
    return Owner(socket.gethostname(), _first_line("/etc/machine-id"), _first_line(_BOOT_ID), 0, "")


_BOOT_ID = "/proc/sys/kernel/random/boot_id"


def identity() -> str:
    """The label value that names this orchestrator process."""
    here = _machine()
    pid = os.getpid()
    return Owner(here.host, here.machine, here.boot, pid, _start_time(pid) or "").label()


def is_gone(owner: Owner) -> bool:
    """True only when ``owner`` surely no longer runs: it ran on this machine, and this machine rebooted
    since or its process (id and start time) is not there. An owner elsewhere counts as alive."""
    here = _machine()
    if (owner.host, owner.machine) != (here.host, here.machine):
        return False
    if owner.boot != here.boot:
        return bool(here.boot)  # rebooted since (an unknown boot id proves nothing)
    return _start_time(owner.pid) != owner.start


def sweep(transport: Transport, timeout: float = DOCKER_TIMEOUT) -> List[str]:
    """Remove the job containers on ``transport``'s host whose orchestrator is gone; their names.

    TransportError when docker cannot be asked (the caller decides whether that matters)."""
    template = '{{.ID}}\t{{.Names}}\t{{.Label "%s"}}' % OWNER_LABEL
    argv = ["docker", "ps", "--all", "--no-trunc", "--filter", "label=" + OWNER_LABEL, "--format", template]
    listed = transport.run(argv, timeout=timeout).check()
    removed = []
    for line in listed.stdout.splitlines():
        fields = line.split("\t")
        owner = Owner.parse(fields[2]) if len(fields) == 3 else None
        if owner is not None and is_gone(owner):
            done = transport.run(["docker", "rm", "--force", fields[0]], timeout=timeout)
            if done.returncode == 0:
                removed.append(fields[1])
    return removed


def _start_time(pid: int) -> Optional[str]:
    """Process ``pid``'s start time (clock ticks after boot, /proc/PID/stat field 22); None when there is
    no such process."""
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii", errors="replace") as handle:
            stat = handle.read()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # the name in parentheses may hold spaces
    return fields[19] if len(fields) > 19 else None


def _first_line(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.readline().strip()
    except OSError:
        return ""
