"""Serving: request rows -> model inputs -> one column per task, as an MLflow pyfunc."""

from pipelines.serving.pyfunc import (
    IMAGE_COLUMN,
    MultiTaskPyfunc,
    Predictor,
    example_request,
    log_pyfunc_model,
)
from pipelines.serving.requests import InvalidRequest, encode_png, raw_request, request_inputs

__all__ = [
    "IMAGE_COLUMN",
    "InvalidRequest",
    "MultiTaskPyfunc",
    "Predictor",
    "encode_png",
    "example_request",
    "log_pyfunc_model",
    "raw_request",
    "request_inputs",
]
