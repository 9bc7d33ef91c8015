"""Evaluation: the reference set metrics, per-query metrics and ranking metrics."""

from ffr_lib.evaluation.metrics import (
    Counts,
    SetMetrics,
    SetSample,
    hit_at_k,
    ndcg_at_k,
    ranking_metrics,
    recall_at_k,
    reciprocal_rank,
    set_counts,
    set_metrics,
)

__all__ = [
    "Counts",
    "SetMetrics",
    "SetSample",
    "hit_at_k",
    "ndcg_at_k",
    "ranking_metrics",
    "recall_at_k",
    "reciprocal_rank",
    "set_counts",
    "set_metrics",
]
