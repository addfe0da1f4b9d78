"""What a cluster file may ask of the runner: the cases it has, the options its toolkits read and their
values, options that hold together (contract.check_run, the check the runner makes at its start), batch
sizes its data can fill. Checked at ``plan`` (and by every command that loads the file), so that a typo or
a combination the runner refuses fails in one line (``file:line: field: what``) before anything is built,
not at run time on each host.

The runner's names come from the torch-free contract (``runner_in_container/contract.py``): its cases, and
per toolkit the knobs it reads (``TOOLKIT_KNOBS``) beside the runner's own (``hold_until``), which every
toolkit takes.
"""

from typing import Any, Dict, Sequence, Tuple, Union

from orchestrator.config import yamlread
from orchestrator.model.cluster import Case, Cluster, Host
from orchestrator.model.fields import ConfigError
from runner_in_container.contract import (
    CASES,
    HOLD_KNOB,
    TOOLKIT_KNOBS,
    TOOLKIT_PRECISIONS,
    Conflict,
    check_run,
    knobs,
    scenario_settings,
)

#: the runner's options a cluster file sets on a case entry (same name), and on a host (where below it)
CASE_OPTIONS = (
    "case",
    "toolkit",
    "precision",
    "batch_size",
    "repeat",
    "warmup",
    "decoder",
    "scenario",
    "mlperf",
    "mlperf_duration_s",
    "server_target_qps",
    "server_latency_ms",
)
HOST_OPTIONS: Dict[str, Tuple[str, ...]] = {
    "workers": ("workers",),
    "decode_processes": ("decode_processes",),
    "layout": ("data", "layout"),
    "labels": ("data", "labels"),
    "data_md5": ("data", "md5"),
}


def check(cluster: Cluster, where: str) -> None:
    """ConfigError (one line naming the field) for an unknown case, a toolkit option no toolkit of its
    entry reads, a job the runner would refuse at its start (contract.check_run: a knob's value, options
    that do not hold together), or a batch size larger than a host's ``data.max_images``."""
    for index, entry in enumerate(cluster.cases):
        field = "%s: cases[%d]" % (where, index)
        if entry.case not in CASES:
            raise ConfigError(
                "%s.case: unknown case %r (the runner has: %s)" % (field, entry.case, ", ".join(CASES))
            )
        toolkits = _as_list(entry.toolkit)
        readable = set().union(*(knobs(t) for t in toolkits))
        unknown = sorted(set(entry.toolkit_options) - readable)
        known = all(t in TOOLKIT_PRECISIONS for t in toolkits)  # else the vendors' check names the toolkit
        if unknown and known:
            own = {t: ", ".join(TOOLKIT_KNOBS.get(t, ())) or "none" for t in toolkits}
            said = "; ".join("%s reads %s" % pair for pair in own.items())
            raise ConfigError(
                "%s.toolkit_options.%s: no toolkit of this entry reads it (%s; every toolkit takes %s)"
                % (field, unknown[0], said, HOLD_KNOB)
            )
        largest = max(_as_list(entry.batch_size))
        for host_index, host in enumerate(cluster.hosts):
            if entry.hosts is not None and host.name not in entry.hosts:
                continue
            if known:
                _check_jobs(entry, index, host, host_index, where)
            limit = host.data.max_images
            if limit and largest > limit:
                raise ConfigError(
                    "%s.batch_size: %d is larger than the %d images of host %s (data.max_images): every "
                    "batch would be mostly padding; use at most %d"
                    % (field, largest, limit, host.name, limit)
                )


def _check_jobs(entry: Case, index: int, host: Host, host_index: int, where: str) -> None:
    """The runner's check of its options and knobs together (contract.check_run) on each toolkit's jobs
    of ``entry`` on ``host``; ConfigError naming the file and line of the field at fault, and the fields
    that it does not hold together with."""
    scenarios = _as_list(entry.scenario)
    listed = set().union(*(scenario_settings(scenario) for scenario in scenarios))
    for toolkit, scenario in ((t, s) for t in _as_list(entry.toolkit) for s in scenarios):
        options: Dict[str, Any] = {name: getattr(entry, name) for name in CASE_OPTIONS}
        options.update({name: _get(host, keys) for name, keys in HOST_OPTIONS.items()}, toolkit=toolkit)
        options["scenario"] = scenario
        for name in listed - set(scenario_settings(scenario)):  # read by another scenario of the list
            del options[name]
        try:
            check_run(options, entry.toolkit_options)
        except Conflict as exc:
            values = dict(options, **entry.toolkit_options)
            joined = "".join(
                "; with %s: %s" % (_dotted(_keys(name, index, host_index)), values.get(name))
                for name in exc.others
            )
            keys = _keys(exc.name, index, host_index)
            raise ConfigError("%s: %s: %s%s" % (_at(where, keys), _dotted(keys), exc.what, joined)) from None


def _keys(name: str, index: int, host_index: int) -> Tuple[Union[str, int], ...]:
    """Where the runner's option or knob ``name`` of the job of cases[index] on hosts[host_index] is set."""
    if name in HOST_OPTIONS:
        return ("hosts", host_index) + HOST_OPTIONS[name]
    if name in CASE_OPTIONS:
        return ("cases", index, name)
    return ("cases", index, "toolkit_options", name)


def _get(value: Any, keys: Sequence[str]) -> Any:
    for key in keys:
        value = getattr(value, key)
    return value


def _dotted(keys: Sequence[Union[str, int]]) -> str:
    return "".join(
        "[%d]" % key if isinstance(key, int) else ("." if i else "") + key for i, key in enumerate(keys)
    )


def _at(where: str, keys: Sequence[Union[str, int]]) -> str:
    """``where`` (the cluster file), with ``:line`` where the file sets ``keys``."""
    try:
        line = yamlread.line_of(yamlread.read_text(where), keys)
    except (OSError, yamlread.ReadRefused):
        line = None
    return where if line is None else "%s:%d" % (where, line)


def _as_list(value: object) -> Sequence:
    return value if isinstance(value, list) else [value]
