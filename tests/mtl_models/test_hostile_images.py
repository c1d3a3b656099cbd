"""Images a careless user or an attacker supplies (issue 18, items 7 and 8): a decompression
bomb is refused from its header, a 16-bit image is scaled rather than clipped, a 1-pixel
image is not silently stretched, a manifest cannot make the reader leave its data folder,
and a file named twice is refused (it could land in train and test)."""

from __future__ import annotations

import base64
import io
import os
import signal
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mtl_models.inputs import ImageInput, InputError, InvalidRequest, decode_image
from mtl_models.inputs._base import ReadContext
from mtl_models.inputs.image import MAX_PIXELS, ImageInputConfig
from pipelines.data.dataset import Table


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares its size and holds no pixels: what a bomb's header says."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def png(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def test_an_image_over_the_pixel_limit_is_refused_before_decoding() -> None:
    assert MAX_PIXELS < 12000 * 12000 < 2 * MAX_PIXELS  # PIL warns there, errors above
    with pytest.raises(ValueError, match=r"^12000 x 12000 pixels is over the 89.5-megapixel limit"):
        decode_image(png_header_only(12000, 12000), 64, 1)  # PIL would only warn
    with pytest.raises(ValueError, match=r"^400000000 pixels is over the 89.5-megapixel limit"):
        decode_image(png_header_only(20000, 20000), 64, 1)  # PIL refuses on opening


def test_a_16_bit_image_is_scaled_to_8_bits_not_clipped() -> None:
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (64, 1))
    decoded = decode_image(png(ramp), 64, 1)[:, :, 0]
    assert decoded.min() == 0 and decoded.max() == 255
    assert 120 <= decoded[0, 32] <= 135  # the middle of the range is mid-grey, not white
    assert len(np.unique(decoded)) > 50  # a ramp, not two levels


def test_a_tiny_image_is_not_silently_stretched() -> None:
    with pytest.raises(ValueError, match=r"5 x 5 pixels is too small to resize to 128 x 128"):
        decode_image(png(np.zeros((5, 5), np.uint8)), 128, 1)
    assert decode_image(png(np.zeros((4, 4), np.uint8)), 64, 1).shape == (64, 64, 1)


@pytest.mark.parametrize(("side", "size"), [(1, 16), (3, 16), (1, 8)])
def test_an_image_too_small_to_hold_a_sample_is_refused_at_any_size(side, size) -> None:
    """A 1 x 1 image at size 16 is within the 16x upscaling bound, yet a single grey level."""
    with pytest.raises(ValueError) as err:
        decode_image(png(np.zeros((side, side), np.uint8)), size, 1)
    assert str(err.value) == (
        f"{side} x {side} pixels is too small to hold an image of the sample "
        "(a side under 4 pixels)"
    )
    assert decode_image(png(np.zeros((4, 4), np.uint8)), size, 1).shape == (size, size, 1)


def test_a_named_pipe_or_device_for_an_image_is_refused_before_opening(tmp_path: Path) -> None:
    """Opening a named pipe waits for a writer forever (`mtlflow split` hung); a device
    never ends. The alarm turns a hang into a failure."""
    table = manifest(tmp_path, ["a.png", "pipe.png", "zero.png"])
    os.mkfifo(tmp_path / "data" / "pipe.png")
    (tmp_path / "data" / "zero.png").symlink_to("/dev/zero")
    previous = signal.signal(signal.SIGALRM, lambda *_: pytest.fail("reading the pipe hung"))
    signal.alarm(20)
    try:
        with pytest.raises(InputError) as err:
            read(tmp_path, table)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    message = str(err.value)
    assert "2 of 3 files in column 'path' are missing or unreadable" in message
    assert "row 3, column 'path': pipe.png (not a regular file but a named pipe)" in message
    assert "row 4, column 'path': zero.png (not a regular file but a character device)" in message


def test_a_served_bomb_or_speck_is_a_4xx_row_error() -> None:
    spec = ImageInput("image", 64, 1)
    rows = [base64.b64encode(png(np.zeros((8, 8), np.uint8))).decode()]
    rows.append(base64.b64encode(png_header_only(30000, 30000)).decode())
    with pytest.raises(InvalidRequest, match=r"^row 1: 'image' is not a decodable image \(9000"):
        spec.decode_request(pd.DataFrame({"image": rows}))


def manifest(root: Path, paths: list[str]) -> Table:
    (root / "data").mkdir(exist_ok=True)
    for name in ("a.png", "b.png"):
        (root / "data" / name).write_bytes(png(np.zeros((8, 8), np.uint8)))
    (root / "secret.png").write_bytes(png(np.zeros((8, 8), np.uint8)))
    frame = pd.DataFrame({"path": paths, "label": ["0"] * len(paths)})
    (root / "data" / "manifest.csv").write_text(frame.to_csv(index=False))
    return Table(frame, root / "data" / "manifest.csv", True)


def read(root: Path, table: Table) -> None:
    config = ImageInputConfig(kind="image", column="path", size=32)
    ImageInput.read("image", config, table, ReadContext(root / "data", 32))


@pytest.mark.parametrize("escape", ["../secret.png", "/etc/passwd", "sub/../../secret.png"])
def test_a_manifest_cannot_point_outside_the_data_folder(tmp_path: Path, escape: str) -> None:
    table = manifest(tmp_path, ["a.png", escape])
    with pytest.raises(InputError) as err:
        read(tmp_path, table)
    message = str(err.value)
    assert "1 of 2 files in column 'path' are missing or unreadable" in message
    assert f"row 3, column 'path': {escape} (outside the data folder" in message


def test_a_file_named_twice_is_refused_naming_both_rows(tmp_path: Path) -> None:
    table = manifest(tmp_path, ["a.png", "b.png", "./a.png"])
    with pytest.raises(InputError) as err:
        read(tmp_path, table)
    assert "1 rows name a file another row names, in column 'path'" in str(err.value)
    assert "row 4 repeats row 2: a.png" in str(err.value)
    read(tmp_path, manifest(tmp_path, ["a.png", "b.png"]))  # distinct files read fine


def test_a_served_image_has_its_own_lower_pixel_bound(monkeypatch) -> None:
    spec = ImageInput("image", 64, 1)
    photo = [base64.b64encode(png(np.zeros((100, 100), np.uint8))).decode()]
    assert spec.decode_request(pd.DataFrame({"image": photo}))[0].shape == (1, 64, 64, 1)
    monkeypatch.setenv("MTLFLOW_SERVE_MAX_PIXELS", "5000")
    with pytest.raises(InvalidRequest, match=r"^row 0: .*100 x 100 pixels is over the 0.005-mega"):
        spec.decode_request(pd.DataFrame({"image": photo}))
