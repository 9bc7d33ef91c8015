"""The F2RVLM stages as the asset graph runs them: SFT, the curriculum pass, GRPO.

Each stage reads the MLDR-style train split written by the `mldr_splits` stage (its folder comes
from ``ffr_lib.mldr.splits.split_dir``, the one place split paths are built), writes its output
under ``$FFR_HOME/f2rvlm/<stage>/`` and returns a JSON-able summary. Records are shuffled with a
seed before capping, so a small profile still sees every query family.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from ffr_lib.data.dataset import Dataset
from ffr_lib.f2rvlm.difficulty import score_records
from ffr_lib.f2rvlm.grpo import curriculum_order, train_grpo
from ffr_lib.f2rvlm.hints import default_embedder
from ffr_lib.f2rvlm.profiles import F2RVLMProfile, get_profile
from ffr_lib.f2rvlm.retriever import training_records
from ffr_lib.f2rvlm.sft import train_sft
from ffr_lib.mldr.stage import load_split
from ffr_lib.settings import F2RVLM_PROFILE, get_settings

CURRICULUM_FILE = "curriculum.jsonl"


class F2RVLMStageConfig(BaseModel):
    profile: str = Field(
        default_factory=F2RVLM_PROFILE.get,
        description="paper | cpu-small | cpu-small-windowed | cpu-full | gpu | tiny "
        "(default FFR_F2RVLM_PROFILE, cpu-small)",
    )
    backbone: str | None = Field(None, description="override the profile's backbone")
    mldr_dir: Path | None = Field(
        None, description="folder of the MLDR splits; None = where mldr_splits writes them"
    )
    out_dir: Path | None = Field(None, description="default: $FFR_HOME/f2rvlm")
    track: bool = Field(True, description="log runs to MLflow and register adapters")
    seed: int = 0

    def resolved_profile(self) -> F2RVLMProfile:
        overrides: dict[str, Any] = {"seed": self.seed}
        if self.backbone:
            overrides["backbone"] = self.backbone
        return get_profile(self.profile, **overrides)

    def stage_dir(self, stage: str) -> Path:
        return (self.out_dir or get_settings().home / "f2rvlm") / stage


def embed_for(profile: F2RVLMProfile) -> Any:
    """The embed function the profile's hints need (None for word-overlap hints)."""
    return default_embedder(profile.hints)


def build_records(
    dataset: Dataset, profile: F2RVLMProfile, max_queries: int | None, seed: int = 0
) -> list[dict[str, Any]]:
    """Training records of a seeded sample of the split's queries (one per query in the
    profile's whole shape, windows in the windowed shape: ``retriever.training_records``),
    shuffled so any prefix mixes query types and families."""
    queries = [q for q in dataset.queries if q.dialogue_id is not None]
    rng = random.Random(seed)
    rng.shuffle(queries)
    if max_queries is not None:
        queries = queries[:max_queries]
    records = training_records(
        dataset.dialogue_by_id(), queries, profile, embed=embed_for(profile), seed=seed
    )
    rng.shuffle(records)
    return records


def run_sft(config: F2RVLMStageConfig) -> dict[str, Any]:
    profile = config.resolved_profile()
    train = load_split("train", config.mldr_dir)
    records = build_records(train, profile, profile.sft.max_examples, config.seed)
    result = train_sft(profile, records, config.stage_dir("sft"), track=config.track)
    return {
        "adapter_dir": str(result.adapter_dir),
        "run_id": result.run_id,
        "records": len(records),
        "profile": profile.name,
        "backbone": profile.backbone,
        "metrics": result.metrics,
    }


def run_curriculum(config: F2RVLMStageConfig, sft_adapter: str | Path) -> dict[str, Any]:
    """Score train records with the SFT model, order them easy -> hard, write them as JSONL."""
    profile = config.resolved_profile()
    train = load_split("train", config.mldr_dir)
    # Another seed than SFT's sample, so GRPO also sees prompts SFT did not train on.
    records = build_records(train, profile, profile.curriculum.max_examples, config.seed + 1)
    scores = score_records(sft_adapter, records, profile)
    ordered, meta = curriculum_order(scores)
    out = config.stage_dir("curriculum")
    out.mkdir(parents=True, exist_ok=True)
    path = out / CURRICULUM_FILE
    with path.open("w", encoding="utf-8") as lines:
        for record in ordered:
            lines.write(json.dumps(record, ensure_ascii=False) + "\n")
    return {
        "path": str(path),
        "scored": len(records),
        "kept": len(ordered),
        "mean_f1": sum(scores.f1) / len(scores.f1) if scores.f1 else 0.0,
        "seconds": scores.seconds,
        **meta,
    }


def read_curriculum(path: str | Path) -> list[dict[str, Any]]:
    with Path(path).open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def run_grpo(
    config: F2RVLMStageConfig, sft_adapter: str | Path, curriculum_path: str | Path
) -> dict[str, Any]:
    """GRPO over the curriculum-ordered records (no shuffling) from the SFT adapter."""
    profile = config.resolved_profile()
    records = read_curriculum(curriculum_path)
    result = train_grpo(profile, records, sft_adapter, config.stage_dir("grpo"), track=config.track)
    return {
        "adapter_dir": str(result.adapter_dir),
        "run_id": result.run_id,
        "records": len(records),
        "metrics": result.metrics,
    }
