"""`fem_checkpoint` and `fragment_index`: the Fragment Embedding Model and the pgvector index.

No `from __future__ import annotations` in asset modules: Dagster resolves Config types at runtime.
"""

from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    Config,
    MetadataValue,
    Output,
    asset,
)

from ffr_assets.config import from_library
from ffr_assets.execution import CPU_HEAVY_STEP, TRAINING_POOL, training_step
from ffr_assets.partitions import dialogue_batches
from ffr_assets.resources import DatabaseResource, MlflowResource
from ffr_lib.fem.stage import QMSUM_VAL, FemStageConfig, run_fem
from ffr_lib.fem.train import FemTrainConfig
from ffr_lib.index.stage import IndexStageConfig, run_index


class FemConfig(Config):
    """The knobs worth turning in the UI; defaults are FemTrainConfig's and FemStageConfig's."""

    base_model: str = from_library(
        FemTrainConfig, "base_model", "minilm | multilingual-e5-small | path"
    )
    epochs: int = from_library(FemTrainConfig, "epochs", "passes over the training pairs")
    max_pairs: int = from_library(FemTrainConfig, "max_pairs")
    max_seq_length: int = from_library(FemTrainConfig, "max_seq_length")
    batch_size: int = from_library(FemTrainConfig, "batch_size")
    val_queries: int = from_library(
        FemStageConfig, "val_queries", "val queries scored for the decision"
    )
    qmsum_train_meetings: int | None = from_library(FemStageConfig, "qmsum_train_meetings")
    qmsum_pairs: int | None = from_library(FemStageConfig, "qmsum_pairs")
    qmsum_val_meetings: int | None = from_library(FemStageConfig, "qmsum_val_meetings")


@asset(
    group_name="retrieval",
    # Reads the split files (queries, gold), the fragments of the mldr-train and mldr-val
    # partitions, stored chitchat dialogues for the out-of-source check and, when present,
    # QMSum train/val (FFR_QMSUM_DIR; qmsum_dialogues for the lineage: read by path here).
    deps=["fragments", "mldr_splits", "raw_dialogues", "qmsum_dialogues"],
    description="The Fragment Embedding Model: the packaged MiniLM fine-tuned contrastively on "
    "(query, gold fragment) pairs of the MLDR train split, the fragments being those the "
    "`fragments` asset cut for partition mldr-train (what the index serves), and, when the "
    "QMSum folder is present, on QMSum train's human-marked spans (meetings cut as a new batch "
    "is), with in-batch and same-dialogue hard negatives; judged on the mldr-val fragments. "
    "Registered in MLflow as `ffr-fem`; alias `champion` only when it beats the base model "
    "in-domain AND on question-style, out-of-source and QMSum val queries (QMSum val only when "
    "present; the check's reasons say when it was not), else `challenger` and the base model "
    "keeps serving.",
    owners=["team:ffr"],
    kinds={"pytorch", "mlflow"},
    op_tags=training_step(),
    pool=TRAINING_POOL,
    check_specs=[
        AssetCheckSpec(
            "beats_base_model",
            asset="fem_checkpoint",
            description="fine-tuning beat the base model on every evaluation set (QMSum val "
            "included when its folder is present)",
        )
    ],
)
def fem_checkpoint(
    context: AssetExecutionContext,
    config: FemConfig,
    database: DatabaseResource,
    mlflow: MlflowResource,
):
    mlflow.configure()
    summary = run_fem(
        database.resolved_url(),
        FemStageConfig(
            train=FemTrainConfig(
                base_model=config.base_model,
                epochs=config.epochs,
                max_pairs=config.max_pairs,
                batch_size=config.batch_size,
                max_seq_length=config.max_seq_length,
            ),
            val_queries=config.val_queries,
            qmsum_train_meetings=config.qmsum_train_meetings,
            qmsum_pairs=config.qmsum_pairs,
            qmsum_val_meetings=config.qmsum_val_meetings,
        ),
    )
    for reason in summary["reasons"]:
        context.log.info(reason)
    if not summary["promoted"]:
        context.log.warning("fine-tuned FEM did not beat the base everywhere: base keeps serving")
    metadata: dict[str, Any] = {
        "serving_model": summary["serving_model"],
        "serving_version": summary["serving_version"],
        "promoted": summary["promoted"],
        "mlflow_run_id": summary["run_id"],
        "registered": f"{summary['model_name']} v{summary['version']} ({summary['alias']})",
        "pairs": summary["pairs"],
        "pairs_by_source": MetadataValue.json(summary["pairs_by_source"]),
        "qmsum": MetadataValue.json(summary["qmsum"]),
        "train_fragments": MetadataValue.path(summary["fragments"]["train"]),
        "train_seconds": summary["train_seconds"],
        "reasons": MetadataValue.json(summary["reasons"]),
        "scores": MetadataValue.json(summary["scores"]),
        "report": MetadataValue.json(summary["report"]),
    }
    for set_name, pair in summary["report"].items():
        for which in ("base", "tuned"):
            for k in (1, 5, 10):
                value = pair[which].get(f"recall@{k}")
                if value is not None:
                    metadata[f"{set_name}/{which}/recall@{k}"] = float(value)
    yield Output(summary, metadata=metadata)
    qmsum_val = summary["scores"].get(QMSUM_VAL) or {
        "not checked": summary["qmsum"]["val"].get("skipped", "")
    }
    yield AssetCheckResult(
        check_name="beats_base_model",
        passed=bool(summary["promoted"]),
        severity=AssetCheckSeverity.WARN,
        metadata={
            "reasons": MetadataValue.json(summary["reasons"]),
            # Real meetings, human questions: the gate the synthetic sets cannot stand in for.
            QMSUM_VAL: MetadataValue.json(qmsum_val),
        },
    )


