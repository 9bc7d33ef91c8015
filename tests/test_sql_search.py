"""The SQL serving functions against the real embedded Postgres + pgvector: filtered search that
still returns k rows, hybrid search, similar fragments, EXPLAIN uses the HNSW index, recall."""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest

from ffr_lib.data.dataset import Dataset
from ffr_lib.db import connect
from ffr_lib.fem.fragment_text import fragment_rows
from ffr_lib.index import (
    IndexConfig,
    check_explain_uses_index,
    check_hnsw_recall,
    explain_search,
    hybrid_by_vector,
    index_rows,
    search_by_vector,
    similar_fragments,
)
from ffr_lib.segment import FixedWindowSegmenter, WindowConfig
from ffr_lib.store import write_dataset

pytestmark = pytest.mark.db


class HashEmbedder:
    """A deterministic bag-of-words embedder: shared words -> nearby vectors, plus a per-text
    component so that no two distinct texts tie (exact-vs-HNSW comparisons need a strict order).
    The subject of these tests is the SQL, not the model."""

    def __init__(self, dim: int = 48, version: str = "hash48@test") -> None:
        self.dimension, self.model_version = dim, version

    def encode(self, texts, batch_size: int = 64, normalize: bool = True, **_kw) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().replace(":", " ").split():
                out[i, zlib.crc32(word.encode()) % self.dimension] += 1.0
            rng = np.random.default_rng(zlib.crc32(text.encode()))
            out[i] += 0.3 * rng.standard_normal(self.dimension)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def _indexed(url: str, dataset: Dataset, embedder=None, config: IndexConfig | None = None):
    write_dataset(dataset, url=url)
    segmenter = FixedWindowSegmenter(WindowConfig(size=4))
    rows = [r for d in dataset.dialogues for r in fragment_rows(d, segmenter.segment(d))]
    stats = index_rows(rows, embedder or HashEmbedder(), config=config, url=url)
    return rows, stats


def _with_carol(dataset: Dataset, dialogue_ids: set[str]) -> Dataset:
    """Utterance 5 of the given dialogues is said by a third speaker, carol."""
    dialogues = []
    for d in dataset.dialogues:
        if d.id in dialogue_ids:
            utterances = list(d.utterances)
            utterances[5] = utterances[5].model_copy(update={"speaker": "carol"})
            d = d.model_copy(update={"utterances": utterances, "speakers": [*d.speakers, "carol"]})
        dialogues.append(d)
    return Dataset(dialogues=dialogues, queries=dataset.queries)


@pytest.fixture
def corpus(db_url: str, synthetic_dataset: Callable[..., Dataset]):
    """300 dialogues x 16 utterances -> 1,200 fragments of 4 utterances; carol speaks in 3."""
    dataset = _with_carol(
        synthetic_dataset(300, n_utterances=16), {"syn-00007", "syn-00150", "syn-00299"}
    )
    rows, stats = _indexed(db_url, dataset)
    return db_url, rows, HashEmbedder()


def _exact(rows, embedder, vector, keep, k):
    matrix = embedder.encode([r.text for r in rows])
    order = np.argsort(-(matrix @ vector), kind="stable")
    return [rows[i].id for i in order if keep(rows[i])][:k]


def test_unfiltered_search_returns_k_nearest(corpus) -> None:
    url, rows, emb = corpus
    q = emb.encode(["lake hike photo"])[0]
    hits = search_by_vector(q, 10, url=url)
    assert len(hits) == 10
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    expected = _exact(rows, emb, q, lambda r: True, 10)
    assert len({h.fragment_id for h in hits} & set(expected)) >= 9
    assert hits[0].fragment_id == expected[0]
    assert {h.embedding_model for h in hits} == {"hash48@test"}
    # score is the cosine similarity of unit vectors
    top = next(r for r in rows if r.id == hits[0].fragment_id)
    assert hits[0].score == pytest.approx(float(emb.encode([top.text])[0] @ q), abs=1e-5)


def test_selective_dialogue_filter_still_returns_k(corpus) -> None:
    url, rows, emb = corpus
    q = emb.encode(["coffee train"])[0]
    wanted = ["syn-00010", "syn-00200", "syn-00290"]  # 12 of 1,200 fragments
    hits = search_by_vector(q, 10, dialogue_ids=wanted, url=url)
    assert len(hits) == 10
    assert {h.dialogue_id for h in hits} <= set(wanted)
    assert [h.fragment_id for h in hits] == _exact(
        rows, emb, q, lambda r: r.dialogue_id in wanted, 10
    )
    # asking for more than exist returns all that match, not fewer
    assert len(search_by_vector(q, 50, dialogue_ids=wanted, url=url)) == 12


