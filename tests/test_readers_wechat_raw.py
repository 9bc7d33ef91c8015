"""Raw WeChat-MDR annotation reader on fixtures written from the schema in METHOD.md."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ffr_lib.data.model import QueryType
from ffr_lib.data.readers import read_dataset
from ffr_lib.data.readers.wechat_raw import read_wechat_raw

FIXTURE = Path(__file__).parent / "fixtures" / "readers" / "wechat_raw"


def test_dialogue_mapping() -> None:
    ds = read_wechat_raw(FIXTURE / "dialogues.json")
    assert [d.id for d in ds.dialogues] == ["wechat:wx-0001", "wechat:42"]
    market = ds.dialogues[0]
    assert market.speakers == ["Li", "Wang"]
    assert len(market.utterances) == 6
    # The image turn is an utterance with empty text that owns both images.
    assert market.utterances[2].text == "" and market.utterances[2].speaker == "Wang"
    url_image, file_image = market.images
    assert (url_image.utterance_index, file_image.utterance_index) == (2, 2)
    assert url_image.url == "https://example.org/wx/peonies.jpg"
    assert url_image.caption == "pink peonies in a bucket" and url_image.path is None
    # A local image_url is resolved next to the data file, validated and measured.
    green = FIXTURE / "images" / "green.png"
    assert file_image.path == str(green.resolve())
    assert file_image.sha256 == hashlib.sha256(green.read_bytes()).hexdigest()
    assert (file_image.width, file_image.height) == (5, 7)


def test_queries_map_gt_turns_to_utterance_and_image_ids() -> None:
    ds = read_dataset(FIXTURE, "wechat-raw")
    by_id = {q.id: q for q in ds.queries}
    assert list(by_id) == [
        "wechat:wx-0001:q0",
        "wechat:wx-0001:q1",
        "wechat:wx-0001:q2",
        "wechat:wx-0001:q3",
        "wechat:42:q0",
    ]
    both = by_id["wechat:wx-0001:q0"]  # gt_turns [1, 2, 3]: turn 2 is the image turn
    assert (both.type, both.gold_utterance_ids, both.gold_image_ids) == (
        QueryType.MULTIMODAL,
        [1, 3],
        [0, 1],
    )
    assert by_id["wechat:wx-0001:q1"].type is QueryType.UTTERANCE_ONLY
    image_only = by_id["wechat:wx-0001:q2"]
    assert (image_only.type, image_only.gold_utterance_ids, image_only.gold_image_ids) == (
        QueryType.IMAGE_ONLY,
        [],
        [0, 1],
    )
    assert by_id["wechat:wx-0001:q3"].type is QueryType.NEGATIVE
    # gt_turns name turns by utterance_idx (10, 11 here), not by position.
    meeting = by_id["wechat:42:q0"]
    assert meeting.gold_utterance_ids == [0] and meeting.metadata["gt_turns"] == [10]
    assert ds.dialogue_by_id()["wechat:42"].metadata["utterance_idx"] == [10, 11]


def test_jsonl_and_single_object_files(tmp_path: Path) -> None:
    records = json.loads((FIXTURE / "dialogues.json").read_text())
    for record in records:  # keep the copies free of local image files
        for turn in record["dialogue"]:
            if isinstance(turn["utterance"], list):
                turn["utterance"] = [i for i in turn["utterance"] if "://" in i["image_url"]]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    ds = read_wechat_raw(tmp_path / "a.jsonl")
    assert [d.id for d in ds.dialogues] == ["wechat:wx-0001", "wechat:42"]
    assert len(ds.dialogues[0].images) == 1
    (tmp_path / "one.json").write_text(json.dumps(records[1]))
    assert [d.id for d in read_wechat_raw(tmp_path / "one.json").dialogues] == ["wechat:42"]
    assert len(read_wechat_raw(tmp_path / "a.jsonl", limit=1).queries) == 4
