"""Stage 1: cold-start SFT of F2RVLM with trl's SFTTrainer and a LoRA adapter.

Records are conversational prompt-completion pairs (see ``retriever.training_records``); trl
then computes the loss on the completion only. The adapter folder gets ``ffr_adapter.json``
(base model, profile) so that inference and GRPO can rebuild the model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ffr_lib.f2rvlm.backbone import Backbone, load_backbone, lora_config, write_adapter_meta
from ffr_lib.f2rvlm.profiles import F2RVLMProfile
from ffr_lib.progress import trainer_progress
from ffr_lib.threads import use_cpu
from ffr_lib.tracking import register_model_version, start_run


@dataclass
class TrainResult:
    """What a trainer returns: the adapter folder, metrics, and the MLflow run (if tracked)."""

    adapter_dir: Path
    metrics: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None


def common_trainer_args(profile: F2RVLMProfile, output_dir: Path) -> dict[str, Any]:
    """Settings SFT and GRPO share: no checkpoints or reporters, full precision on CPU."""
    return {
        "output_dir": str(output_dir / "trainer"),
        "save_strategy": "no",
        "report_to": [],
        "use_cpu": use_cpu(profile.device),
        "bf16": False,
        "fp16": False,
        "seed": profile.seed,
        # Progress comes from ffr_lib.progress.trainer_progress (a bar at a terminal and log
        # lines in Dagster) instead of the trainer's own tqdm bar.
        "disable_tqdm": True,
        # trl turns checkpointing on by default; a 135M model fits easily and recomputing
        # activations costs ~30% more CPU time.
        "gradient_checkpointing": False,
    }


def train_and_save(trainer: Any, backbone: Backbone, output_dir: Path) -> tuple[Any, float, Path]:
    """Train, then save the adapter and the tokenizer; returns (train output, seconds, folder)."""
    started = time.perf_counter()
    output = trainer.train()
    seconds = time.perf_counter() - started
    adapter_dir = output_dir / "adapter"
    trainer.model.save_pretrained(str(adapter_dir))
    # The tokenizer (with the markers) documents the vocabulary; inference rebuilds it from the
    # base (an offline VLM processor without video processor cannot be saved whole).
    backbone.tokenizer.save_pretrained(str(adapter_dir))
    return output, seconds, adapter_dir


def log_to_mlflow(
    experiment: str,
    run_name: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    adapter_dir: Path,
    model_name: str | None,
) -> str:
    """Log params, metrics and the adapter folder; register it as ``model_name``."""
    import mlflow

    with start_run(experiment, run_name=run_name, params=params) as run:
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        mlflow.log_artifacts(str(adapter_dir), artifact_path="adapter")
        run_id = run.info.run_id
    if model_name:
        register_model_version(run_id, "adapter", model_name)
    return run_id


def train_sft(
    profile: F2RVLMProfile,
    records: list[dict[str, Any]],
    output_dir: str | Path,
    backbone: Backbone | None = None,
    track: bool = True,
    experiment: str = "f2rvlm",
) -> TrainResult:
    """Train a LoRA adapter on (prompt, completion) records; returns the adapter folder."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    output_dir = Path(output_dir)
    settings = profile.sft
    if settings.max_examples is not None:
        records = records[: settings.max_examples]
    if not records:
        raise ValueError("SFT needs at least one training record")
    backbone = backbone or load_backbone(
        profile.backbone, profile.backbone_kind, add_markers=profile.add_marker_tokens
    )
    columns = ["prompt", "completion"] + (["images"] if backbone.is_vlm else [])
    dataset = Dataset.from_list([{k: r[k] for k in columns} for r in records])
    config = SFTConfig(
        **common_trainer_args(profile, output_dir),
        learning_rate=settings.learning_rate,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        warmup_steps=settings.warmup_ratio,  # a float < 1 is a ratio in transformers 5
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum,
        max_length=settings.max_length,
        logging_steps=settings.logging_steps,
        dataloader_num_workers=0,
        completion_only_loss=None if backbone.is_vlm else True,
    )
    trainer = SFTTrainer(
        model=backbone.model,
        args=config,
        train_dataset=dataset,
        processing_class=backbone.processor,
        peft_config=lora_config(backbone, profile.lora),
        callbacks=[trainer_progress("F2RVLM SFT")],
    )
    output, seconds, adapter_dir = train_and_save(trainer, backbone, output_dir)
    write_adapter_meta(
        adapter_dir,
        {
            "stage": "sft",
            "base": backbone.source,
            "kind": backbone.kind,
            "parents": [],
            "profile": profile.model_dump(mode="json"),
        },
    )
    metrics = {
        "sft_train_loss": float(output.training_loss),
        "sft_examples": float(len(records)),
        "sft_seconds": seconds,
        "sft_seconds_per_example": seconds / max(1.0, len(records) * settings.epochs),
    }
    run_id = None
    if track:
        run_id = log_to_mlflow(
            experiment,
            f"sft-{profile.name}",
            {"stage": "sft", **profile.model_dump(mode="json")},
            metrics,
            adapter_dir,
            model_name="f2rvlm-sft",
        )
    trainer.model = None  # release the model before the caller loads the next stage
    return TrainResult(adapter_dir, metrics, run_id)
