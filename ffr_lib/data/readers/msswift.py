"""Reader for the released MLDR ms-swift files (``MLDR_train_cold_start.json``,
``MLDR_train_GRPO.json``, ``MLDR_val.json``): a JSON list of samples, or JSON Lines.

Each sample is parsed by :func:`ffr_lib.data.format.swift.from_msswift`. Several samples often
share one dialogue: samples with the same ``dialogue_id`` and the same content (utterances and
images) yield one Dialogue. A later sample with a known ``dialogue_id`` but different content (a
different window of it, say) gets its own Dialogue with the id ``{dialogue_id}@{hash8}``; the
released id stays in ``metadata['msswift_dialogue_id']``. Query ids are ``{file stem}-{index}``
unless the sample has a ``query_id``/``id`` field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ffr_lib.data.dataset import Dataset
from ffr_lib.data.errors import InputError
from ffr_lib.data.format.swift import content_key, from_msswift
from ffr_lib.data.model import Dialogue, Query
from ffr_lib.data.readers._common import check_first


def _records(path: Path) -> list[tuple[int, Any]]:
    """(record number, decoded object): list index for JSON, 1-based line number for JSONL."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", file=path) from exc
    stripped = text.lstrip()
    if not stripped:
        return []
    if stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"invalid JSON: {exc}", file=path) from exc
        return list(enumerate(data))
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise InputError(f"invalid JSON line: {exc}", file=path, record=number) from exc
    return out


def read_msswift(path: Path, limit: int | None = None) -> Dataset:
    """Read an ms-swift MLDR file into a Dataset. ``limit`` caps the dialogues (like the other
    readers): samples about further dialogues are skipped, samples about the first ``limit``
    dialogues are all kept."""
    path = Path(path)
    dialogues: list[Dialogue] = []
    queries: list[Query] = []
    # dialogue_id -> {content key -> id used in the dataset}
    known: dict[str, dict[str, str]] = {}
    seen_query_ids: dict[str, str] = {}
    for record, sample in _records(path):
        if limit is not None and len(dialogues) >= limit:
            raw_id = sample.get("dialogue_id") if isinstance(sample, dict) else None
            if isinstance(raw_id, (str, int)) and str(raw_id).strip() not in known:
                continue  # a new dialogue beyond the limit: skip without parsing
        query_id, id_field = f"{path.stem}-{record}", None
        if isinstance(sample, dict):
            for name in ("query_id", "id"):
                given = sample.get(name)
                if isinstance(given, (str, int)) and str(given).strip():
                    query_id, id_field = str(given).strip(), name
                    break
        here = f"at record {record}"
        check_first(
            seen_query_ids, query_id, here, "query id", file=path, record=record, field=id_field
        )
        try:
            dialogue, query = from_msswift(sample, query_id)
        except InputError as exc:
            raise InputError(exc.reason, file=path, record=record, field=exc.field) from exc
        key = content_key(dialogue)
        variants = known.setdefault(dialogue.id, {})
        if key in variants:
            dialogue_id = variants[key]
        elif limit is not None and len(dialogues) >= limit:
            continue
        else:
            dialogue_id = dialogue.id if not variants else f"{dialogue.id}@{key[:8]}"
            variants[key] = dialogue_id
            dialogues.append(dialogue.model_copy(update={"id": dialogue_id}))
        queries.append(
            query.model_copy(
                update={
                    "dialogue_id": dialogue_id,
                    "metadata": {**query.metadata, "file": path.name, "record": record},
                }
            )
        )
    return Dataset(dialogues=dialogues, queries=queries)
