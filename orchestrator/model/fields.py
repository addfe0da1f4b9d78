"""What the fields of a cluster file are checked with: names in a safe alphabet, one-line text, paths that
can become bind mounts, values the runner takes (its contract), the strict base model, and the problems
found in a file (``Problem``: a field's place and what is wrong there, in plain words)."""

import difflib
import re
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

from pydantic import BaseModel, ConfigDict

from runner_in_container.contract import OPTION

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class ConfigError(ValueError):
    """The cluster file is invalid; the message is one line per problem, each naming file and field."""


#: where a value is in the file: mapping keys and list indices from the top (``("cases", 0, "batch_size")``)
Keys = Tuple[Union[str, int], ...]


class Problem(NamedTuple):
    """One thing wrong in a cluster file: the place of the field (``Keys``) and what, in plain words."""

    keys: Keys
    message: str


class Problems(ValueError):
    """Problems of a file found together (a model validator's checks, a launcher's): each with its place."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("; ".join("%s: %s" % (dotted(p.keys), p.message) for p in problems))
        self.problems: List[Problem] = list(problems)


def dotted(keys: Sequence[Union[str, int]]) -> str:
    """``hosts[0].data.path`` for ``("hosts", 0, "data", "path")``; ``<top>`` for the file itself."""
    text = "".join(
        "[%d]" % key if isinstance(key, int) else ("." if i else "") + str(key) for i, key in enumerate(keys)
    )
    return text or "<top>"


def unknown(what: str, value: object, known: Iterable[str]) -> str:
    """``unknown vendor 'nvidai'; did you mean nvidia?``, or with all the known names where none is close:
    ``unknown vendor 'xyz' (known: cpu, nvidia)``. ``what`` 'key': the field names the key already."""
    names = sorted(set(known))
    guess = did_you_mean(value, names)
    said = "unknown key" if what == "key" else "unknown %s %r" % (what, value)
    return said + (guess or " (known: %s)" % ", ".join(names))


def did_you_mean(value: object, known: Iterable[str]) -> str:
    """``; did you mean batch_size?`` with the names of ``known`` closest to ``value`` (difflib), or ''."""
    close = difflib.get_close_matches(str(value), sorted(set(known)), n=2, cutoff=0.6)
    return "; did you mean %s?" % " or ".join(close) if close else ""


def safe_name(value: str) -> str:
    if not NAME_RE.match(value):
        raise ValueError("must match %s (letters, digits, '.', '_', '-')" % NAME_RE.pattern)
    return value


def safe_text(value: Optional[str]) -> Optional[str]:
    if value is not None and any(ch in value for ch in ("\n", "\r", "\x00")):
        raise ValueError("must not contain newlines or NUL bytes")
    return value


def runner_option(name: str) -> Any:
    """A validator: each value (one or a list) as the runner's option ``name`` takes it (contract.OPTIONS)."""
    option = OPTION[name]

    def check(value: Any) -> Any:
        for item in value if isinstance(value, list) else [value]:
            if item is None:
                continue
            if option.choices is not None and str(item) not in option.choices:
                raise ValueError(unknown(name.replace("_", " "), item, option.choices))
            try:
                option.check(item)
            except ValueError as exc:  # "--batch-size: ..." names the runner's flag: the field is named here
                raise ValueError(str(exc).replace(option.flag + ": ", "", 1)) from None
        return value

    return check


def mount_path(value: Optional[str]) -> Optional[str]:
    """A host path that may become a bind mount: one line, and nothing docker's --mount syntax splits on."""
    value = safe_text(value)
    if value is None:
        return None
    if "," in value or '"' in value:
        raise ValueError("must not contain ',' or '\"' (docker --mount cannot take them)")
    return value


class Model(BaseModel):
    """Unknown keys refused; values of the declared type only (``batch_size: true`` is no 1), finite."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class WithSections(Model):
    """A model whose keys beyond its fields are other modules' sections of the file (a launcher's ``slurm:``),
    kept as given: ``config/load.py`` validates each with its owner's model and refuses any that has none."""

    model_config = ConfigDict(extra="allow")

    def sections(self) -> Dict[str, Any]:
        """Every section given, by name (null ones too)."""
        return dict(self.model_extra or {})

    def section(self, name: str) -> Any:
        """The section ``name`` as the file gives it; None where absent."""
        return self.sections().get(name)
