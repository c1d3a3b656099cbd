"""A search space is checked when params load: every entry gives valid params at each end."""

from __future__ import annotations

import inspect
from typing import Any

from mtl_models._registry import Registry
from mtl_models.nn.architectures import ARCHITECTURES
from mtl_models.weighting import WEIGHTINGS
from pipelines.config.overrides import get_path
from pipelines.config.params import Params, overlay, params_dict, parse_params
from pipelines.config.tune import TUNABLE_SECTIONS
from pipelines.errors import ConfigError


def check_search_space(params: Params, source: str) -> None:
    """Every entry of ``tune.search_space`` gives valid params at each end of its range.

    Runs when params are loaded, so a bad entry fails before any trial. ``when`` conditions
    are set to their first accepted value while their entry is checked.
    """
    space = params.tune.search_space
    if not space:
        return
    base = params_dict(params)
    base["tune"]["search_space"] = {}
    plain = parse_params(base, source=source, check_space=False)
    seen: set[str] = set()
    for key, entry in space.items():
        where = f"{source}: tune.search_space.{key}"
        if key.split(".")[0] not in TUNABLE_SECTIONS:
            raise ConfigError(
                f"{where}: only {', '.join(TUNABLE_SECTIONS)} parameters can be tuned "
                "(data, split and tasks stay fixed so trials are comparable)"
            )
        conditions: dict[str, Any] = {}
        for cond, wanted in entry.when.items():
            if cond in space and cond not in seen:
                raise ConfigError(f"{where}: `when` names {cond}, which must be listed before it")
            if cond not in space:
                try:
                    get_path(base, cond)
                except KeyError:
                    raise ConfigError(f"{where}: `when` names {cond}, not a parameter") from None
            conditions[cond] = wanted[0] if isinstance(wanted, list) else wanted
        seen.add(key)
        for value in entry.extremes():
            try:
                overlay(plain, {**conditions, key: value}, source=source)
            except ConfigError as exc:
                detail = str(exc).partition("\n")[2] or str(exc)
                unknown = {loc for loc, kind in exc.problems if kind == "extra_forbidden"}
                hint = _plugin_hint(plain, conditions, key, unknown)
                if hint:
                    raise ConfigError(f"{where}: {hint}") from None
                if unknown or any(kind == "not_a_section" for _, kind in exc.problems):
                    raise ConfigError(f"{where}: no such parameter\n{detail}") from None
                raise ConfigError(f"{where}: {value!r} gives invalid params\n{detail}") from None


# sections whose keys are the hyperparameters of a registered class, picked by one key
_PLUGGED: dict[str, tuple[str, Registry[Any]]] = {
    "train.weighting": ("method", WEIGHTINGS),
    "model.architecture": ("name", ARCHITECTURES),
}


def _plugin_hint(plain: Params, conditions: dict[str, Any], key: str, unknown: set[str]) -> str:
    """Why ``key`` (a hyperparameter of a weighting method or an architecture) is unknown
    for the one the conditions pick, and how to sample it only where it exists ("" when
    ``key`` is not such a hyperparameter)."""
    section = next((s for s in _PLUGGED if key.startswith(f"{s}.")), None)
    if section is None:
        return ""
    depth = section.count(".") + 1
    hyper = key.split(".")[depth]
    selector, registry = _PLUGGED[section]
    # an unknown key's path may carry the union's tag: model.architecture.<name>.<key>
    paths = [loc.split(".") for loc in unknown]
    named = any(p[:depth] == section.split(".") and hyper in p[depth : depth + 2] for p in paths)
    if hyper == selector or not named:
        return ""
    current = get_path(params_dict(overlay(plain, conditions)), f"{section}.{selector}")
    takers = [
        name
        for name, cls in registry.items()
        if hyper in inspect.signature(cls.__init__).parameters
    ]
    example = (
        f"e.g. when: {{{section}.{selector}: {takers[0]}}}"
        if takers
        else f"no {registry.kind} takes it"
    )
    return (
        f"{registry.kind} '{current}' takes no '{hyper}'; sample it only for "
        f"one that does ({', '.join(takers) or 'none'}), {example}"
    )
