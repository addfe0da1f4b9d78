"""Loading a cluster file: read within bounds (``yamlread``), validated by the models (``cluster``) and its
launcher's sections by that launcher's own models (``check_launcher``), its paths resolved (``paths``), then
checked against what this installation has: its launchers, vendors and the runner's knobs (``knobs``).
``load_checked`` is what every command calls."""

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Type, Union

import yaml
from pydantic import BaseModel, ValidationError

import vendors
from orchestrator import launchers
from orchestrator.config import knobs, paths, yamlread
from orchestrator.config.paths import localise
from orchestrator.config.problems import config_error, explain
from orchestrator.model.cluster import Cluster, Host
from orchestrator.model.fields import ConfigError, Keys, Problem, Problems, unknown
from vendors.errors import VendorError
from vendors.vendor import Vendor


def load_cluster(path: Union[str, Path]) -> Cluster:
    """Read and validate a cluster file with its launcher's sections; ConfigError with a line per problem."""
    return _load(Path(path), installation=False)[0]


def load_checked(path: Union[str, Path]) -> Tuple[Cluster, Dict[str, Vendor]]:
    """The cluster file read and checked, also against this installation (``check``); ConfigError with a line
    per problem, every one found (those of the models first: the other checks need a valid file)."""
    return _load(Path(path), installation=True)


