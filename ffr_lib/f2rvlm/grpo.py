"""Stage 2: GRPO of F2RVLM with trl's GRPOTrainer, on top of the merged SFT model.

- The SFT adapter is merged into the base; a fresh LoRA adapter is trained on top, so the
  frozen reference model of the KL term (adapter disabled) is the SFT model, as in the paper.
- Data order is the curriculum's (easy -> middle -> confusing -> hard): ``shuffle_dataset=False``
  makes trl's RepeatSampler walk the dataset in order.
- Dynamic sampling (DAPO, as the paper): trl 1.16 has no resampling of zero-variance groups
  (it only logs ``frac_reward_zero_std``), so a pre-pass samples a few completions per prompt
  with the SFT model and drops prompts whose R_F1 is the same for all of them: those groups
  have zero advantage and would cost a generation step for no gradient.
- CPU needs ``use_cpu=True, bf16=False, fp16=False, use_vllm=False``; the generation batch is
  ``num_generations * prompts_per_step``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ffr_lib.f2rvlm.backbone import (
    Backbone,
    load_trained,
    lora_config,
    read_adapter_meta,
    write_adapter_meta,
)
from ffr_lib.f2rvlm.curriculum import build_curriculum
from ffr_lib.f2rvlm.difficulty import ScoredRecords
from ffr_lib.f2rvlm.profiles import F2RVLMProfile
from ffr_lib.f2rvlm.rewards import build_rewards, make_f1_reward, needs_embed
from ffr_lib.f2rvlm.sft import (
    TrainResult,
    common_trainer_args,
    log_to_mlflow,
    train_and_save,
)
from ffr_lib.models.encoder import get_text_encoder
from ffr_lib.progress import trainer_progress

REWARD_COLUMNS = (
    "prompt",
    "solution",
    "gold_utterance_ids",
    "gold_image_ids",
    "utterance_texts",
    "image_texts",
    "image_owner",
)


def curriculum_order(scores: ScoredRecords) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Records in curriculum order (classes, filtering) and the class counts."""
    result = build_curriculum(scores.curriculum_samples())
    ordered = [scores.records[i] for i in result.order]
    meta = {
        "class_counts": result.class_counts,
        "kept_counts": result.kept_counts,
        "dropped_empty": result.dropped_empty,
    }
    return ordered, meta