def test_speaker_filter(corpus) -> None:
    url, rows, emb = corpus
    q = emb.encode(["birthday concert"])[0]
    hits = search_by_vector(q, 3, speaker="carol", url=url)
    # carol says utterance 5 of three dialogues: exactly one fragment (4..7) in each
    assert len(hits) == 3
    assert {h.dialogue_id for h in hits} == {"syn-00007", "syn-00150", "syn-00299"}
    assert all(5 in h.utterance_ids for h in hits)
    assert search_by_vector(q, 5, speaker="nobody", url=url) == []
    assert len(search_by_vector(q, 7, speaker="alice", url=url)) == 7


def test_time_range_filter(corpus) -> None:
    url, rows, emb = corpus
    # dialogue d starts on 2024-05-01 + d days; utterances every 3 minutes
    since = datetime(2024, 5, 1, tzinfo=UTC) + timedelta(days=20)
    until = since + timedelta(days=2)  # dialogues 20 and 21 (8 fragments)
    q = emb.encode(["rain beach"])[0]
    hits = search_by_vector(q, 5, since=since, until=until, url=url)
    assert len(hits) == 5
    assert {h.dialogue_id for h in hits} <= {"syn-00020", "syn-00021"}
    assert len(search_by_vector(q, 20, since=since, until=until, url=url)) == 8
    # half-open on one side: from day 298 on -> dialogues 298, 299
    late = search_by_vector(q, 100, since=since + timedelta(days=278), url=url)
    assert {h.dialogue_id for h in late} == {"syn-00298", "syn-00299"}
    # filters combine with AND
    both = search_by_vector(
        q, 10, since=since, until=until, dialogue_ids=["syn-00021", "syn-00150"], url=url
    )
    assert {h.dialogue_id for h in both} == {"syn-00021"} and len(both) == 4


def test_hybrid_search_fuses_text_and_vectors(corpus) -> None:
    url, rows, emb = corpus
    target = next(r for r in rows if r.dialogue_id == "syn-00042")
    with connect(url) as db:  # a word no synthetic text has, in one fragment
        db.execute(
            "UPDATE ffr.fragments SET text = text || ' zeppelin' WHERE id = %s", (target.id,)
        )
        db.commit()
    q = emb.encode([target.text])[0]  # nearest vector: the target itself
    hits = hybrid_by_vector(q, "zeppelins", 5, url=url)  # stemmed full-text match
    assert len(hits) == 5
    # first in both lists: 1/61 + 1/61; the others are in the vector list only
    assert hits[0].fragment_id == target.id
    assert hits[0].score == pytest.approx(2 / 61, abs=1e-12)
    assert [h.score for h in hits[1:]] == pytest.approx([1 / 62, 1 / 63, 1 / 64, 1 / 65])
    # text only (no vector) finds it alone; vector only = the plain vector ranking
    text_only = hybrid_by_vector(None, "zeppelin", 5, url=url)
    assert [h.fragment_id for h in text_only] == [target.id]
    # A question shares some words with its answer, not all: any word matches (all words
    # would find nothing here), and stop words alone match nothing.
    question = hybrid_by_vector(
        None, "where did we see the zeppelins flying over Lisbon?", 5, url=url
    )
    assert [h.fragment_id for h in question] == [target.id]
    assert hybrid_by_vector(None, "where did we", 5, url=url) == []
    q2 = emb.encode(["coffee"])[0]
    assert [h.fragment_id for h in hybrid_by_vector(q2, "", 5, url=url)] == [
        h.fragment_id for h in search_by_vector(q2, 5, url=url)
    ]


def test_hybrid_full_text_ranks_by_bm25_so_a_rare_word_beats_a_repeated_common_one(
    corpus,
) -> None:
    url, rows, _emb = corpus
    rare = next(r for r in rows if r.dialogue_id == "syn-00042")
    repeated = next(r for r in rows if r.dialogue_id == "syn-00043")
    common = [r.id for r in rows if r.dialogue_id not in ("syn-00042", "syn-00043")][:300]
    question = "did the zeppelin fly over lisbon?"
    with connect(url) as db:
        db.execute("UPDATE ffr.fragments SET text = text || ' zeppelin' WHERE id = %s", (rare.id,))
        db.execute(
            "UPDATE ffr.fragments SET text = text || ' lisbon lisbon lisbon' WHERE id = %s",
            (repeated.id,),
        )
        db.execute(
            "UPDATE ffr.fragments SET text = text || ' lisbon' WHERE id = ANY(%s)", (common,)
        )
        (model,) = db.execute("SELECT embedding_model FROM ffr.serving").fetchone()
        db.execute("SELECT ffr.refresh_text_stats(%s)", (model,))
        db.commit()
        stats = db.execute(
            "SELECT fragments FROM ffr.lexeme_stats WHERE embedding_model = %s AND lexeme = %s",
            (model, "lisbon"),
        ).fetchone()
        assert stats == (len(common) + 1,)
    hits = hybrid_by_vector(None, question, 5, url=url)
    assert hits[0].fragment_id == rare.id  # idf: the word in 1 fragment outweighs the one in 301
    with connect(url) as db:  # without stats (an index older than 0007): ts_rank, no idf
        db.execute("DELETE FROM ffr.text_stats")
        db.commit()
    hits = hybrid_by_vector(None, question, 5, url=url)
    assert hits[0].fragment_id == repeated.id


