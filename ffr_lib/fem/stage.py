"""The `fem_checkpoint` stage: fine-tune the FEM on the MLDR train split and, when the QMSum folder
is present (``FFR_QMSUM_DIR``), on QMSum train's human-marked spans beside it; compare it with
the base model in-domain (val), on question-style queries, out-of-source (dialogues of another
source built the same way) and on QMSum val (real meetings, human questions); log to MLflow and
register it; `champion` only when it wins everywhere.

The FEM learns and is judged on the fragments the index serves: those the `fragments` stage wrote
for the split's batch (``mldr-train`` for training, ``mldr-val`` for the in-domain and
question-style sets). The out-of-source dialogues and the QMSum meetings belong to no batch, so
they are cut the way the fragments stage cuts a new batch by default (``out_of_source_cut``).

QMSum pairs are built like the MLDR ones (:func:`ffr_lib.fem.train.build_pairs`: a query's
positive is the fragment of its meeting that overlaps its gold spans most, its hard negative a
fragment of the same meeting with no gold), capped on their own (``qmsum_pairs``) and trained on
in one run with the MLDR pairs. Without the QMSum folder the stage trains and judges as before,
and the decision's reasons say that QMSum val was not checked.

The summary names the model that should serve: the tuned one when promoted, else the base.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from ffr_lib.data.dataset import Dataset
from ffr_lib.data.readers.qmsum import read_qmsum_split
from ffr_lib.fem.evaluate import (
    compare_models,
    log_fem_run,
    out_of_source_set,
    promotion_decision,
    question_style,
)
from ffr_lib.fem.train import FemTrainConfig, Pair, Segment, build_pairs, train_fem, train_params
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
        description="how the dialogues in no batch (the out-of-source set, QMSum meetings) are "
        "cut: as the fragments stage cuts a new batch by default",
    )
    qmsum_train_meetings: int | None = Field(
        None,
        ge=0,
        description="QMSum train meetings whose specific queries become training pairs beside "
        "the MLDR ones (the first N of $FFR_QMSUM_DIR/train; None = all 162, 0 = off); every "
        "turn of a meeting taken is embedded to cut it. Skipped, with a reason, when the folder "
        "is absent",
    )
    qmsum_pairs: int | None = Field(
        512,
        ge=1,
        description="cap on the QMSum training pairs (seeded sample, as train.max_pairs caps "
        "the MLDR pairs; None = one per specific query of the meetings taken): the two caps set "
        "the mix of real and synthetic pairs",
    )
    qmsum_val_meetings: int | None = Field(
        None,
        ge=1,
        description="QMSum val meetings the tuned model must also beat the base on to become "
        "champion (the first N of $FFR_QMSUM_DIR/val; None = all 35; val_queries caps their "
        "queries too). When the folder is absent the gate runs without it and says so",
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


#: The name of the QMSum val set in the report, the MLflow metrics and the decision's reasons.
QMSUM_VAL = "qmsum_val"


@dataclass
class QmsumSets:
    """QMSum train and val as the stage uses them; ``skipped`` says why one is not used."""

    train: Dataset | None = None
    val: Dataset | None = None
    skipped: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Meetings and queries used per split, or why the split was skipped (JSON-able)."""
        out: dict[str, Any] = {}
        for split, data in (("train", self.train), ("val", self.val)):
            out[split] = (
                {"meetings": len(data.dialogues), "queries": len(data.queries)}
                if data is not None
                else {"skipped": self.skipped.get(split, "")}
            )
        return out


def qmsum_sets(config: FemStageConfig) -> QmsumSets:
    """The first ``qmsum_train_meetings`` of QMSum train and the first ``qmsum_val_meetings`` of
    QMSum val (queries capped by ``val_queries``), each None with a reason when its folder is
    absent (a user without the data still trains and judges on MLDR)."""
    sets = QmsumSets()
    if config.qmsum_train_meetings == 0:
        sets.skipped["train"] = "qmsum_train_meetings is 0"
    else:
        sets.train, why = read_qmsum_split("train", config.qmsum_train_meetings)
        if sets.train is None:
            sets.skipped["train"] = why
    val, why = read_qmsum_split("val", config.qmsum_val_meetings)
    if val is None:
        sets.skipped["val"] = why
    else:
        sets.val = _capped(val, config.val_queries)
    return sets


