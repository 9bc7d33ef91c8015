"""`reader_checkpoint`: the trained fine-stage reader (ffr_lib.reader).

No `from __future__ import annotations` in asset modules: Dagster resolves Config types at runtime.
"""

from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    MetadataValue,
    Output,
    asset,
)

from ffr_assets.config import from_library
from ffr_assets.execution import CPU_HEAVY_STEP
from ffr_assets.resources import MlflowResource
from ffr_lib.reader.stage import ReaderStageConfig, run_reader
from ffr_lib.reader.train import ReaderTrainConfig


class ReaderConfig(Config):
    """The knobs worth turning in the UI; defaults are ReaderTrainConfig's and ReaderStageConfig's."""

    encoder: str = from_library(ReaderTrainConfig, "encoder")
    hidden_units: int = from_library(ReaderTrainConfig, "hidden_units")
    l2: float = from_library(ReaderTrainConfig, "l2")
    max_queries: int | None = from_library(ReaderTrainConfig, "max_queries")
    use_qmsum: bool = from_library(ReaderStageConfig, "use_qmsum")
    val_queries: int | None = from_library(ReaderStageConfig, "val_queries")
    qmsum_meetings: int | None = from_library(ReaderStageConfig, "qmsum_meetings")
    qmsum_val_meetings: int | None = from_library(ReaderStageConfig, "qmsum_val_meetings")


@asset(
    group_name="retrieval",
    # Reads the MLDR train/val split files and, when present, QMSum train/val (FFR_QMSUM_DIR;
    # qmsum_dialogues for the lineage: read by path here).
    deps=["mldr_splits", "qmsum_dialogues"],
    description="The fine-stage reader: every utterance scored against the query with its "
    "neighbours (BM25 and dense-encoder z-scores over +-2/5/12 turns, turn shape, speaker and "
    "image-caption matches) by a logistic regression trained on MLDR train and QMSum train "
    "(human spans), decoded into contiguous runs with an abstain threshold tuned on held-aside "
    "dialogues. Registered in MLflow as `ffr-reader`; `champion` (what FFRS serves) only when it "
    "beats the current champion on every val set.",
    owners=["team:ffr"],
    kinds={"numpy", "mlflow"},
    op_tags=CPU_HEAVY_STEP,
    check_specs=[
        AssetCheckSpec(
            "beats_champion",
            asset="reader_checkpoint",
            description="the new reader beat the serving one on every val set (or none served)",
        )
    ],
)
def reader_checkpoint(context: AssetExecutionContext, config: ReaderConfig, mlflow: MlflowResource):
    mlflow.configure()
    summary = run_reader(
        ReaderStageConfig(
            train=ReaderTrainConfig(
                encoder=config.encoder,
                hidden_units=config.hidden_units,
                l2=config.l2,
                max_queries=config.max_queries,
            ),
            use_qmsum=config.use_qmsum,
            val_queries=config.val_queries,
            qmsum_meetings=config.qmsum_meetings,
            qmsum_val_meetings=config.qmsum_val_meetings,
        )
    )
    for name, reason in summary["skipped_sources"].items():
        context.log.warning(f"reader source {name} left out: {reason}")
    for reason in summary["reasons"]:
        context.log.info(reason)
    metadata: dict[str, Any] = {
        "path": MetadataValue.path(summary["path"]),
        "promoted": summary["promoted"],
        "sources": MetadataValue.json(summary["sources"]),
        "decode": MetadataValue.json(summary["decode"]),
        "train_seconds": summary["seconds"],
    }
    for set_name, scores in summary["val"].items():
        for key in ("f1", "micro_f1", "macro_f1", "abstain_rate"):
            value = scores.get(key)
            if isinstance(value, float) and value == value:  # NaN when no negative queries
                metadata[f"{set_name}/{key}"] = value
    for set_name, scores in summary["reference_val"].items():
        metadata[f"{set_name}/reference_f1"] = scores["f1"]  # untrained scorer, same decoding
    if "mlflow_run_id" in summary:
        metadata["mlflow_run_id"] = summary["mlflow_run_id"]
        metadata["registered"] = f"ffr-reader v{summary['model_version']} ({summary['alias']})"
    yield Output(summary, metadata=metadata)
    yield AssetCheckResult(
        check_name="beats_champion",
        passed=bool(summary["promoted"]),
        severity=AssetCheckSeverity.WARN,
        metadata={"reasons": MetadataValue.json(summary["reasons"])},
    )
