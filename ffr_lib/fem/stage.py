"""The `fem_checkpoint` stage: fine-tune the FEM on the MLDR train split, compare it with the base
model in-domain (val), on question-style queries and out-of-source (dialogues of another source
built the same way), log to MLflow and register it; `champion` only when it wins everywhere.

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
from ffr_lib.fem.train import FemTrainConfig, train_fem, train_params
from ffr_lib.mldr.stage import load_split
from ffr_lib.models.encoder import TextEncoder
from ffr_lib.settings import get_settings
from ffr_lib.store import load_dialogues


class FemStageConfig(BaseModel):
    train: FemTrainConfig = Field(default_factory=lambda: FemTrainConfig(max_pairs=2000))
    val_queries: int | None = Field(400, ge=1, description="val queries scored (None = all)")
    out_of_source: str = Field(
        "chitchat", description="stored dialogue source for the out-of-source evaluation set"
    )
    out_of_source_dialogues: int = Field(30, ge=1)
    out_dir: Path | None = Field(None, description="default: $FFR_HOME/fem")


def _capped(dataset: Dataset, n: int | None) -> Dataset:
    if n is None or len(dataset.queries) <= n:
        return dataset
    step = len(dataset.queries) / n  # an even spread keeps every family and type
    queries = [dataset.queries[int(i * step)] for i in range(n)]
    return Dataset(dialogues=dataset.dialogues, queries=queries, metadata=dataset.metadata)


def run_fem(url: str | None, config: FemStageConfig) -> dict[str, Any]:
    out_dir = config.out_dir or get_settings().home / "fem"
    train = load_split("train")
    val = _capped(load_split("val"), config.val_queries)
    result = train_fem(train, out_dir / "model", config.train)
    base = TextEncoder.get(config.train.base_model)
    # The folder was just overwritten: an encoder loaded from it earlier in this process (and
    # its memo of vectors) is stale.
    TextEncoder.forget(str(result.model_dir))
    tuned = TextEncoder.get(str(result.model_dir))
    eval_sets = {"val": val, "questions": question_style(val)}
    sources = [d for d in load_dialogues(url=url) if d.source == config.out_of_source]
    if len(sources) >= 3:
        eval_sets["out_of_source"] = out_of_source_set(
            sources[: config.out_of_source_dialogues * 3], config.out_of_source_dialogues
        )
    report = compare_models(base, tuned, eval_sets)
    decision = promotion_decision(report)
    logged = log_fem_run(
        result.model_dir, train_params(config.train), report, decision, losses=result.losses
    )
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
        "steps": result.steps,
        "train_seconds": result.seconds,
        **logged,
    }