def test_similar_fragments_excludes_itself(corpus) -> None:
    url, rows, emb = corpus
    source = rows[17]
    hits = similar_fragments(source.id, 5, url=url)
    assert len(hits) == 5
    assert source.id not in {h.fragment_id for h in hits}
    expected = _exact(rows, emb, emb.encode([source.text])[0], lambda r: r.id != source.id, 5)
    assert len({h.fragment_id for h in hits} & set(expected)) >= 4
    with pytest.raises(psycopg.errors.NoDataFound, match="not in the serving index"):
        similar_fragments("frag-does-not-exist", 5, url=url)


def test_bad_arguments_are_refused(corpus) -> None:
    url, _rows, emb = corpus
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="48"):
        search_by_vector(np.ones(12, np.float32), 5, url=url)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="k must be"):
        search_by_vector(emb.encode(["x"])[0], 0, url=url)
    # user text is a bound parameter, never SQL: an injection attempt is just a speaker name
    assert (
        search_by_vector(
            emb.encode(["x"])[0], 5, speaker="x'; DROP TABLE ffr.fragments; --", url=url
        )
        == []
    )
    with connect(url) as db:
        assert db.execute("SELECT count(*) FROM ffr.fragments").fetchone()[0] == 1200


def test_search_before_any_index_is_a_clear_error(db_url: str) -> None:
    with pytest.raises(psycopg.errors.NoDataFound, match="no FEM version is serving"):
        search_by_vector(np.ones(8, np.float32), 5, url=db_url)


def test_explain_uses_hnsw_index(corpus) -> None:
    url, _rows, emb = corpus
    passed, details = check_explain_uses_index(emb.encode(["lake"])[0], 10, url=url)
    assert passed, details  # at ef_search 200 and 1,200 rows a scan may be cheaper: forced ok
    with connect(url) as db:  # a smaller candidate list: the planner picks the index itself
        db.execute("UPDATE ffr.fem_versions SET ef_search = 40")
        db.commit()
    passed, details = check_explain_uses_index(emb.encode(["lake"])[0], 10, url=url)
    assert passed and not details["forced"], details
    # filtered by speaker: still the HNSW index (iterative scan), not a scan + sort
    plan = explain_search(emb.encode(["lake"])[0], 10, speaker="alice", url=url)
    assert details["expected_index"] in json.dumps(plan)
    # without the index the check fails (and the search still works, exactly)
    with connect(url) as db:
        db.execute(f"DROP INDEX ffr.{details['expected_index']}")
        db.commit()
    passed, details = check_explain_uses_index(emb.encode(["lake"])[0], 10, url=url)
    assert not passed and details["forced"]
    assert not any(i.startswith("fragments_hnsw_") for i in details["indexes_used"])
    assert len(search_by_vector(emb.encode(["lake"])[0], 10, url=url)) == 10
    assert details["expected_index"].startswith("fragments_hnsw_")


def test_hnsw_recall_against_exact(corpus) -> None:
    url, _rows, emb = corpus
    rng = random.Random(0)
    words = ["lake", "hike", "photo", "dinner", "train", "cat", "birthday", "rain", "beach"]
    queries = [" ".join(rng.sample(words, 3)) for _ in range(30)]
    passed, details = check_hnsw_recall(emb.encode(queries), k=10, url=url)
    assert passed, details
    assert details["n_queries"] == 30 and details["recall"] >= 0.95
    # a threshold above 1 cannot pass: the check really compares
    assert not check_hnsw_recall(emb.encode(queries[:3]), k=10, threshold=1.01, url=url)[0]


def test_full_precision_vector_index_also_works(db_url: str, synthetic_dataset) -> None:
    _rows, stats = _indexed(
        db_url,
        synthetic_dataset(40),
        HashEmbedder(32, "hash32@vec"),
        IndexConfig(vector_type="vector"),
    )
    assert stats.index_built and stats.activated
    q = HashEmbedder(32, "hash32@vec").encode(["cat map"])[0]
    assert len(search_by_vector(q, 10, url=db_url)) == 10
    passed, details = check_explain_uses_index(q, url=db_url)
    assert passed, details
    # 160 fragments: a scan is cheaper and the planner rightly takes it; the index still matches
    assert details["forced"] and "Seq Scan" in str(details["natural_plan"])
    assert explain_search(q, url=db_url)["Plan"]  # the natural plan is available too
