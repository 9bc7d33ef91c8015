"""Train/val/test splits of built long dialogues, disjoint by *source* dialogue, and their checks.

Sources are assigned to splits first (seeded shuffle) and each split builds its long dialogues
only from its own sources, so no short dialogue is reused across splits. The checks return
``(passed, details)`` so that asset checks and tests can use them directly.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, Field, model_validator

from ffr_lib.data.canonical import write_canonical
from ffr_lib.data.dataset import Dataset
from ffr_lib.data.format.swift import write_swift
from ffr_lib.data.model import Dialogue, QueryType
from ffr_lib.mldr.builder import BuilderConfig, Embed, build_long_dialogues
from ffr_lib.mldr.queries import QueryConfig, generate_queries
from ffr_lib.settings import get_settings


class SplitConfig(BaseModel):
    """Everything that decides the splits; the same config gives the same files."""

    seed: int = 0
    fractions: dict[str, float] = Field(
        default_factory=lambda: {"train": 0.8, "val": 0.1, "test": 0.1}
    )
    builder: BuilderConfig = Field(default_factory=BuilderConfig)
    queries: QueryConfig = Field(default_factory=QueryConfig)
    mix_tolerance: float = Field(0.05, ge=0, le=1, description="allowed deviation per query type")

    @model_validator(mode="after")
    def _fractions_sum_to_one(self) -> SplitConfig:
        total = sum(self.fractions.values())
        if abs(total - 1.0) > 1e-6 or any(v < 0 for v in self.fractions.values()):
            raise ValueError(f"split fractions must be >= 0 and sum to 1, got {self.fractions}")
        return self


def assign_sources(source_ids: Sequence[str], config: SplitConfig) -> dict[str, str]:
    """Source dialogue id -> split name; a seeded shuffle of the sorted ids cut by fraction."""
    ids = sorted(set(source_ids))
    random.Random(f"split:{config.seed}").shuffle(ids)
    out: dict[str, str] = {}
    names = list(config.fractions)
    start = 0
    for k, name in enumerate(names):
        end = len(ids) if k == len(names) - 1 else start + round(config.fractions[name] * len(ids))
        for source_id in ids[start:end]:
            out[source_id] = name
        start = end
    return out


def build_splits(
    sources: Sequence[Dialogue], config: SplitConfig | None = None, embed: Embed | None = None
) -> dict[str, Dataset]:
    """Long dialogues with queries for every split. ``n_dialogues`` of the builder config, when
    set, is the total over all splits (shared by fraction)."""
    config = config or SplitConfig()
    assignment = assign_sources([d.id for d in sources], config)
    out: dict[str, Dataset] = {}
    for k, name in enumerate(config.fractions):
        own = [d for d in sources if assignment.get(d.id) == name]
        builder = config.builder.model_copy(
            update={
                "seed": config.builder.seed * 1000 + k,
                "id_prefix": f"{config.builder.id_prefix}-{name}",
                "n_dialogues": (
                    max(1, round(config.builder.n_dialogues * config.fractions[name]))
                    if config.builder.n_dialogues
                    else None
                ),
            }
        )
        dialogues = build_long_dialogues(own, builder, embed=embed) if own else []
        queries = generate_queries(
            dialogues, config.queries.model_copy(update={"seed": config.queries.seed * 1000 + k})
        )
        out[name] = Dataset(dialogues=dialogues, queries=queries)
    return out


def _sources_of(dialogue: Dialogue) -> set[str]:
    ids = set(dialogue.metadata.get("source_dialogue_ids") or [])
    for p in dialogue.metadata.get("provenance") or []:
        if isinstance(p, dict) and "source_dialogue_id" in p:
            ids.add(p["source_dialogue_id"])
    return ids


def check_no_leakage(splits: dict[str, Dataset]) -> tuple[bool, dict]:
    """No source dialogue (and no long dialogue id) appears in two splits."""
    owner: dict[str, str] = {}
    shared: dict[str, list[str]] = {}
    for name, dataset in splits.items():
        for dialogue in dataset.dialogues:
            for key in _sources_of(dialogue) | {f"dialogue:{dialogue.id}"}:
                if key in owner and owner[key] != name:
                    shared.setdefault(key, [owner[key]]).append(name)
                owner.setdefault(key, name)
    return not shared, {"shared": dict(list(shared.items())[:20]), "n_shared": len(shared)}


def check_gold_in_range(dataset: Dataset) -> tuple[bool, dict]:
    """Every query names a dialogue of the dataset and every gold id lies inside it."""
    by_id = dataset.dialogue_by_id()
    problems: list[str] = []
    for query in dataset.queries:
        dialogue = by_id.get(query.dialogue_id or "")
        if dialogue is None:
            problems.append(f"{query.id}: unknown dialogue {query.dialogue_id}")
            continue
        try:
            query.check_against(dialogue)
        except ValueError as error:
            problems.append(f"{query.id}: {error}")
    return not problems, {"problems": problems[:20], "n_problems": len(problems)}


def check_query_mix(
    dataset: Dataset, type_mix: dict[QueryType, float], tolerance: float = 0.05
) -> tuple[bool, dict]:
    """Each query type's share is within ``tolerance`` of the configured mix; all configured
    types are present."""
    counts = Counter(q.type for q in dataset.queries)
    total = sum(counts.values())
    norm = sum(type_mix.values()) or 1.0
    shares = {str(t): counts.get(t, 0) / total if total else 0.0 for t in QueryType}
    deviations = {str(t): abs(shares[str(t)] - type_mix.get(t, 0.0) / norm) for t in QueryType}
    missing = [str(t) for t, w in type_mix.items() if w > 0 and counts.get(t, 0) == 0]
    passed = total > 0 and not missing and all(d <= tolerance for d in deviations.values())
    return passed, {"shares": shares, "deviations": deviations, "missing": missing}


def mldr_dir(folder: str | Path | None = None) -> Path:
    """The folder the MLDR splits live in: ``folder``, else ``$FFR_HOME/data/mldr``."""
    return Path(folder) if folder is not None else get_settings().home / "data" / "mldr"


def split_dir(split: str, folder: str | Path | None = None) -> Path:
    """The canonical folder of one split, ``<mldr_dir(folder)>/<split>``: the one place split
    paths are built, for :func:`write_splits` and for every reader."""
    return mldr_dir(folder) / split


def write_splits(
    splits: dict[str, Dataset], folder: str | Path | None = None, swift: bool = True
) -> dict:
    """Write each split as a canonical folder :func:`split_dir` and, when ``swift`` is set,
    ``<folder>/swift/<split>.jsonl`` (``folder`` defaults to :func:`mldr_dir`). Returns what was
    written."""
    folder = mldr_dir(folder)
    written: dict[str, object] = {"canonical": {}, "swift": {}}
    for name, dataset in splits.items():
        written["canonical"][name] = str(write_canonical(dataset, split_dir(name, folder)))  # type: ignore[index]
    if swift:
        (folder / "swift").mkdir(parents=True, exist_ok=True)
        for name, dataset in splits.items():
            written["swift"][name] = str(write_swift(dataset, folder / "swift" / f"{name}.jsonl"))  # type: ignore[index]
    return written
