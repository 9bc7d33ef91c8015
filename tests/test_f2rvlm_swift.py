"""ms-swift samples: (Dialogue, Query) -> sample -> (Dialogue, Query), and the MLDR file reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ffr_lib.data.dataset import Dataset
from ffr_lib.data.errors import InputError
from ffr_lib.data.format.answer import format_answer
from ffr_lib.data.format.prompt import PromptConfig
from ffr_lib.data.format.swift import content_key, from_msswift, to_msswift, write_swift
from ffr_lib.data.model import Dialogue, Image, Query, QueryType, Utterance
from ffr_lib.data.readers.msswift import read_msswift
from ffr_lib.f2rvlm.rewards import f1_reward, make_fragment_reward

FIXTURES = Path(__file__).parent / "fixtures" / "msswift"


def test_read_released_format_fixture() -> None:
    ds = read_msswift(FIXTURES / "MLDR_val.json")
    assert [d.id for d in ds.dialogues] == ["mldr-val-0001", "mldr-val-0002"]  # 4 samples share one
    a, b = ds.dialogues
    assert len(a.utterances) == 7 and [i.utterance_index for i in a.images] == [2, 5, 6]
    assert [i.path for i in a.images] == [
        "images/tahoe_top.jpg",
        "images/receipt.jpg",
        "images/form.jpg",
    ]
    assert a.utterances[0].speaker == "Mia"
    assert a.utterances[0].text == "We finally booked the hiking trip to Lake Tahoe!"
    assert a.utterances[2].text == "The Rubicon trail, here is the view from the top"
    assert (
        a.utterances[5].text == "Yes, this is the receipt."
    )  # image marker in mid-sentence removed
    assert (a.utterances[6].speaker, a.utterances[6].text) == ("Sam", "")
    assert a.speakers == ["Mia", "Sam"]
    # a line without a speaker
    assert (b.utterances[0].speaker, b.utterances[0].text) == (
        "",
        "Hi, are you coming to the concert tonight?",
    )
    assert [q.type for q in ds.queries] == [
        QueryType.MULTIMODAL,
        QueryType.UTTERANCE_ONLY,
        QueryType.IMAGE_ONLY,
        QueryType.NEGATIVE,
        QueryType.MULTIMODAL,
    ]
    q0, q1 = ds.queries[:2]
    assert q0.text.startswith("the photo from the top of the Rubicon trail")
    assert (q0.gold_utterance_ids, q0.gold_image_ids) == ([0, 1, 2, 3], [0])
    assert q1.text == "when we talked about the tax forms"  # query placed before the dialogue
    assert [q.dialogue_id for q in ds.queries] == ["mldr-val-0001"] * 4 + ["mldr-val-0002"]
    assert len({q.id for q in ds.queries}) == 5 and ds.queries[0].id == "MLDR_val-0"
    for q in ds.queries:
        q.check_against(ds.dialogue_by_id()[q.dialogue_id])


def test_read_jsonl_without_assistant_and_limit() -> None:
    ds = read_msswift(FIXTURES / "MLDR_train_GRPO.jsonl")
    assert len(ds.queries) == 3 and len(ds.dialogues) == 2
    assert ds.queries[0].id == "MLDR_train_GRPO-1"  # JSONL records are 1-based line numbers
    assert ds.queries[2].gold_image_ids == [0]
    # limit caps dialogues: all 4 samples of the first dialogue, none of the second
    limited = read_msswift(FIXTURES / "MLDR_val.json", limit=1)
    assert len(limited.queries) == 4 and [d.id for d in limited.dialogues] == ["mldr-val-0001"]
    assert len(read_msswift(FIXTURES / "MLDR_val.json", limit=2).queries) == 5
    assert read_msswift(FIXTURES / "MLDR_val.json", limit=0).queries == []


def make_dialogue() -> tuple[Dialogue, list[Query]]:
    d = Dialogue(
        id="chat-7",
        source="builder",
        speakers=["Ann", "Bob"],
        utterances=[
            Utterance(index=0, speaker="Ann", text="Morning! Any plans?"),
            Utterance(index=1, speaker="Bob", text="Fishing at the lake: look"),
            Utterance(index=2, speaker="Ann", text=""),
            Utterance(index=3, speaker="Bob", text="And the new sign there."),
        ],
        images=[
            Image(index=0, utterance_index=1, path="img/lake.jpg", caption="a calm lake"),
            Image(index=1, utterance_index=2, path="img/fish.jpg", caption="a trout [big]"),
            Image(index=2, utterance_index=3, path="img/sign.jpg"),
        ],
    )
    queries = [
        Query(
            id="q1",
            dialogue_id=d.id,
            text="the fishing trip photos",
            type=QueryType.MULTIMODAL,
            gold_utterance_ids=[1, 2],
            gold_image_ids=[0, 1],
        ),
        Query(
            id="q2",
            dialogue_id=d.id,
            text="the sign",
            type=QueryType.IMAGE_ONLY,
            gold_image_ids=[2],
        ),
        Query(id="q3", dialogue_id=d.id, text="a concert", type=QueryType.NEGATIVE),
    ]
    return d, queries


def test_round_trip_through_a_file(tmp_path: Path) -> None:
    d, queries = make_dialogue()
    samples = [to_msswift(d, q) for q in queries]
    assert samples[0]["images"] == ["img/lake.jpg", "img/fish.jpg", "img/sign.jpg"]
    assert samples[0]["solution"] == format_answer([1, 2], [0, 1])
    assert [m["role"] for m in samples[0]["messages"]] == ["system", "user", "assistant"]
    path = tmp_path / "MLDR_val.json"
    path.write_text(json.dumps(samples))
    ds = read_msswift(path)
    (back,) = ds.dialogues
    assert back.id == d.id and back.source == "msswift"
    assert [u.model_dump() for u in back.utterances] == [u.model_dump() for u in d.utterances]
    assert [(i.index, i.utterance_index, i.path) for i in back.images] == [
        (i.index, i.utterance_index, i.path) for i in d.images
    ]
    assert [q.id for q in ds.queries] == ["q1", "q2", "q3"]
    for got, want in zip(ds.queries, queries, strict=True):
        assert (got.text, got.type, got.gold_utterance_ids, got.gold_image_ids) == (
            want.text,
            want.type,
            want.gold_utterance_ids,
            want.gold_image_ids,
        )


def test_caption_mode_round_trip_keeps_captions() -> None:
    d, queries = make_dialogue()
    sample = to_msswift(d, queries[0], PromptConfig(image_mode="caption", answer_form="compact"))
    assert sample["images"] == [] and "<image>" not in sample["messages"][1]["content"]
    assert sample["messages"][2]["content"] == "U 1-2; I 0-1"
    back, query = from_msswift(sample, "q")
    assert [i.caption for i in back.images] == ["a calm lake", "a trout [big]", None]
    assert [i.path for i in back.images] == [None, None, None]
    assert query.gold_image_ids == [0, 1]


def test_window_sample_uses_local_ids_and_reward_columns() -> None:
    d, queries = make_dialogue()
    sample = to_msswift(d, queries[0], utterance_ids=[2, 3], reward_columns=True)
    assert sample["dialogue_id"] == "chat-7:2-3"
    assert sample["utterance_ids"] == [2, 3] and sample["image_ids"] == [1, 2]
    # gold {1, 2} / {0, 1} restricted to the window, in local ids
    assert sample["solution"] == format_answer([0], [0])
    assert sample["images"] == ["img/fish.jpg", "img/sign.jpg"]
    assert sample["utterance_texts"] == ["Ann: ", "Bob: And the new sign there."]
    assert sample["image_texts"] == ["a trout [big]", "image"] and sample["image_owner"] == [0, 1]
    # the columns are what the rewards consume
    columns = {k: [v] for k, v in sample.items() if k != "messages"}
    assert f1_reward([sample["solution"]], **columns) == [1.0]
    fragment = make_fragment_reward(lambda texts: [[1.0, float(len(t))] for t in texts])
    assert len(fragment([sample["solution"]], **columns)) == 1


def test_dedupe_same_id_different_content(tmp_path: Path) -> None:
    d, queries = make_dialogue()
    other = d.model_copy(
        update={
            "utterances": [*d.utterances[:3], Utterance(index=3, speaker="Bob", text="changed")]
        }
    )
    path = tmp_path / "f.jsonl"
    samples = [to_msswift(x, queries[2]) for x in (d, d, other)]
    for sample in samples:
        del sample["query_id"]  # ids default to file stem + line number
    path.write_text("\n".join(json.dumps(sample) for sample in samples) + "\n")
    ds = read_msswift(path)
    assert [x.id for x in ds.dialogues] == ["chat-7", f"chat-7@{content_key(ds.dialogues[1])[:8]}"]
    assert ds.dialogues[1].metadata["msswift_dialogue_id"] == "chat-7"
    assert [q.dialogue_id for q in ds.queries] == ["chat-7", "chat-7", ds.dialogues[1].id]
    assert [q.id for q in ds.queries] == ["f-1", "f-2", "f-3"]


def test_duplicate_query_ids_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "dup.json"
    path.write_text(json.dumps([good_sample(), good_sample()]))
    with pytest.raises(InputError) as info:
        read_msswift(path)
    assert (info.value.record, info.value.field) == (1, "query_id")


def test_write_swift_reads_back(tmp_path: Path) -> None:
    d, queries = make_dialogue()
    corpus_query = Query(id="c", text="anything", type=QueryType.NEGATIVE)
    path = write_swift(
        Dataset(dialogues=[d], queries=[*queries, corpus_query]), tmp_path / "s" / "val.jsonl"
    )
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and "<image>" in json.loads(lines[0])["messages"][1]["content"]
    assert json.loads(lines[0])["image_owner"] == [1, 2, 3]
    ds = read_msswift(path)
    assert [q.id for q in ds.queries] == ["q1", "q2", "q3"] and len(ds.dialogues) == 1
    # images without pixels: the whole file falls back to captions
    no_pixels = d.model_copy(
        update={"images": [i.model_copy(update={"path": None}) for i in d.images]}
    )
    path = write_swift(Dataset(dialogues=[no_pixels], queries=queries), tmp_path / "caption.jsonl")
    sample = json.loads(path.read_text().splitlines()[0])
    assert sample["images"] == [] and "[image: a calm lake]" in sample["messages"][1]["content"]
    assert [i.caption for i in read_msswift(path).dialogues[0].images] == [
        "a calm lake",
        "a trout [big]",
        None,
    ]


def test_images_without_path_need_caption_mode() -> None:
    d, queries = make_dialogue()
    d = d.model_copy(update={"images": [i.model_copy(update={"path": None}) for i in d.images]})
    with pytest.raises(ValueError):
        to_msswift(d, queries[0])


def good_sample() -> dict:
    d, queries = make_dialogue()
    return to_msswift(d, queries[0])


def bad(mutate) -> object:
    sample = good_sample()
    sample["query_id"] = "q-bad"
    out = mutate(sample)
    return sample if out is None else out


def user_replace(old: str, new: str):
    def mutate(s: dict) -> None:
        s["messages"][1]["content"] = s["messages"][1]["content"].replace(old, new)

    return mutate


BAD_CASES = [
    ("not an object", lambda s: ["x"], None),
    ("no messages", lambda s: s.pop("messages") and None, "messages"),
    ("no user", lambda s: s.__setitem__("messages", [s["messages"][0]]), "messages"),
    ("no utterance lines", user_replace("<|utt_id_start|>", "<utt>"), "messages[1].content"),
    (
        "ids not dense",
        user_replace("<|utt_id_start|>2<|utt_id_end|>", "<|utt_id_start|>5<|utt_id_end|>"),
        "messages[1].content",
    ),
    (
        "image ids not dense",
        user_replace("<|img_id_start|>1<|img_id_end|>", "<|img_id_start|>4<|img_id_end|>"),
        "messages[1].content",
    ),
    ("no query", user_replace("<|query_start|>", ""), "messages[1].content"),
    ("bad solution", lambda s: s.__setitem__("solution", "[1, 2]"), "solution"),
    ("out of range", lambda s: s.__setitem__("solution", format_answer([9], [])), "solution"),
    ("disagree", lambda s: s.__setitem__("solution", format_answer([1], [])), "solution"),
    ("image count", lambda s: s.__setitem__("images", ["a.jpg"]), "images"),
    ("dialogue_id type", lambda s: s.__setitem__("dialogue_id", ["x"]), "dialogue_id"),
]


@pytest.mark.parametrize(("name", "mutate", "field"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_records_raise_input_error(
    tmp_path: Path, name: str, mutate, field: str | None
) -> None:
    path = tmp_path / "MLDR_val.json"
    path.write_text(json.dumps([good_sample(), bad(mutate)]))
    with pytest.raises(InputError) as info:
        read_msswift(path)
    assert info.value.file == str(path) and info.value.record == 1 and info.value.field == field


def test_bad_json(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("[{")
    with pytest.raises(InputError) as info:
        read_msswift(path)
    assert info.value.file == str(path)
    lines = tmp_path / "broken.jsonl"
    lines.write_text(json.dumps(good_sample()) + "\n\n{oops\n")
    with pytest.raises(InputError) as info:
        read_msswift(lines)
    assert info.value.record == 3
    empty = tmp_path / "empty.json"
    empty.write_text("  \n")
    assert read_msswift(empty).queries == []
