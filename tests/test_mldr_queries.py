"""Offline query generator and the difficulty baselines."""

from __future__ import annotations

from collections import Counter

import pytest

from ffr_lib.data.gold import set_f1
from ffr_lib.data.model import Dialogue, Image, QueryType, Utterance
from ffr_lib.mldr.builder import BuilderConfig, build_long_dialogues
from ffr_lib.mldr.difficulty import (
    bm25_predict,
    bm25_rank,
    family_difficulty,
    overlap_window_predict,
    query_f1,
)
from ffr_lib.mldr.lexicon import category_stems
from ffr_lib.mldr.queries import FAMILY_TYPES, QueryConfig, generate_queries, is_unanswerable
from ffr_lib.mldr.synthetic import synthetic_sources
from ffr_lib.mldr.text import content_stems, dialogue_stems


@pytest.fixture(scope="module")
def built() -> tuple[list[Dialogue], list]:
    dialogues = build_long_dialogues(synthetic_sources(90, seed=2), BuilderConfig(seed=1))
    return dialogues, generate_queries(dialogues, QueryConfig(seed=5, per_dialogue=6))


def test_every_type_and_family_present_and_tagged(built) -> None:
    dialogues, queries = built
    assert len(queries) == 6 * len(dialogues)
    assert set(Counter(q.type for q in queries)) == set(QueryType)
    families = Counter(q.family for q in queries)
    assert None not in families
    assert {"question", "topic", "image_ref", "extractive", "multi_topic"} <= set(families)
    assert any(f.startswith("negative_") for f in families)
    for q in queries:
        expected = FAMILY_TYPES[q.family]
        # topic families fall back to utterance-only when the topic has no photo
        assert q.type == expected or q.family in ("topic", "multi_topic")


def test_gold_in_range_and_shapes(built) -> None:
    dialogues, queries = built
    by_id = {d.id: d for d in dialogues}
    runs = Counter()
    for q in queries:
        d = by_id[q.dialogue_id]
        q.check_against(d)
        transitions = {i for i, p in enumerate(d.metadata["provenance"]) if p.get("transition")}
        assert not set(q.gold_utterance_ids) & transitions
        runs[q.metadata["gold_runs"]] += 1
        if q.family == "question":
            assert 1 <= len(q.gold_utterance_ids) <= 3
            assert len({d.utterances[i].speaker for i in q.gold_utterance_ids}) == 1
    assert runs[1] > 0  # contiguous golds
    assert sum(v for k, v in runs.items() if k >= 2) > 0  # scattered / multi-fragment golds


def test_negatives_are_unanswerable_against_content(built) -> None:
    dialogues, queries = built
    by_id = {d.id: d for d in dialogues}
    negatives = [q for q in queries if q.type is QueryType.NEGATIVE]
    assert negatives
    for q in negatives:
        d = by_id[q.dialogue_id]
        stems = dialogue_stems(d)
        # independent re-check: no word of the category and none of the phrase occurs
        assert not (category_stems(q.metadata["category"]) & stems)
        assert not (content_stems(q.metadata["phrase"]) & stems)


def test_is_unanswerable_rejects_present_category() -> None:
    d = Dialogue(
        id="d",
        source="t",
        utterances=[Utterance(index=0, speaker="a", text="my puppy chewed the sofa")],
    )
    assert is_unanswerable(d, "pets", "pets")[0] is False
    assert is_unanswerable(d, "furniture", "furniture")[0] is False
    ok, _ = is_unanswerable(d, "boats", "sailing")
    assert ok


def test_hard_families_do_not_copy_gold_words(built) -> None:
    dialogues, queries = built
    by_id = {d.id: d for d in dialogues}
    copied = {"question": [], "extractive": []}
    for q in queries:
        if q.family not in copied:
            continue
        d = by_id[q.dialogue_id]
        gold = set().union(*(content_stems(d.utterances[i].text) for i in q.gold_utterance_ids))
        names = {s.lower() for s in d.speakers}
        q_stems = content_stems(q.text) - names
        copied[q.family].append(len(q_stems & gold) > 0)
    assert copied["extractive"] and all(copied["extractive"])
    assert copied["question"] and sum(copied["question"]) / len(copied["question"]) < 0.2


def test_deterministic(built) -> None:
    dialogues, queries = built
    again = generate_queries(dialogues, QueryConfig(seed=5, per_dialogue=6))
    assert [q.model_dump() for q in again] == [q.model_dump() for q in queries]


def _toy() -> Dialogue:
    texts = [
        "we went hiking in the mountains",
        "the trail was steep",
        "later we cooked pasta",
        "pasta with tomato sauce",
        "",
        "the weather turned rainy",
    ]
    return Dialogue(
        id="toy",
        source="t",
        speakers=["a", "b"],
        utterances=[Utterance(index=i, speaker="ab"[i % 2], text=t) for i, t in enumerate(texts)],
        images=[Image(index=0, utterance_index=4, caption="Objects in the photo: Pasta, Plate")],
    )


def test_baselines_on_a_hand_made_dialogue() -> None:
    d = _toy()
    assert bm25_rank("pasta sauce", d)[0] == 3
    assert overlap_window_predict("pasta tomato", d) == ([3], [])
    assert overlap_window_predict("steep trail and cooked pasta", d) == ([1, 2], [])
    assert overlap_window_predict("submarine", d) == ([], [])
    utts, imgs = bm25_predict("plate", d, k=3)
    assert utts == [4] and imgs == [0]
    assert bm25_predict("submarine", d) == ([], [])


def test_f1_helpers() -> None:
    assert set_f1([], []) == 1.0
    assert set_f1([1], []) == 0.0
    assert set_f1([1, 2], [2, 3]) == pytest.approx(0.5)
    assert query_f1([], [], [], []) == 1.0
    assert query_f1([1], [], [], []) == 0.0
    assert query_f1([1], [0], [], [0]) == 1.0  # image-only gold: the image decides
    assert query_f1([1, 2], [], [2], [0]) == pytest.approx((2 / 3 + 0) / 2)


def test_extractive_is_easier_than_question_for_baselines(built) -> None:
    dialogues, queries = built
    scores = family_difficulty(queries, dialogues)
    assert set(scores) == {q.family for q in queries}
    assert scores["extractive"].window_f1 > scores["question"].window_f1
    assert scores["negative_topic"].bm25_recall_at_10 is None
    for s in scores.values():
        assert 0.0 <= s.bm25_f1 <= 1.0 and 0.0 <= s.window_f1 <= 1.0
