"""The HTTP guards of the served model, on MLflow's real scoring-server app built in process
(``scoring_server.init`` on a stand-in model): body limit, byte budget, one-line errors."""

from __future__ import annotations

import asyncio
import json
import socket
import sys

import mlflow
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlflow.environment_variables import _MLFLOW_IS_IN_SERVING_ENVIRONMENT
from mlflow.pyfunc import scoring_server

from pipelines.serving.guard import (
    ByteBudget,
    RequestRefused,
    _no_delay_on_listening_sockets,
    install,
    public_message,
)


class StandIn:
    """What ``scoring_server.init`` needs of a pyfunc model; ``predict`` fails on cue."""

    metadata = mlflow.models.Model()

    def predict(self, data: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        cue = data.iloc[0, 0]
        if cue == "refuse":
            raise RequestRefused("row 0: 'image' is not a decodable image (broken PNG file)")
        if cue == "crash":
            raise RuntimeError(f"bug in {__file__}")
        return pd.DataFrame({"rows": [len(data)] * len(data)})


def app_client(monkeypatch: pytest.MonkeyPatch, guarded: bool, body_limit: int = 10_000):
    monkeypatch.setenv("MTLFLOW_SERVE_MAX_BODY_BYTES", str(body_limit))
    monkeypatch.setenv(_MLFLOW_IS_IN_SERVING_ENVIRONMENT.name, "")  # init sets it: restore it
    # restored after the test, whatever install() puts there
    monkeypatch.setattr(
        scoring_server,
        "_async_catch_mlflow_exception",
        scoring_server._async_catch_mlflow_exception,
    )
    if guarded:
        monkeypatch.setenv(scoring_server._SERVER_MODEL_PATH, "/nowhere")
        install()
    return TestClient(scoring_server.init(StandIn()))


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> TestClient:
    return app_client(monkeypatch, guarded=True)


def post(client: TestClient, content: bytes | str, content_type: str = "application/json"):
    return client.post("/invocations", content=content, headers={"Content-Type": content_type})


def records(value: str) -> str:
    return json.dumps({"dataframe_records": [{"image": value}]})


def assert_one_clean_line(response, request: bytes | str) -> str:
    assert 400 <= response.status_code < 500, response.text
    body = response.json()
    assert set(body) == {"error_code", "message"}  # no stack_trace
    message = body["message"]
    assert "\n" not in message and len(message) <= 300
    for leak in ("Traceback", "site-packages", "/work", "/tmp", __file__):
        assert leak not in message
    marker = request[40:100] if isinstance(request, str) else request[40:100].decode()
    assert len(marker) == 60 and marker not in response.text  # the request does not come back
    return message


def test_a_refusal_answers_our_row_reason_alone(client: TestClient) -> None:
    request = records("refuse") + " " * 200
    message = assert_one_clean_line(post(client, request), request)
    assert message == "row 0: 'image' is not a decodable image (broken PNG file)"


def test_a_non_json_body_is_not_echoed(client: TestClient) -> None:
    request = b"NOT-JSON-MARKER " * 500
    message = assert_one_clean_line(post(client, request), request)
    assert message == "request body is not valid JSON: Expecting value (line 1, column 1)"


def test_a_model_fault_gets_no_stack_trace_or_path(client: TestClient) -> None:
    request = records("crash") + " " * 200
    message = assert_one_clean_line(post(client, request), request)
    assert message.startswith("Encountered an unexpected error while evaluating the model")


@pytest.mark.parametrize(
    ("content", "content_type", "names"),
    [
        ('image,"\n' + "CSV-MARKER " * 20, "text/csv", "EOF inside string"),
        (json.dumps({"dataframe_split": {"columns": ["a"], "data": [[1, 2]] * 30}}), None, "2"),
        (json.dumps({"nothing": [1] * 50}), None, "dataframe_records"),
    ],
    ids=["bad-csv", "split-shape", "no-input-key"],
)
def test_mlflow_parse_errors_come_as_one_clean_line(client, content, content_type, names) -> None:
    response = post(client, content, content_type or "application/json")
    assert names in assert_one_clean_line(response, content)


def test_without_the_guard_mlflow_sends_the_trace_and_the_request(monkeypatch) -> None:
    """What the guard is for: MLflow's own answers to the same requests."""
    client = app_client(monkeypatch, guarded=False)
    assert "stack_trace" in post(client, records("crash")).json()
    assert "NOT-JSON-MARKER" in post(client, b"NOT-JSON-MARKER " * 10).text
    assert post(client, b" " * 20_000).status_code != 413


def test_a_body_over_the_limit_gets_413_naming_the_limit(client: TestClient) -> None:
    response = post(client, records("x" * 10_000))
    assert response.status_code == 413
    assert "at most 10000 (MTLFLOW_SERVE_MAX_BODY_BYTES)" in response.json()["message"]
    chunked = client.post("/invocations", content=iter([b"x" * 6000, b"x" * 6000]))
    assert chunked.status_code == 413  # no Content-Length: counted while read
    assert "more than 10000" in chunked.json()["message"]
    fits = post(client, records("x" * 9000))
    assert fits.status_code == 200, fits.text
    assert fits.json() == {"predictions": [{"rows": 1}]}


def test_outside_a_scoring_server_install_changes_nothing(monkeypatch) -> None:
    monkeypatch.delenv(scoring_server._SERVER_MODEL_PATH, raising=False)
    before = scoring_server._async_catch_mlflow_exception
    install()
    assert scoring_server._async_catch_mlflow_exception is before


def test_mlflow_exceptions_of_other_shapes_give_their_innermost_reason() -> None:
    wrapped = mlflow.exceptions.MlflowException(
        "Failed to predict data '   image\n0  AAAA'. \nError: Failed to enforce schema of data "
        "'/srv/app/x.py' with schema 'image: string'. Error: Model is missing inputs ['image']."
    )
    assert public_message(wrapped) == "Model is missing inputs ['image']."
    long = mlflow.exceptions.MlflowException("Error: " + "at /home/me/secret/file.py " * 40)
    assert "/home" not in public_message(long) and len(public_message(long)) == 300


def test_the_byte_budget_makes_a_request_wait_for_room() -> None:
    async def scenario() -> list[str]:
        budget, order = ByteBudget(100), []

        async def hold(name: str, size: int, seconds: float) -> None:
            async with budget.hold(size):
                order.append(f"{name} in")
                await asyncio.sleep(seconds)
            order.append(f"{name} out")

        await asyncio.gather(hold("a", 70, 0.05), hold("b", 50, 0), hold("c", 500, 0))
        assert budget.used == 0
        return order

    # b waits for a; c (over the capacity) holds the whole budget, alone
    assert asyncio.run(scenario()) == ["a in", "a out", "b in", "b out", "c in", "c out"]


@pytest.mark.skipif(sys.platform != "linux", reason="Linux copies TCP_NODELAY to accepted sockets")
def test_connections_of_a_uvicorn_worker_socket_get_no_delay() -> None:
    """uvicorn's --workers socket is ``socket.socket(family)`` (proto 0), so asyncio leaves
    Nagle on for its connections: each response's body waited 40 ms for a delayed ACK."""
    with socket.socket(socket.AF_INET) as listener:
        listener.bind(("127.0.0.1", 0))  # as uvicorn hands it to a worker: not yet listening
        _no_delay_on_listening_sockets()
        listener.listen()
        with socket.create_connection(listener.getsockname()) as client:
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert client.fileno() == -1 and listener.fileno() != -1  # nothing of ours closed


def test_a_value_the_signature_cannot_take_names_its_column() -> None:
    """MLflow's own conversion error ends in the bare ValueError: the column comes along."""
    wrapped = mlflow.exceptions.MlflowException(
        "Failed to predict data '   flipper_length_mm\n0  long'. Error: Invalid input. Data is "
        "not compatible with model signature. Failed to convert column flipper_length_mm to "
        "type 'float64'. Error: 'ValueError(\"could not convert string to float: 'long'\")'"
    )
    message = public_message(wrapped)
    assert message.startswith("column flipper_length_mm: expected float64, ValueError(")
    assert "0  long'" not in message  # the request is not echoed
