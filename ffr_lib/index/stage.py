"""The `fragment_index` stage: embed one dialogue batch's fragments with the serving FEM and load
them into pgvector, then run the index checks.

Versions: the first FEM version indexed starts serving at once. A later version (a newly
promoted FEM) is built beside the old one, batch by batch, and serving flips to it atomically
only when it covers every dialogue the old one does, so no search ever sees a half-built index.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from ffr_lib.data.model import Dialogue
from ffr_lib.db import connect
from ffr_lib.fem.fragment_text import FragmentTextConfig, build_embedder, fragment_rows
from ffr_lib.index.checks import (
    check_coverage,
    check_explain_uses_index,
    check_hnsw_recall,
    check_no_duplicates,
)
from ffr_lib.index.cost import measure_index_point, read_cost_curve
from ffr_lib.index.writer import IndexConfig, activate_version, index_rows, serving_version
from ffr_lib.models.encoder import TextEncoder
from ffr_lib.segment.fragments import Fragment
from ffr_lib.segment.stage import batch_dialogue_ids, fragments_path, read_fragments
from ffr_lib.store import load_dialogues, load_queries


class IndexStageConfig(BaseModel):
    text: FragmentTextConfig = Field(default_factory=FragmentTextConfig)
    index: IndexConfig = Field(default_factory=lambda: IndexConfig(activate="never"))
    recall_sample: int = Field(50, ge=1, description="batch queries used for the recall check")
    cost_sample: int = Field(
        20,
        ge=0,
        description="fragments of the version whose vectors serve as queries for the measured "
        "search p50 and recall@10 against exact search when the stage has no query sample "
        "(with one, the hnsw_recall check's measurement is the point's; 0 = no search figures)",
    )
    cost_curve_path: str | None = Field(
        "bench/results/2026-12-07-cost-curves/cost_curve.json",
        description="the benchmarked cost curve (`make bench` writes cost_curve.json) shown in "
        "the metadata; relative to the repository root; empty = none",
    )


def _covered_dialogues(db: Any, model: str) -> set[str]:
    rows = db.execute(
        "SELECT DISTINCT dialogue_id FROM ffr.fragments WHERE embedding_model = %s", (model,)
    ).fetchall()
    return {row[0] for row in rows}


def flip_when_complete(url: str | None, model: str) -> dict[str, Any]:
    """Serve ``model`` if nothing serves yet, or if it now covers every dialogue the serving
    version covers. Returns what happened."""
    current = serving_version(url)
    if current == model:
        return {"serving": model, "flipped": False}
    with connect(url) as db:
        missing = (
            _covered_dialogues(db, current) - _covered_dialogues(db, model) if current else set()
        )
    if missing:
        return {"serving": current, "flipped": False, "new_version_missing_dialogues": len(missing)}
    activate_version(model, url=url)
    return {"serving": model, "flipped": True, "previous": current}


def run_index(url: str | None, batch: str, fem_model: str, config: IndexStageConfig) -> dict:
    """Index one dialogue batch's fragments (the `fragment_index` asset, one partition); with
    the benchmarked cost curve of ``config.cost_curve_path`` as markdown (or why there is
    none)."""
    fragments = read_fragments(fragments_path(batch))
    ids = batch_dialogue_ids(url, batch)
    dialogues = load_dialogues(ids, url=url)
    queries = [q.text for q in load_queries(dialogue_ids=ids, url=url)][: config.recall_sample]
    return {
        "batch": batch,
        **index_fragments(url, dialogues, fragments, fem_model, config, queries),
        "cost_curve": read_cost_curve(config.cost_curve_path)[1],
    }


def index_fragments(
    url: str | None,
    dialogues: Sequence[Dialogue],
    fragments: Sequence[Fragment],
    fem: str | TextEncoder,
    config: IndexStageConfig,
    queries: Sequence[str] = (),
) -> dict:
    """Embed the ``fragments`` of stored ``dialogues`` with ``fem`` (a model spec or a loaded
    encoder) through the configured fragment text and image encoders, write them, flip serving
    when the version is complete, and run the index checks (``queries`` sample the recall and
    EXPLAIN checks) and measure the version's point of the cost curve
    (:func:`~ffr_lib.index.cost.measure_index_point`). Dialogues without fragments are left
    out."""
    by_dialogue: dict[str, list] = {}
    for fragment in fragments:
        by_dialogue.setdefault(fragment.dialogue_id, []).append(fragment)
    dialogues = [d for d in dialogues if d.id in by_dialogue]
    rows = [row for d in dialogues for row in fragment_rows(d, by_dialogue[d.id], config.text)]
    encoder = TextEncoder.get(fem) if isinstance(fem, str) else fem
    stats = index_rows(rows, build_embedder(encoder, config.text), config=config.index, url=url)
    model = stats.embedding_model
    serving = flip_when_complete(url, model)

    checks: dict[str, tuple[bool, dict]] = {
        "no_duplicates": check_no_duplicates(embedding_model=model, url=url),
        "coverage": check_coverage(embedding_model=model, url=url),
    }
    if queries:
        vectors = encoder.encode(list(queries[: config.recall_sample]))
        checks["hnsw_recall"] = check_hnsw_recall(vectors, embedding_model=model, url=url)
        checks["explain_uses_index"] = check_explain_uses_index(
            vectors[0], embedding_model=model, url=url
        )
    return {
        "embedding_model": model,
        "dialogues": len(dialogues),
        "stats": stats.as_dict(),
        "fragments_per_second": stats.fragments / stats.seconds_total
        if stats.seconds_total
        else 0.0,
        "serving": serving,
        # This build's point of the cost curve (numbers a dashboard plots across builds).
        "cost": measure_index_point(
            model,
            sample=config.cost_sample,
            url=url,
            measured=checks["hnsw_recall"][1] if "hnsw_recall" in checks else None,
        ),
        "checks": {name: {"passed": ok, **details} for name, (ok, details) in checks.items()},
    }
