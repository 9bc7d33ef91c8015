"""An inbox folder for newly arriving dialogue files: each accepted file is one dialogue batch.

Layout under the inbox folder (``FFR_INBOX_DIR``, default ``$FFR_HOME/inbox``):

- ``*.jsonl`` / ``*.<format>.json``: new files. ``chats.jsonl`` is read as canonical dialogues,
  ``chats.locomo.json`` with the ``locomo`` reader, and so on for every name in
  ``ffr_lib.data.readers.FORMATS``; a plain ``.json`` is read as canonical too.
- ``accepted/<batch>.<ext>``: files that passed validation, renamed to their batch key.
- ``rejected/<name>`` + ``<name>.error.txt``: files that failed, with the reason. They are moved
  aside, never half-ingested, and the others go on.

A file is taken only once it has not changed for ``FFR_INBOX_SETTLE_SECONDS`` (default 5): a file
modified more recently may still be being copied.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ffr_lib.data.dataset import Dataset
from ffr_lib.data.errors import InputError
from ffr_lib.data.readers import FORMATS, read_dataset
from ffr_lib.settings import INBOX_DIR, INBOX_SETTLE_SECONDS
from ffr_lib.store import write_dataset

BATCH_PREFIX = "inbox-"


def inbox_dir() -> Path:
    return INBOX_DIR.get()


def format_of(path: Path) -> str:
    """The reader format a file's name asks for (see the module docstring)."""
    suffixes = [s.lstrip(".") for s in path.suffixes]
    if len(suffixes) >= 2 and suffixes[-2] in FORMATS:
        return suffixes[-2]
    if suffixes and suffixes[-1] in ("jsonl", "json"):
        return "canonical"
    raise InputError(
        f"cannot tell the format from the name; use NAME.jsonl or NAME.<format>.json with a "
        f"format from {sorted(FORMATS)}",
        file=path,
    )


def batch_key(path: Path) -> str:
    """Stable partition key of an inbox file: its stem plus a short hash of its bytes, so a
    re-sent file with new content is a new batch and the same file twice is the same batch."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:10]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.name.split(".")[0])[:60] or "batch"
    return f"{BATCH_PREFIX}{stem}-{digest}"


def pending_files(folder: Path | None = None, settle_seconds: float | None = None) -> list[Path]:
    """New files in the inbox, oldest first, skipping ones modified in the last seconds."""
    folder = folder or inbox_dir()
    if settle_seconds is None:
        settle_seconds = INBOX_SETTLE_SECONDS.get()
    if not folder.is_dir():
        return []
    now = time.time()
    files = [
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and now - p.stat().st_mtime >= settle_seconds
    ]
    return sorted(files, key=lambda p: (p.stat().st_mtime, p.name))


@dataclass
class Accepted:
    batch: str
    path: Path
    format: str
    dialogues: int
    queries: int


def read_tagged(path: Path, fmt: str, batch: str) -> Dataset:
    """Read and validate a batch file; every dialogue is tagged with its batch key."""
    dataset = read_dataset(path, fmt)
    if not dataset.dialogues:
        raise InputError("the file holds no dialogue", file=path)
    for dialogue in dataset.dialogues:
        dialogue.metadata["batch"] = batch
    return dataset


def accept(path: Path, folder: Path | None = None) -> Accepted:
    """Validate ``path`` completely, then move it to ``accepted/``. Raises InputError (and moves
    the file to ``rejected/`` with the reason) when it is bad."""
    folder = folder or inbox_dir()
    try:
        fmt = format_of(path)
        batch = batch_key(path)
        dataset = read_tagged(path, fmt, batch)
    except OSError as exc:  # gone or unreadable since it was listed: not this tick's problem
        error = InputError(f"cannot read file: {exc.strerror or exc}", file=path)
        if path.exists():
            reject(path, str(error), folder)
        raise error from exc
    except InputError as exc:
        reject(path, str(exc), folder)
        raise
    ext = "".join(path.suffixes) or ".jsonl"
    target = folder / "accepted" / f"{batch}{ext}"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(path), target)
    return Accepted(batch, target, fmt, len(dataset.dialogues), len(dataset.queries))


def reject(path: Path, reason: str, folder: Path | None = None) -> Path:
    folder = folder or inbox_dir()
    target_dir = folder / "rejected"
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / path.name
    shutil.move(str(path), target)
    (target_dir / f"{path.name}.error.txt").write_text(reason + "\n", encoding="utf-8")
    return target


def accepted_file(batch: str, folder: Path | None = None) -> Path:
    folder = (folder or inbox_dir()) / "accepted"
    matches = sorted(folder.glob(f"{batch}.*")) if folder.is_dir() else []
    if not matches:
        raise FileNotFoundError(f"no accepted inbox file for batch {batch!r} in {folder}")
    return matches[0]


def ingest_batch(url: str | None, batch: str, folder: Path | None = None) -> dict:
    """Store the accepted file of ``batch`` (one transaction; idempotent)."""
    path = accepted_file(batch, folder)
    dataset = read_tagged(path, format_of(path), batch)
    stats = write_dataset(dataset, url=url)
    return {"path": str(path), "dialogues": len(dataset.dialogues), **stats.as_dict()}
