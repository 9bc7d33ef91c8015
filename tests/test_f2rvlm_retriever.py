"""F2RVLM inference side: cheap-retriever hints, fragment-local window prompts, training records
(local gold per window, negative windows), `retrieve()` and the `ffr retrieve` command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from ffr_lib.data.format.answer import parse
from ffr_lib.data.model import Dialogue, Image, Query, QueryType, Utterance
from ffr_lib.f2rvlm.difficulty import sample_f1
from ffr_lib.f2rvlm.hints import (
    HintSettings,
    buckets,
    hint_annotations,
    hint_terms,
    overlap_scores,
    preselect_ids,
    relevance_scores,
    utterance_texts,
)
from ffr_lib.f2rvlm.profiles import get_profile
from ffr_lib.f2rvlm.retriever import chat_messages, training_records, window_prompts
from ffr_lib.f2rvlm.rewards import make_f1_reward
from ffr_lib.f2rvlm.windows import merge_window_answers


def _dialogue(n: int = 20) -> Dialogue:
    texts = [f"small talk number {i}" for i in range(n)]
    texts[5] = "we hiked to the glacier lake"
    texts[6] = "the glacier was melting"
    utterances = [
        Utterance(index=i, speaker="Ann" if i % 2 else "Bob", text=t) for i, t in enumerate(texts)
    ]
    images = [Image(index=0, utterance_index=6, caption="a glacier above a lake")]
    return Dialogue(id="d", source="test", utterances=utterances, images=images)


def test_hint_terms_and_overlap_scores_hand_computed() -> None:
    # The MLDR stop words and stemmer, less the query framing ("photo", "chat", "talked", ...).
    assert hint_terms("The Glaciers were melting!") == {"glacier", "melt"}
    assert hint_terms("the chat where we talked about the photos of dogs") == {"dog"}
    scores = overlap_scores("glacier lake", ["the glacier", "a lake and a glacier", "nothing"])
    assert scores.tolist() == [0.5, 1.0, 0.0]
    assert overlap_scores("the and", ["anything"]).tolist() == [0.0]  # no content word


def test_buckets_are_relative_to_the_best_score() -> None:
    assert buckets(np.array([0.0, 0.25, 0.5, 1.0]), 3) == [0, 1, 2, 3]
    assert buckets(np.array([0.0, 0.0]), 3) == [0, 0]
    assert buckets(np.array([0.1, 0.1]), 3) == [3, 3]


def test_hint_annotations_include_image_captions() -> None:
    d = _dialogue()
    texts = utterance_texts(d)
    assert "glacier above a lake" in texts[6]
    notes = hint_annotations(d, "the glacier lake", HintSettings())
    assert notes is not None
    assert notes[5] == "(r3)" and notes[6] == "(r3)" and notes[0] == "(r0)"
    assert hint_annotations(d, "x", HintSettings(method="none")) is None


def test_window_prompts_cover_the_dialogue_with_local_ids_and_hints() -> None:
    # Windows of 8 utterances, overlap 2, overlap hints.
    profile = get_profile("tiny", prompt_shape="windowed")
    prompts = window_prompts(_dialogue(), "glacier lake", profile)
    covered = sorted({g for wp in prompts for g in wp.window.utterance_ids})
    assert covered == list(range(20))
    assert all(len(wp.window.utterance_ids) <= 8 for wp in prompts)
    first = prompts[0].prompt
    assert "<|utt_id_start|>5<|utt_id_end|>" in first.user and "(r3)" in first.user
    second = prompts[1]  # starts at global 6: the glacier line is local 0 there
    assert second.window.utterance_ids[0] == 6
    assert "<|utt_id_start|>0<|utt_id_end|> Bob: the glacier was melting" in second.prompt.user
    # Caption mode (text LM): the image is text on its line, no <image> tag.
    assert (
        "[image: a glacier above a lake]" in second.prompt.user
        and "<image>" not in second.prompt.user
    )


def test_training_records_local_gold_and_negative_windows() -> None:
    profile = get_profile("tiny", prompt_shape="windowed", negative_window_ratio=1.0)
    query = Query(id="q", dialogue_id="d", text="glacier lake", type=QueryType.MULTIMODAL,
                  gold_utterance_ids=[5, 6], gold_image_ids=[0])  # fmt: skip
    records = training_records({"d": _dialogue()}, [query], profile, seed=0)
    answers = [parse(r["solution"], "compact") for r in records]
    positives = [a for a in answers if not a.is_empty]
    # Window 0 holds utterances 0-7 (gold local 5, 6 + image 0); window 1 starts at 6.
    assert (positives[0].utt_ids, positives[0].img_ids) == ([5, 6], [0])
    assert (positives[1].utt_ids, positives[1].img_ids) == ([0], [0])
    negatives = [r for r, a in zip(records, answers, strict=True) if a.is_empty]
    # Three windows (0-7, 6-13, 12-19): two hold gold, the third is the only negative left.
    assert len(records) == 3 and len(negatives) == 1
    assert negatives[0]["solution"] == "U none; I none" and negatives[0]["gold_utterance_ids"] == []
    r0 = records[0]
    assert r0["completion"][0]["content"] == r0["solution"]
    assert r0["image_owner"] == [6] and len(r0["utterance_texts"]) == 8


def test_negative_queries_keep_their_own_windows() -> None:
    query = Query(id="n", dialogue_id="d", text="volcano", type=QueryType.NEGATIVE)
    for windows in (0, 1, 2):
        profile = get_profile("tiny", prompt_shape="windowed", negative_query_windows=windows)
        records = training_records({"d": _dialogue()}, [query], profile, seed=0)
        assert len(records) == windows
        assert all(r["solution"] == "U none; I none" for r in records)


def _words(line: str) -> int:
    """A token counter that needs no tokenizer: whitespace words (a marker pair is one)."""
    return len(line.split())


def test_whole_shape_one_prompt_when_it_fits_windows_when_not() -> None:
    d = _dialogue()  # 20 lines of ~7 words (hint included)
    fits = get_profile("tiny")  # whole shape, budget 384, windows of 8 for a long chat
    (only,) = window_prompts(d, "glacier lake", fits, token_counter=_words)
    assert only.window.utterance_ids == tuple(range(20)) and only.window.image_ids == (0,)
    assert "<|utt_id_start|>19<|utt_id_end|>" in only.prompt.user  # global ids = local ids
    # Over the budget: windows of at most 40 counted tokens (and 8 utterances), overlap 2,
    # covering the dialogue.
    long = get_profile("tiny", max_prompt_tokens=40)
    prompts = window_prompts(d, "glacier lake", long, token_counter=_words)
    windows = [wp.window.utterance_ids for wp in prompts]
    assert len(windows) > 1 and sorted({u for w in windows for u in w}) == list(range(20))
    assert all(len(w) <= 8 for w in windows)
    assert all(len(set(a) & set(b)) == 2 for a, b in zip(windows, windows[1:], strict=False))
    for wp in prompts:  # the lines of each window, hints included, fit the budget
        lines = [line for line in wp.prompt.user.splitlines() if "<|utt_id_start|>" in line]
        assert sum(_words(line) for line in lines) <= 40
    # The token budget alone decides: 20 turns fit one prompt, over window_utterances (8).
    assert fits.window_utterances < 20


def test_whole_shape_records_are_the_query_level_answer() -> None:
    # The windowed knobs for "none" windows must not apply in the whole shape.
    profile = get_profile("tiny", negative_window_ratio=1.0, negative_query_windows=2)
    positive = Query(id="q", dialogue_id="d", text="glacier lake", type=QueryType.MULTIMODAL,
                     gold_utterance_ids=[5, 6], gold_image_ids=[0])  # fmt: skip
    negative = Query(id="n", dialogue_id="d", text="volcano", type=QueryType.NEGATIVE)
    records = training_records(
        {"d": _dialogue()}, [positive, negative], profile, token_counter=_words
    )
    assert [r["query_id"] for r in records] == ["q", "n"]  # one record per query
    pos, neg = records
    # SFT target and reward columns: the query's gold over the whole dialogue (global ids).
    assert pos["solution"] == pos["completion"][0]["content"] == "U 5-6; I 0"
    assert (pos["gold_utterance_ids"], pos["gold_image_ids"]) == ([5, 6], [0])
    assert len(pos["utterance_texts"]) == 20 and pos["image_owner"] == [6]
    assert neg["solution"] == "U none; I none" and neg["gold_utterance_ids"] == []
    # The rewards and the curriculum's F1 score the query-level answer: the gold scores 1; the
    # right answer of the old second 8-turn window (local ids) gets the image half only.
    f1 = make_f1_reward("compact")
    assert f1(["U 5-6; I 0", "U 0; I 0"], solution=[pos["solution"]] * 2) == [1.0, 0.5]
    assert sample_f1("U 5-6; I 0", pos, "compact") == (1.0, 1.0)
    assert sample_f1("U none; I none", neg, "compact") == (1.0, 1.0)


def test_whole_shape_long_chat_trains_on_gold_windows_and_merges_by_union() -> None:
    profile = get_profile("tiny", max_prompt_tokens=40, negative_window_ratio=1.0)
    query = Query(id="q", dialogue_id="d", text="glacier lake", type=QueryType.MULTIMODAL,
                  gold_utterance_ids=[4, 5, 6, 7], gold_image_ids=[0])  # fmt: skip
    dialogue = _dialogue()
    prompts = window_prompts(dialogue, query.text, profile, token_counter=_words)
    records = training_records({"d": dialogue}, [query], profile, token_counter=_words)
    holding = [wp for wp in prompts if set(wp.window.utterance_ids) & {4, 5, 6, 7}]
    # Only the windows that hold gold (no "none" windows), each with its share of the gold.
    assert len(records) == len(holding) > 1
    assert all(parse(r["solution"], "compact").utt_ids for r in records)
    # The union merge of those windows' answers (their local gold) is the query's gold.
    answers = [(r["gold_utterance_ids"], r["gold_image_ids"]) for r in records]
    assert merge_window_answers([wp.window for wp in holding], answers) == ([4, 5, 6, 7], [0])
    # A negative query over a long chat: one seeded window answering none.
    negative = Query(id="n", dialogue_id="d", text="volcano", type=QueryType.NEGATIVE)
    (neg,) = training_records({"d": dialogue}, [negative], profile, token_counter=_words)
    assert neg["solution"] == "U none; I none"


def test_preselect_ids_top_scores_with_context_in_dialogue_order() -> None:
    scores = np.array([0.0, 0.9, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.7, 0.0])
    assert preselect_ids(scores, 2, 1) == [0, 1, 2, 7, 8, 9]
    assert preselect_ids(scores, 3, 0) == [1, 4, 8]
    assert preselect_ids(scores, 1, 3) == [0, 1, 2, 3, 4]
    assert preselect_ids(np.zeros(3), 5, 1) == [0, 1, 2]  # fewer utterances than asked


def test_combined_hints_add_overlap_to_the_dense_cosine() -> None:
    d = _dialogue()

    def embed(texts: list[str]) -> np.ndarray:  # query and glacier lines on one axis
        return np.array([[1.0, 0.0] if "glacier" in t else [0.0, 1.0] for t in texts])

    dense = relevance_scores(d, "glacier", HintSettings(method="minilm"), embed)
    combined = relevance_scores(d, "glacier", HintSettings(method="combined"), embed)
    overlap = relevance_scores(d, "glacier", HintSettings(method="overlap"))
    assert dense[5] == pytest.approx(1.0) and dense[0] == pytest.approx(0.0)
    assert combined == pytest.approx(dense + overlap)
    with pytest.raises(ValueError, match="embed"):
        relevance_scores(d, "glacier", HintSettings(method="combined"))


def test_preselected_prompt_reads_only_the_candidates() -> None:
    hints = HintSettings(method="overlap", preselect_top=2, preselect_context=1)
    profile = get_profile("tiny", prompt_shape="windowed", hints=hints)
    prompts = window_prompts(_dialogue(), "glacier lake", profile)
    assert len(prompts) == 1
    window = prompts[0].window
    assert window.utterance_ids == (4, 5, 6, 7) and window.image_ids == (0,)
    user = prompts[0].prompt.user
    assert "<|utt_id_start|>1<|utt_id_end|> Ann: we hiked to the glacier lake (r3)" in user
    assert "<|utt_id_start|>4<|utt_id_end|>" not in user
    query = Query(id="q", dialogue_id="d", text="glacier lake", type=QueryType.MULTIMODAL,
                  gold_utterance_ids=[5, 6], gold_image_ids=[0])  # fmt: skip
    (record,) = training_records({"d": _dialogue()}, [query], profile)
    assert record["solution"] == "U 1-2; I 0"
    with pytest.raises(ValueError, match="preselect"):
        HintSettings(method="none", preselect_top=3)


def test_vlm_messages_have_one_image_part_per_tag() -> None:
    profile = get_profile("tiny", prompt_shape="windowed", image_mode="placeholder")
    wp = window_prompts(_dialogue(), "glacier", profile)[1]
    messages = chat_messages(wp.prompt, vlm=True)
    parts = messages[1]["content"]
    assert sum(p["type"] == "image" for p in parts) == len(wp.prompt.images) == 1
    joined = "".join(p.get("text", "<image>") for p in parts)
    assert joined == wp.prompt.user


@pytest.fixture(scope="module")
def tiny_adapter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ffr_lib.f2rvlm.sft import train_sft

    profile = get_profile("tiny")
    profile.sft.max_steps = 1
    query = Query(id="q", dialogue_id="d", text="glacier", type=QueryType.UTTERANCE_ONLY,
                  gold_utterance_ids=[5, 6])  # fmt: skip
    records = training_records({"d": _dialogue()}, [query], profile)
    out = tmp_path_factory.mktemp("adapter")
    return train_sft(profile, records, out, track=False).adapter_dir


@pytest.mark.slow
def test_retrieve_returns_global_ids_inside_the_dialogue(tiny_adapter: Path) -> None:
    from ffr_lib.f2rvlm.retriever import F2RVLMRetriever, retrieve

    retriever = F2RVLMRetriever.from_adapter(tiny_adapter)
    # Whole shape: the 20 turns fit the budget under the real tokenizer, one prompt.
    prompts, answers, texts = retriever.answer_windows(_dialogue(), "glacier")
    assert len(prompts) == len(answers) == len(texts) == 1
    utt, img = retrieve(_dialogue(), "glacier", retriever)
    assert all(0 <= i < 20 for i in utt) and all(i == 0 for i in img)
    assert utt == sorted(set(utt))
    # Same answer through the path-based entry point (cached loader).
    assert retrieve(_dialogue(), "glacier", tiny_adapter) == (utt, img)
    # The windowed shape reads three windows; their local answers come back as global ids.
    windowed = F2RVLMRetriever(
        retriever.backbone, retriever.profile.model_copy(update={"prompt_shape": "windowed"})
    )
    prompts, answers, _ = windowed.answer_windows(_dialogue(), "glacier")
    assert len(prompts) == 3
    utt, img = windowed.retrieve(_dialogue(), "glacier")
    assert all(0 <= i < 20 for i in utt) and all(i == 0 for i in img)


def _app() -> typer.Typer:
    from ffr_lib.cli.retrieve import retrieve as command

    app = typer.Typer()
    app.command()(command)
    return app


def test_cli_without_model_exits_1(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        _app(), ["--dialogue", "d", "--query", "x", "--model", str(tmp_path)]
    )
    assert result.exit_code == 1 and "no trained F2RVLM adapter" in result.output


@pytest.mark.slow
@pytest.mark.db
def test_cli_prints_the_fragment_of_a_stored_dialogue(db_url: str, tiny_adapter: Path) -> None:
    from ffr_lib.data.dataset import Dataset
    from ffr_lib.f2rvlm.retriever import retrieve
    from ffr_lib.store.dialogues import write_dataset

    dialogue = _dialogue()
    write_dataset(Dataset(dialogues=[dialogue]), url=db_url)
    result = CliRunner().invoke(
        _app(), ["--dialogue", "d", "--query", "glacier", "--model", str(tiny_adapter)]
    )
    assert result.exit_code == 0, result.output
    utt, img = retrieve(dialogue, "glacier", tiny_adapter)
    assert f"utterances: {utt}" in result.output and f"images: {img}" in result.output
    missing = CliRunner().invoke(
        _app(), ["--dialogue", "nope", "--query", "x", "--model", str(tiny_adapter)]
    )
    assert missing.exit_code == 1 and "no dialogue with id 'nope'" in missing.output
