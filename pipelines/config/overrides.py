"""Dotted keys: read and set ``a.b.c`` in raw params, and ``--set KEY=VALUE`` overrides."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from pipelines.errors import ConfigError


def set_path(raw: dict[str, Any], key: str, value: Any) -> None:
    """``raw["a"]["b"]["c"] = value`` for ``key="a.b.c"``, creating sections on the way."""
    node = raw
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise ConfigError(f"{where} is a value, not a section", ((where, "not_a_section"),))
        node = child
    node[parts[-1]] = value


def get_path(raw: Mapping[str, Any], key: str) -> Any:
    """The value at ``a.b.c``; raises ``KeyError`` naming the key when it is absent."""
    node: Any = raw
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def override_keys(overrides: Sequence[str]) -> list[str]:
    return [item.partition("=")[0].strip() for item in overrides]


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides; values parse as YAML (``3e-4``, ``null``, ``[1, 2]``)."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. train.lr=3e-4")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or "not valid YAML"
            raise ConfigError(
                f"override {item!r}: the value is not valid YAML ({problem}{where}); "
                "quote a string, close a list or mapping"
            ) from None
        try:
            set_path(raw, key.strip(), parsed)
        except ConfigError as exc:
            raise ConfigError(f"override {item!r}: {exc}") from None
    return raw
