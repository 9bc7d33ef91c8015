"""Pk / WindowDiff of segmenters against the known topic boundaries of built dialogues."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from ffr_lib.data.model import Dialogue
from ffr_lib.segment.metrics import default_k, pk, window_diff


class Segmenter(Protocol):
    def boundaries(self, dialogue: Dialogue) -> list[int]: ...


def reference_boundaries(dialogue: Dialogue) -> list[int]:
    """Topic boundaries recorded by the builder (``metadata['topic_boundaries']``)."""
    if "topic_boundaries" not in dialogue.metadata:
        raise ValueError(f"dialogue {dialogue.id} has no topic_boundaries in its metadata")
    return list(dialogue.metadata["topic_boundaries"])


def evaluate_segmentation(
    dialogues: Sequence[Dialogue], predictions: Sequence[Sequence[int]]
) -> dict[str, float]:
    """Mean Pk and WindowDiff of predicted boundaries (k from each reference), plus the mean
    number of predicted and reference segments."""
    pks, wds, hyp_n, ref_n = [], [], [], []
    for dialogue, hyp in zip(dialogues, predictions, strict=True):
        ref = reference_boundaries(dialogue)
        n = len(dialogue.utterances)
        k = default_k(ref, n)
        pks.append(pk(ref, hyp, n, k))
        wds.append(window_diff(ref, hyp, n, k))
        hyp_n.append(len(hyp) + 1)
        ref_n.append(len(ref) + 1)
    return {
        "pk": float(np.mean(pks)) if pks else 0.0,
        "window_diff": float(np.mean(wds)) if wds else 0.0,
        "segments_predicted": float(np.mean(hyp_n)) if hyp_n else 0.0,
        "segments_reference": float(np.mean(ref_n)) if ref_n else 0.0,
        "dialogues": len(pks),
    }


def compare_segmenters(
    dialogues: Sequence[Dialogue], segmenters: dict[str, Segmenter]
) -> dict[str, dict[str, float]]:
    """``evaluate_segmentation`` for each named segmenter (batched when it can)."""
    out = {}
    for name, segmenter in segmenters.items():
        many = getattr(segmenter, "boundaries_many", None)
        preds = many(dialogues) if many else [segmenter.boundaries(d) for d in dialogues]
        out[name] = evaluate_segmentation(dialogues, preds)
    return out
