"""Corpus-style query variants: each names its chat by its speakers and other topics, and is
kept only when that description fits exactly one dialogue of the corpus."""

from __future__ import annotations

from pathlib import Path

from ffr_lib.data.dataset import Dataset
from ffr_lib.data.model import Dialogue, Image, Query, QueryType, Utterance
from ffr_lib.evaluation.corpus_queries import corpus_style, corpus_variant
from ffr_lib.evaluation.harness import evaluation_queries


def _dialogue(did: str, speakers: tuple[str, str], topics: list[list[str]]) -> Dialogue:
    n = 4 * len(topics)
    return Dialogue(
        id=did,
        source="test",
        speakers=list(speakers),
        utterances=[Utterance(index=i, speaker=speakers[i % 2], text=f"u{i}") for i in range(n)],
        images=[Image(index=0, utterance_index=5)],
        metadata={
            "topics": [
                {"start": 4 * t, "end": 4 * t + 4, "categories": cats}
                for t, cats in enumerate(topics)
            ]
        },
    )


A = _dialogue("A", ("Maya", "Tom"), [["food"], ["pets"], ["travel"]])
B = _dialogue("B", ("Maya", "Tom"), [["food"], ["pets"], ["music"]])
C = _dialogue("C", ("Lena", "Omar"), [["food"], ["travel"], ["pets"]])


def _query(qid: str, did: str, utt: list[int], img: list[int] | None = None) -> Query:
    img = img or []
    return Query(
        id=qid,
        dialogue_id=did,
        text="What did Maya say about food?",
        type=QueryType.from_gold(utt, img),
        gold_utterance_ids=utt,
        gold_image_ids=img,
    )


def test_the_fewest_other_topics_that_single_the_chat_out() -> None:
    # Gold in A's food topic. Other topics: pets (B has it too, same speakers), travel (only A).
    variant = corpus_variant(_query("q", "A", [1, 2]), A, [A, B, C])
    assert variant is not None
    assert variant.text == (
        "In the chat between Maya and Tom that also covered travel: What did Maya say about food?"
    )
    assert variant.id == "q#corpus-style"
    assert (variant.gold_utterance_ids, variant.dialogue_id) == ([1, 2], "A")
    assert variant.metadata["context_categories"] == ["travel"]
    assert variant.metadata["original_text"] == "What did Maya say about food?"


def test_an_image_counts_through_the_utterance_it_was_sent_with() -> None:
    # Image 0 sits on utterance 5 (pets topic): the other topics are food and travel.
    variant = corpus_variant(_query("q", "A", [], [0]), A, [A, B, C])
    assert variant is not None
    assert variant.metadata["context_categories"] == ["travel"]


def test_twins_cannot_be_told_apart_and_negatives_are_left_out() -> None:
    twin = _dialogue("A2", ("Maya", "Tom"), [["food"], ["pets"], ["travel"]])
    assert corpus_variant(_query("q", "A", [1]), A, [A, twin]) is None
    negative = Query(id="n", dialogue_id="A", text="cats?", type=QueryType.NEGATIVE)
    assert corpus_variant(negative, A, [A, B]) is None
    no_topics = Dialogue(id="X", source="t", speakers=["a", "b"], utterances=A.utterances)
    assert corpus_variant(_query("q", "X", [1]), no_topics, [no_topics]) is None


def test_all_topics_when_the_other_topics_are_not_enough() -> None:
    # D's other topics (pets, music) are B's too; naming food as well still fits B, but adding
    # art (D's gold topic) singles D out.
    d = _dialogue("D", ("Maya", "Tom"), [["art"], ["pets"], ["music"]])
    variant = corpus_variant(_query("q", "D", [0]), d, [d, B])
    assert variant is not None
    assert variant.text.startswith("In the chat between Maya and Tom that covered ")
    assert variant.metadata["context_categories"] == ["art", "pets", "music"]


def test_corpus_style_counts() -> None:
    twin = _dialogue("A2", ("Maya", "Tom"), [["food"], ["pets"], ["travel"]])
    queries = [
        _query("q1", "B", [1]),  # B: music singles it out
        _query("q2", "A", [1]),  # A has a twin: ambiguous
        Query(id="n", dialogue_id="B", text="cats?", type=QueryType.NEGATIVE),
    ]
    variants, counts = corpus_style(Dataset(dialogues=[A, B, twin], queries=queries))
    assert counts == {"queries": 3, "negative": 1, "ambiguous": 1, "kept": 1}
    assert [q.id for q in variants.queries] == ["q1#corpus-style"]


def test_limited_evaluation_spreads_over_the_dataset() -> None:
    queries = [_query(f"q{i}", "A", [1]) for i in range(10)]
    data = Dataset(dialogues=[A], queries=queries)
    assert [q.id for q in evaluation_queries(data, 4)] == ["q0", "q2", "q5", "q7"]
    assert len(evaluation_queries(data, 20)) == 10
    assert [q.id for q in evaluation_queries(data)] == [f"q{i}" for i in range(10)]


def test_eval_command_reports_the_corpus_style_table(
    db_url: str, ffr_home: Path, tmp_path: Path
) -> None:
    import json

    from ffr_lib.data.canonical import write_canonical
    from ffr_lib.evaluation.run import EvaluationConfig, run_evaluation

    twin = _dialogue("A2", ("Maya", "Tom"), [["food"], ["pets"], ["travel"]])
    queries = [
        _query("q1", "B", [1, 2]),  # B: music singles it out
        _query("q2", "A", [5], [0]),  # A has a twin: no corpus-style variant
        _query("q3", "C", [9]),
        Query(id="n", dialogue_id="B", text="cats?", type=QueryType.NEGATIVE),
    ]
    folder = tmp_path / "mldr" / "val"
    write_canonical(Dataset(dialogues=[A, B, C, twin], queries=queries), folder)
    result = run_evaluation(
        EvaluationConfig(
            path=folder,
            systems=["bm25-utt", "bm25-frag"],
            reports_dir=tmp_path / "reports",
            run_name="t",
            mlflow=False,
        ),
        url=db_url,
    )
    metrics = json.loads((result.latest_dir / "metrics.json").read_text())
    assert set(metrics) == {"mldr-val/single", "mldr-val/corpus", "mldr-val-corpus-style/corpus"}
    assert metrics["mldr-val/corpus"]["bm25-utt"]["n"] == 4
    assert metrics["mldr-val-corpus-style/corpus"]["bm25-utt"]["n"] == 2
    assert "Corpus-style variants of mldr-val: 2 of 4 queries kept" in result.markdown
    rows = (result.run_dir / "predictions").glob("mldr-val-corpus-style__corpus__bm25-utt.jsonl")
    lines = next(rows).read_text().splitlines()
    assert json.loads(lines[0])["query"].startswith("In the chat between Maya and Tom")

    # Either kind alone: corpus-style only keeps the as-written queries for single mode.
    for choice, expected in (
        ("corpus-style", {"mldr-val/single", "mldr-val-corpus-style/corpus"}),
        ("as-written", {"mldr-val/single", "mldr-val/corpus"}),
    ):
        only = run_evaluation(
            EvaluationConfig(
                path=folder,
                systems=["bm25-utt"],
                reports_dir=tmp_path / "reports",
                run_name=f"t-{choice}",
                mlflow=False,
                corpus_queries=choice,
            ),
            url=db_url,
        )
        assert set(json.loads((only.run_dir / "metrics.json").read_text())) == expected
