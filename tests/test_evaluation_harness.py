"""Harness scoring against hand-computed figures (no database): wrong-dialogue picks are false
positives, ranking over utterances and over units, abstention, groups, skipped systems."""

from __future__ import annotations

import json
import math

import pytest

from ffr_lib.data.dataset import Dataset
from ffr_lib.data.model import Dialogue, Image, Query, QueryType, Utterance
from ffr_lib.evaluation.harness import (
    Corpus,
    HarnessConfig,
    Record,
    System,
    SystemRun,
    default_groupers,
    evaluate,
    length_bucket,
    run_system,
    score_run,
    set_sample,
)
from ffr_lib.ffrs.types import Prediction, RankedFragment, merge_per_dialogue


def _dialogue(did: str, n: int, owners: tuple[int, ...] = ()) -> Dialogue:
    return Dialogue(
        id=did,
        source="test",
        utterances=[Utterance(index=i, speaker="a", text=f"{did} {i}") for i in range(n)],
        images=[Image(index=j, utterance_index=u) for j, u in enumerate(owners)],
    )


A, B = _dialogue("A", 5, (2,)), _dialogue("B", 4)
Q1 = Query(id="q1", dialogue_id="A", text="x", type=QueryType.MULTIMODAL,
           gold_utterance_ids=[1, 2], gold_image_ids=[0], family="f1")  # fmt: skip
Q2 = Query(id="q2", dialogue_id="A", text="y", type=QueryType.NEGATIVE, family="f2")
Q3 = Query(id="q3", dialogue_id="B", text="z", type=QueryType.UTTERANCE_ONLY,
           gold_utterance_ids=[3], family="f1")  # fmt: skip
DATASET = Dataset(dialogues=[A, B], queries=[Q1, Q2, Q3])


def _prediction(units: list[RankedFragment], ms: float = 10.0) -> Prediction:
    return Prediction(
        dialogues=merge_per_dialogue(units[:1]), units=units, timings={"embed": ms / 1000}
    )


def _run() -> SystemRun:
    p1 = _prediction([RankedFragment("A", [1], [0], 0.9), RankedFragment("A", [2], [], 0.5)])
    p2 = Prediction()  # nothing found: right for a negative query
    p3 = _prediction([RankedFragment("A", [0], [], 0.8), RankedFragment("B", [3], [], 0.7)], 30)
    return SystemRun(
        "hand", "corpus", [Record(Q1, p1, 0.01), Record(Q2, p2, 0.02), Record(Q3, p3, 0.03)]
    )


def test_length_buckets_follow_the_paper() -> None:
    assert [length_bucket(n) for n in (1, 34, 35, 65, 66, 300)] == [
        "<35", "<35", "35-65", "35-65", ">65", ">65",
    ]  # fmt: skip


def test_pick_in_another_dialogue_is_a_false_positive() -> None:
    sample = set_sample(Q3, B, _prediction([RankedFragment("A", [3], [], 1.0)]))
    assert list(sample.pred_utt) == [-1]  # not B's utterance 3, though the id is the same
    same = set_sample(Q3, B, _prediction([RankedFragment("B", [3], [], 1.0)]))
    assert list(same.pred_utt) == [3]


def test_score_run_matches_hand_computed_figures() -> None:
    corpus = Corpus.in_memory(DATASET)
    m = score_run(_run(), corpus, default_groupers())
    # Utterances: q1 tp1 fn1 tn3; q2 tn5; q3 (wrong dialogue) fp1 fn1 tn3.
    assert (m["utt_tp"], m["utt_fp"], m["utt_fn"], m["utt_tn"]) == (1, 1, 2, 11)
    assert m["utt_precision"] == pytest.approx(0.5) and m["utt_recall"] == pytest.approx(1 / 3)
    assert m["exact_match"] == pytest.approx(1 / 3)  # only the negative query
    # Gold items: q1 {A1, A2 (owner of image 0)}, q3 {B3}; q2 has none and is skipped.
    assert m["n_queries"] == 2 and m["n_skipped_empty_gold"] == 1
    assert m["recall@1"] == pytest.approx(0.25) and m["recall@5"] == pytest.approx(1.0)
    assert m["mrr"] == pytest.approx((1 + 1 / 2) / 2)
    # q1's top unit holds image 0, whose owner is A2: the unit covers both gold items.
    assert m["frag_recall@1"] == pytest.approx(0.5) and m["frag_mrr"] == pytest.approx(0.75)
    assert m["dialogue_acc@1"] == pytest.approx(0.5) and m["abstain_rate"] == 1.0
    assert m["latency_p50_ms/total"] == pytest.approx(20.0)
    assert m["latency_p50_ms/embed"] == pytest.approx(10.0)
    # Groups: family f1 holds q1 and q3, type negative holds q2.
    assert m["group/family=f1/n"] == 2 and m["group/type=negative/abstain_rate"] == 1.0
    assert m["group/bucket=<35/n"] == 3
    assert math.isnan(m["group/family=f1/abstain_rate"])


