"""Contrastive fine-tuning of the Fragment Embedding Model (sentence-transformers, CPU-friendly).

Training data: (query, gold fragment) pairs from a split with gold ids. Each dialogue is cut into
fragments by the ``segment`` function given: the `fem_checkpoint` stage (``ffr_lib.fem.stage``)
passes the fragments the `fragments` stage wrote for the split's batch, i.e. exactly the fragments
the index serves; called without one, fixed windows of ``FemTrainConfig.window`` utterances. A
query's positive is the fragment that overlaps its gold utterances most (an image's gold counts as
the utterance it was sent with), and its hard negative is another fragment of the SAME dialogue
with no gold at all (same speakers, same style, different content: exactly what the index must
tell apart). The loss is MultipleNegativesRankingLoss: every other positive and negative in the
batch is an in-batch negative too.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from ffr_lib.data.dataset import Dataset
from ffr_lib.data.gold import gold_items
from ffr_lib.data.model import Dialogue
from ffr_lib.fem.fragment_text import FragmentRow, FragmentTextConfig, fragment_rows
from ffr_lib.models.resolve import resolve_model
from ffr_lib.progress import trainer_progress
from ffr_lib.segment.fragments import Fragment
from ffr_lib.segment.windows import FixedWindowSegmenter, WindowConfig
from ffr_lib.threads import torch_threads, use_cpu

log = logging.getLogger(__name__)

Segment = Callable[[Dialogue], list[Fragment]]


class FemTrainConfig(BaseModel):
    """Hyper-parameters of one fine-tuning run (all logged to MLflow)."""

    base_model: str = Field("minilm", description="resolve_model name: alias, folder or hub id")
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(16, ge=2, description="in-batch negatives grow with the batch")
    learning_rate: float = Field(2e-5, gt=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    max_pairs: int | None = Field(
        512, ge=1, description="cap on (query, gold fragment) training pairs (seeded sample)"
    )
    hard_negatives: bool = True
    max_seq_length: int = Field(
        256,
        ge=16,
        description="tokens per fragment, longer ones are cut: real-chat fragments average ~225 "
        "words, so 128 would cut most of them (CPU cost grows with it; MiniLM takes up to 512)",
    )
    window: int = Field(8, ge=1, description="window size when no segmenter is given")
    device: Literal["auto", "cpu"] = Field(
        "auto", description="auto: the GPU when the step's pod has one (CUDA), else the CPU"
    )
    seed: int = 0
    text: FragmentTextConfig = Field(default_factory=FragmentTextConfig)


@dataclass
class Pair:
    """One training example."""

    query_id: str
    query: str
    positive: str
    negative: str | None = None


@dataclass
class TrainResult:
    """Where the fine-tuned model is and how training went."""

    model_dir: Path
    n_pairs: int
    steps: int
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def first_loss(self) -> float:
        return self.losses[0] if self.losses else math.nan

    @property
    def last_loss(self) -> float:
        return self.losses[-1] if self.losses else math.nan


def default_segmenter(window: int = 8) -> Segment:
    """Fixed windows of ``window`` utterances: the cut when no segmenter is given (unit tests,
    bare library calls; the stage passes the served fragments instead)."""
    return FixedWindowSegmenter(WindowConfig(size=window)).segment


def overlapping(rows: Sequence[FragmentRow], gold: set[int]) -> list[FragmentRow]:
    """The fragments that share at least one utterance with ``gold``."""
    return [r for r in rows if gold & set(r.utterance_ids)]


def build_pairs(
    dataset: Dataset,
    segment: Segment | None = None,
    config: FemTrainConfig | None = None,
    rows_by_dialogue: dict[str, list[FragmentRow]] | None = None,
) -> list[Pair]:
    """(query, positive fragment, hard negative) triples for every answerable single-dialogue
    query (negative and corpus queries have no positive and are skipped)."""
    config = config or FemTrainConfig()
    segment = segment or default_segmenter(config.window)
    rng = random.Random(f"fem-pairs:{config.seed}")
    by_id = dataset.dialogue_by_id()
    rows_by_dialogue = rows_by_dialogue if rows_by_dialogue is not None else {}
    pairs: list[Pair] = []
    all_rows: list[FragmentRow] = []
    for query in dataset.queries:
        dialogue = by_id.get(query.dialogue_id or "")
        if dialogue is None:
            continue
        gold = gold_items(query, dialogue)
        if not gold:
            continue
        if dialogue.id not in rows_by_dialogue:
            rows_by_dialogue[dialogue.id] = fragment_rows(dialogue, segment(dialogue), config.text)
            all_rows += rows_by_dialogue[dialogue.id]
        rows = rows_by_dialogue[dialogue.id]
        positive = max(rows, key=lambda r: (len(gold & set(r.utterance_ids)), -r.utterance_ids[0]))
        negatives = [r for r in rows if not gold & set(r.utterance_ids)]
        pairs.append(
            Pair(
                query.id,
                query.text,
                positive.text,
                rng.choice(negatives).text if negatives else None,
            )
        )
    if config.hard_negatives and pairs:
        # A query whose gold touches every fragment of its dialogue gets a random fragment of
        # another dialogue (the loss needs a negative in every row).
        pool = all_rows or [r for rs in rows_by_dialogue.values() for r in rs]
        for pair in pairs:
            while pair.negative is None or pair.negative == pair.positive:
                pair.negative = rng.choice(pool).text
                if len(pool) < 2:
                    break
    rng.shuffle(pairs)
    if config.max_pairs is not None:
        pairs = pairs[: config.max_pairs]
    return pairs


def train_fem(
    train: Dataset,
    output_dir: str | Path,
    config: FemTrainConfig | None = None,
    segment: Segment | None = None,
    pairs: Sequence[Pair] | None = None,
) -> TrainResult:
    """Fine-tune ``config.base_model`` on the pairs of ``train`` (or on ``pairs``) and save a
    sentence-transformers folder in ``output_dir`` (loadable by ``TextEncoder.get(path)``)."""
    import os

    os.environ.setdefault("WANDB_DISABLED", "true")
    import torch
    from datasets import Dataset as HFDataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.losses import MultipleNegativesRankingLoss
    from sentence_transformers.training_args import BatchSamplers

    config = config or FemTrainConfig()
    pairs = list(pairs) if pairs is not None else build_pairs(train, segment, config)
    if not pairs:
        raise ValueError("no training pairs: the split has no answerable single-dialogue query")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    random.seed(config.seed)

    on_cpu = use_cpu(config.device)
    model = SentenceTransformer(
        resolve_model(config.base_model).path, device="cpu" if on_cpu else "cuda"
    )
    model.max_seq_length = min(config.max_seq_length, model.max_seq_length or 10**6)
    prompts = dict(getattr(model, "prompts", None) or {})
    q_prefix, p_prefix = prompts.get("query", ""), prompts.get("passage", "")
    columns: dict[str, list[str]] = {
        "anchor": [q_prefix + p.query for p in pairs],
        "positive": [p_prefix + p.positive for p in pairs],
    }
    if config.hard_negatives:
        columns["negative"] = [p_prefix + (p.negative or "") for p in pairs]
    data = HFDataset.from_dict(columns)

    steps_per_epoch = math.ceil(len(pairs) / config.batch_size)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(output_dir / "_trainer"),
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        warmup_steps=int(config.warmup_ratio * steps_per_epoch * config.epochs),
        # Duplicate texts in one batch would be false in-batch negatives.
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=on_cpu,
        seed=config.seed,
        data_seed=config.seed,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=data,
        loss=MultipleNegativesRankingLoss(model),
        callbacks=[trainer_progress("FEM training")],
    )
    started = time.perf_counter()
    with torch_threads():
        trainer.train()
    seconds = time.perf_counter() - started
    losses = [float(e["loss"]) for e in trainer.state.log_history if "loss" in e]
    model.save(str(output_dir))
    import shutil

    shutil.rmtree(output_dir / "_trainer", ignore_errors=True)
    log.info(
        "FEM trained on %d pairs in %.1fs, loss %s", len(pairs), seconds, losses[:1] + losses[-1:]
    )
    return TrainResult(
        model_dir=output_dir,
        n_pairs=len(pairs),
        steps=int(trainer.state.global_step),
        losses=losses,
        seconds=seconds,
    )


def train_params(config: FemTrainConfig) -> dict[str, Any]:
    """Flat parameters for MLflow."""
    data = config.model_dump(mode="json")
    text = data.pop("text")
    data.update({f"text.{k}": v for k, v in text.items() if not isinstance(v, dict)})
    return data
