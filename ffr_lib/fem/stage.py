"""The `fem_checkpoint` stage: fine-tune the FEM on the MLDR train split, compare it with the base
model in-domain (val), on question-style queries and out-of-source (dialogues of another source
built the same way), log to MLflow and register it; `champion` only when it wins everywhere.

The FEM learns and is judged on the fragments the index serves: those the `fragments` stage wrote
for the split's batch (``mldr-train`` for training, ``mldr-val`` for the in-domain and
question-style sets). The out-of-source dialogues belong to no batch, so they are cut the way the
fragments stage cuts a new batch by default (``out_of_source_cut``).

The summary names the model that should serve: the tuned one when promoted, else the base.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from ffr_lib.data.dataset import Dataset
from ffr_lib.fem.evaluate import (
    compare_models,
    log_fem_run,
    out_of_source_set,
    promotion_decision,
    question_style,
)
from ffr_lib.fem.train import FemTrainConfig, Segment, train_fem, train_params
from ffr_lib.mldr.stage import load_split, split_batch
from ffr_lib.models.encoder import TextEncoder
from ffr_lib.segment.fragments import Fragment
from ffr_lib.segment.stage import (
    FragmentStageConfig,
    batch_fragments,
    cut_dialogues,
    fragments_path,
)
from ffr_lib.settings import get_settings
from ffr_lib.store import load_dialogues


class FemStageConfig(BaseModel):
    train: FemTrainConfig = Field(default_factory=FemTrainConfig)
    val_queries: int | None = Field(400, ge=1, description="val queries scored (None = all)")
    out_of_source: str = Field(
        "chitchat", description="stored dialogue source for the out-of-source evaluation set"
    )
    out_of_source_dialogues: int = Field(30, ge=1)
    out_of_source_cut: FragmentStageConfig = Field(
        default_factory=FragmentStageConfig,
        description="how the out-of-source dialogues (in no batch) are cut: as the fragments "
        "stage cuts a new batch by default",
    )
    out_dir: Path | None = Field(None, description="default: $FFR_HOME/fem")


def _capped(dataset: Dataset, n: int | None) -> Dataset:
    if n is None or len(dataset.queries) <= n:
        return dataset
    step = len(dataset.queries) / n  # an even spread keeps every family and type
    queries = [dataset.queries[int(i * step)] for i in range(n)]
    return Dataset(dialogues=dataset.dialogues, queries=queries, metadata=dataset.metadata)


def _lookup(fragments: dict[str, list[Fragment]]) -> Segment:
    return lambda dialogue: fragments[dialogue.id]


def served_segmenter(split: str, dataset: Dataset) -> Segment:
    """Cut each dialogue of ``dataset`` as the index serves it: the fragments the `fragments`
    stage wrote for the split's batch. Raises when the batch was not cut yet, or was cut from
    other dialogues than the split holds now (splits rebuilt, fragments not re-cut)."""
    batch = split_batch(split)
    stored = batch_fragments(batch)
    stale = [
        d.id
        for d in dataset.dialogues
        if sorted(i for f in stored.get(d.id, []) for i in f.utterance_ids)
        != list(range(len(d.utterances)))
    ]
    if stale:
        raise ValueError(
            f"the fragments of batch {batch!r} do not match {len(stale)} of the "
            f"{len(dataset.dialogues)} dialogues of the {split} split (e.g. {stale[0]}): "
            f"materialize the fragments asset for partition {batch!r} again"
        )
    return _lookup(stored)


def cut_segmenter(dataset: Dataset, config: FragmentStageConfig) -> Segment:
    """Cut the dialogues of ``dataset`` (in no batch) as the fragments stage would."""
    fragments: dict[str, list[Fragment]] = {}
    for fragment in cut_dialogues(dataset.dialogues, config):
        fragments.setdefault(fragment.dialogue_id, []).append(fragment)
    return _lookup(fragments)


def run_fem(url: str | None, config: FemStageConfig) -> dict[str, Any]:
    out_dir = config.out_dir or get_settings().home / "fem"
    train = load_split("train")
    val = _capped(load_split("val"), config.val_queries)
    # Check both batches before the (long) training starts.
    train_cut, val_cut = served_segmenter("train", train), served_segmenter("val", val)
    result = train_fem(train, out_dir / "model", config.train, segment=train_cut)
    base = TextEncoder.get(config.train.base_model)
    # The folder was just overwritten: an encoder loaded from it earlier in this process (and
    # its memo of vectors) is stale.
    TextEncoder.forget(str(result.model_dir))
    tuned = TextEncoder.get(str(result.model_dir))
    report = compare_models(base, tuned, {"val": val, "questions": question_style(val)}, val_cut)
    sources = [d for d in load_dialogues(url=url) if d.source == config.out_of_source]
    if len(sources) >= 3:
        oos = out_of_source_set(
            sources[: config.out_of_source_dialogues * 3], config.out_of_source_dialogues
        )
        oos_cut = cut_segmenter(oos, config.out_of_source_cut)
        report.update(compare_models(base, tuned, {"out_of_source": oos}, oos_cut))
    decision = promotion_decision(report)
    params = {
        **train_params(config.train),
        "fragments.train": split_batch("train"),
        "fragments.val": split_batch("val"),
        "fragments.out_of_source": config.out_of_source_cut.segmenter,
    }
    logged = log_fem_run(result.model_dir, params, report, decision, losses=result.losses)
    serving = str(result.model_dir) if decision.promote else config.train.base_model
    return {
        "model_dir": str(result.model_dir),
        "serving_model": serving,
        "serving_version": TextEncoder.get(serving).model_version,
        "promoted": decision.promote,
        "reasons": decision.reasons,
        "scores": decision.scores,
        "report": report,
        "pairs": result.n_pairs,
        "fragments": {s: str(fragments_path(split_batch(s))) for s in ("train", "val")},
        "steps": result.steps,
        "train_seconds": result.seconds,
        **logged,
    }
