"""Loading a cluster file: read within bounds (``yamlread``), validated by the models (``cluster``) and its
launcher's sections by that launcher's own models (``check_launcher``), its paths resolved (``paths``), then
checked against what this installation has: its launchers, vendors and the runner's knobs (``knobs``).
``load_checked`` is what every command calls."""

import re
from pathlib import Path
from typing import Dict, List, Tuple, Union

import yaml
from pydantic import ValidationError

import vendors
from orchestrator import launchers
from orchestrator.config import knobs, yamlread
from orchestrator.config.paths import localise
from orchestrator.model.cluster import Cluster
from orchestrator.model.fields import ConfigError, WithSections
from vendors.vendor import Vendor

#: how pydantic names the member of a Union it tried (``batch_size.list[int]``), not a field of the file
_UNION_MEMBER = re.compile(r"^(int|str|bool|float|list\[.*\]|literal\[.*\])$")


def _format_error(where: object, error: ValidationError, within: Tuple[Union[str, int], ...] = ()) -> str:
    """One line: the first problem, named by its field (under ``within``, the place of the model validated).
    Of a Union's members, the one whose type the value has speaks (a list of 65536 batch sizes is too long,
    not "no integer")."""
    errors = error.errors()
    first = next((e for e in errors if not e["type"].endswith("_type")), errors[0])
    loc = [p for i, p in enumerate(first["loc"]) if not (i and isinstance(p, str) and _UNION_MEMBER.match(p))]
    more = len(errors) - 1
    return _problem(where, within + tuple(loc), first["msg"], first.get("input"), more)


def _problem(
    where: object, loc: Tuple[Union[str, int], ...], message: str, got: object = None, more: int = 0
) -> str:
    """``FILE: hosts[0].slurm.partition: MESSAGE (got VALUE)``, the value shown where it is a scalar."""
    field = "".join(
        "[%d]" % part if isinstance(part, int) else (".%s" % part if i else str(part))
        for i, part in enumerate(loc)
    )
    got_text = "" if isinstance(got, (dict, list)) or got is None else " (got %r)" % (got,)
    suffix = " (+%d more)" % more if more else ""
    return "%s: %s: %s%s%s" % (where, field or "<top>", message, got_text, suffix)


def load_cluster(path: Union[str, Path]) -> Cluster:
    """Read and validate a cluster file; raise ConfigError with one line on any problem."""
    path = Path(path)
    try:
        raw = yamlread.load(yamlread.read_text(str(path)))
    except OSError as exc:
        raise ConfigError("%s: cannot read cluster file: %s" % (path, exc.strerror or exc)) from None
    except yamlread.ReadRefused as exc:
        raise ConfigError("%s: %s" % (path, exc)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = ":%d" % (mark.line + 1) if mark else ""
        raise ConfigError("%s%s: not valid YAML: %s" % (path, where, getattr(exc, "problem", exc))) from None
    if not isinstance(raw, dict):
        raise ConfigError("%s: expected a mapping with 'hosts' and 'cases' at the top" % path)
    try:
        cluster = Cluster.model_validate(raw)
        check_launcher(cluster, str(path))
        return localise(cluster, path.resolve().parent)
    except ConfigError:
        raise  # one line already
    except ValidationError as exc:
        raise ConfigError(_format_error(path, exc)) from None
    except ValueError as exc:
        raise ConfigError("%s: %s" % (path, exc)) from None


def load_checked(path: Union[str, Path]) -> Tuple[Cluster, Dict[str, Vendor]]:
    """The cluster file read and checked (``check``); ConfigError with one line naming the file and field."""
    cluster = load_cluster(path)
    return cluster, check(cluster, str(path))


def check(cluster: Cluster, where: str) -> Dict[str, Vendor]:
    """``cluster`` against this installation: a known launcher and its sections (``check_launcher``); every
    host names a known vendor, joins MPS only on NVIDIA, and runs privileged only when its vendor needs it and
    it says so; every case, toolkit option and batch size is one the runner takes. The vendors, by name."""
    check_launcher(cluster, where)
    knobs.check(cluster, where)
    known = vendors.discover()
    for index, host in enumerate(cluster.hosts):
        field = "%s: hosts[%d]" % (where, index)
        vendor = known.get(host.vendor)
        if vendor is None:
            raise ConfigError(
                "%s.vendor: unknown vendor %r (known: %s)" % (field, host.vendor, ", ".join(sorted(known)))
            )
        if host.mps is True and not vendor.mps:
            raise ConfigError(
                "%s.mps: vendor %s has no MPS daemon to join (CUDA MPS is NVIDIA's); remove it"
                % (field, vendor.name)
            )
        if host.runtime != "docker":
            continue
        if vendor.privileged and not host.docker.privileged:
            raise ConfigError(
                "%s.docker.privileged: vendor %s runs only in --privileged containers; set it to true to "
                "allow that on host %s" % (field, vendor.name, host.name)
            )
        if host.docker.privileged and not vendor.privileged:
            raise ConfigError(
                "%s.docker.privileged: vendor %s does not need --privileged (its containers get only its "
                "device nodes); remove it" % (field, vendor.name)
            )
    return known


def check_launcher(cluster: Cluster, where: str) -> None:
    """The launcher ``cluster`` names, with its sections and rules. The models keep every key beyond their
    fields (``slurm:``, ``hosts[].slurm``) as given: each must be the section of a launcher that takes one
    there (``settings_class``, ``host_settings_class``), the chosen one, and valid by that class; then the
    launcher's ``check``. ConfigError with one line naming ``where`` and the field."""
    try:
        chosen = launchers.get(cluster.launcher)
    except ValueError as exc:
        raise ConfigError("%s: launcher: %s" % (where, exc)) from None
    known = launchers.discover()
    places: List[Tuple[Tuple[Union[str, int], ...], WithSections, str]] = [((), cluster, "settings_class")]
    places += [(("hosts", i), host, "host_settings_class") for i, host in enumerate(cluster.hosts)]
    for within, model, kind in places:
        for name, value in model.sections().items():
            owner = known.get(name)
            settings = getattr(owner, kind, None)
            if settings is None:
                raise ConfigError(_problem(where, within + (name,), "Extra inputs are not permitted", value))
            if value is None:
                continue  # null: not given
            if owner is not chosen:
                message = "set launcher: %s to use these settings" % name
                raise ConfigError(_problem(where, within + (name,), message))
            try:
                settings.model_validate(value)
            except ValidationError as exc:
                raise ConfigError(_format_error(where, exc, within + (name,))) from None
    try:
        chosen.check(cluster)
    except ValueError as exc:
        raise ConfigError("%s: %s" % (where, exc)) from None
