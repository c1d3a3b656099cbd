"""Image inputs: files named in a table column (base64 PNG/JPEG when serving), decoded by one
function for both, resized and stored as uint8 ``[N, size, size, channels]``."""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError
from pydantic import Field

from mtl_models.inputs._base import (
    INPUTS,
    ColumnRef,
    InputConfig,
    InputSpec,
    InvalidRequest,
    Raw,
    ReadContext,
    TableSource,
    gather,
    inside,
    refuse_duplicates,
    regular_file,
)


class ImageInputConfig(InputConfig):
    """Image files named in a column, relative to ``root`` (itself relative to ``data.dir``)."""

    kind: Literal["image"]
    column: ColumnRef = "path"
    root: str = "."
    size: int | None = Field(
        None, ge=8, le=1024, description="resized to size x size; null = the generated size or 64"
    )
    channels: Literal[1, 3] = 1


# refused before decoding: a decompression bomb (PIL's own limit, about 89 megapixels)
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
MAX_UPSCALE = 16  # a 1-pixel image stretched to 64 is no image of the sample
# A side under 4 pixels holds no edge or shape to learn from, whatever size it is resized
# to (a 1 x 1 image at size 16 is within MAX_UPSCALE, yet one grey level); 4 is also the
# smallest side that MAX_UPSCALE brings to the default size of 64.
MIN_SIDE = 4


def serve_max_pixels() -> int:
    """The pixel bound of a served image (``MTLFLOW_SERVE_MAX_PIXELS``, default 40 MP: a
    camera photo passes, a decompression bomb does not), below the training data's."""
    return int(os.environ.get("MTLFLOW_SERVE_MAX_PIXELS", 40_000_000))


def decode_image(
    source: bytes | Path, size: int, channels: int, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """An encoded image (bytes) or image file -> uint8 ``[size, size, channels]``: the one
    decoding that training data and served requests share. ``ValueError`` (saying why) for
    an image over ``MAX_PIXELS`` (checked from its header, before decoding) or one so small
    that it would be stretched more than ``MAX_UPSCALE`` times. 16-bit images are scaled to
    8 bits over their full range, not clipped."""
    limit = f"over the {max_pixels / 1e6:.3g}-megapixel limit"
    try:
        opened = Image.open(
            io.BytesIO(source) if isinstance(source, bytes) else regular_file(source)
        )
    except Image.DecompressionBombError as exc:  # PIL refuses twice its limit on opening
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        raise ValueError(f"{pixels[1] if pixels else 'its'} pixels is {limit}") from None
    with opened as img:
        width, height = img.size
        if width * height > max_pixels:
            raise ValueError(f"{width} x {height} pixels is {limit}")
        if min(width, height) < MIN_SIDE:
            raise ValueError(
                f"{width} x {height} pixels is too small to hold an image of the sample "
                f"(a side under {MIN_SIDE} pixels)"
            )
        if min(width, height) * MAX_UPSCALE < size:
            raise ValueError(
                f"{width} x {height} pixels is too small to resize to {size} x {size} "
                f"(at most {MAX_UPSCALE}x upscaling)"
            )
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            img = Image.fromarray(_eight_bits(np.asarray(img)))
        img = img.convert("L" if channels == 1 else "RGB")
        if img.size != (size, size):
            img = img.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(img).reshape(size, size, channels)


def _eight_bits(pixels: np.ndarray) -> np.ndarray:
    """A 16-bit (or 32-bit integer holding 16-bit) image scaled to uint8 over 0..65535."""
    wide = pixels.astype(np.float64)
    top = 65535.0 if wide.max(initial=0) <= 65535 else float(wide.max())
    return np.clip(np.rint(wide / top * 255.0), 0, 255).astype(np.uint8)


def encode_png(image: np.ndarray) -> str:
    """uint8 ``[H, W]`` or ``[H, W, C]`` -> base64 PNG, as a client would send it."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@INPUTS.register("image")
@dataclass(frozen=True)
class ImageInput(InputSpec):
    """Images read from files (or base64 when serving), resized to ``size`` x ``size``;
    stored as uint8 ``[N, size, size, channels]``. The request column is the input's name."""

    kind = "image"
    Config = ImageInputConfig
    backbone = "cnn"
    fusion_depth = 3
    augmentable = True

    size: int = 64
    channels: int = 1

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.size, self.size, self.channels)

    @property
    def model_shape(self) -> tuple[int, ...]:
        return (self.channels, self.size, self.size)  # the loader's channels-first tensor

    @classmethod
    def read(
        cls, name: str, config: ImageInputConfig, table: TableSource, context: ReadContext
    ) -> tuple[ImageInput, Raw]:
        """Decode and resize every image once."""
        size = config.size if config.size is not None else context.image_size
        column = table.column(config.column, f"data.inputs.{name}.column")
        root = context.root / config.root
        cells = table.cells(column)
        refuse_duplicates(table, cells, column)
        images = gather(
            table,
            cells,
            column,
            lambda path: decode_image(inside(root, path), size, config.channels),
        )
        return cls(name, size, config.channels), (np.stack(images).astype(np.uint8),)

    def encode(self, *raw: np.ndarray) -> np.ndarray:
        return raw[0]

    def decode_request(self, frame: pd.DataFrame) -> Raw:
        column = self.name
        if column not in frame.columns:
            raise InvalidRequest(
                f"missing column '{column}' (base64-encoded PNG/JPEG); got {list(frame.columns)}"
            )
        out = np.empty((len(frame), *self.shape), dtype=np.uint8)
        for row, value in enumerate(frame[column]):
            if not isinstance(value, (str, bytes)) or len(value) == 0:
                raise InvalidRequest(f"row {row}: '{column}' must be a non-empty base64 string")
            try:
                data = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise InvalidRequest(f"row {row}: '{column}' is not valid base64 ({exc})") from None
            try:
                out[row] = decode_image(data, self.size, self.channels, serve_max_pixels())
            except (UnidentifiedImageError, OSError, ValueError) as exc:
                raise InvalidRequest(
                    f"row {row}: '{column}' is not a decodable image ({exc})"
                ) from None
        return (out,)

    def to_request(self, encoded: np.ndarray, rows: pd.DataFrame) -> dict[str, list[Any]]:
        return {self.name: [encode_png(image) for image in encoded]}

    def backbone_args(self) -> dict[str, int]:
        return {"in_channels": self.channels}
