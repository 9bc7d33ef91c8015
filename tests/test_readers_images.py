"""Image validation: hash and size of a good file; every kind of bad file is an InputError that
names where the reference came from."""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image as PILImage

from ffr_lib.data.errors import InputError
from ffr_lib.data.images import inspect_image

FIXTURES = Path(__file__).parent / "fixtures"
RED = FIXTURES / "readers" / "canonical" / "images" / "red.png"
TRUNCATED = FIXTURES / "bad" / "canonical_truncated_image" / "images" / "broken.png"


def png_with_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` but carries almost no pixel data: the
    shape of a decompression bomb, made in microseconds."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def test_good_image_hash_and_size() -> None:
    info = inspect_image(RED)
    assert info.sha256 == hashlib.sha256(RED.read_bytes()).hexdigest()
    assert (info.width, info.height) == (8, 6)
    assert info.format == "PNG"


def test_jpeg_is_measured(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    PILImage.new("RGB", (33, 17), (10, 20, 30)).save(path, "JPEG")
    info = inspect_image(path)
    assert (info.width, info.height, info.format) == (33, 17, "JPEG")


def test_missing_file_names_the_reference(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        inspect_image(tmp_path / "nope.png", file="data.jsonl", record=4, field="images[1].path")
    err = caught.value
    assert (err.file, err.record, err.field) == ("data.jsonl", 4, "images[1].path")
    assert "nope.png" in str(err) and "does not exist" in str(err)


def test_truncated_image_is_rejected() -> None:
    with pytest.raises(InputError, match="truncated or corrupt"):
        inspect_image(TRUNCATED, file="x.jsonl", record=1, field="images[0].path")


def test_empty_and_non_image_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        inspect_image(empty)
    text = tmp_path / "text.png"
    text.write_text("hello")
    with pytest.raises(InputError, match="not a decodable image"):
        inspect_image(text)


@pytest.mark.parametrize(
    "size",
    [
        (10_000, 10_000),  # 100 Mpx: Pillow would only warn (1x..2x its limit)
        (60_000, 60_000),  # 3.6 Gpx: Pillow's own DecompressionBombError
    ],
)
def test_decompression_bomb_is_rejected(tmp_path: Path, size: tuple[int, int]) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_with_header(*size))
    assert bomb.stat().st_size < 200
    with pytest.raises(InputError) as caught:
        inspect_image(bomb, file="d.jsonl", record=2, field="images[0].path")
    assert "decompression bomb" in str(caught.value)
    assert caught.value.field == "images[0].path"


def test_max_pixels_is_enforced_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    PILImage.new("L", (200, 100)).save(path)
    assert inspect_image(path, max_pixels=20_000).width == 200
    with pytest.raises(InputError, match="more than the limit 19999"):
        inspect_image(path, max_pixels=19_999)


def test_max_bytes_is_enforced(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    PILImage.new("L", (4, 4)).save(path)
    with pytest.raises(InputError, match="bytes, more than the limit"):
        inspect_image(path, max_bytes=10)