def zero_variance_filter(
    backbone: Backbone,
    records: list[dict[str, Any]],
    profile: F2RVLMProfile,
) -> tuple[list[dict[str, Any]], int]:
    """Drop records whose sampled completions all get the same R_F1 (DAPO dynamic sampling,
    done ahead of training). Returns the kept records (order kept) and the number dropped."""
    import torch

    n = profile.grpo.presample_generations
    reward = make_f1_reward(profile.answer_form)
    tokenizer = backbone.tokenizer
    tokenizer.padding_side = "left"
    model = backbone.model
    kept: list[dict[str, Any]] = []
    for record in records:
        text = backbone.processor.apply_chat_template(
            record["prompt"], tokenize=False, add_generation_prompt=True
        )
        if backbone.is_vlm:
            inputs = backbone.processor(
                text=[text], images=record.get("images") or None, return_tensors="pt"
            )
        else:
            inputs = tokenizer([text], return_tensors="pt", add_special_tokens=False)
        inputs = inputs.to(model.device)
        with torch.no_grad():
            sequences = model.generate(
                **inputs,
                do_sample=True,
                temperature=profile.grpo.temperature,
                top_p=profile.grpo.top_p,
                num_return_sequences=n,
                max_new_tokens=profile.grpo.max_completion_length,
                pad_token_id=tokenizer.pad_token_id,
            )
        completions = tokenizer.batch_decode(
            sequences[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True
        )
        rewards = reward(completions, **{k: [record[k]] * n for k in ("solution",)})
        if float(np.std(rewards)) > 1e-9:
            kept.append(record)
    return kept, len(records) - len(kept)


def _default_embed() -> Any:
    encoder = get_text_encoder()
    return lambda texts: np.asarray(encoder.encode(list(texts)))


def train_grpo(
    profile: F2RVLMProfile,
    records: list[dict[str, Any]],
    sft_adapter: str | Path,
    output_dir: str | Path,
    scores: ScoredRecords | None = None,
    embed: Any = None,
    track: bool = True,
    experiment: str = "f2rvlm",
    reward_override: tuple[list[Any], list[float]] | None = None,
) -> TrainResult:
    """GRPO on ``records`` (curriculum-ordered when ``scores`` is given) starting from the SFT
    adapter; returns the GRPO adapter folder (its meta chains to the SFT adapter).
    ``reward_override`` replaces the F2RVLM rewards (functions, weights), for experiments."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    output_dir = Path(output_dir)
    settings = profile.grpo
    curriculum_meta: dict[str, Any] = {}
    if scores is not None and profile.curriculum.enabled:
        records, curriculum_meta = curriculum_order(scores)
    if settings.max_examples is not None:
        records = records[: settings.max_examples]
    backbone = load_trained(sft_adapter)
    dropped = 0
    if settings.dynamic_sampling:
        needed = settings.max_steps * settings.prompts_per_step if settings.max_steps > 0 else None
        pool = records if needed is None else records[: max(needed * 3, needed)]
        records, dropped = zero_variance_filter(backbone, pool, profile)
    if not records:
        raise ValueError("GRPO has no training record left (all groups had zero reward variance)")
    if reward_override is not None:
        funcs, reward_weights = reward_override
    else:
        weights = settings.reward_weights
        if embed is None and needs_embed(settings.rewards, weights):
            embed = _default_embed()
        funcs, reward_weights = build_rewards(weights, embed, profile.answer_form, settings.rewards)
    columns = list(REWARD_COLUMNS) + (["images"] if backbone.is_vlm else [])
    dataset = Dataset.from_list([{k: r[k] for k in columns if k in r} for r in records])
    batch = settings.num_generations * settings.prompts_per_step
    config = GRPOConfig(
        **common_trainer_args(profile, output_dir),
        learning_rate=settings.learning_rate,
        num_generations=settings.num_generations,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=1,
        max_steps=settings.max_steps,
        num_train_epochs=1,
        beta=settings.beta,
        epsilon=settings.epsilon,
        epsilon_high=settings.epsilon_high,
        temperature=settings.temperature,
        top_p=settings.top_p,
        max_completion_length=settings.max_completion_length,
        shuffle_dataset=False,
        reward_weights=reward_weights,
        logging_steps=settings.logging_steps,
        use_vllm=False,
    )
    trainer = GRPOTrainer(
        model=backbone.model,
        reward_funcs=funcs,
        args=config,
        train_dataset=dataset,
        processing_class=backbone.processor,
        peft_config=lora_config(backbone, profile.lora),
        callbacks=[trainer_progress("F2RVLM GRPO", metric="reward")],
    )
    output, seconds, adapter_dir = train_and_save(trainer, backbone, output_dir)
    sft_meta = read_adapter_meta(Path(sft_adapter))
    write_adapter_meta(
        adapter_dir,
        {
            "stage": "grpo",
            "base": sft_meta["base"],
            "kind": sft_meta.get("kind", "auto"),
            "parents": [*sft_meta.get("parents", []), str(Path(sft_adapter).resolve())],
            "profile": profile.model_dump(mode="json"),
            "curriculum": curriculum_meta,
        },
    )
    history = [h for h in trainer.state.log_history if "reward" in h]
    steps = max(1, trainer.state.global_step)
    metrics = {
        "grpo_train_loss": float(output.training_loss),
        "grpo_steps": float(trainer.state.global_step),
        "grpo_seconds": seconds,
        "grpo_seconds_per_step": seconds / steps,
        "grpo_prompts": float(len(records)),
        "grpo_zero_variance_dropped": float(dropped),
    }
    if history:
        metrics["grpo_reward_first"] = float(history[0]["reward"])
        metrics["grpo_reward_last"] = float(history[-1]["reward"])
        metrics["grpo_reward_mean"] = float(np.mean([h["reward"] for h in history]))
    # How far the policy moved from the SFT model (trl logs the KL term when beta > 0): the
    # figure that says whether GRPO changed anything at this scale (BENCHMARKS.md).
    kl = [float(h["kl"]) for h in history if "kl" in h]
    if kl:
        metrics["grpo_kl_mean"] = float(np.mean(kl))
        metrics["grpo_kl_last"] = kl[-1]
    for name, count in curriculum_meta.get("kept_counts", {}).items():
        metrics[f"curriculum_kept_{name}"] = float(count)
    run_id = None
    if track:
        run_id = log_to_mlflow(
            experiment,
            f"grpo-{profile.name}",
            {"stage": "grpo", "sft_adapter": str(sft_adapter), **profile.model_dump(mode="json")},
            metrics,
            adapter_dir,
            model_name="f2rvlm-grpo",
        )
    return TrainResult(adapter_dir, metrics, run_id)
