"""OCR for images that carry text (screenshots, signs, menus) but no caption.

A thin wrapper around ``rapidocr-onnxruntime`` (Chinese + English, bundled ONNX weights, runs
offline on CPU). The engine is created lazily on first use (about half a second) and shared by
the process; results are cached by the sha256 of the image bytes, so an image indexed twice (a
re-materialisation, a new FEM version) is read once.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field


class OcrConfig(BaseModel):
    """Engine settings. The defaults keep small images small: rapidocr's own default resizes the
    SHORT side up to 736 px, which makes a 480x120 banner 3000 px wide and takes seconds here."""

    det_limit_side_len: int = Field(960, ge=32, description="resize so the LONG side is at most")
    det_unclip_ratio: float = Field(2.0, gt=0, description="box growth; >1.6 keeps word gaps")
    min_score: float = Field(0.5, ge=0, le=1, description="drop text lines scored below this")
    threads: int = Field(2, ge=1)
    cache_size: int = Field(4096, ge=0, description="results kept in memory (0 = no cache)")


class OcrReader:
    """Lazy, cached OCR. Prefer :func:`get_reader`, which shares one engine per config."""

    def __init__(self, config: OcrConfig | None = None) -> None:
        self.config = config or OcrConfig()
        self._engine: Any = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, str] = OrderedDict()

    def _get_engine(self) -> Any:
        with self._lock:
            if self._engine is None:
                try:
                    from rapidocr_onnxruntime import RapidOCR
                except ImportError as exc:  # an optional extra of the package
                    raise RuntimeError(
                        "OCR needs rapidocr-onnxruntime: pip install -e '.[ocr]' (or set "
                        "FragmentTextConfig.ocr = False)"
                    ) from exc

                c = self.config
                self._engine = RapidOCR(
                    det_limit_side_len=c.det_limit_side_len,
                    det_limit_type="max",
                    det_unclip_ratio=c.det_unclip_ratio,
                    intra_op_num_threads=c.threads,
                )
            return self._engine

    def read_bytes(self, data: bytes) -> str:
        """The text in an encoded image (PNG, JPEG, ...): lines top to bottom joined by newlines;
        ``""`` when none is legible."""
        key = hashlib.sha256(data).hexdigest()
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        import io

        import numpy as np
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            pixels = np.asarray(img.convert("RGB"))[:, :, ::-1].copy()  # rapidocr wants BGR
        result, _elapsed = self._get_engine()(pixels)
        lines = [
            str(text).strip()
            for _box, text, score in (result or [])
            if float(score) >= self.config.min_score and str(text).strip()
        ]
        text = "\n".join(lines)
        if self.config.cache_size:
            with self._lock:
                self._cache[key] = text
                while len(self._cache) > self.config.cache_size:
                    self._cache.popitem(last=False)
        return text

    def read(self, path: str | Path) -> str:
        """The text in the image file at ``path`` (see :meth:`read_bytes`)."""
        return self.read_bytes(Path(path).read_bytes())


_READERS: dict[str, OcrReader] = {}
_READERS_LOCK = threading.Lock()


def get_reader(config: OcrConfig | None = None) -> OcrReader:
    """The process-wide reader for ``config`` (one engine and one cache per distinct config)."""
    config = config or OcrConfig()
    key = config.model_dump_json()
    with _READERS_LOCK:
        reader = _READERS.get(key)
        if reader is None:
            reader = _READERS[key] = OcrReader(config)
        return reader


def ocr_text(path: str | Path, config: OcrConfig | None = None) -> str:
    """Shortcut: the text legible in the image at ``path`` (cached)."""
    return get_reader(config).read(path)
