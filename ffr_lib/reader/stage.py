"""The `reader_checkpoint` stage: train the fine-stage reader on MLDR train and QMSum train (when
the folder is present), score it on the val splits beside the best untrained baseline decoded the
same way, log the run to MLflow and register it; it becomes `champion` (the reader FFRS serves)
only when it beats the current champion on every val set they share.

Checkpoints live in ``$FFR_HOME/reader/<run>/reader.json``; ``champion.json`` beside them
names the one that serves, with the figures it won with.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel, Field

from ffr_lib.data.dataset import Dataset
from ffr_lib.data.gold import answerable
from ffr_lib.data.model import Dialogue, QueryType
from ffr_lib.data.readers.qmsum import read_qmsum_split
from ffr_lib.data.sampling import spread
from ffr_lib.mldr.stage import load_split
from ffr_lib.models.encoder import TextEncoder
from ffr_lib.reader.decode import joint_f1, micro_f1
from ffr_lib.reader.model import ReaderWeights
from ffr_lib.reader.reader import Reader
from ffr_lib.reader.train import ReaderTrainConfig, train_reader
from ffr_lib.settings import get_settings
from ffr_lib.tracking import register_model_version, start_run

log = logging.getLogger(__name__)


class ReaderStageConfig(BaseModel):
    train: ReaderTrainConfig = Field(default_factory=ReaderTrainConfig)
    use_qmsum: bool = Field(True, description="train and judge on QMSum too when it is present")
    val_queries: int | None = Field(
        None, ge=1, description="val queries per set to judge on (spread; None = all)"
    )
    qmsum_meetings: int | None = Field(
        None,
        ge=2,
        description="QMSum train meetings to train on (the first N; None = all 162): every turn "
        "of a meeting is embedded, so this bounds the step's time",
    )
    qmsum_val_meetings: int | None = Field(
        None, ge=1, description="QMSum val meetings to judge on (the first N; None = all 35)"
    )
    mlflow: bool = True


def reader_dir() -> Path:
    """Trained reader checkpoints (local state, like the F2RVLM adapters)."""
    return get_settings().home / "reader"


def champion_path() -> Path | None:
    """The checkpoint file of the serving reader, or None before the first promotion."""
    pointer = reader_dir() / "champion.json"
    if not pointer.is_file():
        return None
    path = Path(json.loads(pointer.read_text(encoding="utf-8"))["path"])
    return path if path.is_file() else None


def sample_queries(dataset: Dataset, queries: int | None) -> Dataset:
    """``dataset`` with ``queries`` of its queries, spread (None = all)."""
    return Dataset(dialogues=dataset.dialogues, queries=spread(dataset.queries, queries))


class FineStageAnswers(Protocol):
    """What :func:`reader_f1` scores: a fine stage answering a query over one whole dialogue
    (the reader, or F2RVLM through ``ffr_lib.ffrs.serving.F2RVLMAnswers``)."""

    def read(self, query: str, dialogue: Dialogue) -> Any: ...


def reader_f1(reader: FineStageAnswers, dataset: Dataset) -> dict[str, float]:
    """F1 of ``reader`` on every query of ``dataset`` (negative queries: empty gold): ``f1`` is
    the evaluation's headline (micro F1 per modality, averaged over utterances and images),
    ``micro_f1`` / ``macro_f1`` are over utterances, an image's gold counting as its sender;
    and the share of negative queries it abstains on."""
    by_id = dataset.dialogue_by_id()
    gold_of = {q.id: gold for q, _d, gold in answerable(dataset)}
    pairs, per_query, joint = [], [], []
    negatives = abstained = 0
    for query in dataset.queries:
        negative = query.type == QueryType.NEGATIVE
        gold = [] if negative else sorted(gold_of.get(query.id, set()))
        dialogue = by_id[query.dialogue_id]
        answer = reader.read(query.text, dialogue)
        # What the answer covers, in the same currency as the gold: its images count as
        # their senders.
        named = set(answer.image_ids)
        covered = set(answer.utterance_ids) | {
            im.utterance_index for im in dialogue.images if im.index in named
        }
        pairs.append((covered, gold))
        joint.append(
            (
                answer.utterance_ids,
                answer.image_ids,
                [] if negative else query.gold_utterance_ids,
                [] if negative else query.gold_image_ids,
            )
        )
        if gold:
            per_query.append(micro_f1([(covered, gold)]))
        else:
            negatives += 1
            abstained += not (answer.utterance_ids or answer.image_ids)
    return {
        "f1": round(joint_f1(joint), 4),
        "micro_f1": round(micro_f1(pairs), 4),
        "macro_f1": round(float(np.mean(per_query)) if per_query else 0.0, 4),
        "queries": len(pairs),
        "abstain_rate": round(abstained / negatives, 4) if negatives else float("nan"),
    }


def training_sources(config: ReaderStageConfig) -> tuple[dict[str, Dataset], dict[str, str]]:
    """name -> training dataset, and name -> why a source was left out."""
    sources: dict[str, Dataset] = {}
    skipped: dict[str, str] = {}
    try:
        sources["mldr"] = load_split("train")
    except FileNotFoundError as exc:
        skipped["mldr"] = str(exc)
    if not config.use_qmsum:
        skipped["qmsum"] = "use_qmsum is off"
        return sources, skipped
    qmsum, why = read_qmsum_split("train", config.qmsum_meetings)
    if qmsum is not None:
        sources["qmsum"] = qmsum
    else:
        skipped["qmsum"] = why
    return sources, skipped


def val_sets(config: ReaderStageConfig) -> dict[str, Dataset]:
    sets: dict[str, Dataset] = {}
    try:
        sets["mldr-val"] = sample_queries(load_split("val"), config.val_queries)
    except FileNotFoundError as exc:
        log.info("no MLDR val to judge the reader on: %s", exc)
    if config.use_qmsum:
        qmsum, _why = read_qmsum_split("val", config.qmsum_val_meetings)
        if qmsum is not None:
            sets["qmsum-val"] = sample_queries(qmsum, config.val_queries)
    return sets


def run_reader(config: ReaderStageConfig | None = None) -> dict[str, Any]:
    """Train, judge on val against the current champion, save, log and (maybe) promote."""
    config = config or ReaderStageConfig()
    sources, skipped = training_sources(config)
    if not sources:
        raise FileNotFoundError(f"no training data for the reader: {skipped}")
    encoder = TextEncoder.get(config.train.encoder)
    started = time.perf_counter()
    weights = train_reader(sources, config.train, encoder=encoder)
    trained = Reader(weights, encoder)
    sets = val_sets(config)
    scores = {name: reader_f1(trained, data) for name, data in sets.items()}
    reference = weights.reference()
    reference_scores = (
        {name: reader_f1(Reader(reference, encoder), data) for name, data in sets.items()}
        if reference is not None
        else {}
    )
    champion_file = champion_path()
    champion_scores: dict[str, dict[str, float]] = {}
    outdated = ""
    if champion_file is not None:
        champion_weights = ReaderWeights.load(champion_file)
        if champion_weights.features != weights.features:
            # This code cannot compute the old checkpoint's features: it cannot serve either.
            outdated = f"the champion {champion_file} reads features this code no longer computes"
        else:
            champion = Reader(champion_weights, encoder)
            champion_scores = {name: reader_f1(champion, data) for name, data in sets.items()}
    wins = {name: scores[name]["f1"] > champion_scores[name]["f1"] for name in champion_scores}
    promote = bool(scores) and all(wins.values())
    if champion_file is None or outdated:
        reasons = [outdated or "no champion yet"]
    else:
        reasons = [
            f"{name}: F1 {scores[name]['f1']:.3f} vs champion {champion_scores[name]['f1']:.3f}"
            for name in champion_scores
        ]
    run = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    weights.metrics = {**weights.metrics, "val": scores}
    path = weights.save(reader_dir() / run / "reader.json")
    if promote:
        pointer = reader_dir() / "champion.json"
        pointer.write_text(
            json.dumps({"path": str(path), "val": scores, "promoted_at": run}, indent=1),
            encoding="utf-8",
        )
    summary: dict[str, Any] = {
        "path": str(path),
        "sources": {name: len(d.queries) for name, d in sources.items()},
        "skipped_sources": skipped,
        "train": weights.metrics,
        "decode": weights.decode.model_dump(),
        "decode_long": weights.decode_long.model_dump() if weights.decode_long else None,
        "val": scores,
        "reference_val": reference_scores,
        "champion_val": champion_scores,
        "promoted": promote,
        "reasons": reasons,
        "seconds": round(time.perf_counter() - started, 1),
    }
    if config.mlflow:
        summary.update(_log(path, config, summary))
    return summary


def _log(path: Path, config: ReaderStageConfig, summary: dict[str, Any]) -> dict[str, Any]:
    import mlflow

    alias = "champion" if summary["promoted"] else "challenger"
    with start_run("reader", run_name="reader-train", params=config.train.model_dump()) as run:
        metrics = {
            f"{name}.{key}": float(value)
            for name, values in summary["val"].items()
            for key, value in values.items()
            if isinstance(value, int | float) and np.isfinite(value)
        }
        metrics.update(
            {
                f"{name}.reference_f1": float(values["f1"])
                for name, values in summary["reference_val"].items()
            }
        )
        metrics["promoted"] = float(summary["promoted"])
        mlflow.log_metrics(metrics)
        mlflow.set_tags({"promotion": alias, "decision": " | ".join(summary["reasons"])[:5000]})
        mlflow.log_artifact(str(path), artifact_path="reader")
        run_id = run.info.run_id
    version = register_model_version(run_id, "reader", "ffr-reader", alias=alias)
    return {"mlflow_run_id": run_id, "model_version": version, "alias": alias}
