"""LoCoMo evaluation (``ffr eval --dataset locomo --path FILE``).

The reader (:mod:`ffr_lib.data.readers.locomo`) turns each QA into a query whose gold is its
evidence turns (and the images of those turns). Two settings:

(a) ``single``: each question against its own conversation, gold = its evidence utterances;
(b) ``corpus``: all conversations indexed in the fragment index, evidence Recall@K.

Reported separately: categories 1-4 (``group/category=N/...``); category 5 is adversarial (the
answer is not in the chat, a negative query): ``group/category=5/abstain_rate`` is how often a
system correctly returns nothing (also copied to ``adversarial_abstain_rate``); and the subset
whose evidence includes an image turn (``group/evidence=image/...``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ffr_lib.data.dataset import Dataset
from ffr_lib.data.model import Dialogue, Query
from ffr_lib.data.readers import read_dataset
from ffr_lib.evaluation.harness import (
    Corpus,
    CorpusConfig,
    EvalOutput,
    Grouper,
    HarnessConfig,
    System,
    default_groupers,
    evaluate,
)

ADVERSARIAL_CATEGORY = 5


def _category(query: Query, dialogue: Dialogue) -> str | None:
    category = query.metadata.get("category")
    return None if category is None else str(category)


def _evidence(query: Query, dialogue: Dialogue) -> str | None:
    if query.type.value == "negative":
        return None
    return "image" if query.gold_image_ids else "text"


def locomo_groupers(edges: tuple[int, int] = (35, 65)) -> dict[str, Grouper]:
    """Length bucket, query type, QA category and evidence kind (image turn or text only)."""
    groupers = default_groupers(edges)
    groupers.pop("family", None)  # LoCoMo has categories, not generator families
    groupers["category"] = _category
    groupers["evidence"] = _evidence
    return groupers


def read_locomo_dataset(path: str | Path, limit: int | None = None) -> Dataset:
    return read_dataset(path, "locomo", limit=limit)


def evaluate_locomo(
    dataset: Dataset | str | Path,
    systems: Sequence[System],
    *,
    corpus: Corpus | None = None,
    url: str | None = None,
    config: HarnessConfig | None = None,
    corpus_config: CorpusConfig | None = None,
    name: str = "locomo",
    skipped: dict[str, str] | None = None,
) -> EvalOutput:
    """Evaluate ``systems`` on a LoCoMo file (or its read dataset). Without ``corpus`` the
    conversations are stored and indexed in the database at ``url``."""
    if not isinstance(dataset, Dataset):
        dataset = read_locomo_dataset(dataset)
    config = config or HarnessConfig()
    corpus = corpus or Corpus.prepare(dataset, url, corpus_config)
    out = evaluate(
        dataset,
        systems,
        corpus,
        name=name,
        config=config,
        groupers=locomo_groupers(config.length_buckets),
        skipped=skipped,
    )
    key = f"group/category={ADVERSARIAL_CATEGORY}/abstain_rate"
    for per_system in out.metrics.values():
        for metrics in per_system.values():
            if key in metrics:
                metrics["adversarial_abstain_rate"] = metrics[key]
    return out
