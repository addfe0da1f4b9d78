"""What a cluster file may ask of the runner: the cases it has, the options its toolkits read, batch sizes
its data can fill. Checked at ``plan`` (and by every command that loads the file), so that a typo fails in
one line before anything is built, not at run time on each host.

The runner's names come from the torch-free contract (``runner_in_container/contract.py``: its cases)
and from its sources (the orchestrator never imports torch): per toolkit (a class with a ``name``) the
keys its module reads with ``self.option("key", ...)`` or ``self.switch("key", ...)``, and the runner's
own knobs, which every toolkit takes (``hold_until``).
``check`` is the one place that knows this, so that it can read a shared contract instead.
"""

import re
from functools import lru_cache
from pathlib import Path
from typing import Dict, FrozenSet, Sequence, Tuple

import runner_in_container
from runner_in_container.contract import CASES
from runner_in_container.hold import KNOB as HOLD_KNOB

from .config import Cluster, ConfigError

#: options the runner itself reads, whatever the toolkit
RUNNER_OPTIONS = frozenset({HOLD_KNOB})

RUNNER = Path(runner_in_container.__file__).resolve().parent
_TOOLKIT_NAME = re.compile(r'^    name = "([A-Za-z0-9_]+)"$', re.M)  # a class attribute
_OPTION_KEY = re.compile(r'self\.(?:option|switch)\(\s*"([a-z][a-z0-9_]*)"')


def runner_cases() -> Tuple[str, ...]:
    """The cases the runner has (contract.CASES, one module each)."""
    return CASES


@lru_cache(maxsize=None)
def toolkit_options() -> Dict[str, FrozenSet[str]]:
    """Toolkit name -> the option keys its module reads."""
    found: Dict[str, FrozenSet[str]] = {}
    for module in sorted((RUNNER / "toolkits").glob("*.py")):
        text = module.read_text()
        for name in _TOOLKIT_NAME.findall(text):
            found[name] = frozenset(_OPTION_KEY.findall(text))
    return found


def check(cluster: Cluster, where: str) -> None:
    """ConfigError (one line naming the field) for an unknown case, a toolkit option no toolkit of its
    entry reads, or a batch size larger than a host's ``data.max_images``."""
    cases = runner_cases()
    options = toolkit_options()
    for index, entry in enumerate(cluster.cases):
        field = "%s: cases[%d]" % (where, index)
        if entry.case not in cases:
            raise ConfigError(
                "%s.case: unknown case %r (the runner has: %s)" % (field, entry.case, ", ".join(cases))
            )
        toolkits = _as_list(entry.toolkit)
        readable = RUNNER_OPTIONS.union(*(options.get(t, frozenset()) for t in toolkits))
        unknown = sorted(set(entry.toolkit_options) - readable)
        if unknown and all(t in options for t in toolkits):
            said = "; ".join("%s reads %s" % (t, ", ".join(sorted(options[t])) or "none") for t in toolkits)
            raise ConfigError(
                "%s.toolkit_options.%s: no toolkit of this entry reads it (%s)" % (field, unknown[0], said)
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