def _load(path: Path, installation: bool) -> Tuple[Cluster, Dict[str, Vendor]]:
    text = _read(path)
    try:
        raw, lines = yamlread.load(text)
    except yamlread.ReadRefused as exc:
        raise ConfigError("%s: %s" % (path, exc)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = ":%d" % (mark.line + 1) if mark else ""
        raise ConfigError("%s%s: not valid YAML: %s" % (path, where, getattr(exc, "problem", exc))) from None
    if not isinstance(raw, dict):
        raise ConfigError("%s: expected a mapping with 'hosts' and 'cases' at the top" % path)
    known = vendors.discover() if installation else None
    cluster, problems = _problems(raw, known)
    if cluster is None or problems:
        raise config_error(path, problems, lines)
    return localise(cluster, path.resolve().parent), known or {}


def _read(path: Path) -> str:
    try:
        return yamlread.read_text(str(path))
    except OSError as exc:
        raise ConfigError("%s: cannot read cluster file: %s" % (path, exc.strerror or exc)) from None
    except yamlread.ReadRefused as exc:
        raise ConfigError("%s: %s" % (path, exc)) from None


def _problems(
    raw: Dict[str, Any], known: Optional[Dict[str, Vendor]]
) -> Tuple[Optional[Cluster], List[Problem]]:
    """The cluster ``raw`` stands for (None when the models refuse it) and every problem found in it: those
    of its launcher sections and names (on the data as written, so that they are told beside the models'),
    the models', then, on a valid cluster, its launcher's rules, its remote paths (``paths``) and with
    ``known`` (this installation's vendors) the runner's knobs and the vendors' rules."""
    sections = _section_problems(raw)
    problems = sections + (_vendor_names(raw, known) if known is not None else [])
    try:
        cluster = Cluster.model_validate(raw)
    except ValidationError as exc:
        return None, explain(exc, Cluster) + problems
    chosen = launchers.discover().get(cluster.launcher)
    if chosen is not None and not sections:  # its rules read its (valid) sections
        try:
            chosen.check(cluster)
        except Problems as exc:
            problems += exc.problems
        except ValueError as exc:
            problems.append(Problem((), str(exc)))
    problems += paths.problems(cluster)
    if known is not None:
        problems += knobs.problems(cluster) + _vendor_problems(cluster, known)
    return cluster, problems


def check(cluster: Cluster, where: str) -> Dict[str, Vendor]:
    """``cluster`` (one not read from a file: a stored run's) checked as ``load_checked`` checks a file;
    ConfigError with a line per problem, each naming ``where`` and the field. The vendors, by name."""
    known = vendors.discover()
    _, problems = _problems(cluster.model_dump(mode="json"), known)
    if problems:
        raise config_error(where, problems)
    return known


def check_launcher(cluster: Cluster, where: str) -> None:
    """``cluster``'s launcher, its sections and rules; ConfigError, a line per problem, naming ``where``."""
    _, problems = _problems(cluster.model_dump(mode="json"), None)
    if problems:
        raise config_error(where, problems)


def _vendor_names(raw: Dict[str, Any], known: Dict[str, Vendor]) -> List[Problem]:
    """Every host names a known vendor."""
    hosts = raw.get("hosts")
    return [
        Problem(("hosts", index, "vendor"), unknown("vendor", host["vendor"], known))
        for index, host in enumerate(hosts if isinstance(hosts, list) else [])
        if isinstance(host, dict) and isinstance(host.get("vendor"), str) and host["vendor"] not in known
    ]


def _vendor_problems(cluster: Cluster, known: Dict[str, Vendor]) -> List[Problem]:
    """Every host of a known vendor joins MPS only on NVIDIA, runs privileged only when its vendor needs it
    and it says so, names an image stack of its vendor that it can build (``_stack_problems``) and reaches the
    GPUs a way its vendor has (``_access_problems``)."""
    problems = []
    for index, host in enumerate(cluster.hosts):
        vendor = known.get(host.vendor)
        if vendor is None:
            continue  # _vendor_names tells
        problems += _stack_problems(cluster, index, vendor) + _access_problems(host, index, vendor)
        if host.mps is True and not vendor.mps:
            problems.append(Problem(
                ("hosts", index, "mps"),
                "vendor %s has no MPS daemon to join (CUDA MPS is NVIDIA's); remove it" % vendor.name,
            ))  # fmt: skip
        if host.runtime != "docker":
            continue
        if vendor.privileged and not host.docker.privileged:
            problems.append(Problem(
                ("hosts", index, "docker", "privileged"),
                "vendor %s runs only in --privileged containers; set it to true to allow that on host %s"
                % (vendor.name, host.name),
            ))  # fmt: skip
        if host.docker.privileged and not vendor.privileged:
            problems.append(Problem(
                ("hosts", index, "docker", "privileged"),
                "vendor %s does not need --privileged (its containers get only its device nodes); remove it"
                % vendor.name,
            ))  # fmt: skip
    return problems


def _stack_problems(cluster: Cluster, index: int, vendor: Vendor) -> List[Problem]:
    """hosts[index].image names a stack of its vendor, a base image where the stack names none, pins only of
    what the stack pins; and no case entry of the host asks for a toolkit its stack lacks."""
    host = cluster.hosts[index]
    try:
        stack = vendor.image_stack(host.image.stack)
    except VendorError as exc:
        return [Problem(("hosts", index, "image", "stack"), str(exc))]
    if host.runtime != "docker":
        return []
    problems = []
    if not host.image.base_image and not stack.image_vars.get("base_image"):
        problems.append(Problem(
            ("hosts", index, "image"),
            "image stack %s builds on a base image the lab makes: set image.base_image" % stack.name,
        ))  # fmt: skip
    for name in sorted(set(host.image.pins) - set(stack.pins)):
        problems.append(Problem(
            ("hosts", index, "image", "pins", name),
            "image stack %s pins %s, not %s" % (stack.name, ", ".join(stack.pins) or "nothing", name),
        ))  # fmt: skip
    for number, case in enumerate(cluster.cases):
        if case.hosts is not None and host.name not in case.hosts:
            continue
        for toolkit in case.toolkit if isinstance(case.toolkit, list) else [case.toolkit]:
            reason = stack.lacked(toolkit)
            if reason:
                problems.append(Problem(
                    ("cases", number, "toolkit"),
                    "%s (host %s); remove it, or leave the host out with cases[].hosts" % (reason, host.name),
                ))  # fmt: skip
    return problems


def _access_problems(host: Host, index: int, vendor: Vendor) -> List[Problem]:
    """docker.gpu_access nodes only for a vendor with a driver_mount; docker.driver_dir only with it."""
    if host.docker.gpu_access == "nodes" and vendor.driver_mount is None:
        return [Problem(
            ("hosts", index, "docker", "gpu_access"),
            "vendor %s reaches its devices only its own way (docker_device_args): remove it" % vendor.name,
        )]  # fmt: skip
    if host.docker.driver_dir and host.docker.gpu_access != "nodes":
        return [Problem(
            ("hosts", index, "docker", "driver_dir"),
            "only containers of gpu_access: nodes mount a driver folder: set that, or remove driver_dir",
        )]  # fmt: skip
    return []


def _section_problems(raw: Dict[str, Any]) -> List[Problem]:
    """The launcher ``raw`` names and its sections. The models keep every key beyond their fields
    (``slurm:``, ``hosts[].slurm``) as given: each must be the section of a launcher that takes one there
    (``settings_class``, ``host_settings_class``), the chosen one, and valid by that class."""
    known = launchers.discover()
    name = raw.get("launcher", Cluster.model_fields["launcher"].default)
    if isinstance(name, str) and name not in known:
        return [Problem(("launcher",), unknown("launcher", name, known))]
    hosts = raw.get("hosts")
    hosts = hosts if isinstance(hosts, list) else []
    places: List[Tuple[Keys, Any, Type[BaseModel], str]] = [((), raw, Cluster, "settings_class")]
    places += [(("hosts", i), host, Host, "host_settings_class") for i, host in enumerate(hosts)]
    problems: List[Problem] = []
    for within, given, model, kind in places:
        if not isinstance(given, dict):
            continue  # the models tell
        takes = {owner: getattr(known[owner], kind) for owner in known if getattr(known[owner], kind, None)}
        for section in sorted(set(given) - set(model.model_fields), key=str):
            value, settings = given[section], takes.get(section)
            if settings is None:
                keys = list(model.model_fields) + list(takes)
                problems.append(Problem(within + (section,), unknown("key", section, keys)))
            elif value is not None and section != name:
                message = "set launcher: %s to use these settings" % section
                problems.append(Problem(within + (section,), message))
            elif value is not None:
                problems += _valid(settings, value, within + (section,))
    return problems


def _valid(model: Type[BaseModel], value: object, within: Keys) -> List[Problem]:
    """The problems of ``value`` as a ``model`` (a launcher's settings) at ``within`` in the file."""
    try:
        model.model_validate(value)
    except ValidationError as exc:
        return explain(exc, model, within)
    return []
