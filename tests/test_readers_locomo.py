"""LoCoMo reader: sessions, images without the leaking `query` field, evidence normalisation."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from ffr_lib.data.model import QueryType
from ffr_lib.data.readers import read_dataset
from ffr_lib.data.readers.locomo import (
    normalise_evidence,
    parse_session_date,
    read_locomo_with_warnings,
)

FIXTURE = Path(__file__).parent / "fixtures" / "readers" / "locomo" / "locomo10.json"


@pytest.fixture(scope="module")
def loaded():
    return read_locomo_with_warnings(FIXTURE)


def test_sessions_are_concatenated_in_numeric_order(loaded) -> None:
    ds, _ = loaded
    conv = ds.dialogues[0]
    assert conv.id == "locomo:conv-1" and conv.speakers == ["Caroline", "Melanie"]
    # session_10 comes after session_2, not after session_1.
    assert conv.metadata["dia_ids"] == [
        "D1:1",
        "D1:2",
        "D1:3",
        "D2:1",
        "D2:2",
        "D2:3",
        "D10:1",
        "D10:2",
    ]
    assert [s["session"] for s in conv.metadata["sessions"]] == [1, 2, 10]
    assert [s["first_utterance"] for s in conv.metadata["sessions"]] == [0, 3, 6]
    assert conv.utterances[0].timestamp == datetime(2023, 5, 8, 13, 56)
    assert conv.utterances[4].timestamp == datetime(2023, 5, 25, 8, 20)
    assert conv.utterances[7].timestamp == datetime(2023, 7, 3, 19, 5)


def test_images_are_urls_with_captions_and_query_is_dropped(loaded) -> None:
    ds, _ = loaded
    conv1, conv2 = ds.dialogues
    assert [(i.utterance_index, i.url, i.caption) for i in conv1.images] == [
        (2, "https://example.org/locomo/poster.jpg", "a photo of a rainbow poster on a wall"),
        (4, "https://example.org/locomo/sunrise.jpg", "a painting of a sunrise over a lake"),
    ]
    assert all(i.path is None for i in conv1.images)
    # Two URLs on one turn: two images owned by the same utterance.
    assert [(i.index, i.utterance_index) for i in conv2.images] == [(0, 1), (1, 1)]
    # The stock-photo search strings appear nowhere in what was read.
    dumped = ds.model_dump_json()
    for leak in ("pride support group poster", "lake sunrise painting", "clothing store window"):
        assert leak not in dumped


def test_queries_gold_and_categories(loaded) -> None:
    ds, _ = loaded
    q = {x.id: x for x in ds.queries}
    assert q["locomo:conv-1:q0"].gold_utterance_ids == [0]
    assert q["locomo:conv-1:q0"].type is QueryType.UTTERANCE_ONLY
    assert q["locomo:conv-1:q0"].metadata["category"] == 2
    assert q["locomo:conv-1:q0"].metadata["answer"] == "7 May 2023"
    # "D2:1; D2:2" is two references; D2:2 owns the sunrise image -> multimodal.
    painted = q["locomo:conv-1:q1"]
    assert (painted.type, painted.gold_utterance_ids, painted.gold_image_ids) == (
        QueryType.MULTIMODAL,
        [3, 4],
        [1],
    )
    assert q["locomo:conv-1:q2"].gold_utterance_ids == [6]  # "D:11:26"-style "D:10:1"
    kids = q["locomo:conv-1:q3"]  # "D10:02" resolves, "D30:05" does not
    assert kids.gold_utterance_ids == [7] and kids.metadata["answer"] == "3"
    assert kids.metadata["evidence_warnings"] == ["evidence D30:5 is not a dia_id of this sample"]
    assert "locomo:conv-1:q5" not in q  # no resolvable evidence at all: skipped, reported
    adversarial = q["locomo:conv-1:q6"]
    assert adversarial.type is QueryType.NEGATIVE
    assert adversarial.gold_utterance_ids == [] and adversarial.gold_image_ids == []
    assert adversarial.metadata["adversarial_answer"] == "a sunrise"
    assert adversarial.metadata["evidence_utterance_ids"] == [3]
    assert q["locomo:conv-2:q0"].gold_image_ids == [0, 1]
    assert q["locomo:conv-2:q2"].type is QueryType.NEGATIVE
    assert len(ds.queries) == 9


def test_warnings_are_collected_not_raised(loaded) -> None:
    ds, warnings = loaded
    assert warnings == [
        "locomo:conv-1:q3: evidence D30:5 is not a dia_id of this sample",
        "locomo:conv-1:q5: evidence D30:5 is not a dia_id of this sample",
        "locomo:conv-1:q5: no resolvable evidence; question skipped",
    ]
    assert ds.dialogues[0].metadata["reader_warnings"] == warnings
    assert ds.dialogues[1].metadata["reader_warnings"] == []


@pytest.mark.parametrize(
    ("raw", "refs", "n_problems"),
    [
        ("D1:3", ["D1:3"], 0),
        ("D8:6; D9:17", ["D8:6", "D9:17"], 0),
        ("D:11:26", ["D11:26"], 0),
        ("D30:05", ["D30:5"], 0),
        ("D4:1, D4:2 and D5:7", ["D4:1", "D4:2", "D5:7"], 0),
        ("D3:4 (see photo)", ["D3:4"], 1),
        ("see session 3", [], 1),
        ("", [], 1),
        (17, [], 1),
    ],
)
def test_normalise_evidence(raw: object, refs: list[str], n_problems: int) -> None:
    found, problems = normalise_evidence(raw)
    assert found == refs and len(problems) == n_problems


def test_session_dates() -> None:
    assert parse_session_date("1:56 pm on 8 May, 2023") == datetime(2023, 5, 8, 13, 56)
    assert parse_session_date("12:09 am on 13 September, 2023") == datetime(2023, 9, 13, 0, 9)
    assert parse_session_date("yesterday") is None


def test_unparseable_date_is_a_warning_and_limit(tmp_path: Path) -> None:
    data = json.loads(FIXTURE.read_text())
    data[1]["conversation"]["session_2_date_time"] = "sometime in spring"
    (tmp_path / "locomo10.json").write_text(json.dumps(data))
    ds, warnings = read_locomo_with_warnings(tmp_path)  # a folder holding locomo10.json
    assert any("is not a date" in w for w in warnings)
    assert ds.dialogues[1].utterances[3].timestamp is None
    limited = read_dataset(tmp_path / "locomo10.json", "locomo", limit=1)
    assert [d.id for d in limited.dialogues] == ["locomo:conv-1"]
    assert {x.dialogue_id for x in limited.queries} == {"locomo:conv-1"}
