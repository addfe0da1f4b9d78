"""What a cluster file may ask of the runner: the cases it has, the options its toolkits read and their
values, options that hold together (contract.check_run, the check the runner makes at its start), batch
sizes its data can fill. Checked at ``plan`` (and by every command that loads the file), so that a typo or
a combination the runner refuses is told (``file:line: field: what``, config/problems.py) before anything
is built, not at run time on each host.

The runner's names come from the torch-free contract (``runner_in_container/contract.py``): its cases, and
per toolkit the knobs it reads (``TOOLKIT_KNOBS``) beside the runner's own (``hold_until``), which every
toolkit takes.
"""

from typing import Any, Dict, List, Optional, Sequence, Tuple

from orchestrator.model.cluster import Case, Cluster, Host
from orchestrator.model.fields import Keys, Problem, did_you_mean, dotted, unknown
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
#: the runner's options a case entry sets for its jobs, else its host does (``Case.own_or_host``)
CASE_OR_HOST_OPTIONS = ("weights_sha256", "onnx_path", "engine_path")
HOST_OPTIONS: Dict[str, Tuple[str, ...]] = {
    "workers": ("workers",),
    "decode_processes": ("decode_processes",),
    "layout": ("data", "layout"),
    "labels": ("data", "labels"),
    "data_md5": ("data", "md5"),
}


def problems(cluster: Cluster) -> List[Problem]:
    """Each case entry's problems: an unknown case, a toolkit option no toolkit of its entry reads, a job
    the runner would refuse at its start (contract.check_run: a knob's value, options that do not hold
    together), a batch size larger than a host's ``data.max_images``."""
    found: List[Problem] = []
    for index, entry in enumerate(cluster.cases):
        if entry.case not in CASES:
            found.append(Problem(("cases", index, "case"), unknown("case", entry.case, CASES)))
            continue
        toolkits = _as_list(entry.toolkit)
        readable = set().union(*(knobs(t) for t in toolkits))
        known = all(t in TOOLKIT_PRECISIONS for t in toolkits)  # else the vendors' check names the toolkit
        unread = sorted(set(entry.toolkit_options) - readable) if known else []
        for name in unread:
            own = {t: ", ".join(TOOLKIT_KNOBS.get(t, ())) or "none" for t in toolkits}
            said = "; ".join("%s reads %s" % pair for pair in own.items())
            found.append(Problem(
                ("cases", index, "toolkit_options", name),
                "no toolkit of this entry reads it%s (%s; every toolkit takes %s)"
                % (did_you_mean(name, readable), said, HOLD_KNOB),
            ))  # fmt: skip
        if unread:
            continue  # the runner's check would refuse the same option
        largest = max(_as_list(entry.batch_size))
        for host_index, host in enumerate(cluster.hosts):
            if entry.hosts is not None and host.name not in entry.hosts:
                continue
            conflict = _conflict(entry, index, host, host_index) if known else None
            if conflict:
                found.append(conflict)
            limit = host.data.max_images
            if limit and largest > limit:
                found.append(Problem(
                    ("cases", index, "batch_size"),
                    "%d is larger than the %d images of host %s (data.max_images): every batch would be "
                    "mostly padding; use at most %d" % (largest, limit, host.name, limit),
                ))  # fmt: skip
    return found


def _conflict(entry: Case, index: int, host: Host, host_index: int) -> Optional[Problem]:
    """The runner's check of its options and knobs together (contract.check_run) on each toolkit's jobs
    of ``entry`` on ``host``: the problem at the field at fault, with the fields it does not hold together
    with; None when they do."""
    scenarios = _as_list(entry.scenario)
    listed = set().union(*(scenario_settings(scenario) for scenario in scenarios))
    for toolkit, scenario in ((t, s) for t in _as_list(entry.toolkit) for s in scenarios):
        options: Dict[str, Any] = {name: getattr(entry, name) for name in CASE_OPTIONS}
        options.update({name: _get(host, keys) for name, keys in HOST_OPTIONS.items()}, toolkit=toolkit)
        options.update({name: entry.own_or_host(name, host) for name in CASE_OR_HOST_OPTIONS})
        options["scenario"] = scenario
        for name in listed - set(scenario_settings(scenario)):  # read by another scenario of the list
            del options[name]
        try:
            check_run(options, entry.toolkit_options)
        except Conflict as exc:
            values = dict(options, **entry.toolkit_options)
            joined = "".join(
                "; with %s: %s" % (dotted(_keys(name, entry, index, host_index)), values.get(name))
                for name in exc.others
            )
            return Problem(_keys(exc.name, entry, index, host_index), exc.what + joined)
    return None


def _keys(name: str, entry: Case, index: int, host_index: int) -> Keys:
    """Where the runner's option or knob ``name`` of the job of cases[index] (``entry``) on
    hosts[host_index] is set."""
    if name in CASE_OR_HOST_OPTIONS:
        return ("cases", index, name) if getattr(entry, name) is not None else ("hosts", host_index, name)
    if name in HOST_OPTIONS:
        return ("hosts", host_index) + HOST_OPTIONS[name]
    if name in CASE_OPTIONS:
        return ("cases", index, name)
    return ("cases", index, "toolkit_options", name)


def _get(value: Any, keys: Sequence[str]) -> Any:
    for key in keys:
        value = getattr(value, key)
    return value


def _as_list(value: object) -> Sequence:
    return value if isinstance(value, list) else [value]
