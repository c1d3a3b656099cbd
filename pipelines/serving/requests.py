"""Request rows <-> model inputs. Each input kind decodes its own request columns (an image
input as a base64 PNG/JPEG in the column named after it, a signal as a list of numbers per
channel column, table features as their own raw columns); the encodings fitted on the
training split are applied here, as in training."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from mtl_models.inputs import InputSpec, InvalidRequest, encode_png
from mtl_models.nn.model import ModelSpec

__all__ = ["InvalidRequest", "encode_png", "raw_request", "request_inputs"]


MAX_ROWS = 1024  # rows in one request; MTLFLOW_SERVE_MAX_ROWS overrides it


def max_rows() -> int:
    return int(os.environ.get("MTLFLOW_SERVE_MAX_ROWS", MAX_ROWS))


def request_inputs(frame: pd.DataFrame, specs: Sequence[InputSpec]) -> dict[str, np.ndarray]:
    """Raw request columns -> the arrays the model reads, encoded as in training. A request
    of more than ``max_rows()`` rows is refused before any is decoded (memory stays bounded
    however large the request)."""
    limit = max_rows()
    if len(frame) > limit:
        raise InvalidRequest(
            f"{len(frame)} rows in one request; at most {limit} (MTLFLOW_SERVE_MAX_ROWS): "
            "send them in several requests"
        )
    return {spec.name: spec.encode(*spec.decode_request(frame)) for spec in specs}


def raw_request(
    spec: ModelSpec, inputs: dict[str, np.ndarray], table_rows: pd.DataFrame
) -> pd.DataFrame:
    """Request rows as a client sends them, from a split's arrays and its raw table rows."""
    columns: dict[str, Any] = {}
    for s in spec.input_specs():
        columns |= s.to_request(inputs[s.name][: len(table_rows)], table_rows)
    return pd.DataFrame(columns)
