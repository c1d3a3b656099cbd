"""comparison: Δm against the gradient-boosted trees of ``reports/baselines.json``, beside the
networks' Δm (whose cases test_diagnosis covers), and the text both print as."""

from __future__ import annotations

from typing import Any

import pytest

from pipelines.services.comparison import (
    compare_with_baselines,
    compare_with_gradient_boosting,
    format_gains,
)

SPLIT = "5e1f" * 16
# the multi-task model's test scores: a 3-class task and a regression
PER_TASK = {"kind": {"score": 0.9}, "depth": {"score": 0.6}}


def _report(trees: dict[str, float], split: str = SPLIT) -> dict[str, Any]:
    """A ``baselines.json`` whose networks score 0.5 everywhere and whose trees ``trees``."""
    return {
        "enabled": True,
        "split_sha256": split,
        "mlflow_run_id": "parent",
        "tasks": {t: {"metric": "m", "score": 0.5} for t in PER_TASK},
        "gradient_boosting": {
            "enabled": True,
            "tasks": {t: {"metric": "m", "score": s} for t, s in trees.items()},
        },
    }


def test_delta_m_against_the_trees_is_the_mean_relative_gain():
    block = compare_with_gradient_boosting(PER_TASK, _report({"kind": 1.0, "depth": 0.5}), SPLIT)
    # kind: (0.9 - 1.0) / 1.0 = -0.1; depth: (0.6 - 0.5) / 0.5 = +0.2
    assert block["tasks"]["kind"]["gain"] == pytest.approx(-0.1)
    assert block["tasks"]["depth"]["gain"] == pytest.approx(0.2)
    assert block["delta_m"] == pytest.approx(0.05)
    assert block["tasks"]["kind"]["single_task"] == 1.0
    assert block["baselines_run_id"] == "parent"
    # the networks' Δm reads the networks' scores, not the trees'
    networks = compare_with_baselines(PER_TASK, _report({"kind": 1.0, "depth": 0.5}), SPLIT)
    assert networks["delta_m"] == pytest.approx(((0.9 - 0.5) / 0.5 + (0.6 - 0.5) / 0.5) / 2)


def test_a_tree_model_that_learned_nothing_is_excluded():
    block = compare_with_gradient_boosting(PER_TASK, _report({"kind": 1.0, "depth": -0.1}), SPLIT)
    assert set(block["tasks"]) == {"kind"} and set(block["excluded"]) == {"depth"}
    assert block["delta_m"] == pytest.approx(-0.1)


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        (None, "no gradient-boosted baselines; `mtlflow baselines --set baselines.enabled=true`"),
        ({"enabled": False, "note": "baselines.enabled is false"}, "no gradient-boosted"),
        (
            {k: v for k, v in _report({}).items() if k != "gradient_boosting"},
            "reports/baselines.json has no gradient-boosted baselines; run `mtlflow baselines`",
        ),
        (
            _report({}) | {"gradient_boosting": {"enabled": False, "note": "skipped: images"}},
            "skipped: images",
        ),
        (_report({"kind": 1.0, "depth": 0.5}, split="0bad" * 16), "trained on another split"),
        (_report({"kind": 1.0}), "covers tasks ['kind'], the model ['depth', 'kind']"),
    ],
    ids=["missing", "disabled", "older-report", "skipped", "other-split", "fewer-tasks"],
)
def test_trees_that_cannot_be_compared_give_a_note(report, expected):
    block = compare_with_gradient_boosting(PER_TASK, report, SPLIT)
    assert set(block) == {"note"} and expected in block["note"]
    label = "Δm against gradient boosting"
    assert format_gains(block, "gradient-boosted", label) == f"{label}: {block['note']}"


def test_the_trees_gains_print_under_their_own_column_and_label():
    block = compare_with_gradient_boosting(PER_TASK, _report({"kind": 1.0, "depth": 0.5}), SPLIT)
    lines = format_gains(block, "gradient-boosted", "Δm against gradient boosting").splitlines()
    assert lines[0].split() == ["task", "multi-task", "gradient-boosted", "gain"]
    assert lines[1].split() == ["kind", "0.900", "1.000", "-10.0%"]
    assert lines[2].split() == ["depth", "0.600", "0.500", "+20.0%"]
    assert (
        lines[3]
        == "Δm against gradient boosting = +5.00% over 2 tasks (multi-task vs gradient-boosted)"
    )
