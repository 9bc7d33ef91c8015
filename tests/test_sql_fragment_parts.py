"""A long fragment is found by its best part (issue 14, migration 0008), against the real
embedded Postgres + pgvector: the chunked embedder's part vectors are written beside the
fragment, ``ffr.search_fragments`` scores a fragment by its nearest part (or its own vector),
through the parts' HNSW index as well as exactly, under filters too, and parts go with their
fragment on a re-cut and with their version on retirement."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from conftest import RandomEmbedder

from ffr_lib.data.dataset import Dataset
from ffr_lib.db import connect
from ffr_lib.fem.fragment_text import ChunkedEmbedder, fragment_rows
from ffr_lib.index import IndexConfig, index_rows, search_by_vector
from ffr_lib.index.checks import check_explain_uses_index, check_hnsw_recall
from ffr_lib.index.writer import activate_version, parts_index_name, retire_version
from ffr_lib.models.encoder import TextEncoder
from ffr_lib.segment import FixedWindowSegmenter, WindowConfig
from ffr_lib.store import write_dataset

pytestmark = pytest.mark.db

WINDOW = 24  # tokens the toy encoder reads: an 8-utterance fragment needs several chunks


class NarrowEncoder(RandomEmbedder):
    """Random unit vectors behind a real tokenizer and a narrow window, so the real
    :class:`ChunkedEmbedder` cuts most fragments into parts."""

    max_seq_length = WINDOW

    def __init__(self, version: str) -> None:
        super().__init__(dim=16, version=version)
        self.tokenizer = TextEncoder.get("minilm").tokenizer


@pytest.fixture
def parts_corpus(db_url: str, synthetic_dataset: Callable[..., Dataset]):
    """150 dialogues x 16 utterances -> 300 fragments of 8 utterances, most of them in parts."""
    dataset = synthetic_dataset(150, n_utterances=16)
    write_dataset(dataset, url=db_url)
    segmenter = FixedWindowSegmenter(WindowConfig(size=8))
    rows = [r for d in dataset.dialogues for r in fragment_rows(d, segmenter.segment(d))]
    embedder = ChunkedEmbedder(NarrowEncoder("narrow@parts"))
    stats = index_rows(rows, embedder, config=IndexConfig(ef_search=40), url=db_url)
    assert stats.activated and stats.inserted == len(rows) == 300
    return db_url, embedder, rows, stats, dataset


def _parts(url: str, model: str) -> dict[str, int]:
    with connect(url) as db:
        return dict(
            db.execute(
                "SELECT fragment_id, count(*) FROM ffr.fragment_parts WHERE embedding_model = %s "
                "GROUP BY fragment_id",
                (model,),
            ).fetchall()
        )


def test_long_fragments_keep_a_vector_per_chunk(parts_corpus) -> None:
    url, embedder, rows, stats, _dataset = parts_corpus
    stored = _parts(url, stats.embedding_model)
    expected = {r.id: len(embedder.chunks(r.text)) for r in rows}
    assert stats.parts == sum(stored.values()) > 0
    assert stored == {i: n for i, n in expected.items() if n > 1}
    # The fragment's own vector is still the token-weighted mean of its parts.
    vectors, parts = embedder.encode_parts([rows[0].text])
    assert len(parts[0]) == stored[rows[0].id]
    assert np.allclose(vectors[0], embedder.encode([rows[0].text])[0], atol=1e-6)


def test_a_fragment_is_found_by_its_best_part(parts_corpus) -> None:
    url, embedder, rows, _stats, _dataset = parts_corpus
    target = next(r for r in rows if len(embedder.chunks(r.text)) >= 3)
    last_chunk = embedder.chunks(target.text)[-1][0]
    query = embedder.text.encode([last_chunk])[0]
    # The mean alone ranks the fragment far down: one chunk of three or more moves it little.
    means = embedder.encode([r.text for r in rows])
    by_mean = [rows[i].id for i in np.argsort(-(means @ query))]
    assert by_mean.index(target.id) > 0
    for hits in (
        search_by_vector(query, 5, url=url),  # the HNSW path
        search_by_vector(query, 5, dialogue_ids=[target.dialogue_id], url=url),  # exact
    ):
        assert hits[0].fragment_id == target.id
        assert hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_index_search_agrees_with_exact_search_over_parts(parts_corpus) -> None:
    url, embedder, _rows, stats, _dataset = parts_corpus
    queries = embedder.text.encode([f"query {i}" for i in range(20)])
    ok, details = check_hnsw_recall(queries, embedding_model=stats.embedding_model, url=url)
    assert ok, details
    ok, details = check_explain_uses_index(
        queries[0], embedding_model=stats.embedding_model, url=url
    )
    assert ok, details
    # Every hit's score is its best part's (or its own vector's) cosine, recomputed here.
    with connect(url) as db:
        for q in queries[:5]:
            for hit in search_by_vector(q, 10, url=url):
                vectors = [
                    np.asarray(r[0].to_numpy(), np.float32)
                    for r in db.execute(
                        "SELECT embedding FROM ffr.fragment_parts WHERE fragment_id = %s "
                        "AND embedding_model = %s UNION ALL SELECT embedding FROM ffr.fragments "
                        "WHERE id = %s AND embedding_model = %s",
                        (hit.fragment_id, stats.embedding_model) * 2,
                    ).fetchall()
                ]
                assert hit.score == pytest.approx(max(float(v @ q) for v in vectors), abs=1e-5)


def test_parts_go_with_their_fragment_and_their_version(parts_corpus) -> None:
    url, embedder, rows, stats, dataset = parts_corpus
    model = stats.embedding_model
    dialogue = dataset.dialogues[0]
    old_ids = {r.id for r in rows if r.dialogue_id == dialogue.id}
    assert old_ids & set(_parts(url, model))
    # Re-cut one dialogue into fragments of 4: its old fragments go, and their parts with them.
    recut = fragment_rows(dialogue, FixedWindowSegmenter(WindowConfig(size=4)).segment(dialogue))
    index_rows(recut, embedder, url=url)
    stored = _parts(url, model)
    assert not old_ids & set(stored)
    assert {r.id: stored.get(r.id, 1) for r in recut} == {
        r.id: len(embedder.chunks(r.text)) for r in recut
    }
    # Indexing the same rows again writes nothing new (idempotent), parts included.
    again = index_rows(recut, embedder, url=url)
    assert again.inserted == again.parts == 0 and _parts(url, model) == stored
    # A retired version loses its parts and the parts' HNSW index.
    other = ChunkedEmbedder(NarrowEncoder("narrow@other"))
    index_rows(
        [
            r
            for d in dataset.dialogues[1:]
            for r in fragment_rows(d, FixedWindowSegmenter(WindowConfig(size=8)).segment(d))
        ]
        + recut,
        other,
        url=url,
    )
    activate_version(other.model_version, url=url)
    retire_version(model, url=url)
    assert _parts(url, model) == {}
    with connect(url) as db:
        names = {r[0] for r in db.execute("SELECT indexname FROM pg_indexes").fetchall()}
    assert parts_index_name(model) not in names
    assert parts_index_name(other.model_version) in names