class IndexAssetConfig(Config):
    recall_sample: int = from_library(
        IndexStageConfig, "recall_sample", "queries used by the HNSW recall check"
    )
    cost_sample: int = from_library(IndexStageConfig, "cost_sample")
    cost_curve_path: str | None = from_library(IndexStageConfig, "cost_curve_path")


INDEX_CHECKS = ("no_duplicates", "coverage", "hnsw_recall", "explain_uses_index")


@asset(
    group_name="retrieval",
    deps=["fragments"],
    ins={"fem_checkpoint": AssetIn()},
    partitions_def=dialogue_batches,
    description="One dialogue batch's fragments embedded by the serving FEM and bulk-loaded into "
    "pgvector (binary COPY, HNSW built after the load, ANALYZE). Upsert by content hash; a new "
    "FEM version is built beside the old one and serving flips once it covers every dialogue.",
    owners=["team:ffr"],
    kinds={"postgres", "pgvector"},
    op_tags=CPU_HEAVY_STEP,
    check_specs=[
        AssetCheckSpec(name, asset="fragment_index", description=name.replace("_", " "))
        for name in INDEX_CHECKS
    ],
)
def fragment_index(
    context: AssetExecutionContext,
    config: IndexAssetConfig,
    database: DatabaseResource,
    fem_checkpoint: dict,
):
    summary = run_index(
        database.resolved_url(),
        context.partition_key,
        fem_checkpoint["serving_model"],
        IndexStageConfig(
            recall_sample=config.recall_sample,
            cost_sample=config.cost_sample,
            cost_curve_path=config.cost_curve_path,
        ),
    )
    stats = summary["stats"]
    context.log.info(
        f"{summary['batch']}: {stats['fragments']} fragments, {stats['embedded']} embedded, "
        f"{stats['inserted']} inserted; serving {summary['serving']}"
    )
    yield Output(
        {k: v for k, v in summary.items() if k not in ("checks", "cost_curve")},
        metadata={
            "embedding_model": summary["embedding_model"],
            "dialogues": summary["dialogues"],
            "fragments": stats["fragments"],
            "embedded": stats["embedded"],
            "inserted": stats["inserted"],
            "unchanged": stats["unchanged"],
            "fragments_per_second": summary["fragments_per_second"],
            "serving": MetadataValue.json(summary["serving"]),
            # This build's point of the cost curve (numbers: the UI plots them across runs)
            # beside the benchmarked curve (`make bench`).
            **{f"cost/{name}": value for name, value in summary["cost"].items()},
            "cost_curve": MetadataValue.md(summary["cost_curve"]),
        },
    )
    for name in INDEX_CHECKS:
        check = summary["checks"].get(name)
        yield AssetCheckResult(
            check_name=name,
            passed=bool(check and check["passed"]),
            severity=AssetCheckSeverity.ERROR,
            metadata={"details": MetadataValue.json(check or {"skipped": "no queries"})},
        )
