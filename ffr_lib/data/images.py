"""Validate an image file and describe it (sha256, width, height) before anything trusts it.

Readers call :func:`inspect_image` for every image that has a file: a missing file, bytes Pillow
cannot decode (truncated or corrupt) and decompression bombs all become an :class:`InputError`
that names the data file, the record and the field the image came from, not the image alone.
"""

from __future__ import annotations

import hashlib
import warnings
from io import BytesIO
from pathlib import Path

from PIL import Image as PILImage
from PIL import UnidentifiedImageError
from pydantic import BaseModel, Field

from ffr_lib.data.errors import InputError

# Pillow's own default (about 89 megapixels, a 9459 x 9459 image). Chat photos are far smaller;
# anything above this is almost certainly a decompression bomb rather than a photo.
DEFAULT_MAX_PIXELS = 89_478_485
# Reading the whole file once serves both the hash and the decoder; refuse absurd files early.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


class ImageInfo(BaseModel):
    """What a reader records about a validated image file."""

    sha256: str = Field(min_length=64, max_length=64)
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    format: str | None = Field(None, description="Pillow's format name, e.g. PNG or JPEG")


def inspect_image(
    image_path: str | Path,
    *,
    file: str | Path | None = None,
    record: str | int | None = None,
    field: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ImageInfo:
    """Decode ``image_path`` fully and return its hash and size.

    ``file``/``record``/``field`` say where the reference came from (the data file, its line or
    id, and the field holding the path); they default to the image file itself. Raises
    :class:`InputError` for a missing/unreadable file, undecodable or truncated bytes, or an image
    larger than ``max_pixels`` (checked from the header, before any pixel is decoded).
    """
    image_path = Path(image_path)
    where = {
        "file": file if file is not None else image_path,
        "record": record,
        "field": field,
    }
    if not image_path.is_file():
        raise InputError(f"image file {image_path} does not exist or is not a file", **where)
    try:
        size = image_path.stat().st_size
        if size > max_bytes:
            raise InputError(
                f"image file {image_path} is {size} bytes, more than the limit {max_bytes}",
                **where,
            )
        data = image_path.read_bytes()
    except OSError as exc:
        raise InputError(f"image file {image_path} cannot be read: {exc}", **where) from exc
    if not data:
        raise InputError(f"image file {image_path} is empty", **where)

    with warnings.catch_warnings():
        # Pillow only warns between 1x and 2x its limit; a bomb must be an error at any size.
        warnings.simplefilter("error", PILImage.DecompressionBombWarning)
        try:
            with PILImage.open(BytesIO(data)) as image:
                width, height = image.size
                if width <= 0 or height <= 0:
                    raise InputError(f"image {image_path} has size {width}x{height}", **where)
                if width * height > max_pixels:
                    raise InputError(
                        f"image {image_path} is {width}x{height} = {width * height} pixels, more "
                        f"than the limit {max_pixels} (decompression bomb?)",
                        **where,
                    )
                fmt = image.format
                # load() decodes every pixel: truncated or corrupt data fails here, which
                # verify() alone does not catch for all formats.
                image.load()
        except InputError:
            raise
        except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
            raise InputError(f"image {image_path} is a decompression bomb: {exc}", **where) from exc
        except UnidentifiedImageError as exc:
            raise InputError(f"image {image_path} is not a decodable image", **where) from exc
        except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
            # Pillow signals truncated/corrupt data with OSError, SyntaxError or ValueError.
            raise InputError(
                f"image {image_path} is truncated or corrupt: {type(exc).__name__}: {exc}",
                **where,
            ) from exc
    return ImageInfo(
        sha256=hashlib.sha256(data).hexdigest(), width=width, height=height, format=fmt
    )
