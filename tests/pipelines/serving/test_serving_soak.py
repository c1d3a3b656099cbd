"""A short soak (benchmarks/serving_soak.py) against a real `mlflow models serve` process:
valid, malformed and oversized requests mixed, from 8 threads."""

from __future__ import annotations

import pytest

from benchmarks.serving_soak import run_soak, soak_cases
from tests.serving_support import served_process

pytestmark = pytest.mark.slow


def test_a_short_soak_gets_no_5xx_no_crash_and_clean_refusals(pipeline_run):
    from pipelines.data.sources.synthetic_defects import generate_defect_dataset

    images, _ = generate_defect_dataset(8, 32, seed=11)
    cases = soak_cases(images[..., None])
    name = pipeline_run.params.registry.model_name
    with served_process(
        f"models:/{name}@champion", pipeline_run.tracking_uri, pipeline_run.paths.root
    ) as served:
        result = run_soak(served, cases, n=300, concurrency=8)

    summary = result.summary()
    assert summary["server_errors_5xx"] == 0, summary
    assert summary["crashes"] == 0
    # every malformed request: a 4xx of one line naming its row or limit, with no trace,
    # path or echo of the request (run_soak checks each answer and lists what broke a rule)
    assert summary["problems"] == []
    statuses = summary["statuses"]
    assert statuses["valid"] == {"200": statuses["valid"]["200"]}
    malformed = {case.name for case, _ in cases if case.names is not None}
    assert malformed <= set(statuses)  # each kind was sent
    for kind in malformed:
        assert all(code.startswith("4") for code in statuses[kind]), (kind, statuses[kind])
    rss = summary["rss_mb"]
    assert rss["end"] - rss["start"] < 300, rss
