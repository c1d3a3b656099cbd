"""The base of every ``params.yaml`` section model."""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

Loc = tuple[str | int, ...]
_CONTAINERS = (list, tuple, set, frozenset, Sequence)
_MAPPINGS = (dict, Mapping)


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def _numeric(annotation: Any) -> bool:
    """A number type that does not also take a bool (``int | bool`` takes ``true`` as is)."""
    if _is_union(annotation):
        members = get_args(annotation)
        return bool not in members and Any not in members and any(map(_numeric, members))
    return annotation in (int, float)


def _fits(annotation: Any, value: Any) -> bool:
    """Whether a union member could take ``value`` at all (a mapping for ``dict[...]``)."""
    origin = get_origin(annotation) or annotation
    if isinstance(value, dict):
        return origin in _MAPPINGS
    if isinstance(value, list | tuple):
        return origin in _CONTAINERS
    return origin not in _MAPPINGS and origin not in _CONTAINERS


def bools_for_numbers(annotation: Any, value: Any) -> list[Loc]:
    """Where ``value`` holds a bool that ``annotation`` wants as a number (``()``: the value
    itself; ``("pits_left",)``: in a ``dict[str, float]``). YAML's ``true`` is a bool, which
    pydantic's lax mode would read as 1."""
    if isinstance(value, bool):
        return [()] if _numeric(annotation) else []
    origin, args = get_origin(annotation), get_args(annotation)
    if _is_union(annotation):
        fitting = [arg for arg in args if _fits(arg, value)]
        return bools_for_numbers(fitting[0], value) if len(fitting) == 1 else []
    if origin in _MAPPINGS and isinstance(value, dict) and len(args) == 2:
        return [(k, *loc) for k, v in value.items() for loc in bools_for_numbers(args[1], v)]
    if origin in _CONTAINERS and isinstance(value, list | tuple) and args:
        return [(i, *loc) for i, v in enumerate(value) for loc in bools_for_numbers(args[0], v)]
    return []


def invalid_at(title: str, loc: Loc, message: str, value: Any) -> ValidationError:
    """A validation error at ``loc`` from a model validator (pydantic keeps the path, so the
    message names the key, e.g. ``train.weighting``, rather than the top level)."""
    kind = PydanticCustomError("value_error", "{message}", {"message": message})
    return ValidationError.from_exception_data(
        title, [InitErrorDetails(type=kind, loc=loc, input=value)]
    )


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, data: Any) -> Any:
        """``epochs: true`` is refused naming ``train.epochs``, not read as 1: checked here
        once for the numeric fields of every section (pydantic's lax mode coerces a bool)."""
        if not isinstance(data, dict):
            return data
        errors = [
            InitErrorDetails(
                type=PydanticCustomError("bool_for_number", "expected a number, not a boolean"),
                loc=(key, *where),
                input=_at(data[key], where),
            )
            for name, field in cls.model_fields.items()
            if (key := field.alias or name) in data
            for where in bools_for_numbers(field.annotation, data[key])
        ]
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return data


def _at(value: Any, where: Loc) -> Any:
    for part in where:
        value = value[part]
    return value
