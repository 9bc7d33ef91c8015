"""Evaluate a FEM at fragment level, compare a fine-tuned model with its base, decide promotion,
and log it all to MLflow.

Retrieval is corpus-level, as the index serves it: every fragment of every dialogue of the set
is embedded; each query ranks all of them by cosine similarity. A query hits at K when one of the
top K fragments is from its dialogue and overlaps its gold utterances (or the utterances that own
its gold images). ``recall@K`` below is the share of queries that hit at K (the issue's
definition); MRR is that of the first overlapping fragment.

Guarding general ability: fine-tuning on generated queries can teach the generator's quirks and
lose what the base model knew. So the comparison also runs on out-of-source sets (dialogues from
a source the model was not trained on, question-style queries, and real meetings with human
questions: QMSum val, when its folder is present) and :func:`promotion_decision`
promotes to ``champion`` only when the fine-tuned model beats the base on every set.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from ffr_lib.data.dataset import Dataset
from ffr_lib.data.gold import answerable
from ffr_lib.data.model import Dialogue
from ffr_lib.fem.fragment_text import FragmentRow, FragmentTextConfig, fragment_rows
from ffr_lib.fem.train import Segment, default_segmenter
from ffr_lib.mldr import BuilderConfig, QueryConfig, SplitConfig, build_splits
from ffr_lib.tracking import register_model_version, start_run

log = logging.getLogger(__name__)

KS = (1, 5, 10)


def _encode(encoder: Any, texts: Sequence[str], kind: str) -> np.ndarray:
    kwargs: dict[str, Any] = {}
    if kind in (getattr(encoder, "prompts", None) or {}):
        kwargs["prompt_name"] = kind
    return np.asarray(encoder.encode(list(texts), **kwargs), dtype=np.float32)


def _corpus_rows(
    dataset: Dataset, segment: Segment, text: FragmentTextConfig | None
) -> list[FragmentRow]:
    return [r for d in dataset.dialogues for r in fragment_rows(d, segment(d), text)]


def evaluate_retrieval(
    encoder: Any,
    dataset: Dataset,
    segment: Segment | None = None,
    ks: Sequence[int] = KS,
    text: FragmentTextConfig | None = None,
    rows: Sequence[FragmentRow] | None = None,
) -> dict[str, float]:
    """Fragment-level ``recall@K`` (hit rate), MRR and the query count of ``encoder`` on
    ``dataset`` (answerable single-dialogue queries only)."""
    segment = segment or default_segmenter()
    rows = list(rows) if rows is not None else _corpus_rows(dataset, segment, text)
    queries, golds = [], []
    for query, dialogue, gold in answerable(dataset):
        relevant = {
            i
            for i, r in enumerate(rows)
            if r.dialogue_id == dialogue.id and gold & set(r.utterance_ids)
        }
        queries.append(query.text)
        golds.append(relevant)
    out: dict[str, float] = {f"recall@{k}": float("nan") for k in ks}
    out.update({"mrr": float("nan"), "n_queries": float(len(queries)), "n_fragments": len(rows)})
    if not queries or not rows:
        return out
    fragments = _encode(encoder, [r.text for r in rows], "passage")
    vectors = _encode(encoder, queries, "query")
    fragments /= np.maximum(np.linalg.norm(fragments, axis=1, keepdims=True), 1e-12)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    scores = vectors @ fragments.T
    first_hit = []
    for i, relevant in enumerate(golds):
        order = np.argsort(-scores[i], kind="stable")
        ranks = [pos for pos, j in enumerate(order, start=1) if int(j) in relevant]
        first_hit.append(min(ranks) if ranks else None)
    for k in ks:
        out[f"recall@{k}"] = float(np.mean([r is not None and r <= k for r in first_hit]))
    out["mrr"] = float(np.mean([1.0 / r if r else 0.0 for r in first_hit]))
    return out


def question_style(dataset: Dataset) -> Dataset:
    """The subset of queries phrased as questions (family ``question*`` or ending with '?'):
    the form real users ask in, unlike topic or extractive templates."""
    queries = [
        q
        for q in dataset.queries
        if (q.family or "").startswith("question") or q.text.rstrip().endswith("?")
    ]
    return Dataset(dialogues=dataset.dialogues, queries=queries, metadata=dataset.metadata)


def out_of_source_set(
    sources: Sequence[Dialogue], n_dialogues: int = 30, seed: int = 0, embed: Any = None
) -> Dataset:
    """An evaluation set built like MLDR but from OTHER short dialogues (e.g. chitchat when the
    FEM was trained on PhotoChat), with the same query generator."""
    config = SplitConfig(
        seed=seed,
        fractions={"oos": 1.0},
        builder=BuilderConfig(seed=seed, n_dialogues=n_dialogues, id_prefix="oos"),
        queries=QueryConfig(seed=seed),
    )
    return build_splits(list(sources), config, embed=embed)["oos"]


def compare_models(
    base: Any,
    tuned: Any,
    eval_sets: Mapping[str, Dataset],
    segment: Segment | None = None,
    text: FragmentTextConfig | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """``{set: {"base": metrics, "tuned": metrics}}`` for every evaluation set."""
    segment = segment or default_segmenter()
    report: dict[str, dict[str, dict[str, float]]] = {}
    for name, dataset in eval_sets.items():
        rows = _corpus_rows(dataset, segment, text)
        report[name] = {
            "base": evaluate_retrieval(base, dataset, segment, rows=rows),
            "tuned": evaluate_retrieval(tuned, dataset, segment, rows=rows),
        }
    return report


class PromotionPolicy(BaseModel):
    """When a fine-tuned FEM may become ``champion``."""

    metrics: tuple[str, ...] = Field(
        ("recall@1", "recall@5", "recall@10"),
        description="the score of a model on a set is the mean of these",
    )
    in_domain: str = Field("val", description="the set built like the training data")
    min_gain: float = Field(0.0, ge=0, description="in-domain: tuned must exceed base by more")
    out_of_source_tolerance: float = Field(
        0.0, ge=0, description="out-of-source: tuned may trail base by at most this (0 = must win)"
    )


class PromotionDecision(BaseModel):
    promote: bool
    scores: dict[str, dict[str, float]]
    reasons: list[str]


def promotion_decision(
    report: Mapping[str, Mapping[str, Mapping[str, float]]],
    policy: PromotionPolicy | None = None,
    not_checked: Mapping[str, str] | None = None,
) -> PromotionDecision:
    """Promote only if the tuned model wins in-domain (by more than ``min_gain``) AND wins on
    every other (out-of-source) set (a loss within ``out_of_source_tolerance`` counts as a
    win only when that tolerance is set). A missing in-domain set, no other set at all, or a
    set without queries blocks promotion: no evidence, no promotion.

    ``not_checked`` names optional sets that could not be built, with why (e.g. QMSum val
    without its folder): each adds a reason line ``<set>: not checked (<why>)`` and does not
    block promotion; the sets that are present decide."""
    policy = policy or PromotionPolicy()
    scores: dict[str, dict[str, float]] = {}
    reasons: list[str] = []
    promote = True
    if policy.in_domain not in report:
        return PromotionDecision(
            promote=False, scores={}, reasons=[f"no in-domain set {policy.in_domain!r}"]
        )
    if len(report) < 2:
        promote = False
        reasons.append("no out-of-source set: general ability not checked")
    for name, pair in report.items():
        base = float(np.mean([pair["base"][m] for m in policy.metrics]))
        tuned = float(np.mean([pair["tuned"][m] for m in policy.metrics]))
        scores[name] = {"base": base, "tuned": tuned, "delta": tuned - base}
        if not (np.isfinite(base) and np.isfinite(tuned)):
            promote = False
            reasons.append(f"{name}: no scorable queries")
            continue
        if name == policy.in_domain:
            won = tuned > base + policy.min_gain
            need = f"> base + {policy.min_gain:g}"
        elif policy.out_of_source_tolerance > 0:
            won = tuned >= base - policy.out_of_source_tolerance
            need = f">= base - {policy.out_of_source_tolerance:g}"
        else:
            won = tuned > base
            need = "> base"
        reasons.append(
            f"{name}: tuned {tuned:.4f} vs base {base:.4f} ({'ok' if won else 'FAIL'}: {need})"
        )
        promote = promote and won
    reasons += [f"{name}: not checked ({why})" for name, why in (not_checked or {}).items()]
    return PromotionDecision(promote=promote, scores=scores, reasons=reasons)


def log_fem_run(
    model_dir: str | Path,
    params: Mapping[str, Any],
    report: Mapping[str, Mapping[str, Mapping[str, float]]],
    decision: PromotionDecision,
    *,
    losses: Sequence[float] = (),
    experiment: str = "fem",
    model_name: str = "ffr-fem",
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Log params, base/tuned metrics per set, the loss curve, the decision and the model folder
    to MLflow; register the folder as a version of ``model_name`` with alias ``champion`` when
    promoted (``challenger`` otherwise). Returns run id, version and alias."""
    import mlflow

    alias = "champion" if decision.promote else "challenger"
    with start_run(
        experiment, run_name="fem-finetune", params=dict(params), tracking_uri=tracking_uri
    ) as run:
        metrics: dict[str, float] = {}
        for set_name, pair in report.items():
            for which, values in pair.items():
                for key, value in values.items():
                    if np.isfinite(value):
                        metrics[f"{set_name}.{which}.{key.replace('@', '_at_')}"] = float(value)
        for set_name, score in decision.scores.items():
            if np.isfinite(score["delta"]):
                metrics[f"{set_name}.delta"] = score["delta"]
        metrics["promoted"] = float(decision.promote)
        mlflow.log_metrics(metrics)
        for step, loss in enumerate(losses):
            mlflow.log_metric("train_loss", float(loss), step=step)
        mlflow.set_tags({"promotion": alias, "decision": " | ".join(decision.reasons)[:5000]})
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "evaluation.json"
            import json

            path.write_text(
                json.dumps({"report": report, "decision": decision.model_dump()}, indent=2)
            )
            mlflow.log_artifact(str(path))
        mlflow.log_artifacts(str(model_dir), artifact_path="model")
        run_id = run.info.run_id
    version = register_model_version(run_id, "model", model_name, alias=alias)
    return {"run_id": run_id, "version": version, "alias": alias, "model_name": model_name}