class _SingleOnly(System):
    name = "single-only"
    modes = ("single",)

    def predict_dialogue(self, query: str, dialogue: Dialogue) -> Prediction:
        unit = RankedFragment(dialogue.id, [0], [], 1.0)
        return Prediction(merge_per_dialogue([unit]), [unit])


def test_unsupported_modes_and_unbuilt_systems_are_reported_skipped() -> None:
    corpus = Corpus.in_memory(DATASET)
    assert run_system(_SingleOnly(), DATASET.queries, corpus, "corpus").skipped
    out = evaluate(
        DATASET, [_SingleOnly()], corpus, name="toy", skipped={"ffrs": "no trained model"}
    )
    assert out.metrics["toy/corpus"]["single-only"]["skipped"].startswith("corpus mode")
    assert out.metrics["toy/single"]["ffrs"] == {"skipped": "no trained model"}
    single = out.metrics["toy/single"]["single-only"]
    # It always answers utterance 0 of the given dialogue: right dialogue, wrong utterance.
    assert single["n"] == 3 and single["recall@1"] == 0.0 and single["dialogue_acc@1"] == 1.0
    assert single["abstain_rate"] == 0.0 and single["utt_fp"] == 3


class _Reader(_SingleOnly):
    """Stands in for a generator system: answers the gold utterances exactly."""

    name = "reader"
    reads_with_generator = True

    def __init__(self) -> None:
        self.asked: list[str] = []

    def predict_dialogue(self, query: str, dialogue: Dialogue) -> Prediction:
        self.asked.append(query)
        gold = next(q for q in DATASET.queries if q.text == query)
        unit = RankedFragment(dialogue.id, gold.gold_utterance_ids, gold.gold_image_ids, 1.0)
        return Prediction(merge_per_dialogue([unit]), [unit])


def test_reader_limit_scores_generators_on_a_spread_subset_and_everyone_on_it_too() -> None:
    from ffr_lib.evaluation.harness import HarnessConfig, spread

    assert spread([1, 2, 3, 4, 5, 6], 3) == [1, 3, 5] and spread([1, 2], 5) == [1, 2]
    reader, cheap = _Reader(), _SingleOnly()
    config = HarnessConfig(modes=["single"], reader_limit=2)
    out = evaluate(DATASET, [reader, cheap], Corpus.in_memory(DATASET), name="toy", config=config)
    # The reader read q1 and q2 only (indices 0 and int(1.5)); the cheap system all three.
    assert reader.asked == ["x", "y"]
    assert out.metrics["toy/single"]["reader"]["n"] == 2
    assert out.metrics["toy/single"]["single-only"]["n"] == 3
    # The subset table holds both systems on exactly q1 and q2.
    subset = out.metrics["toy-reader-subset/single"]
    assert subset["reader"]["n"] == subset["single-only"]["n"] == 2
    assert subset["reader"]["f1"] == 1.0
    assert [r.query.id for r in out.runs["toy-reader-subset/single"][1].records] == ["q1", "q2"]
    # Without a limit (or when every query fits) there is no subset table.
    plain = evaluate(DATASET, [_Reader()], Corpus.in_memory(DATASET), name="toy",
                     config=HarnessConfig(modes=["single"], reader_limit=3))  # fmt: skip
    assert set(plain.metrics) == {"toy/single"}


class _Weak(_SingleOnly):
    """A baseline answering utterance 0 of every dialogue (always wrong here)."""

    name = "weak"
    baseline = True


