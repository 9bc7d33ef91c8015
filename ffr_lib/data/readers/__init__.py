"""Reader registry: one name per input format, each turning files into a :class:`Dataset`.

Readers are imported lazily, so a format whose module is missing (or whose dependencies are not
installed) fails with a clear :class:`InputError` only when it is used, never at import time.
Every reader raises only :class:`InputError` for bad input.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from ffr_lib.data.dataset import Dataset
from ffr_lib.data.errors import InputError

#: format name -> (one-line description, module, function)
_READERS: dict[str, tuple[str, str, str]] = {
    "canonical": (
        "FFR canonical folder (dialogues.jsonl, queries.jsonl, images) or a dialogues .jsonl",
        "ffr_lib.data.canonical",
        "read_canonical",
    ),
    "photochat": (
        "PhotoChat JSON files: a file, a split folder or the root (default Settings.photochat_dir)",
        "ffr_lib.data.readers.photochat",
        "read_photochat",
    ),
    "chitchat": (
        "the chitchat-dataset PyPI package (path '-' or empty), or a JSON file in its layout",
        "ffr_lib.data.readers.chitchat",
        "read_chitchat",
    ),
    "msswift": (
        "MLDR / WeChat-MDR ms-swift JSON files (messages, images, solution, dialogue_id)",
        "ffr_lib.data.readers.msswift",
        "read_msswift",
    ),
    "wechat-raw": (
        "raw WeChat-MDR annotations (dialogue_id, dialogue, query_text, gt_turns): .json/.jsonl",
        "ffr_lib.data.readers.wechat_raw",
        "read_wechat_raw",
    ),
    "locomo": (
        "LoCoMo locomo10.json (sessions, image URLs with captions, QA with evidence)",
        "ffr_lib.data.readers.locomo",
        "read_locomo",
    ),
    "qmsum": (
        "QMSum meeting JSON files: a file, a split folder or the root (default "
        "Settings.qmsum_dir, train and val)",
        "ffr_lib.data.readers.qmsum",
        "read_qmsum",
    ),
}

#: format name -> description (what `ffr ingest --format` offers)
FORMATS: dict[str, str] = {name: spec[0] for name, spec in _READERS.items()}

# Formats whose path may be omitted ("-"): they have a built-in default source.
DEFAULT_SOURCE_FORMATS = frozenset({"chitchat", "photochat", "qmsum"})


def get_reader(fmt: str) -> Callable[..., Dataset]:
    """The reader function for ``fmt``; InputError for an unknown or unavailable format."""
    spec = _READERS.get(fmt)
    if spec is None:
        known = ", ".join(sorted(_READERS))
        raise InputError(f"unknown format {fmt!r}; known formats: {known}", field="format")
    _, module_name, function_name = spec
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only "the reader module itself is missing" is a format problem; a missing third-party
        # dependency inside it is reported the same way, naming what is missing.
        raise InputError(
            f"format {fmt!r} is not available: module {exc.name} could not be imported",
            field="format",
        ) from exc
    function = getattr(module, function_name, None)
    if function is None:
        raise InputError(
            f"format {fmt!r} is not available: {module_name} has no {function_name}()",
            field="format",
        )
    return function


def read_dataset(path: str | Path, fmt: str, limit: int | None = None) -> Dataset:
    """Read ``path`` in format ``fmt`` (see :data:`FORMATS`); ``limit`` caps the dialogues."""
    if limit is not None and limit < 0:
        raise InputError(f"limit must be >= 0, got {limit}", field="limit")
    reader = get_reader(fmt)
    if fmt in DEFAULT_SOURCE_FORMATS and str(path) in ("", "-"):
        return reader(None, limit=limit)
    return reader(Path(path), limit=limit)


__all__ = ["DEFAULT_SOURCE_FORMATS", "FORMATS", "get_reader", "read_dataset"]
