"""Evaluation metrics on hand-computed cases, including the division-by-zero conventions."""

from __future__ import annotations

import math

import pytest

from ffr_lib.data.model import Dialogue, Image, Query, QueryType, Utterance
from ffr_lib.evaluation.metrics import (
    Counts,
    SetSample,
    hit_at_k,
    ndcg_at_k,
    ranking_metrics,
    recall_at_k,
    reciprocal_rank,
    set_counts,
    set_metrics,
)

SAMPLES = [
    # utt: tp 2 (2, 3), fp 1 (1), fn 1 (4), tn 10 - 4 = 6 | img: tp 1, tn 1
    SetSample(
        pred_utt=[1, 2, 3],
        gold_utt=[2, 3, 4],
        n_utterances=10,
        pred_img=[0],
        gold_img=[0],
        n_images=2,
    ),
    # utt: tn 5 | img: fp 1, tn 2
    SetSample(pred_utt=[], gold_utt=[], n_utterances=5, pred_img=[1], gold_img=[], n_images=3),
    # utt: tp 1, fp 1 (20 is outside the prompt), tn 8 - 1 = 7 | img: fn 1, tn 0
    SetSample(
        pred_utt=[7, 20], gold_utt=[7], n_utterances=8, pred_img=[], gold_img=[0], n_images=1
    ),
]


def test_set_counts() -> None:
    assert set_counts([1, 2, 3], [2, 3, 4], 10) == Counts(tp=2, fp=1, fn=1, tn=6)
    assert set_counts([7, 20], [7], 8) == Counts(tp=1, fp=1, fn=0, tn=7)
    assert set_counts([], [], 0) == Counts()


def test_micro_metrics_hand_computed() -> None:
    m = set_metrics(SAMPLES)
    u, i = m.utterance, m.image
    assert (u.tp, u.fp, u.fn, u.tn) == (3, 2, 1, 18)
    assert (i.tp, i.fp, i.fn, i.tn) == (1, 1, 1, 3)
    assert u.precision == pytest.approx(0.6) and u.recall == pytest.approx(0.75)
    assert u.f1 == pytest.approx(2 / 3)
    assert u.mcc == pytest.approx((3 * 18 - 2 * 1) / math.sqrt(5 * 4 * 20 * 19))
    assert (i.precision, i.recall, i.f1) == pytest.approx((0.5, 0.5, 0.5))
    assert i.mcc == pytest.approx((1 * 3 - 1 * 1) / math.sqrt(2 * 2 * 4 * 4))
    # joint: harmonic means for P/R, plain means for F1/MCC
    assert m.precision == pytest.approx(2 * 0.6 * 0.5 / 1.1)
    assert m.recall == pytest.approx(2 * 0.75 * 0.5 / 1.25)
    assert m.f1 == pytest.approx((2 / 3 + 0.5) / 2)
    assert m.mcc == pytest.approx((u.mcc + i.mcc) / 2)
    # per query: utt F1 2/3, 1 (empty/empty), 2/3; img 1, 0, 0
    assert m.macro_f1_utterance == pytest.approx(7 / 9)
    assert m.macro_f1_image == pytest.approx(1 / 3)
    # pooled per query: 6/8, 0 (pred {i1} vs nothing), 2/4
    assert m.macro_f1 == pytest.approx((0.75 + 0 + 0.5) / 3)
    assert m.exact_match == 0.0
    flat = m.flat("val/")
    assert (
        flat["val/utt_tp"] == 3.0 and flat["val/f1"] == pytest.approx(m.f1) and flat["val/n"] == 3.0
    )


def test_sample_for_query() -> None:
    d = Dialogue(
        id="d",
        source="t",
        utterances=[Utterance(index=i, speaker="A", text=str(i)) for i in range(4)],
        images=[Image(index=0, utterance_index=2)],
    )
    q = Query(
        id="q",
        dialogue_id="d",
        text="x",
        type=QueryType.MULTIMODAL,
        gold_utterance_ids=[2],
        gold_image_ids=[0],
    )
    s = SetSample.for_query(q, d, [1, 2], [])
    assert (s.n_utterances, s.n_images, list(s.gold_utt), list(s.gold_img)) == (4, 1, [2], [0])
    m = set_metrics([s])
    assert (m.utterance.tp, m.utterance.fp, m.utterance.tn) == (1, 1, 2)
    assert (m.image.fn, m.image.tn) == (1, 0)


def test_exact_match() -> None:
    perfect = SetSample(
        pred_utt=[2, 1], gold_utt=[1, 2], n_utterances=4, pred_img=[], gold_img=[], n_images=1
    )
    m = set_metrics([perfect, SAMPLES[0]])
    assert m.exact_match == 0.5


