"""F2RVLM, the generative fragment retriever: `f2rvlm_sft` -> `f2rvlm_curriculum` -> `f2rvlm_grpo`.

Each asset's value is a small summary dict (paths, run ids, metrics), never a live model.
No `from __future__ import annotations` in asset modules: Dagster resolves Config types at runtime.
"""

from pathlib import Path
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
    asset_check,
)

from ffr_assets.config import from_library
from ffr_assets.execution import TRAINING_POOL, check_profile_fits_step, training_step
from ffr_assets.resources import MlflowResource
from ffr_lib.f2rvlm.stage import F2RVLMStageConfig, run_curriculum, run_grpo, run_sft
from ffr_lib.ffrs.serving import FineStageJudgeConfig, judge_fine_stage


class F2RVLMConfig(Config):
    """Defaults are F2RVLMStageConfig's."""

    profile: str = from_library(
        F2RVLMStageConfig,
        "profile",
        "paper (Qwen2-VL on GPUs) | cpu-small (~30 min, the demo) | cpu-small-windowed | cpu-full "
        "(hours) | gpu (SmolLM2, one accelerator) | tiny (tests); default FFR_F2RVLM_PROFILE, "
        "which on Kubernetes also picks the step's pod",
    )
    backbone: str | None = from_library(
        F2RVLMStageConfig, "backbone", "override the profile's backbone: alias, folder or hub id"
    )
    seed: int = from_library(F2RVLMStageConfig, "seed", "sampling of training prompts")


class F2RVLMGRPOConfig(F2RVLMConfig):
    """The training settings plus the fine-stage verdict's size."""

    judge_queries: int | None = from_library(FineStageJudgeConfig, "val_queries")


def _stage_config(config: F2RVLMConfig) -> F2RVLMStageConfig:
    check_profile_fits_step(config.profile)
    return F2RVLMStageConfig(profile=config.profile, backbone=config.backbone, seed=config.seed)


def _metadata(summary: dict) -> dict:
    metadata: dict[str, Any] = {}
    for key, value in summary.items():
        if key.endswith("_dir") or key == "path":
            metadata[key] = MetadataValue.path(value)
        elif isinstance(value, bool | int | float | str) or value is None:
            metadata[key] = value if value is not None else "none"
        else:
            metadata[key] = MetadataValue.json(value)
    return metadata


@asset(
    group_name="f2rvlm",
    deps=["mldr_splits"],
    description="Cold-start SFT of the generative retriever: LoRA (r=8, alpha=32, all linear "
    "layers) with trl's SFTTrainer on fragment-local window prompts of the MLDR train split. "
    "Logged to MLflow and registered as `f2rvlm-sft`.",
    owners=["team:ffr"],
    kinds={"pytorch", "mlflow"},
    op_tags=training_step(),
    pool=TRAINING_POOL,
)
def f2rvlm_sft(context: AssetExecutionContext, config: F2RVLMConfig, mlflow: MlflowResource):
    mlflow.configure()
    summary = run_sft(_stage_config(config))
    context.log.info(f"SFT adapter at {summary['adapter_dir']} ({summary['records']} records)")
    return Output(summary, metadata=_metadata(summary))


@asset(
    group_name="f2rvlm",
    ins={"f2rvlm_sft": AssetIn()},
    deps=["mldr_splits"],
    description="Difficulty-aware curriculum: the SFT model answers train prompts keeping token "
    "probabilities; F1 and entropy quartiles sort them into easy / middle / confusing / hard, "
    "filtered and ordered easy -> hard as METHOD.md prescribes.",
    owners=["team:ffr"],
    kinds={"pytorch"},
    op_tags=training_step(),
    pool=TRAINING_POOL,
)
def f2rvlm_curriculum(context: AssetExecutionContext, config: F2RVLMConfig, f2rvlm_sft: dict):
    summary = run_curriculum(_stage_config(config), f2rvlm_sft["adapter_dir"])
    context.log.info(f"curriculum classes {summary.get('class_counts')}")
    return Output(summary, metadata=_metadata(summary))


@asset(
    group_name="f2rvlm",
    ins={"f2rvlm_sft": AssetIn(), "f2rvlm_curriculum": AssetIn()},
    description="GRPO with the multi-objective rewards (F1 with length penalty, fragment "
    "coherence, format) over the curriculum in order, from the SFT model. Logged to MLflow and "
    "registered as `f2rvlm-grpo`; the retriever of `ffr retrieve`. Then judged against the "
    "champion reader on the same MLDR val queries: FFRS serves F2RVLM as its fine stage only "
    "when it beats the reader (fine_stage.json; check `serves_fine_stage`).",
    owners=["team:ffr"],
    kinds={"pytorch", "mlflow"},
    op_tags=training_step(),
    pool=TRAINING_POOL,
    check_specs=[
        AssetCheckSpec(
            "serves_fine_stage",
            asset="f2rvlm_grpo",
            description="F2RVLM beat the champion reader on the same MLDR val queries, so FFRS "
            "serves it (a warning when the reader keeps serving)",
        )
    ],
)
def f2rvlm_grpo(
    context: AssetExecutionContext,
    config: F2RVLMGRPOConfig,
    mlflow: MlflowResource,
    f2rvlm_sft: dict,
    f2rvlm_curriculum: dict,
):
    mlflow.configure()
    summary = run_grpo(_stage_config(config), f2rvlm_sft["adapter_dir"], f2rvlm_curriculum["path"])
    context.log.info(f"GRPO adapter at {summary['adapter_dir']}")
    verdict = judge_fine_stage(
        Path(summary["adapter_dir"]), FineStageJudgeConfig(val_queries=config.judge_queries)
    )
    context.log.info(verdict["reason"])
    summary["fine_stage"] = verdict
    yield Output(summary, metadata=_metadata(summary))
    yield AssetCheckResult(
        check_name="serves_fine_stage",
        passed=verdict["serves"] == "f2rvlm",
        severity=AssetCheckSeverity.WARN,
        metadata={"reason": verdict["reason"], "val": MetadataValue.json(verdict.get("val"))},
    )


@asset_check(asset=f2rvlm_grpo, description="The trained LoRA weights are finite and non-zero.")
def f2rvlm_grpo_weights_finite(f2rvlm_grpo: dict) -> AssetCheckResult:
    from ffr_lib.f2rvlm.backbone import adapter_weight_stats

    stats = adapter_weight_stats(f2rvlm_grpo["adapter_dir"])
    return AssetCheckResult(
        passed=stats["finite"] and stats["nonzero"],
        severity=AssetCheckSeverity.ERROR,
        metadata={k: v for k, v in stats.items()},
    )
