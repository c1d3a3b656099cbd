"""A real `mlflow models serve` process on the registered champion, hit over HTTP."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from pipelines.serving import encode_png
from tests.serving_support import invoke, model_server

pytestmark = pytest.mark.slow

TASKS = [
    f"{d}_{r}" for d in ("scratches", "pits", "corrosion") for r in ("left", "center", "right")
]


@pytest.fixture(scope="module")
def server(pipeline_run):
    name = pipeline_run.params.registry.model_name
    with model_server(
        f"models:/{name}@champion", pipeline_run.tracking_uri, pipeline_run.paths.root
    ) as url:
        yield url


def test_png_image_returns_nine_task_predictions_with_probabilities(server, pipeline_run):
    from pipelines.data.sources.synthetic_defects import generate_defect_dataset

    images, _ = generate_defect_dataset(2, 32, seed=123)
    response = invoke(server, [{"image": encode_png(img)} for img in images])
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == 2
    for row in predictions:
        assert set(row) == {c for t in TASKS for c in (t, f"{t}_proba")}
        for task in TASKS:
            assert row[task] in range(6)
            assert len(row[f"{task}_proba"]) == 6
            assert sum(row[f"{task}_proba"]) == pytest.approx(1.0, abs=1e-6)


def test_jpeg_of_another_size_is_resized_and_scored(server):
    buffer = io.BytesIO()
    Image.fromarray(np.full((80, 120, 3), 128, np.uint8)).save(buffer, format="JPEG")
    response = invoke(server, [{"image": base64.b64encode(buffer.getvalue()).decode()}])
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"][0]) == 18


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (
            [{"image": encode_png(np.zeros((32, 32), np.uint8))}, {"image": "***"}],
            "row 1: 'image' is not valid base64",
        ),
        (
            [{"image": base64.b64encode(b"definitely not an image").decode()}],
            "row 0: 'image' is not a decodable image",
        ),
        ([{"picture": "abc"}], "image"),
    ],
    ids=["bad-base64", "undecodable", "missing-column"],
)
def test_bad_requests_get_4xx_naming_row_and_reason_and_server_keeps_serving(
    server, rows, expected
):
    response = invoke(server, rows)
    assert 400 <= response.status_code < 500, response.text
    assert expected in response.json()["message"]
    healthy = invoke(server, [{"image": encode_png(np.zeros((32, 32), np.uint8))}])
    assert healthy.status_code == 200