class _Half(_SingleOnly):
    """A better baseline: q1's gold exactly, nothing for the negative q2, utterance 0 for q3."""

    name = "half"
    baseline = True

    def predict_dialogue(self, query: str, dialogue: Dialogue) -> Prediction:
        if query == "y":
            return Prediction()
        if query == "z":
            return super().predict_dialogue(query, dialogue)
        unit = RankedFragment(dialogue.id, Q1.gold_utterance_ids, Q1.gold_image_ids, 1.0)
        return Prediction(merge_per_dialogue([unit]), [unit])


def test_every_run_gets_a_bootstrap_interval_of_its_f1() -> None:
    corpus = Corpus.in_memory(DATASET)
    m = score_run(_run(), corpus, resamples=200, seed=3)
    assert m["f1_ci_low"] <= m["f1"] <= m["f1_ci_high"]
    assert m["f1_ci_low"] < m["f1_ci_high"]  # the three queries differ: a real spread
    assert score_run(_run(), corpus, resamples=200, seed=3)["f1_ci_low"] == m["f1_ci_low"]
    # Groups keep their point figures only (no bootstrap per group).
    assert not any(k.startswith("group/") and "_ci_" in k for k in m)


def test_own_systems_are_compared_with_the_best_baseline_of_the_table() -> None:
    corpus = Corpus.in_memory(DATASET)
    config = HarnessConfig(modes=["single"], bootstrap_resamples=300)
    out = evaluate(DATASET, [_Weak(), _Half(), _Reader()], corpus, name="toy", config=config)
    table = out.metrics["toy/single"]
    assert table["half"]["f1"] > table["weak"]["f1"]
    reader = table["reader"]
    assert reader["best_baseline"] == "half" and reader["f1_vs_best_baseline_n"] == 3
    assert reader["f1_vs_best_baseline"] == reader["f1"] - table["half"]["f1"] > 0
    low, high = reader["f1_vs_best_baseline_ci_low"], reader["f1_vs_best_baseline_ci_high"]
    assert low <= reader["f1_vs_best_baseline"] <= high
    # Baselines are not compared with themselves.
    for baseline in ("half", "weak"):
        assert not any("best_baseline" in k for k in table[baseline]), baseline
    json.dumps(out.metrics)  # metrics.json stays plain JSON


def test_comparison_pairs_only_the_queries_both_scored() -> None:
    corpus = Corpus.in_memory(DATASET)
    config = HarnessConfig(modes=["single"], reader_limit=2, bootstrap_resamples=200)
    out = evaluate(DATASET, [_Half(), _Reader()], corpus, name="toy", config=config)
    reader = out.metrics["toy/single"]["reader"]
    # The reader read q1 and q2; the baseline all three: the difference is over q1 and q2,
    # where both answer exactly (q1's gold, nothing for the negative q2).
    assert reader["f1_vs_best_baseline_n"] == 2 and reader["f1_vs_best_baseline"] == 0.0
    assert reader["f1_vs_best_baseline_ci_low"] == reader["f1_vs_best_baseline_ci_high"] == 0.0
    assert reader["f1"] - out.metrics["toy/single"]["half"]["f1"] > 0  # the full table differs
    subset = out.metrics["toy-reader-subset/single"]["reader"]
    assert subset["best_baseline"] == "half" and subset["f1_vs_best_baseline_n"] == 2


def test_no_baseline_no_comparison() -> None:
    out = evaluate(DATASET, [_Reader()], Corpus.in_memory(DATASET), name="toy")
    assert not any("best_baseline" in k for k in out.metrics["toy/single"]["reader"])


def test_malformed_rate_is_the_share_of_generated_answers_and_only_for_generators() -> None:
    corpus = Corpus.in_memory(DATASET)
    plain = score_run(_run(), corpus)
    assert "malformed_rate" not in plain and "answers_n" not in plain  # nothing generated
    run = _run()
    counts = [
        {"exact": 2, "recovered": 1, "malformed": 1},
        {"exact": 0, "recovered": 0, "malformed": 3},
        {"exact": 3, "recovered": 0, "malformed": 0},
    ]
    for record, answers in zip(run.records, counts, strict=True):
        record.prediction.answers = answers
    m = score_run(run, corpus)
    # 10 answers over the three queries: 4 malformed, 1 recovered (not per-query means).
    assert m["answers_n"] == 10
    assert m["malformed_rate"] == pytest.approx(0.4)
    assert m["recovered_rate"] == pytest.approx(0.1)
