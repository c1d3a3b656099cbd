"""A search space is checked when params load: every entry gives valid params at each end."""

from __future__ import annotations

import inspect
from typing import Any

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
                hyper = key.split(".")[2] if key.startswith("train.weighting.") else "method"
                if hyper != "method" and f"train.weighting.{hyper}" in unknown:
                    method = overlay(plain, conditions).train.weighting.method
                    takers = [
                        name
                        for name, cls in WEIGHTINGS.items()
                        if hyper in inspect.signature(cls.__init__).parameters
                    ]
                    hint = (
                        f"e.g. when: {{train.weighting.method: {takers[0]}}}"
                        if takers
                        else "no weighting method takes it"
                    )
                    raise ConfigError(
                        f"{where}: weighting method '{method}' takes no '{hyper}'; sample it "
                        f"only for a method that does ({', '.join(takers) or 'none'}), {hint}"
                    ) from None
                if unknown or any(kind == "not_a_section" for _, kind in exc.problems):
                    raise ConfigError(f"{where}: no such parameter\n{detail}") from None
                raise ConfigError(f"{where}: {value!r} gives invalid params\n{detail}") from None

