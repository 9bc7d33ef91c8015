"""chitchat-dataset reader on a fixture in the package's layout and on the real package."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from ffr_lib.data.readers import read_dataset
from ffr_lib.data.readers.chitchat import read_chitchat

FIXTURE = Path(__file__).parent / "fixtures" / "readers" / "chitchat" / "conversations.json"


def test_fixture_mapping() -> None:
    ds = read_chitchat(FIXTURE)
    assert [d.id for d in ds.dialogues] == ["chitchat:c-1", "chitchat:c-2"]
    first = ds.dialogues[0]
    assert first.speakers == ["A", "B"]
    assert [(u.speaker, u.text) for u in first.utterances] == [
        ("A", "Hello"),
        ("A", "How are you?"),
        ("B", "good, you?"),
        ("A", "fine"),
    ]
    assert first.utterances[1].timestamp == datetime(2018, 5, 2, 19, 38, 20, tzinfo=UTC)
    assert first.metadata["group_starts"] == [0, 2, 3]
    assert first.metadata["sender_ids"] == ["u-9", "u-3"]
    assert first.metadata["prompt"] == "What if unicorns were real?"
    assert first.metadata["ratings"] == {"witty": 3, "upbeat": 4, "interesting": 5}
    second = ds.dialogues[1]
    assert second.speakers == ["A"] and "prompt" not in second.metadata
    assert ds.queries == [] and all(not d.images for d in ds.dialogues)


def test_limit() -> None:
    assert [d.id for d in read_chitchat(FIXTURE, limit=1).dialogues] == ["chitchat:c-1"]
    assert read_dataset(FIXTURE, "chitchat", limit=0).dialogues == []


def test_full_package_read() -> None:
    start = time.perf_counter()
    ds = read_dataset("-", "chitchat")
    seconds = time.perf_counter() - start
    assert len(ds.dialogues) == 7168
    assert sum(len(d.utterances) for d in ds.dialogues) == 258145
    assert len({d.id for d in ds.dialogues}) == 7168
    # The package's first conversation (its own test pins this key).
    assert ds.dialogues[0].id == "chitchat:a07edb12-6b91-4138-b11e-02421888d699"
    assert ds.dialogues[0].utterances[0].text == "Hello"
    assert all(len(d.speakers) in (1, 2) for d in ds.dialogues)
    assert all(u.timestamp is not None for u in ds.dialogues[100].utterances)
    assert seconds < 60
