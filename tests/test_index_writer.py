"""The index writer against the real embedded Postgres: upsert by content hash, re-cuts,
incremental batches, deletion, versioned builds with an atomic serving flip, and the checks."""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable

import numpy as np
import psycopg
import pytest

from ffr_lib.data.dataset import Dataset
from ffr_lib.db import connect
from ffr_lib.fem.fragment_text import fragment_rows
from ffr_lib.index import (
    IndexConfig,
    activate_version,
    check_coverage,
    check_explain_uses_index,
    check_no_duplicates,
    delete_dialogues,
    index_rows,
    list_versions,
    remove_dialogues,
    retire_version,
    search_by_vector,
    serving_version,
    similar_fragments,
)
from ffr_lib.segment import FixedWindowSegmenter, WindowConfig
from ffr_lib.store import write_dataset

pytestmark = pytest.mark.db


class CountingEmbedder:
    """Deterministic bag-of-words vectors (see test_sql_search.HashEmbedder) that counts how
    many texts it embedded."""

    def __init__(self, dim: int = 48, version: str = "hash48@a") -> None:
        self.dimension, self.model_version, self.calls = dim, version, 0

    def encode(self, texts, batch_size: int = 64, normalize: bool = True, **_kw) -> np.ndarray:
        self.calls += len(texts)
        out = np.zeros((len(texts), self.dimension), np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().replace(":", " ").split():
                out[i, zlib.crc32(word.encode()) % self.dimension] += 1.0
            out[i] += 0.3 * np.random.default_rng(zlib.crc32(text.encode())).standard_normal(
                self.dimension
            )
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def _rows(dataset: Dataset, size: int = 4):
    segmenter = FixedWindowSegmenter(WindowConfig(size=size))
    return [r for d in dataset.dialogues for r in fragment_rows(d, segmenter.segment(d))]


def _xmins(url: str) -> dict[tuple[str, str], str]:
    with connect(url) as db:
        return {
            (i, m): x
            for i, m, x in db.execute(
                "SELECT id, embedding_model, xmin::text FROM ffr.fragments"
            ).fetchall()
        }


@pytest.fixture
def stored(db_url: str, synthetic_dataset: Callable[..., Dataset]) -> tuple[str, Dataset]:
    dataset = synthetic_dataset(30)
    write_dataset(dataset, url=db_url)
    return db_url, dataset


def test_bulk_load_builds_index_and_serves(stored) -> None:
    url, dataset = stored
    emb = CountingEmbedder()
    rows = _rows(dataset)
    stats = index_rows(rows, emb, url=url)
    assert stats.fragments == stats.embedded == stats.inserted == len(rows) == 30 * 4
    assert stats.index_built and stats.activated and emb.calls == len(rows)
    assert serving_version(url) == "hash48@a"
    with connect(url) as db:
        stored_rows = db.execute(
            "SELECT id, speakers, started_at, ended_at, vector_dims(embedding), text "
            "FROM ffr.fragments ORDER BY id"
        ).fetchall()
        analyzed = db.execute(
            "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'fragments'"
        ).fetchone()[0]
    assert analyzed
    by_id = {r.id: r for r in rows}
    for fid, speakers, started, ended, dims, text in stored_rows:
        assert dims == 48 and speakers == ["alice", "bob"] and started < ended
        assert text == by_id[fid].text
    versions = list_versions(url)
    assert [
        (v["embedding_model"], v["status"], v["serving"], v["fragments"]) for v in versions
    ] == [("hash48@a", "ready", True, 120)]
    assert check_coverage(url=url)[0] and check_no_duplicates(url=url)[0]


def test_reindexing_same_content_embeds_and_inserts_nothing(stored) -> None:
    url, dataset = stored
    emb = CountingEmbedder()
    index_rows(_rows(dataset), emb, url=url)
    before, calls = _xmins(url), emb.calls
    again = index_rows(_rows(dataset), emb, url=url)
    assert (again.embedded, again.inserted, again.deleted_stale) == (0, 0, 0)
    assert again.unchanged == 120 and not again.index_built
    assert emb.calls == calls  # nothing re-embedded
    assert _xmins(url) == before  # no row rewritten


def test_new_batch_embeds_only_new_dialogues(stored, synthetic_dataset) -> None:
    url, dataset = stored
    emb = CountingEmbedder()
    index_rows(_rows(dataset), emb, url=url)
    before = _xmins(url)
    extra = synthetic_dataset(5, prefix="new", seed=7)
    write_dataset(extra, url=url)
    calls = emb.calls
    stats = index_rows(_rows(extra), emb, url=url)
    assert stats.inserted == stats.embedded == 20 and emb.calls - calls == 20
    assert not stats.index_built  # added to the existing HNSW graph
    after = _xmins(url)
    assert {k: after[k] for k in before} == before  # old rows untouched
    q = emb.encode([_rows(extra)[3].text])[0]
    assert search_by_vector(q, 1, url=url)[0].dialogue_id == "new-00000"
    assert check_coverage(url=url)[0]


def test_recut_replaces_stale_fragments(stored) -> None:
    url, dataset = stored
    emb = CountingEmbedder()
    index_rows(_rows(dataset, size=4), emb, url=url)
    stats = index_rows(_rows(dataset, size=5), emb, url=url)  # 14 utterances -> 5+5+4
    assert stats.deleted_stale > 0 and stats.inserted == 30 * 3
    ok, details = check_coverage(url=url)
    assert ok and details["covered_twice"] == 0 and details["utterances"] == 30 * 14
    assert check_no_duplicates(url=url)[0]


def test_checks_detect_gaps_and_overlaps(stored) -> None:
    url, dataset = stored
    index_rows(_rows(dataset), CountingEmbedder(), url=url)
    with connect(url) as db:
        # an overlapping copy of one fragment under a new id: utterances covered twice
        db.execute(
            "INSERT INTO ffr.fragments (id, dialogue_id, utterance_ids, image_ids, text, "
            "content_hash, embedding_model, embedding) SELECT id || 'x', dialogue_id, "
            "utterance_ids, image_ids, text, content_hash || 'x', embedding_model, embedding "
            "FROM ffr.fragments WHERE dialogue_id = 'syn-00003' ORDER BY id LIMIT 1"
        )
        db.commit()
    ok, details = check_coverage(url=url)
    assert not ok and details["covered_twice"] > 0
    ok, details = check_no_duplicates(url=url)
    assert not ok and details["duplicate_spans"] == 1
    with connect(url) as db:
        db.execute("DELETE FROM ffr.fragments WHERE dialogue_id = 'syn-00003'")
        db.execute(
            "DELETE FROM ffr.fragments WHERE id = (SELECT min(id) FROM ffr.fragments "
            "WHERE dialogue_id = 'syn-00004')"
        )
        db.commit()
    ok, details = check_coverage(url=url)
    assert not ok and details["uncovered"] > 0 and details["covered_twice"] == 0


def test_deleting_a_dialogue_deletes_its_fragments_and_vectors(stored) -> None:
    url, dataset = stored
    emb = CountingEmbedder()
    rows = _rows(dataset)
    index_rows(rows, emb, url=url)
    index_rows(
        rows, CountingEmbedder(32, "hash32@b"), config=IndexConfig(activate="never"), url=url
    )
    victim = next(r for r in rows if r.dialogue_id == "syn-00009")
    q = emb.encode([victim.text])[0]
    assert search_by_vector(q, 1, url=url)[0].dialogue_id == "syn-00009"
    assert delete_dialogues(["syn-00009"], url=url) == 1
    with connect(url) as db:
        left = db.execute(
            "SELECT count(*) FROM ffr.fragments WHERE dialogue_id = 'syn-00009'"
        ).fetchone()[0]
    assert left == 0  # both versions
    assert all(h.dialogue_id != "syn-00009" for h in search_by_vector(q, 50, url=url))
    assert check_coverage(url=url)[0]
    # removing from the index only keeps the dialogue
    assert remove_dialogues(["syn-00010"], url=url) == 8
    with connect(url) as db:
        assert db.execute("SELECT count(*) FROM ffr.dialogues WHERE id = 'syn-00010'").fetchone()[0]


def test_refuses_unstored_dialogues_and_conflicting_ids(db_url: str, synthetic_dataset) -> None:
    dataset = synthetic_dataset(2)
    with pytest.raises(ValueError, match="not stored"):
        index_rows(_rows(dataset), CountingEmbedder(), url=db_url)
    write_dataset(dataset, url=db_url)
    rows = _rows(dataset)
    changed = rows[1].__class__(**{**rows[1].__dict__, "text": "other", "content_hash": ""})
    with pytest.raises(ValueError, match="different content"):
        index_rows([*rows, changed], CountingEmbedder(), url=db_url)
    index_rows(rows, CountingEmbedder(), url=db_url)
    with pytest.raises(ValueError, match="registered with 48"):
        index_rows(rows, CountingEmbedder(16, "hash48@a"), url=db_url)


def test_new_version_builds_beside_old_and_flips_atomically(stored) -> None:
    url, dataset = stored
    rows = _rows(dataset)
    old, new = CountingEmbedder(48, "fem@1"), CountingEmbedder(32, "fem@2")
    index_rows(rows, old, url=url)
    stats = index_rows(rows, new, config=IndexConfig(activate="never"), url=url)
    assert stats.index_built and not stats.activated
    probe = rows[5].id  # the same logical fragment id exists in both versions

    # before the flip: the old version serves, the new one is complete beside it
    assert serving_version(url) == "fem@1"
    assert {h.embedding_model for h in similar_fragments(probe, 10, url=url)} == {"fem@1"}
    with pytest.raises(psycopg.errors.InvalidParameterValue):  # a new-version vector: refused
        search_by_vector(new.encode(["lake"])[0], 5, url=url)

    # a concurrent reader never sees mixed versions or an empty result while we flip
    seen: list[tuple[int, frozenset[str]]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            with connect(url, autocommit=True) as db:
                while not stop.is_set():
                    result = db.execute(
                        "SELECT embedding_model FROM ffr.similar_fragments(%s, 10)", (probe,)
                    ).fetchall()
                    seen.append((len(result), frozenset(r[0] for r in result)))
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(20):
            assert activate_version("fem@2" if i % 2 == 0 else "fem@1", url=url) in {
                "fem@1",
                "fem@2",
            }
    finally:
        stop.set()
        thread.join(30)
    assert not errors, errors
    assert len(seen) > 20
    assert all(n == 10 and len(models) == 1 for n, models in seen), set(seen)
    assert {next(iter(m)) for _n, m in seen} == {"fem@1", "fem@2"}  # both were observed

    # after the final flip: the new version serves, through its own HNSW index
    assert activate_version("fem@2", url=url) == "fem@1"
    assert serving_version(url) == "fem@2"
    q = new.encode(["lake hike"])[0]
    assert {h.embedding_model for h in search_by_vector(q, 10, url=url)} == {"fem@2"}
    assert check_explain_uses_index(q, url=url)[0]

    # the old version can then be retired; the serving one cannot
    with pytest.raises(ValueError, match="serving"):
        retire_version("fem@2", url=url)
    assert retire_version("fem@1", url=url) == 120
    with connect(url) as db:
        indexes = db.execute(
            "SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'fragments_hnsw_%'"
        ).fetchone()[0]
    assert indexes == 1
    with pytest.raises(ValueError, match="retired"):
        activate_version("fem@1", url=url)
    assert len(search_by_vector(q, 10, url=url)) == 10


def test_flip_is_one_transaction(stored) -> None:
    """An open reader transaction (REPEATABLE READ) keeps its version across a flip; a new one
    sees the new version: there is no in-between state."""
    url, dataset = stored
    rows = _rows(dataset)
    index_rows(rows, CountingEmbedder(48, "fem@1"), url=url)
    index_rows(rows, CountingEmbedder(32, "fem@2"), config=IndexConfig(activate="never"), url=url)
    with connect(url) as reader:
        reader.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        assert reader.execute("SELECT ffr.serving_model()").fetchone()[0] == "fem@1"
        activate_version("fem@2", url=url)
        assert reader.execute("SELECT ffr.serving_model()").fetchone()[0] == "fem@1"
        hits = reader.execute(
            "SELECT DISTINCT embedding_model FROM ffr.similar_fragments(%s, 5)", (rows[0].id,)
        ).fetchall()
        assert hits == [("fem@1",)]
        reader.rollback()
        assert reader.execute("SELECT ffr.serving_model()").fetchone()[0] == "fem@2"
