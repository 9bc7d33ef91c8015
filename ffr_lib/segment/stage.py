"""The `fragments` stage: cut one dialogue batch into fragments and write them to a JSONL file.

A batch is the set of stored dialogues whose ``metadata['batch']`` equals the partition key, so a
new batch is cut without touching old ones. Output: ``$FFR_HOME/fragments/<batch>.jsonl``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from ffr_lib.data.model import Dialogue
from ffr_lib.db import connect
from ffr_lib.models.encoder import TextEncoder
from ffr_lib.segment.evaluate import compare_segmenters, evaluate_segmentation
from ffr_lib.segment.fragments import Fragment
from ffr_lib.segment.texttiling import TextTilingConfig, TextTilingSegmenter
from ffr_lib.segment.windows import FixedWindowSegmenter, WindowConfig
from ffr_lib.settings import get_settings
from ffr_lib.store import load_dialogues


class FragmentStageConfig(BaseModel):
    segmenter: Literal["texttiling", "windows"] = Field(
        "texttiling", description="embedding topic segmenter, or fixed windows (the baseline)"
    )
    encoder: str = Field("minilm", description="text encoder the segmenter embeds with")
    texttiling: TextTilingConfig = Field(default_factory=TextTilingConfig)
    windows: WindowConfig = Field(default_factory=WindowConfig)
    evaluate_on: int = Field(
        200, ge=0, description="dialogues with known topic boundaries scored by Pk/WindowDiff"
    )


def fragments_path(batch: str, folder: Path | None = None) -> Path:
    folder = folder or get_settings().home / "fragments"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in batch)
    return folder / f"{safe}.jsonl"


def segmentation_path(batch: str) -> Path:
    """Pk / WindowDiff of the batch's segmenter vs fixed windows (JSON beside the fragments)."""
    path = fragments_path(batch)
    return path.with_name(path.stem + ".segmentation.json")


def batch_dialogue_ids(url: str | None, batch: str) -> list[str]:
    with connect(url) as db:
        rows = db.execute(
            "SELECT id FROM ffr.dialogues WHERE metadata->>'batch' = %s ORDER BY id", (batch,)
        ).fetchall()
    return [row[0] for row in rows]


def write_fragments(fragments: list[Fragment], path: Path) -> None:
    """Atomic: readers see the old file or the new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        for fragment in fragments:
            out.write(fragment.model_dump_json() + "\n")
    os.replace(tmp, path)


def read_fragments(path: Path) -> list[Fragment]:
    with path.open(encoding="utf-8") as lines:
        return [Fragment.model_validate_json(line) for line in lines if line.strip()]


def batch_fragments(batch: str) -> dict[str, list[Fragment]]:
    """The fragments this stage wrote for ``batch`` (what the index serves), per dialogue id."""
    path = fragments_path(batch)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: materialize the fragments asset for partition {batch!r} first"
        )
    by_dialogue: dict[str, list[Fragment]] = {}
    for fragment in read_fragments(path):
        by_dialogue.setdefault(fragment.dialogue_id, []).append(fragment)
    return by_dialogue


def make_segmenter(config: FragmentStageConfig):
    if config.segmenter == "windows":
        return FixedWindowSegmenter(config.windows)
    encoder = TextEncoder.get(config.encoder)
    return TextTilingSegmenter(encoder.encode, config.texttiling)


def cut_dialogues(dialogues: list[Dialogue], config: FragmentStageConfig) -> list[Fragment]:
    segmenter = make_segmenter(config)
    many = getattr(segmenter, "segment_many", None)
    per_dialogue = many(dialogues) if many else [segmenter.segment(d) for d in dialogues]
    return [fragment for fragments in per_dialogue for fragment in fragments]


def cut_batch(url: str | None, batch: str, config: FragmentStageConfig) -> dict:
    """Cut every dialogue of ``batch``; write the fragments; score segmentation where the
    dialogues carry known topic boundaries (segmenter vs fixed windows)."""
    ids = batch_dialogue_ids(url, batch)
    if not ids:
        raise ValueError(f"no stored dialogue has metadata batch {batch!r}")
    dialogues = load_dialogues(ids, url=url)
    fragments = cut_dialogues(dialogues, config)
    path = fragments_path(batch)
    write_fragments(fragments, path)
    scored = [d for d in dialogues if "topic_boundaries" in d.metadata][: config.evaluate_on]
    segmentation = {}
    if scored:
        # Score the cut already made (boundaries = fragment starts) instead of embedding the
        # dialogues a second time; only the cheap fixed-window baseline is computed anew.
        starts: dict[str, list[int]] = {}
        for fragment in fragments:
            if fragment.start > 0:
                starts.setdefault(fragment.dialogue_id, []).append(fragment.start)
        segmentation = {
            config.segmenter: evaluate_segmentation(
                scored, [sorted(starts.get(d.id, [])) for d in scored]
            ),
            **compare_segmenters(scored, {"fixed_windows": FixedWindowSegmenter()}),
        }
    if segmentation:
        segmentation_path(batch).write_text(json.dumps(segmentation, indent=2), encoding="utf-8")
    sizes = [len(f.utterance_ids) for f in fragments]
    return {
        "path": str(path),
        "batch": batch,
        "dialogues": len(dialogues),
        "fragments": len(fragments),
        "utterances_per_fragment": sum(sizes) / len(sizes) if sizes else 0.0,
        "segmentation": segmentation,
    }
