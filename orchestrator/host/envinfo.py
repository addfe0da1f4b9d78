"""Machine facts captured on each host (host side), merged later with what the runner saw.

Every value comes from a command run on the host; a probe that fails leaves the
value as None ("unknown"), never a guess.
"""

from typing import Any, Dict, List, Optional, Sequence

from orchestrator.transport.base import Transport, TransportError
from vendors.vendor import Vendor

#: the docker engine's version (fails when the client cannot reach the engine)
DOCKER_VERSION = ["docker", "version", "--format", "{{.Server.Version}}"]
#: the host's plain facts in one command, one round trip per host instead of one per fact: each probe's
#: output follows a line "<FACT_MARK> <probe>". The script is constant; no cluster-file value enters it.
FACT_MARK = "@rn50bench-fact"
FACT_PROBES = (
    "cat /etc/os-release", "uname -n", "uname -r", "uname -m", "nproc", "cat /proc/cpuinfo",
    "cat /proc/meminfo", "cat /etc/machine-id",
)  # fmt: skip
FACTS = [
    "sh", "-c", 'for probe in "$@"; do echo "%s $probe"; $probe 2>/dev/null; done; exit 0' % FACT_MARK,
    "rn50bench-facts", *FACT_PROBES,
]  # fmt: skip


def _probe(transport: Transport, argv: Sequence[str], timeout: float) -> Optional[str]:
    try:
        done = transport.run(argv, timeout=timeout)
    except TransportError:
        return None
    return done.stdout if done.returncode == 0 else None


def _facts(transport: Transport, timeout: float) -> Dict[str, str]:
    """Each FACT_PROBES probe's output by probe; a probe that printed nothing (or failed) is left out."""
    sections: Dict[str, List[str]] = {}
    current: Optional[List[str]] = None
    for line in (_probe(transport, FACTS, timeout) or "").splitlines():
        if line.startswith(FACT_MARK + " "):
            current = sections.setdefault(line[len(FACT_MARK) + 1 :], [])
        elif current is not None:
            current.append(line)
    return {probe: "\n".join(lines) + "\n" for probe, lines in sections.items() if lines}


def _key_values(text: Optional[str], sep: str) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for line in (text or "").splitlines():
        if sep in line:
            key, _, value = line.partition(sep)
            out.setdefault(key.strip(), value.strip().strip('"'))
    return out


def _first_line(text: Optional[str]) -> Optional[str]:
    lines = (text or "").strip().splitlines()
    return lines[0].strip() if lines else None


def parse_meminfo_gib(text: Optional[str]) -> Optional[float]:
    """MemTotal from /proc/meminfo in GiB."""
    value = _key_values(text, ":").get("MemTotal")
    if not value:
        return None
    return round(int(value.split()[0]) / (1024.0 * 1024.0), 1)


def parse_cpu_model(text: Optional[str]) -> Optional[str]:
    """CPU model name from /proc/cpuinfo (x86 'model name', Arm 'Model'/'CPU part')."""
    info = _key_values(text, ":")
    return info.get("model name") or info.get("Model") or info.get("Hardware")


def capture_host(transport: Transport, vendor: Vendor, runtime: str, timeout: float = 30.0) -> Dict[str, Any]:
    """Facts about one host: OS, kernel, CPU, memory, docker, accelerators and driver."""
    facts = _facts(transport, timeout)
    os_release = _key_values(facts.get("cat /etc/os-release"), "=")
    env: Dict[str, Any] = {
        "hostname": _first_line(facts.get("uname -n")),
        "os": os_release.get("PRETTY_NAME"),
        "kernel": _first_line(facts.get("uname -r")),
        "arch": _first_line(facts.get("uname -m")),
        "cpu_model": parse_cpu_model(facts.get("cat /proc/cpuinfo")),
        "cpu_count": _as_int(_first_line(facts.get("nproc"))),
        "machine_id": _first_line(facts.get("cat /etc/machine-id")),
        "memory_gib": parse_meminfo_gib(facts.get("cat /proc/meminfo")),
        "runtime": runtime,
        "docker": None,
        "vendor": vendor.name,
        "accelerators": [],
        "driver": None,
    }
    if runtime == "docker":
        env["docker"] = _first_line(_probe(transport, DOCKER_VERSION, timeout))
    argv = vendor.inventory_argv()
    devices = vendor.parse_inventory(_probe(transport, argv, timeout) or "") if argv else []
    env["accelerators"] = [_device_dict(d) for d in devices]
    drivers = sorted({d.driver for d in devices if d.driver})
    env["driver"] = ", ".join(drivers) if drivers else None
    return env


def shared_machines(environments: Dict[str, Dict[str, Any]]) -> List[str]:
    """One warning line for each group of hosts whose captured environments name one machine (the same
    /etc/machine-id): their jobs ran at the same time on it."""
    by_id: Dict[str, List[str]] = {}
    for host, env in sorted(environments.items()):
        if env.get("machine_id"):
            by_id.setdefault(str(env["machine_id"]), []).append(host)
    return [
        "warning: hosts %s are one machine (machine id %s): their jobs ran at the same time on it"
        % (", ".join(hosts), machine)
        for machine, hosts in by_id.items()
        if len(hosts) > 1
    ]


def _device_dict(device: Any) -> Dict[str, Any]:
    return {
        "index": device.index,
        "model": device.model,
        "memory_total_mib": device.memory_total_mib,
        "driver": device.driver,
        **dict(device.extra),
    }


def _as_int(text: Optional[str]) -> Optional[int]:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def accelerator_models(env: Dict[str, Any], devices: List[int]) -> Dict[int, str]:
    """Device index -> model name for the given indices, from a captured environment."""
    return {d["index"]: d["model"] for d in env.get("accelerators", []) if d["index"] in devices}
