"""Environment blocks in the layout of the reference's section 2: one per vendor and machine.

Each block has a hardware part, a software part (with the dependency versions) and the inference
toolkits. Every value comes from the store: the host's captured facts (``envinfo.capture_host``)
and the versions the runner reported inside the container; what was not captured is "unknown".
"""

from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import vendors
from orchestrator.report import tables
from orchestrator.report.labels import env_label, word
from orchestrator.report.load import RunData

UNKNOWN = tables.UNKNOWN

#: library versions the runner reports that are dependencies rather than the framework itself
DEPENDENCIES = ("cuda", "cudnn", "python", "numpy", "PIL")


@dataclass
class EnvBlock:
    """One vendor and machine: title, hardware and software values by field key (labels.ENV_FIELDS),
    dependency and toolkit versions."""

    host: str
    vendor: str
    title: str
    hardware: List[Tuple[str, str]] = field(default_factory=list)
    software: List[Tuple[str, str]] = field(default_factory=list)
    dependencies: List[Tuple[str, str]] = field(default_factory=list)
    toolkits: List[Tuple[str, str]] = field(default_factory=list)


def _vendor_labels() -> Dict[str, str]:
    return {name: vendor.label for name, vendor in vendors.discover().items()}


def _accelerator_models(env: Dict) -> str:
    models = sorted({a["model"] for a in env.get("accelerators") or [] if a.get("model")})
    return ", ".join(models) if models else UNKNOWN


def _inside(data: RunData, host: str) -> Tuple[Dict[str, str], Dict[str, Dict[str, str]]]:
    """(library versions, infer toolkit -> component versions) the runner reported for the host's jobs;
    a toolkit whose job stored no result maps to {}."""
    versions: Dict[str, str] = {}
    toolkits: Dict[str, Dict[str, str]] = {}
    for job in data.jobs:
        if job.job["host"] != host:
            continue
        if job.job["spec"] is None:  # unreadable: nothing of it is shown
            continue
        name = job.job["spec"]["toolkit"]
        env = (job.result or {}).get("environment") or {}
        versions = versions or env.get("versions") or {}
        toolkits[name] = toolkits.get(name) or (env.get("toolkits") or {}).get(name) or {}
    return versions, toolkits


def environment_blocks(data: RunData) -> List[EnvBlock]:
    """The blocks of a run, ordered by vendor, then host."""
    rows = {row["host"]: row for row in tables.environment_rows(data)}
    labels = _vendor_labels()
    blocks = []
    for host, env in sorted(data.environments.items(), key=lambda kv: (kv[1].get("vendor") or "", kv[0])):
        row = rows[host]
        vendor = env.get("vendor") or UNKNOWN
        versions, toolkits = _inside(data, host)
        framework = ", ".join("%s %s" % (k, versions[k]) for k in ("torch", "torchvision") if versions.get(k))
        block = EnvBlock(
            host=host,
            vendor=vendor,
            title="%s %s · %s" % (labels.get(vendor, vendor), _accelerator_models(env), host),
        )
        block.hardware = [(k, row[k]) for k in ("machine", "cpu", "memory")]
        block.software = [(k, row[k]) for k in ("os", "kernel", "driver", "docker", "image")]
        block.software.append(("framework", framework or UNKNOWN))
        block.software.append(("artefacts", row["artefacts"]))
        block.dependencies = [(k, str(versions[k])) for k in DEPENDENCIES if versions.get(k)]
        block.toolkits = [
            (name, ", ".join("%s %s" % kv for kv in sorted(components.items()) if kv[1]) or UNKNOWN)
            for name, components in sorted(toolkits.items())
        ]
        blocks.append(block)
    return blocks


def blocks_markdown(blocks: List[EnvBlock], lang: str) -> str:
    """The blocks as Markdown in the reference's section-2 layout (every captured text through
    ``tables.md_cell``)."""
    md = tables.md_cell
    lines = ["## %s" % word("environment", lang), ""]
    for number, block in enumerate(blocks, 1):
        lines += ["### %d. %s" % (number, md(block.title)), "", "- %s" % word("hardware", lang)]
        lines += ["    - %s: %s" % (env_label(k, lang), md(v)) for k, v in block.hardware]
        lines.append("- %s" % word("software", lang))
        lines += ["    - %s: %s" % (env_label(k, lang), md(v)) for k, v in block.software]
        lines.append(
            "    - %s:%s" % (env_label("dependencies", lang), "" if block.dependencies else " " + UNKNOWN)
        )
        lines += ["        - %s: %s" % (md(k), md(v)) for k, v in block.dependencies]
        lines.append("- %s:%s" % (env_label("toolkits", lang), "" if block.toolkits else " " + UNKNOWN))
        lines += ["    - %s: %s" % (md(k), md(v)) for k, v in block.toolkits]
        lines.append("")
    return "\n".join(lines)
