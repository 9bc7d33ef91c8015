"""`evaluation_report`: FFRS and every baseline on the MLDR-style val split, in one run.

No `from __future__ import annotations` in asset modules: Dagster resolves Config types at runtime.
"""

import base64
import math

from dagster import AssetExecutionContext, AssetIn, Config, MetadataValue, Output, asset
from pydantic import Field

from ffr_assets.execution import TRAINING_POOL, training_step
from ffr_assets.resources import DatabaseResource, MlflowResource


class EvaluationReportConfig(Config):
    split: str = Field(default="val", description="MLDR split to evaluate: val | test")
    limit: int | None = Field(
        default=None, description="N queries only, spread evenly over the split (None = all)"
    )
    reader_limit: int | None = Field(
        default=None,
        description="queries the F2RVLM systems score, spread over the evaluated ones (None = "
        "all); every system is also scored on exactly those",
    )
    k: int = Field(default=20, description="fragments FEM / FFRS recall per query")
    systems: list[str] | None = Field(
        default=None, description="systems to run (None = the default list, see `ffr eval --help`)"
    )
    corpus_queries: str = Field(
        default="both",
        description="corpus mode: both | as-written | corpus-style (the query variants that "
        "name their chat); the demo scores corpus-style only",
    )


@asset(
    group_name="evaluation",
    # The reader is read from its champion pointer (FFR_MODELS_DIR/reader/champion.json).
    deps=["fragment_index", "mldr_splits", "reader_checkpoint"],
    ins={"f2rvlm_grpo": AssetIn()},
    description="Every system on the same queries in one run: BM25 (utterances, fragments), "
    "dense MiniLM, FEM alone, the trained reader, FFRS (whole fragment vs F2RVLM's pick), F2RVLM alone, position "
    "prior, word-overlap and MiniLM windows. Micro P/R/F1/MCC per modality and joint, macro F1, "
    "exact match, Recall@K, MRR, nDCG@10, latency per stage, by length bucket and query family. "
    "Written to reports/<run>/ and reports/latest/ and logged to MLflow.",
    owners=["team:ffr"],
    kinds={"python", "mlflow"},
    # It runs the trained F2RVLM: the same pod (GPU under a GPU profile) and cap as training.
    op_tags=training_step(),
    pool=TRAINING_POOL,
)
def evaluation_report(
    context: AssetExecutionContext,
    config: EvaluationReportConfig,
    database: DatabaseResource,
    mlflow: MlflowResource,
    f2rvlm_grpo: dict,
):
    from ffr_lib.evaluation.run import EvaluationConfig, run_evaluation

    mlflow.configure()
    result = run_evaluation(
        EvaluationConfig(
            split=config.split,
            limit=config.limit,
            reader_limit=config.reader_limit,
            k=config.k,
            systems=config.systems,
            corpus_queries=config.corpus_queries,
            model=f2rvlm_grpo["adapter_dir"],
            build=False,
            run_name=f"asset-{context.run_id[:8]}",
        ),
        url=database.resolved_url(),
    )
    metadata = {
        "report": MetadataValue.md(result.markdown[:60000]),
        "run_dir": MetadataValue.path(str(result.run_dir)),
        "latest": MetadataValue.path(str(result.latest_dir)),
        "mlflow_run_id": result.mlflow_run_id or "none",
    }
    plots = []
    for path in result.files:
        if path.suffix == ".png" and path.parent == result.run_dir:
            metadata[f"plot/{path.stem}"] = MetadataValue.path(str(path))
            encoded = base64.b64encode(path.read_bytes()).decode("ascii")
            plots.append(f"### {path.stem}\n\n![{path.stem}](data:image/png;base64,{encoded})\n")
    if plots:
        # The plots themselves, shown in the asset's metadata panel of the UI.
        metadata["plots"] = MetadataValue.md("\n".join(plots))
    # Headline figures as numbers: the UI charts them across materializations.
    for dataset, per_system in result.metrics.items():
        for system, figures in per_system.items():
            for key in ("f1", "macro_f1", "recall@10", "mrr"):
                value = figures.get(key)
                if isinstance(value, float) and math.isfinite(value):
                    metadata[f"{dataset}/{system}/{key}"] = value
    return Output(
        {"run_dir": str(result.run_dir), "latest": str(result.latest_dir)}, metadata=metadata
    )
