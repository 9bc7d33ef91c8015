"""The `mldr_splits` stage: build MLDR-style splits from stored source dialogues, write them as
files (canonical + ms-swift) and store them in Postgres, each split tagged as one dialogue batch.

Called by the Dagster asset and usable on its own; returns a JSON-able summary.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from ffr_lib.data.canonical import read_canonical
from ffr_lib.data.dataset import Dataset
from ffr_lib.mldr.difficulty import family_difficulty
from ffr_lib.mldr.splits import (
    SplitConfig,
    build_splits,
    check_gold_in_range,
    check_no_leakage,
    check_query_mix,
    mldr_dir,
    split_dir,
    write_splits,
)
from ffr_lib.mldr.stats import dataset_stats
from ffr_lib.store import load_dialogues, write_dataset

BATCH_KEY = "batch"


def split_batch(split: str) -> str:
    """Dialogue batch (dynamic partition key) of an MLDR split."""
    return f"mldr-{split}"


class MldrStageConfig(BaseModel):
    source_names: list[str] = Field(
        default_factory=lambda: ["photochat"],
        description="`Dialogue.source` values of stored dialogues to build from",
    )
    max_sources: int | None = Field(None, ge=3, description="use at most this many sources")
    split: SplitConfig = Field(default_factory=SplitConfig)
    out_dir: Path | None = Field(None, description="default: mldr_dir() ($FFR_HOME/data/mldr)")


def tag_batches(splits: dict[str, Dataset]) -> None:
    """Record split and batch on every built dialogue (the partition key of later stages)."""
    for name, dataset in splits.items():
        for dialogue in dataset.dialogues:
            dialogue.metadata["split"] = name
            dialogue.metadata[BATCH_KEY] = split_batch(name)


def build_mldr(url: str | None, config: MldrStageConfig) -> dict:
    """Build, check, write and store the splits. Returns the summary (paths, stats, checks)."""
    sources = [d for d in load_dialogues(url=url) if d.source in set(config.source_names)]
    if config.max_sources is not None:
        sources = sources[: config.max_sources]
    if len(sources) < config.split.builder.profile.topics:
        raise ValueError(
            f"only {len(sources)} stored dialogues have source in {config.source_names}; "
            "materialize raw_dialogues first (or ingest with `ffr ingest`); PhotoChat is read "
            "from FFR_PHOTOCHAT_DIR and skipped when that folder is missing"
        )
    splits = build_splits(sources, config.split)
    tag_batches(splits)
    out_dir = mldr_dir(config.out_dir)
    files = write_splits(splits, out_dir)
    for dataset in splits.values():
        write_dataset(dataset, url=url)
    leak_ok, leak = check_no_leakage(splits)
    checks = {"no_leakage": {"passed": leak_ok, **leak}}
    for name, dataset in splits.items():
        ok, details = check_gold_in_range(dataset)
        checks[f"gold_in_range:{name}"] = {"passed": ok, **details}
        ok, details = check_query_mix(
            dataset, config.split.queries.type_mix, config.split.mix_tolerance
        )
        checks[f"query_mix:{name}"] = {"passed": ok, **details}
    difficulty_split = "val" if "val" in splits else next(iter(splits))
    held_out = splits[difficulty_split]
    difficulty = {
        family: score.model_dump()
        for family, score in sorted(family_difficulty(held_out.queries, held_out.dialogues).items())
    }
    return {
        "out_dir": str(out_dir),
        "family_difficulty": {"split": difficulty_split, "families": difficulty},
        "files": {k: str(v) for k, v in files.items()} if isinstance(files, dict) else files,
        "sources_used": len(sources),
        "batches": {name: split_batch(name) for name in splits},
        "stats": {name: dataset_stats(dataset) for name, dataset in splits.items()},
        "checks": checks,
    }


def load_split(split: str, folder: Path | None = None) -> Dataset:
    """A split written by :func:`build_mldr` (canonical folder :func:`split_dir`)."""
    folder = split_dir(split, folder)
    if not folder.exists():
        raise FileNotFoundError(f"{folder} does not exist: materialize mldr_splits first")
    return read_canonical(folder, check_images=False)
