"""What the fields of a cluster file are checked with: names in a safe alphabet, one-line text, paths that
can become bind mounts, values the runner takes (its contract), and the strict base model."""

import re
from typing import Any, Dict, Optional

from pydantic import BaseModel, ConfigDict

from runner_in_container.contract import OPTION

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class ConfigError(ValueError):
    """The cluster file is invalid; the message is one line naming file and field."""


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
            if item is not None:
                option.check(item)
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
