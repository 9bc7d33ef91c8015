"""ffr_lib.store against the real embedded server: round trip, idempotence, atomicity, deletes."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest

from ffr_lib.data.dataset import Dataset
from ffr_lib.data.model import Dialogue, Image, Query, QueryType, Utterance
from ffr_lib.db import connect
from ffr_lib.db.migrate import discover
from ffr_lib.store import (
    content_hashes,
    count_rows,
    delete_dialogues,
    load_dataset,
    load_dialogues,
    load_queries,
    normalized,
    write_dataset,
)
from ffr_lib.store import dialogues as store_module

pytestmark = pytest.mark.db

Make = Callable[..., Dataset]


def _snapshot(url: str) -> dict[str, object]:
    """Everything a write could change, including physical row versions (xmin): an update that
    writes identical values still creates a new tuple and would show up here."""
    with connect(url) as conn:
        return {
            table: conn.execute(f"SELECT xmin::text, * FROM ffr.{table} ORDER BY 2, 3").fetchall()
            for table in ("dialogues", "utterances", "images", "queries", "fragments")
        }


def test_round_trip_load_equals_stored(db_url: str, synthetic_dataset: Make) -> None:
    data = synthetic_dataset(12, 9, images_every=3)
    stats = write_dataset(data, url=db_url)
    assert stats.dialogues_inserted == 12 and stats.queries_inserted == 12
    assert stats.utterances_written == 12 * 9 and stats.images_written == 12 * 3
    assert load_dialogues(url=db_url) == data.dialogues
    assert load_queries(url=db_url) == data.queries
    assert load_dialogues(["syn-00003", "missing"], url=db_url) == [data.dialogues[3]]
    assert load_queries(dialogue_ids=["syn-00005"], url=db_url) == [data.queries[5]]
    assert load_dataset(["syn-00001"], url=db_url) == Dataset(
        dialogues=[data.dialogues[1]], queries=[data.queries[1]]
    )
    assert content_hashes(db_url) == {d.id: d.content_hash() for d in data.dialogues}


def test_counts_per_table(db_url: str, synthetic_dataset: Make) -> None:
    empty = count_rows(db_url)
    assert list(empty)[:5] == ["dialogues", "utterances", "images", "queries", "fragments"]
    assert empty["schema_migrations"] == len(discover())  # later migrations add tables too
    assert all(n == 0 for table, n in empty.items() if table != "schema_migrations")
    write_dataset(synthetic_dataset(4, 10, images_every=5), url=db_url)
    counts = count_rows(db_url)
    assert (counts["dialogues"], counts["utterances"], counts["images"], counts["queries"]) == (
        4,
        40,
        8,
        4,
    )


def test_naive_and_offset_timestamps_come_back_as_utc(db_url: str) -> None:
    naive = datetime(2023, 1, 2, 3, 4, 5)
    plus_two = datetime(2023, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    dialogue = Dialogue(
        id="tz",
        source="test",
        speakers=["a"],
        utterances=[
            Utterance(index=0, speaker="a", text="naive", timestamp=naive),
            Utterance(index=1, speaker="a", text="offset", timestamp=plus_two),
            Utterance(index=2, speaker="a", text="none"),
        ],
        metadata={"when": naive},  # not JSON: stored as its ISO string
    )
    write_dataset(Dataset(dialogues=[dialogue]), url=db_url)
    (back,) = load_dialogues(url=db_url)
    expected = datetime(2023, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert [u.timestamp for u in back.utterances] == [expected, expected, None]
    assert back == normalized(dialogue)
    assert back.metadata == {"when": "2023-01-02T03:04:05"}
    # The stored hash is the normalised dialogue's, so it matches what is read back and what a
    # re-ingest of the same source computes.
    assert content_hashes(db_url)["tz"] == back.content_hash()
    assert not write_dataset(Dataset(dialogues=[dialogue]), url=db_url).changed


def test_ingesting_twice_changes_nothing(db_url: str, synthetic_dataset: Make) -> None:
    data = synthetic_dataset(30)
    write_dataset(data, url=db_url)
    counts, hashes, snapshot = count_rows(db_url), content_hashes(db_url), _snapshot(db_url)
    again = write_dataset(synthetic_dataset(30), url=db_url)  # equal data, new objects
    assert not again.changed
    assert (again.dialogues_unchanged, again.queries_unchanged) == (30, 30)
    assert again.utterances_written == again.images_written == 0
    assert count_rows(db_url) == counts
    assert content_hashes(db_url) == hashes
    assert _snapshot(db_url) == snapshot  # not one tuple rewritten


def test_changed_dialogue_is_replaced_atomically(db_url: str, synthetic_dataset: Make) -> None:
    data = synthetic_dataset(3, 6, images_every=2)
    write_dataset(data, url=db_url)
    with connect(db_url) as conn:
        conn.execute(
            "INSERT INTO ffr.fragments (id, dialogue_id, utterance_ids, text, content_hash, "
            "embedding_model) VALUES ('f0', 'syn-00000', '{0,1}', 'x', 'h0', 'fem@1'), "
            "('f1', 'syn-00001', '{0}', 'y', 'h1', 'fem@1')"
        )
    before = _snapshot(db_url)
    changed = data.dialogues[0].model_copy(
        update={
            "utterances": data.dialogues[0].utterances[:3],
            "images": [Image(index=0, utterance_index=2, caption="new picture")],
        }
    )
    meta_only = data.dialogues[1].model_copy(update={"metadata": {"topic": "renamed"}})
    stats = write_dataset(Dataset(dialogues=[changed, meta_only, data.dialogues[2]]), url=db_url)
    assert (stats.dialogues_replaced, stats.dialogues_metadata_updated) == (1, 1)
    assert stats.dialogues_unchanged == 1
    assert (stats.utterances_written, stats.images_written) == (3, 1)
    loaded = {d.id: d for d in load_dialogues(url=db_url)}
    assert loaded["syn-00000"] == changed
    assert loaded["syn-00001"] == meta_only
    after = _snapshot(db_url)
    # fragments of the replaced dialogue were cut from old content: gone; others kept
    assert [row[1] for row in after["fragments"]] == ["f1"]
    # the untouched dialogue's rows are physically the same tuples
    untouched = [r for r in before["utterances"] if r[1] == "syn-00002"]
    assert untouched == [r for r in after["utterances"] if r[1] == "syn-00002"]


def test_query_with_unknown_dialogue_fails_the_whole_batch(
    db_url: str, synthetic_dataset: Make
) -> None:
    write_dataset(synthetic_dataset(5), url=db_url)
    before = _snapshot(db_url)
    batch = synthetic_dataset(8)  # 5 known (one modified) + 3 new dialogues
    batch.dialogues[0] = batch.dialogues[0].model_copy(
        update={"utterances": batch.dialogues[0].utterances[:13]}
    )
    batch.queries.append(
        Query(id="orphan", dialogue_id="no-such-dialogue", text="?", type=QueryType.NEGATIVE)
    )
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        write_dataset(batch, url=db_url)
    assert _snapshot(db_url) == before


def test_exception_mid_batch_leaves_database_unchanged(
    db_url: str, synthetic_dataset: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_dataset(synthetic_dataset(5), url=db_url)
    before = _snapshot(db_url)

    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    # Dialogues, utterances and images are already written when the queries step blows up.
    monkeypatch.setattr(store_module, "_write_queries", explode)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_dataset(synthetic_dataset(10, prefix="syn"), url=db_url)
    assert _snapshot(db_url) == before


def test_batch_with_duplicate_ids_or_bad_gold_is_refused(
    db_url: str, synthetic_dataset: Make
) -> None:
    data = synthetic_dataset(3, 4)
    with pytest.raises(ValueError, match="appears twice"):
        write_dataset(
            Dataset(dialogues=[*data.dialogues, data.dialogues[0]], queries=[]), url=db_url
        )
    bad = Query(
        id="q-bad",
        dialogue_id="syn-00000",
        text="?",
        type=QueryType.UTTERANCE_ONLY,
        gold_utterance_ids=[99],
    )
    with pytest.raises(ValueError, match="out of range"):
        write_dataset(Dataset(dialogues=data.dialogues, queries=[bad]), url=db_url)
    assert count_rows(db_url)["dialogues"] == 0


def test_queries_may_refer_to_dialogues_stored_earlier(
    db_url: str, synthetic_dataset: Make
) -> None:
    data = synthetic_dataset(2)
    write_dataset(Dataset(dialogues=data.dialogues), url=db_url)
    corpus = Query(
        id="corpus-1",
        text="who went hiking?",
        type=QueryType.UTTERANCE_ONLY,
        gold_utterance_ids=[1],
        metadata={"gold_by_dialogue": {"syn-00000": {"utterances": [1], "images": []}}},
    )
    stats = write_dataset(Dataset(queries=[*data.queries, corpus]), url=db_url)
    assert stats.queries_inserted == 3
    edited = data.queries[0].model_copy(update={"text": "a reworded question"})
    stats = write_dataset(Dataset(queries=[edited]), url=db_url)
    assert (stats.queries_updated, stats.queries_inserted) == (1, 0)
    assert load_queries(["corpus-1", data.queries[0].id], url=db_url) == [corpus, edited]


def test_delete_cascades_to_everything_of_that_dialogue(
    db_url: str, synthetic_dataset: Make
) -> None:
    write_dataset(synthetic_dataset(3), url=db_url)
    with connect(db_url) as conn:
        conn.execute(
            "INSERT INTO ffr.fragments (id, dialogue_id, text, content_hash, embedding_model, "
            "embedding) VALUES ('f', 'syn-00001', 't', 'h', 'fem@1', '[1,0,0]')"
        )
    assert delete_dialogues(["syn-00001", "not-there"], url=db_url) == 1
    with connect(db_url) as conn:
        for table in ("utterances", "images", "queries", "fragments"):
            left = conn.execute(
                f"SELECT count(*) FROM ffr.{table} WHERE dialogue_id = 'syn-00001'"
            ).fetchone()[0]
            assert left == 0, table
    counts = count_rows(db_url)
    assert (counts["dialogues"], counts["utterances"], counts["queries"]) == (2, 28, 2)
    assert [d.id for d in load_dialogues(url=db_url)] == ["syn-00000", "syn-00002"]


def test_photochat_sized_ingest_takes_seconds(db_url: str, synthetic_dataset: Make) -> None:
    data = synthetic_dataset(3500, 14)
    started = time.perf_counter()
    stats = write_dataset(data, url=db_url)
    first = time.perf_counter() - started
    started = time.perf_counter()
    again = write_dataset(data, url=db_url)
    second = time.perf_counter() - started
    assert stats.utterances_written == 3500 * 14 and stats.dialogues_inserted == 3500
    assert not again.changed
    print(f"3,500 x 14 ingest: first {first:.2f}s, identical re-ingest {second:.2f}s")
    # Generous bound for a loaded 2-core CI box; about 2 s when the machine is idle.
    assert first < 30 and second < 30