def training_pairs(
    train: Dataset, train_cut: Segment, qmsum_train: Dataset | None, config: FemStageConfig
) -> dict[str, list[Pair]]:
    """The training pairs per source: MLDR train on its served fragments (capped by
    ``train.max_pairs``) and, given QMSum train, its specific queries on its meetings cut by
    ``out_of_source_cut`` (capped by ``qmsum_pairs``). Hard negatives come from the query's own
    dialogue (meeting) in both."""
    pairs = {"mldr": build_pairs(train, train_cut, config.train)}
    if qmsum_train is not None:
        capped = config.train.model_copy(update={"max_pairs": config.qmsum_pairs})
        cut = cut_segmenter(qmsum_train, config.out_of_source_cut)
        pairs["qmsum"] = build_pairs(qmsum_train, cut, capped)
    return pairs


def run_fem(url: str | None, config: FemStageConfig) -> dict[str, Any]:
    out_dir = config.out_dir or get_settings().home / "fem"
    train = load_split("train")
    val = _capped(load_split("val"), config.val_queries)
    # Check both batches, and read and cut QMSum, before the (long) training starts.
    train_cut, val_cut = served_segmenter("train", train), served_segmenter("val", val)
    qmsum = qmsum_sets(config)
    qmsum_val_cut = (
        cut_segmenter(qmsum.val, config.out_of_source_cut) if qmsum.val is not None else None
    )
    by_source = training_pairs(train, train_cut, qmsum.train, config)
    # One run on all the pairs; the trainer's batch sampler shuffles them (seeded).
    pairs = [pair for source in by_source.values() for pair in source]
    result = train_fem(train, out_dir / "model", config.train, pairs=pairs)
    base = TextEncoder.get(config.train.base_model)
    # The folder was just overwritten: an encoder loaded from it earlier in this process (and
    # its memo of vectors) is stale.
    TextEncoder.forget(str(result.model_dir))
    tuned = TextEncoder.get(str(result.model_dir))
    report = compare_models(base, tuned, {"val": val, "questions": question_style(val)}, val_cut)
    if qmsum.val is not None:
        report.update(compare_models(base, tuned, {QMSUM_VAL: qmsum.val}, qmsum_val_cut))
    sources = [d for d in load_dialogues(url=url) if d.source == config.out_of_source]
    if len(sources) >= 3:
        oos = out_of_source_set(
            sources[: config.out_of_source_dialogues * 3], config.out_of_source_dialogues
        )
        oos_cut = cut_segmenter(oos, config.out_of_source_cut)
        report.update(compare_models(base, tuned, {"out_of_source": oos}, oos_cut))
    # QMSum val gates promotion when its folder is present; without it, today's gate (MLDR val,
    # question-style, out-of-source) decides, and a reason line says QMSum was not checked.
    unchecked = {QMSUM_VAL: qmsum.skipped["val"]} if qmsum.val is None else {}
    decision = promotion_decision(report, not_checked=unchecked)
    params = {
        **train_params(config.train),
        "fragments.train": split_batch("train"),
        "fragments.val": split_batch("val"),
        "fragments.out_of_source": config.out_of_source_cut.segmenter,
        "qmsum_train_meetings": config.qmsum_train_meetings,
        "qmsum_pairs": config.qmsum_pairs,
        "qmsum_val_meetings": config.qmsum_val_meetings,
        **{f"pairs.{source}": len(p) for source, p in by_source.items()},
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
        "pairs_by_source": {source: len(p) for source, p in by_source.items()},
        "qmsum": qmsum.summary(),
        "fragments": {s: str(fragments_path(split_batch(s))) for s in ("train", "val")},
        "steps": result.steps,
        "train_seconds": result.seconds,
        **logged,
    }
