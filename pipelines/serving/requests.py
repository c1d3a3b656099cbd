"""Request rows <-> model inputs. Each input kind decodes its own request columns (an image
input as a base64 PNG/JPEG in the column named after it, a signal as a list of numbers per
channel column, table features as their own raw columns); the encodings fitted on the
training split are applied here, as in training."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from mtl_models.inputs import InputSpec, InvalidRequest, encode_png
from mtl_models.nn.model import ModelSpec

__all__ = ["InvalidRequest", "encode_png", "raw_request", "request_inputs"]


def request_inputs(frame: pd.DataFrame, specs: Sequence[InputSpec]) -> dict[str, np.ndarray]:
    """Raw request columns -> the arrays the model reads, encoded as in training."""
    return {spec.name: spec.encode(*spec.decode_request(frame)) for spec in specs}


def raw_request(
    spec: ModelSpec, inputs: dict[str, np.ndarray], table_rows: pd.DataFrame
) -> pd.DataFrame:
    """Request rows as a client sends them, from a split's arrays and its raw table rows."""
    columns: dict[str, Any] = {}
    for s in spec.input_specs():
        columns |= s.to_request(inputs[s.name][: len(table_rows)], table_rows)
    return pd.DataFrame(columns)