def test_no_images_anywhere_leaves_images_out_of_joint() -> None:
    samples = [
        SetSample(
            pred_utt=[0], gold_utt=[0, 1], n_utterances=4, pred_img=[], gold_img=[], n_images=0
        ),
        SetSample(pred_utt=[2], gold_utt=[2], n_utterances=3, pred_img=[], gold_img=[], n_images=0),
    ]
    m = set_metrics(samples)
    assert not m.image.present and m.utterance.present
    # utt: tp 2, fp 0, fn 1 -> P 1, R 2/3, F1 .8; joint figures are the utterance ones
    assert (m.precision, m.recall, m.f1, m.mcc) == pytest.approx((1.0, 2 / 3, 0.8, m.utterance.mcc))
    # a hallucinated image id makes images present (all FP): F1 0 joins the mean
    samples[0] = SetSample(
        pred_utt=[0], gold_utt=[0, 1], n_utterances=4, pred_img=[0], gold_img=[], n_images=0
    )
    m = set_metrics(samples)
    assert m.image.present and m.image.f1 == 0.0 and m.f1 == pytest.approx(0.4)


def test_all_negative_set_conventions() -> None:
    right = [
        SetSample(pred_utt=[], gold_utt=[], n_utterances=5, pred_img=[], gold_img=[], n_images=2)
    ] * 3
    m = set_metrics(right)
    # nothing to find and nothing predicted: P = R = F1 = MCC = 1
    utterance = (m.utterance.precision, m.utterance.recall, m.utterance.f1, m.utterance.mcc)
    assert utterance == (1.0,) * 4
    assert (m.f1, m.mcc, m.macro_f1, m.exact_match) == (1.0, 1.0, 1.0, 1.0)
    wrong = [
        *right,
        SetSample(pred_utt=[3], gold_utt=[], n_utterances=5, pred_img=[], gold_img=[], n_images=2),
    ]
    m = set_metrics(wrong)
    # tp 0, fp 1, fn 0: P = 0, R = 0 (no gold but something predicted), F1 0, MCC 0
    utterance = (m.utterance.precision, m.utterance.recall, m.utterance.f1, m.utterance.mcc)
    assert utterance == (0.0,) * 4
    assert m.image.f1 == 1.0 and m.f1 == 0.5
    assert m.macro_f1 == pytest.approx(3 / 4) and m.exact_match == pytest.approx(3 / 4)
    # gold but no prediction: P 0, R 0
    missed = Counts(tp=0, fp=0, fn=2, tn=3)
    assert (missed.precision, missed.recall, missed.f1, missed.mcc) == (0.0, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        set_metrics([])


def test_ranking_hand_computed() -> None:
    ranked = ["a", "b", "c", "d", "a"]
    gold = {"b", "d", "x"}
    assert recall_at_k(ranked, gold, 1) == 0.0
    assert recall_at_k(ranked, gold, 2) == pytest.approx(1 / 3)
    assert recall_at_k(ranked, gold, 4) == pytest.approx(2 / 3)
    assert recall_at_k(ranked, gold, 50) == pytest.approx(2 / 3)
    assert (hit_at_k(ranked, gold, 1), hit_at_k(ranked, gold, 2)) == (0.0, 1.0)
    assert reciprocal_rank(ranked, gold) == 0.5
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(ranked, gold, 10) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(["b", "d", "x"], gold) == pytest.approx(1.0)
    # duplicates count once, at their first position
    assert recall_at_k(["b", "b", "d"], {"b", "d"}, 2) == 1.0
    assert reciprocal_rank([], gold) == 0.0
    with pytest.raises(ValueError):
        recall_at_k(ranked, set(), 5)


def test_ranking_metrics_mean_and_skips() -> None:
    rankings = [["a", "b", "c"], [3, 1, 2], ["z"]]
    golds = [{"b"}, {1, 2}, set()]
    out = ranking_metrics(rankings, golds, ks=(1, 2), ndcg_k=3)
    # query 1: recall@1 0, @2 1, mrr 1/2, ndcg 1/log2(3)
    # query 2: recall@1 0, @2 1/2, mrr 1/2, ndcg (1/log2(3) + 1/log2(4)) / (1 + 1/log2(3))
    assert out["recall@1"] == 0.0 and out["hit@1"] == 0.0
    assert out["recall@2"] == pytest.approx((1 + 0.5) / 2) and out["hit@2"] == 1.0
    assert out["mrr"] == pytest.approx(0.5)
    n2 = (1 / math.log2(3) + 0.5) / (1 + 1 / math.log2(3))
    assert out["ndcg@3"] == pytest.approx((1 / math.log2(3) + n2) / 2)
    assert (out["n_queries"], out["n_skipped_empty_gold"]) == (2.0, 1.0)
    nothing = ranking_metrics([["a"]], [set()])
    assert math.isnan(nothing["mrr"]) and nothing["n_queries"] == 0.0
    with pytest.raises(ValueError):
        ranking_metrics([["a"]], [])
