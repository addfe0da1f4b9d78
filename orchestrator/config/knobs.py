"""What a cluster file may ask of the runner: the cases it has, the options its toolkits read, batch sizes
its data can fill. Checked at ``plan`` (and by every command that loads the file), so that a typo fails in
one line before anything is built, not at run time on each host.

The runner's names come from the torch-free contract (``runner_in_container/contract.py``): its cases, and
per toolkit the knobs it reads (``TOOLKIT_KNOBS``) beside the runner's own (``hold_until``), which every
toolkit takes.
"""

from typing import Sequence

from orchestrator.model.cluster import Cluster
from orchestrator.model.fields import ConfigError
from runner_in_container.contract import CASES, HOLD_KNOB, TOOLKIT_KNOBS, TOOLKIT_PRECISIONS, knobs


def check(cluster: Cluster, where: str) -> None:
    """ConfigError (one line naming the field) for an unknown case, a toolkit option no toolkit of its
    entry reads, or a batch size larger than a host's ``data.max_images``."""
    for index, entry in enumerate(cluster.cases):
        field = "%s: cases[%d]" % (where, index)
        if entry.case not in CASES:
            raise ConfigError(
                "%s.case: unknown case %r (the runner has: %s)" % (field, entry.case, ", ".join(CASES))
            )
        toolkits = _as_list(entry.toolkit)
        readable = set().union(*(knobs(t) for t in toolkits))
        unknown = sorted(set(entry.toolkit_options) - readable)
        if unknown and all(t in TOOLKIT_PRECISIONS for t in toolkits):
            own = {t: ", ".join(TOOLKIT_KNOBS.get(t, ())) or "none" for t in toolkits}
            said = "; ".join("%s reads %s" % pair for pair in own.items())
            raise ConfigError(
                "%s.toolkit_options.%s: no toolkit of this entry reads it (%s; every toolkit takes %s)"
                % (field, unknown[0], said, HOLD_KNOB)
            )
        largest = max(_as_list(entry.batch_size))
        for host in cluster.hosts:
            limit = host.data.max_images
            if limit and largest > limit and (entry.hosts is None or host.name in entry.hosts):
                raise ConfigError(
                    "%s.batch_size: %d is larger than the %d images of host %s (data.max_images): every "
                    "batch would be mostly padding; use at most %d"
                    % (field, largest, limit, host.name, limit)
                )


def _as_list(value: object) -> Sequence:
    return value if isinstance(value, list) else [value]
