"""The inbox sensor: new files become dialogue batches, bad files are moved aside."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance, SensorResult, SkipReason, build_sensor_context

from ffr_assets.sensors import inbox_sensor
from ffr_lib.data.canonical import write_canonical
from ffr_lib.data.errors import InputError
from ffr_lib.inbox import accept, batch_key, format_of, ingest_batch


def _settled(path: Path) -> Path:
    old = time.time() - 7200
    os.utime(path, (old, old))
    return path


def _good_file(inbox: Path, synthetic_dataset, name: str = "team-chats", n: int = 3) -> Path:
    folder = write_canonical(synthetic_dataset(n), inbox.parent / f"src-{name}")
    target = inbox / f"{name}.jsonl"
    target.write_bytes((Path(folder) / "dialogues.jsonl").read_bytes())
    return _settled(target)


@pytest.fixture
def inbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "inbox"
    folder.mkdir()
    monkeypatch.setenv("FFR_INBOX_DIR", str(folder))
    monkeypatch.setenv("FFR_INBOX_SETTLE_SECONDS", "3600")
    return folder


def test_format_of_names() -> None:
    assert format_of(Path("a.jsonl")) == "canonical"
    assert format_of(Path("chats.locomo.json")) == "locomo"
    assert format_of(Path("x.wechat-raw.json")) == "wechat-raw"
    with pytest.raises(InputError, match="format"):
        format_of(Path("notes.txt"))


def test_sensor_registers_batches_and_moves_bad_files_aside(inbox: Path, synthetic_dataset) -> None:
    good = _good_file(inbox, synthetic_dataset)
    expected_key = batch_key(good)
    bad = inbox / "broken.jsonl"
    bad.write_text('{"id": "x", "source": "s", "utterances": [\n', encoding="utf-8")
    _settled(bad)
    fresh = inbox / "still-copying.jsonl"
    fresh.write_text("{}", encoding="utf-8")  # modified just now: not taken yet

    instance = DagsterInstance.ephemeral()
    result = inbox_sensor(build_sensor_context(instance=instance))
    assert isinstance(result, SensorResult)
    assert [r.partition_key for r in result.run_requests] == [expected_key]
    assert result.dynamic_partitions_requests[0].partition_keys == [expected_key]
    assert (inbox / "accepted" / f"{expected_key}.jsonl").is_file()
    assert (inbox / "rejected" / "broken.jsonl").is_file()
    reason = (inbox / "rejected" / "broken.jsonl.error.txt").read_text()
    assert "broken.jsonl" in reason and "record 1" in reason
    assert fresh.exists()  # left for the next tick

    # Nothing new: the sensor skips.
    assert isinstance(inbox_sensor(build_sensor_context(instance=instance)), SkipReason)


def test_ingest_batch_tags_dialogues_and_is_idempotent(
    inbox: Path, synthetic_dataset, db_url: str
) -> None:
    from ffr_lib.db import connect

    accepted = accept(_good_file(inbox, synthetic_dataset, n=4))
    first = ingest_batch(db_url, accepted.batch)
    second = ingest_batch(db_url, accepted.batch)
    assert first["dialogues_inserted"] == 4
    assert second["dialogues_inserted"] == 0 and second["dialogues_unchanged"] == 4
    with connect(db_url) as db:
        n = db.execute(
            "SELECT count(*) FROM ffr.dialogues WHERE metadata->>'batch' = %s", (accepted.batch,)
        ).fetchone()[0]
    assert n == 4
