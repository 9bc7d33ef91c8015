"""Python side of the SQL serving functions: embed a query with the serving FEM and call
``ffr.search_fragments`` / ``ffr.hybrid_search`` / ``ffr.similar_fragments``.

All values go to PostgreSQL as bound parameters; the SQL functions do the searching, so Python,
psql and any BI tool get the same answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
from pydantic import BaseModel

from ffr_lib.db.engine import connect, with_retry
from ffr_lib.fem.fragment_text import embedder_for_version
from ffr_lib.models.encoder import TextEncoder

_COLUMNS = "fragment_id, dialogue_id, utterance_ids, image_ids, text, score, embedding_model"


class Hit(BaseModel):
    """One search result (a row of ``ffr.fragment_hit``)."""

    fragment_id: str
    dialogue_id: str
    utterance_ids: list[int]
    image_ids: list[int]
    text: str
    score: float
    embedding_model: str


def _hits(rows: Sequence[tuple]) -> list[Hit]:
    keys = [c.strip() for c in _COLUMNS.split(",")]
    return [Hit(**dict(zip(keys, row, strict=True))) for row in rows]


def _vector(embedding: Any) -> np.ndarray:
    return np.asarray(embedding, dtype=np.float32).reshape(-1)


def search_by_vector(
    embedding: Any,
    k: int = 10,
    *,
    dialogue_ids: Sequence[str] | None = None,
    speaker: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    url: str | None = None,
    conn: psycopg.Connection | None = None,
) -> list[Hit]:
    """``ffr.search_fragments``: the k fragments nearest to ``embedding`` in the serving version
    that pass the filters."""
    _check_text("speaker", speaker)
    _check_text("dialogue_ids", list(dialogue_ids or []))
    params = (
        _vector(embedding),
        k,
        list(dialogue_ids) if dialogue_ids else None,
        speaker,
        since,
        until,
    )
    query = (
        f"SELECT {_COLUMNS} FROM ffr.search_fragments(%s, %s, %s::text[], %s, "
        "%s::timestamptz, %s::timestamptz)"
    )
    return _run(query, params, url, conn)


def hybrid_by_vector(
    embedding: Any,
    query_text: str,
    k: int = 10,
    *,
    url: str | None = None,
    conn: psycopg.Connection | None = None,
) -> list[Hit]:
    """``ffr.hybrid_search``: reciprocal-rank fusion of full-text and vector search. NUL
    characters in ``query_text`` (which PostgreSQL text cannot hold) are read as spaces; every
    other character, SQL metacharacters included, is searched as typed (a bound parameter)."""
    vector = None if embedding is None else _vector(embedding)
    query_text = query_text.replace("\x00", " ") if query_text else query_text
    query = f"SELECT {_COLUMNS} FROM ffr.hybrid_search(%s::vector, %s, %s)"
    return _run(query, (vector, query_text, k), url, conn)


def similar_fragments(
    fragment_id: str,
    k: int = 10,
    *,
    url: str | None = None,
    conn: psycopg.Connection | None = None,
) -> list[Hit]:
    """``ffr.similar_fragments``: the k fragments nearest to a stored one (itself excluded)."""
    _check_text("fragment_id", fragment_id)
    query = f"SELECT {_COLUMNS} FROM ffr.similar_fragments(%s, %s)"
    return _run(query, (fragment_id, k), url, conn)


def _check_text(name: str, value: Any) -> None:
    """PostgreSQL text cannot hold NUL: say so clearly instead of a driver error."""
    values = value if isinstance(value, list | tuple) else [value]
    if any(isinstance(v, str) and "\x00" in v for v in values):
        raise ValueError(f"{name} contains a NUL character (\\x00), which text cannot hold")


def _run(query: str, params: tuple, url: str | None, conn: psycopg.Connection | None) -> list[Hit]:
    """Run one search statement. Without ``conn`` it opens its own connection and, since a
    search is read-only, retries while the server is unreachable or restarting
    (``FFR_DB_RETRY_SECONDS``, default 15 s) before raising ``DatabaseUnavailable``."""
    if conn is not None:
        return _hits(conn.execute(query, params).fetchall())

    def once() -> list[Hit]:
        with connect(url) as db:
            return _hits(db.execute(query, params).fetchall())

    return with_retry(once, url=url)


def serving_encoder(url: str | None = None) -> Any:
    """The query embedder of the serving FEM version: the text encoder at the registered
    ``model_path`` (a fine-tuned folder or an alias such as ``minilm``), through its
    :class:`~ffr_lib.fem.fragment_text.ChunkedEmbedder` when the version was indexed in chunks
    (``+parts``, or ``+chunks`` before parts), so its ``model_version`` is the serving one."""
    with connect(url) as db:
        row = db.execute(
            "SELECT v.embedding_model, v.model_path FROM ffr.serving s "
            "JOIN ffr.fem_versions v USING (embedding_model) WHERE s.singleton"
        ).fetchone()
    if row is None:
        raise LookupError("no FEM version is serving yet: build the fragment index first")
    model, path = row
    if not path:
        raise LookupError(f"serving FEM {model} has no model_path: cannot embed queries")
    encoder = TextEncoder.get(path)
    embedder = embedder_for_version(encoder, model)
    if embedder is None:
        # The folder changed since it was indexed: query vectors would not match the index.
        raise LookupError(
            f"the weights at {path} are {encoder.model_version}, the index serves {model}"
        )
    return embedder


def embed_query(encoder: Any, text: str) -> np.ndarray:
    """A query vector (with the model's "query" prompt when it has one, as e5 does)."""
    kwargs: dict[str, Any] = {}
    if "query" in (getattr(encoder, "prompts", None) or {}):
        kwargs["prompt_name"] = "query"
    return np.asarray(encoder.encode([text], **kwargs), dtype=np.float32)[0]


def search(
    text: str,
    k: int = 10,
    *,
    dialogue_ids: Sequence[str] | None = None,
    speaker: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    hybrid: bool = False,
    encoder: Any = None,
    url: str | None = None,
) -> list[Hit]:
    """Embed ``text`` with the serving FEM (or ``encoder``) and search. If serving flips between
    embedding and searching (results name another version), embed again with the new one once."""
    _check_text("speaker", speaker)
    _check_text("dialogue_ids", list(dialogue_ids or []))
    for _attempt in range(2):
        enc = encoder or with_retry(lambda: serving_encoder(url), url=url)
        vector = embed_query(enc, text)
        if hybrid:
            if dialogue_ids or speaker or since or until:
                raise ValueError("hybrid search takes no filters (use the vector search)")
            hits = hybrid_by_vector(vector, text, k, url=url)
        else:
            hits = search_by_vector(
                vector,
                k,
                dialogue_ids=dialogue_ids,
                speaker=speaker,
                since=since,
                until=until,
                url=url,
            )
        if encoder is not None or all(h.embedding_model == enc.model_version for h in hits):
            return hits
    return hits
