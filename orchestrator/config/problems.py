"""Problems of a cluster file told in plain words: pydantic's errors rewritten (``explain``: one problem per
field, "unknown key 'batch_sise'; did you mean batch_size?" where the model has a close name, no "Value
error," or union member names), and every problem found made into one ConfigError of one line each,
``FILE:LINE: field: what``, in the order of the file (``config_error``)."""

import re
from typing import Any, Dict, List, Optional, Sequence, Type, get_args

from pydantic import BaseModel, ValidationError

from orchestrator.config.yamlread import Lines
from orchestrator.model.fields import ConfigError, Keys, Problem, Problems, did_you_mean, dotted, unknown

#: how pydantic names the member of a Union or the step it tried (``batch_size.list[int]``), not a field
_UNION_MEMBER = re.compile(r"^(int|str|bool|float|list\[.*\]|dict\[.*\]|literal\[.*\]|function-.*)$")

#: the kind of value each of pydantic's type errors asked for
_KINDS = {
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "string_type": "text",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping (key: value lines)",
    "model_type": "a mapping (key: value lines)",
    "model_attributes_type": "a mapping (key: value lines)",
}

#: the other errors in plain words, from the error's ``ctx``
_WORDS = {
    "missing": "required but not given",
    "greater_than": "must be more than {gt:g}",
    "greater_than_equal": "must be at least {ge:g}",
    "less_than": "must be less than {lt:g}",
    "less_than_equal": "must be at most {le:g}",
    "too_long": "has {actual_length} items; at most {max_length} are allowed",
    "too_short": "needs at least {min_length} item(s)",
    "string_pattern_mismatch": "must match {pattern}",
    "string_too_long": "must be at most {max_length} characters",
    "string_too_short": "must be at least {min_length} characters",
    "finite_number": "must be a finite number",
}


def explain(error: ValidationError, model: Type[BaseModel], within: Keys = ()) -> List[Problem]:
    """``error`` of validating ``model`` (which sits at ``within`` in the file) as problems, one a field."""
    by_place: Dict[Keys, List[Dict[str, Any]]] = {}
    for details in error.errors():
        item: Dict[str, Any] = dict(details)
        cause = (item.get("ctx") or {}).get("error")
        if isinstance(cause, Problems):  # a model validator's own problems, each with its place
            base = within + _place(item["loc"])
            by_place.update({base + p.keys: [dict(item, msg=p.message, own=True)] for p in cause.problems})
            continue
        by_place.setdefault(within + _place(item["loc"]), []).append(item)
    return [
        _problem(keys, items, model, within)
        for keys, items in by_place.items()
        if not (_wrong_type(items) and any(len(k) > len(keys) and k[: len(keys)] == keys for k in by_place))
    ]  # a union's member of the wrong type is no problem where another's items tell what is wrong


def _wrong_type(items: List[Dict[str, Any]]) -> bool:
    return all(item["type"] in _KINDS for item in items)


def _place(loc: Sequence[Any]) -> Keys:
    """pydantic's ``loc`` without the union members it tried; a dict's ``[key]`` marker is kept."""
    return tuple(p for i, p in enumerate(loc) if not (i and isinstance(p, str) and _UNION_MEMBER.match(p)))


def _problem(keys: Keys, items: List[Dict[str, Any]], model: Type[BaseModel], within: Keys) -> Problem:
    """One problem of the errors pydantic gave for one place: what a union's members wanted, joined ("must
    be a whole number or a list", "must be true or false or auto"), else the first other error (a list that
    is too long is that, not "no whole number")."""
    if items[0].get("own"):
        return Problem(keys, items[0]["msg"])
    got = items[0].get("input")
    if keys[-1] != "[key]" and all(i["type"] in _KINDS or i["type"] == "literal_error" for i in items):
        choices = [choice for item in items for choice in _choices(item)]
        said = " or ".join(dict.fromkeys(_wanted(item) for item in items))
        return Problem(keys, "must be %s%s%s" % (said, _got(got), did_you_mean(got, choices)))
    first = next(i for i in items if i["type"] not in _KINDS)
    kind, ctx = first["type"], first.get("ctx") or {}
    at = _model_at(model, keys[len(within) : -1])
    if kind == "extra_forbidden":
        return Problem(keys, unknown("key", keys[-1], at.model_fields if at else ()))
    if kind == "missing" and at is not None and at.model_fields[str(keys[-1])].description:
        return Problem(keys, "required but not given: %s" % at.model_fields[str(keys[-1])].description)
    if kind == "literal_error":  # of a mapping's key
        return Problem(keys[:-1], unknown("key", first["input"], _choices(first)))
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return Problem(keys, str(ctx["error"]))
    if kind in _WORDS:
        return Problem(keys, _WORDS[kind].format(**ctx) + _got(first.get("input")))
    return Problem(keys, first["msg"] + _got(first.get("input")))


def _wanted(item: Dict[str, Any]) -> str:
    """What a type or literal error asked for: ``a whole number``, ``auto``, ``one of auto, nvjpeg, pil``."""
    choices = _choices(item)
    return _KINDS.get(item["type"]) or ("one of " if len(choices) > 1 else "") + ", ".join(choices)


def _choices(item: Dict[str, Any]) -> List[str]:
    """The values a literal error names (``'auto', 'nvjpeg' or 'pil'``); none for other errors."""
    return re.findall(r"'([^']*)'", (item.get("ctx") or {}).get("expected", ""))


def _got(value: object) -> str:
    """`` (got 'x')`` for a scalar; nothing for a mapping, a list or nothing."""
    return "" if isinstance(value, (dict, list)) or value is None else " (got %r)" % (value,)


def _model_at(model: Type[BaseModel], keys: Keys) -> Optional[Type[BaseModel]]:
    """The model at ``keys`` below ``model`` (list indices passed through); None where a key is no field
    holding a model."""
    for key in keys:
        if isinstance(key, int):
            continue
        field = model.model_fields.get(str(key))
        found = _model_in(field.annotation) if field else None
        if found is None:
            return None
        model = found
    return model


def _model_in(annotation: Any) -> Optional[Type[BaseModel]]:
    """The model class an annotation holds (``List[Host]``, ``Optional[DataSpec]``, ``Annotated[...]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def config_error(where: object, problems: Sequence[Problem], lines: Optional[Lines] = None) -> ConfigError:
    """One ConfigError of ``problems``: a line each, ``WHERE:LINE: field: what`` (the line where the file
    writes the field or the nearest enclosing one, by ``lines``), in the order of the file, each said once."""
    lines = lines or Lines()
    unique = dict.fromkeys(
        (lines.of(p.keys) or 0, "%s: " % dotted(p.keys) if p.keys else "", p.message) for p in problems
    )  # a problem of the whole file (a launcher's rule) names no field
    placed = sorted(unique, key=lambda t: t[0])
    return ConfigError(
        "\n".join("%s%s: %s%s" % (where, ":%d" % at if at else "", field, said) for at, field, said in placed)
    )
