"""A real `mlflow models serve` process on the registered champion, hit over HTTP."""

from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor

import mlflow
import numpy as np
import pytest
import requests
from PIL import Image

from pipelines.serving import Predictor, encode_png
from pipelines.serving.guard import max_body_bytes
from pipelines.serving.pyfunc import ENGINE_TAG
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


def test_the_trained_model_is_logged_for_onnx_runtime(pipeline_run):
    """``train`` exported the network and the export agreed with torch (else it is tagged
    ``torch``): the server below runs its forward pass on ONNX Runtime."""
    client = mlflow.MlflowClient(pipeline_run.tracking_uri)
    assert client.get_run(pipeline_run.run_info["run_id"]).data.tags[ENGINE_TAG] == "onnxruntime"


def test_concurrent_requests_share_forward_passes_and_keep_their_predictions(server, pipeline_run):
    """The scoring server runs requests in threads and the model batches those that arrive
    together: each must still get the in-process predictions of its own image."""
    from pipelines.data.sources.synthetic_defects import generate_defect_dataset

    images, _ = generate_defect_dataset(24, 32, seed=7)
    expected = Predictor.from_dir(pipeline_run.paths.models_dir).predict_images(images[..., None])
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda img: invoke(server, [{"image": encode_png(img)}]), images))
    for i, response in enumerate(responses):
        assert response.status_code == 200, response.text
        (served,) = response.json()["predictions"]
        for task in TASKS:
            assert served[task] == expected[task][i]
            # the server's forward pass is ONNX Runtime's, this one torch's: up to about 1e-6
            np.testing.assert_allclose(
                served[f"{task}_proba"], expected[f"{task}_proba"][i], atol=1e-5
            )


def test_a_body_over_the_limit_is_refused_with_413_before_it_is_read(server):
    body = b'{"dataframe_records": [{"image": "' + b"A" * (max_body_bytes() + 1) + b'"}]}'
    response = requests.post(
        f"{server}/invocations", data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert "MTLFLOW_SERVE_MAX_BODY_BYTES" in response.json()["message"]
    assert invoke(server, [{"image": encode_png(np.zeros((32, 32), np.uint8))}]).ok


@pytest.mark.parametrize(
    "body",
    [b"NOT-JSON-MARKER " * 400, b'{"dataframe_split": {"columns": ["image"], "data": [[1, 2]]}}'],
    ids=["non-json", "mlflow-parse-error"],
)
def test_error_bodies_carry_no_trace_no_path_and_no_echo(server, body):
    response = requests.post(
        f"{server}/invocations", data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert set(response.json()) == {"error_code", "message"}
    assert "\n" not in response.json()["message"]
    for leak in ("Traceback", "site-packages", "/work", "/tmp", "NOT-JSON-MARKER"):
        assert leak not in response.text
