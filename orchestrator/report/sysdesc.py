"""MLPerf-style system description per host, from the captured environment of a run.

Field names follow MLPerf Inference's submission ``systems/*.json``; values come only from the store
(the host's captured facts and the versions the runner reported). What was not captured is
"unknown"; a CPU-only host has no accelerator ("N/A", 0), as MLPerf CPU submissions write it. This
is a description of the machine, not an MLPerf submission: division, category and submitter are
left out.
"""

from typing import Any, Dict, List

import vendors
from orchestrator.report.environment import EnvBlock, environment_blocks
from orchestrator.report.load import RunData

UNKNOWN = "unknown"


def _gib(value: Any) -> str:
    return UNKNOWN if value is None else "%.1f GiB" % value


def _accelerators(env: Dict[str, Any], cpu_only: bool) -> Dict[str, Any]:
    if cpu_only:
        return {
            "accelerator_model_name": "N/A",
            "accelerators_per_node": 0,
            "accelerator_memory_capacity": "N/A",
        }
    devices = env.get("accelerators") or []
    models = sorted({d["model"] for d in devices if d.get("model")})
    memories = sorted({d["memory_total_mib"] for d in devices if d.get("memory_total_mib")})
    return {
        "accelerator_model_name": ", ".join(models) or UNKNOWN,
        "accelerators_per_node": len(devices) if devices else UNKNOWN,
        "accelerator_memory_capacity": ", ".join(_gib(m / 1024.0) for m in memories) or UNKNOWN,
    }


def _stack(block: EnvBlock) -> str:
    software = dict(block.software)
    parts = ["%s %s" % kv for kv in block.dependencies] + ["docker %s" % software["docker"]]
    return ", ".join(parts)


def describe(data: RunData) -> List[Dict[str, Any]]:
    """One description per host of the run, in the order of the environment blocks."""
    known = vendors.discover()
    out = []
    for block in environment_blocks(data):
        env = data.environments[block.host]
        vendor = known.get(block.vendor)
        cpu_only = vendor is not None and vendor.runner_device == "cpu"
        packages = env.get("accelerators") or []
        description = {
            "system_name": block.title,
            "number_of_nodes": 1,
            "host_processor_model_name": env.get("cpu_model") or UNKNOWN,
            "host_processors_per_node": len(packages) if cpu_only and packages else UNKNOWN,
            "host_processor_core_count": UNKNOWN,
            "host_memory_capacity": _gib(env.get("memory_gib")),
            "operating_system": "%s, kernel %s" % (env.get("os") or UNKNOWN, env.get("kernel") or UNKNOWN),
            "framework": ", ".join(
                [dict(block.software)["framework"]] + ["%s (%s)" % kv for kv in block.toolkits]
            ),
            "other_software_stack": _stack(block),
            "driver": env.get("driver") or ("N/A" if cpu_only else UNKNOWN),
            "hw_notes": "host %s (%s); %s logical CPUs (nproc); vendor plugin %s"
            % (block.host, env.get("arch") or UNKNOWN, env.get("cpu_count") or UNKNOWN, block.vendor),
            "sw_notes": "captured by rn50bench run %s (%s runtime)"
            % (data.run_id, env.get("runtime") or UNKNOWN),
        }
        description.update(_accelerators(env, cpu_only))
        out.append(description)
    return out
