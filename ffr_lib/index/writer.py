"""Write fragments and their vectors into the pgvector index, one FEM version at a time.

- Bulk load by binary COPY into a staging table, then ``INSERT ... ON CONFLICT DO NOTHING``
  into ``ffr.fragments``: rows are keyed by ``(content_hash, embedding_model)``, so indexing the
  same content again embeds nothing and inserts nothing (upsert by content hash).
- Per indexed dialogue, rows of this version that the new cut no longer contains are deleted in
  the same transaction, so every utterance stays covered exactly once after a re-cut.
- The HNSW index of a version is built AFTER its first bulk load (much faster than inserting
  into a live graph), then ``ANALYZE``; later batches are added to the existing graph.
- Versions: ``ffr.fem_versions`` registers each FEM version; ``ffr.serving`` names the one the
  SQL functions search. A new FEM is built beside the old one and :func:`activate_version` flips
  the pointer in one transaction; :func:`retire_version` drops an old version afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from pydantic import BaseModel, Field

from ffr_lib.db.engine import connect
from ffr_lib.fem.fragment_text import FragmentRow
from ffr_lib.store.dialogues import delete_dialogues as store_delete

log = logging.getLogger(__name__)

# Serialises index writers (two materialisations of overlapping batches); readers never wait.
INDEX_LOCK_KEY = 0x0FF2_0004
# Longest fragment text the index takes (UTF-8 bytes). The full-text vector generated from it
# (ffr.fragments.tsv) is limited to 1 MB by PostgreSQL and can reach ~2x the text's size for
# text made of unique short words; 400 kB keeps every fragment under that limit. Readers cap an
# utterance at 100,000 characters (ffr_lib.data.model.MAX_UTTERANCE_CHARS).
MAX_FRAGMENT_TEXT_BYTES = 400_000
# The GIN indexes of ffr.fragments (sql/migrations/0002): full text and speakers.
GIN_INDEXES = ("ffr.fragments_tsv_idx", "ffr.fragments_speakers_idx")


class IndexConfig(BaseModel):
    """How a FEM version is indexed. Stored in ``ffr.fem_versions`` when the version is created
    (later calls for the same version keep the stored settings)."""

    vector_type: Literal["vector", "halfvec"] = Field(
        "halfvec",
        description="type of the HNSW index: halfvec halves index memory (up to 4,000 dims) at a "
        "recall cost far below HNSW's own; vectors are stored in full precision either way",
    )
    # The defaults are the setting that met recall@10 >= 0.95 at the lowest p50 on 100,005 real
    # MiniLM fragment vectors (PhotoChat + chitchat), of halfvec/vector x m 16/24/32 x
    # ef_construction 64/128 x ef_search 40-200 (BENCHMARKS.md, issue 18): halfvec, m 16,
    # ef_construction 128, ef_search 100: recall@10 0.956-0.958, p50 2.5-2.9 ms through
    # ffr.search_fragments (the former default, ef_construction 64 / ef_search 200: 0.968 at
    # 4.2 ms). Smaller corpora get a higher recall at the same ef_search.
    hnsw_m: int = Field(16, ge=2, le=100)
    ef_construction: int = Field(128, ge=4, le=1000)
    ef_search: int = Field(100, ge=1, le=1000, description="read by the search functions")
    embed_batch_size: int = Field(64, ge=1)
    copy_batch_rows: int = Field(20_000, ge=1, description="rows per COPY/INSERT transaction")
    maintenance_work_mem: str = Field("512MB", description="for the HNSW build")
    activate: Literal["if_none", "always", "never"] = Field(
        "if_none",
        description="flip serving to this version after the build: only when nothing serves yet "
        "(default), always, or never (flip later with activate_version)",
    )


@dataclass
class IndexStats:
    """What one :func:`index_rows` call did, with timings for throughput reports."""

    embedding_model: str
    fragments: int = 0
    embedded: int = 0
    inserted: int = 0
    parts: int = 0  # chunk vectors of the long fragments inserted (0008)
    unchanged: int = 0
    deleted_stale: int = 0
    index_built: bool = False
    activated: bool = False
    seconds_embed: float = 0.0
    seconds_write: float = 0.0
    seconds_index: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def seconds_total(self) -> float:
        return self.seconds_embed + self.seconds_write + self.seconds_index


def index_name(embedding_model: str) -> str:
    """A stable, valid identifier for a version's HNSW index (version strings contain '@')."""
    return "fragments_hnsw_" + hashlib.sha256(embedding_model.encode()).hexdigest()[:16]


def parts_index_name(embedding_model: str) -> str:
    """The identifier of the HNSW index over a version's fragment parts (0008)."""
    return "fragment_parts_hnsw_" + hashlib.sha256(embedding_model.encode()).hexdigest()[:16]


#: The tables a version has an HNSW index on, with the index name of each.
HNSW_TABLES = {"fragments": index_name, "fragment_parts": parts_index_name}


def hnsw_index_sql(
    embedding_model: str,
    dimension: int,
    vector_type: str,
    m: int,
    ef_construction: int,
    table: Literal["fragments", "fragment_parts"] = "fragments",
) -> sql.Composed:
    """``CREATE INDEX`` of a version over ``table``: a partial expression index; the expression
    must match ffr.fragment_search_sql's ORDER BY exactly for the planner to use it."""
    typ = sql.SQL(f"{vector_type}({int(dimension)})")
    return sql.SQL(
        "CREATE INDEX IF NOT EXISTS {name} ON {table} USING hnsw "
        "((embedding::{typ}) {ops}) WITH (m = {m}, ef_construction = {efc}) "
        "WHERE embedding_model = {model}"
    ).format(
        name=sql.Identifier(HNSW_TABLES[table](embedding_model)),
        table=sql.Identifier("ffr", table),
        typ=typ,
        ops=sql.SQL(f"{vector_type}_cosine_ops"),
        m=sql.Literal(int(m)),
        efc=sql.Literal(int(ef_construction)),
        model=sql.Literal(embedding_model),
    )


@contextlib.contextmanager
def _conn(url: str | None, conn: psycopg.Connection | None) -> Iterator[psycopg.Connection]:
    if conn is not None:
        yield conn
        return
    with connect(url) as owned:
        yield owned


# ----------------------------------------------------------------------------- versions


def register_version(
    embedding_model: str,
    dimension: int,
    config: IndexConfig | None = None,
    *,
    model_path: str | None = None,
    url: str | None = None,
    conn: psycopg.Connection | None = None,
) -> dict[str, Any]:
    """Create the registry row of a version if missing; return the stored row. A version that
    exists with another dimension is an error (the version string must name the weights)."""
    config = config or IndexConfig()
    with _conn(url, conn) as db, db.transaction():
        db.execute(
            "INSERT INTO ffr.fem_versions (embedding_model, dimension, vector_type, index_name, "
            "hnsw_m, ef_construction, ef_search, model_path) "
            # No conflict target: a concurrent first registration of the same version conflicts
            # on index_name as well as on embedding_model, and a targeted ON CONFLICT would
            # raise on the other one (seen when two runs of one batch raced).
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (
                embedding_model,
                dimension,
                config.vector_type,
                index_name(embedding_model),
                config.hnsw_m,
                config.ef_construction,
                config.ef_search,
                model_path,
            ),
        )
        row = get_version(embedding_model, conn=db)
    if row is None:
        raise ValueError(
            f"cannot register FEM version {embedding_model}: its index name "
            f"{index_name(embedding_model)} belongs to another version"
        )
    if row["dimension"] != dimension:
        raise ValueError(
            f"FEM version {embedding_model} is registered with {row['dimension']} dimensions, "
            f"the encoder gives {dimension}"
        )
    return row


def get_version(
    embedding_model: str, *, url: str | None = None, conn: psycopg.Connection | None = None
) -> dict[str, Any] | None:
    """The registry row of a version as a dict, or None."""
    with _conn(url, conn) as db, db.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT * FROM ffr.fem_versions WHERE embedding_model = %s", (embedding_model,))
        return cur.fetchone()


def list_versions(url: str | None = None) -> list[dict[str, Any]]:
    """All registered versions with their fragment counts and whether they serve."""
    with connect(url) as db, db.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT v.*, (s.embedding_model IS NOT NULL) AS serving, "
            "(SELECT count(*) FROM ffr.fragments f WHERE f.embedding_model = v.embedding_model) "
            "AS fragments FROM ffr.fem_versions v "
            "LEFT JOIN ffr.serving s ON s.embedding_model = v.embedding_model ORDER BY created_at"
        )
        return cur.fetchall()


def serving_version(url: str | None = None, conn: psycopg.Connection | None = None) -> str | None:
    """The FEM version the SQL functions search now (None before the first build)."""
    with _conn(url, conn) as db:
        row = db.execute("SELECT embedding_model FROM ffr.serving WHERE singleton").fetchone()
        if conn is None:
            db.rollback()
        return row[0] if row else None


def activate_version(embedding_model: str, *, url: str | None = None) -> str | None:
    """Flip serving to ``embedding_model`` in ONE transaction and return the previous version.
    Only a ready version (rows loaded, HNSW built) can serve."""
    with connect(url) as db, db.transaction():
        db.execute("SELECT pg_advisory_xact_lock(%s)", (INDEX_LOCK_KEY,))
        row = db.execute(
            "SELECT status FROM ffr.fem_versions WHERE embedding_model = %s FOR UPDATE",
            (embedding_model,),
        ).fetchone()
        if row is None or row[0] != "ready":
            raise ValueError(
                f"FEM version {embedding_model} is {'unknown' if row is None else row[0]}; only a "
                "ready version can serve"
            )
        previous = db.execute(
            "SELECT embedding_model FROM ffr.serving WHERE singleton FOR UPDATE"
        ).fetchone()
        db.execute(
            "INSERT INTO ffr.serving (singleton, embedding_model, flipped_at) "
            "VALUES (true, %s, now()) ON CONFLICT (singleton) DO UPDATE "
            "SET embedding_model = EXCLUDED.embedding_model, flipped_at = now()",
            (embedding_model,),
        )
    return previous[0] if previous else None


def retire_version(embedding_model: str, *, url: str | None = None) -> int:
    """Delete a version's fragments and drop its HNSW index (never the serving one). Returns the
    number of fragment rows deleted."""
    with connect(url) as db, db.transaction():
        db.execute("SELECT pg_advisory_xact_lock(%s)", (INDEX_LOCK_KEY,))
        if serving_version(conn=db) == embedding_model:
            raise ValueError(f"{embedding_model} is serving: activate another version first")
        deleted = db.execute(
            "DELETE FROM ffr.fragments WHERE embedding_model = %s", (embedding_model,)
        ).rowcount
        for name in HNSW_TABLES.values():
            db.execute(
                sql.SQL("DROP INDEX IF EXISTS ffr.{}").format(sql.Identifier(name(embedding_model)))
            )
        db.execute(
            "UPDATE ffr.fem_versions SET status = 'retired' WHERE embedding_model = %s",
            (embedding_model,),
        )
    return deleted


# ----------------------------------------------------------------------------- writing


def _embed(
    embedder: Any, rows: Sequence[FragmentRow], batch_size: int
) -> tuple[np.ndarray, list[np.ndarray] | None]:
    """The fragment vectors, and the part vectors of each fragment when the embedder reads
    long texts in chunks (:meth:`ChunkedEmbedder.encode_parts`; None otherwise)."""
    # Prompted models (e5) embed passages with their "passage" prompt; plain ones ignore it.
    kwargs: dict[str, Any] = {}
    if "passage" in (getattr(embedder, "prompts", None) or {}):
        kwargs["prompt_name"] = "passage"
    texts = [r.text for r in rows]
    if hasattr(embedder, "encode_parts"):
        vectors, parts = embedder.encode_parts(texts, batch_size=batch_size, **kwargs)
        return np.asarray(vectors, dtype=np.float32), parts
    if hasattr(embedder, "encode_rows"):
        vectors = embedder.encode_rows(rows, batch_size=batch_size, **kwargs)
    else:
        vectors = embedder.encode(texts, batch_size=batch_size, **kwargs)
    return np.asarray(vectors, dtype=np.float32), None


def _check_rows(rows: Sequence[FragmentRow]) -> list[FragmentRow]:
    """Drop exact duplicates; refuse two different contents under one fragment id, and a
    fragment text over :data:`MAX_FRAGMENT_TEXT_BYTES` (before anything is written)."""
    by_hash: dict[str, FragmentRow] = {}
    ids: dict[str, str] = {}
    for row in rows:
        if ids.setdefault(row.id, row.content_hash) != row.content_hash:
            raise ValueError(f"fragment id {row.id} appears twice with different content")
        size = len(row.text.encode("utf-8", errors="surrogatepass"))
        if size > MAX_FRAGMENT_TEXT_BYTES:
            raise ValueError(
                f"fragment {row.id} of dialogue {row.dialogue_id} has {size:,} bytes of text, "
                f"more than the index limit {MAX_FRAGMENT_TEXT_BYTES:,} (its full-text vector "
                "would exceed PostgreSQL's 1 MB): cut the dialogue into smaller fragments"
            )
        by_hash.setdefault(row.content_hash, row)
    return list(by_hash.values())


_STAGE_COLUMNS = (
    "id",
    "dialogue_id",
    "utterance_ids",
    "image_ids",
    "text",
    "content_hash",
    "embedding_model",
    "embedding",
    "speakers",
    "started_at",
    "ended_at",
)
_STAGE_TYPES = (
    "text",
    "text",
    "int4[]",
    "int4[]",
    "text",
    "text",
    "text",
    "vector",
    "text[]",
    "timestamptz",
    "timestamptz",
)


def _copy_rows(
    cur: psycopg.Cursor,
    rows: Sequence[FragmentRow],
    vectors: np.ndarray,
    model: str,
    parts: Sequence[np.ndarray] | None = None,
) -> tuple[int, int]:
    """Binary COPY into a staging table, then insert what is new, with the parts of the
    fragments inserted now. Returns (fragments inserted, parts inserted)."""
    cur.execute("DROP TABLE IF EXISTS pg_temp.fragments_stage")
    cur.execute(
        "CREATE TEMP TABLE fragments_stage (id text, dialogue_id text, utterance_ids int4[], "
        "image_ids int4[], text text, content_hash text, embedding_model text, embedding vector, "
        "speakers text[], started_at timestamptz, ended_at timestamptz) ON COMMIT DROP"
    )
    columns = ", ".join(_STAGE_COLUMNS)
    with cur.copy(f"COPY fragments_stage ({columns}) FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.set_types(list(_STAGE_TYPES))
        for row, vector in zip(rows, vectors, strict=True):
            copy.write_row(
                (
                    row.id,
                    row.dialogue_id,
                    row.utterance_ids,
                    row.image_ids,
                    row.text,
                    row.content_hash,
                    model,
                    vector,
                    row.speakers,
                    row.started_at,
                    row.ended_at,
                )
            )
    cur.execute(
        f"INSERT INTO ffr.fragments ({columns}) SELECT {columns} FROM fragments_stage "
        "ON CONFLICT DO NOTHING RETURNING id"
    )
    inserted = {r[0] for r in cur.fetchall()}
    written = 0
    if parts is not None and any(len(p) for p in parts):
        written = _copy_parts(cur, rows, parts, model, inserted)
    return len(inserted), written


def _copy_parts(
    cur: psycopg.Cursor,
    rows: Sequence[FragmentRow],
    parts: Sequence[np.ndarray],
    model: str,
    inserted: set[str],
) -> int:
    """The part vectors of the fragments just inserted (a fragment another writer inserted
    first keeps that writer's parts). Returns parts written."""
    written = 0
    with cur.copy(
        "COPY ffr.fragment_parts (fragment_id, part, embedding_model, embedding) "
        "FROM STDIN WITH (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["text", "int2", "text", "vector"])
        for row, vectors in zip(rows, parts, strict=True):
            if row.id in inserted:
                for i, vector in enumerate(vectors):
                    copy.write_row((row.id, i, model, vector))
                    written += 1
    return written


def _model_path(embedder: Any) -> str | None:
    """What `TextEncoder.get` needs to load this FEM again for queries: the offline alias
    (portable across machines) or the weights folder, with a quantization suffix (``#int8``)."""
    spec = getattr(embedder, "spec", None)
    if isinstance(spec, str):
        return spec
    resolved = getattr(embedder, "resolved", None)
    if resolved is None:
        return None
    return resolved.alias or resolved.path


def index_rows(
    rows: Sequence[FragmentRow],
    embedder: Any,
    *,
    config: IndexConfig | None = None,
    replace_dialogues: bool = True,
    model_path: str | None = None,
    url: str | None = None,
) -> IndexStats:
    """Embed (only what is new) and write ``rows`` under ``embedder.model_version``, build the
    version's HNSW index if it has none yet, ANALYZE, mark the version ready and flip serving per
    ``config.activate``.

    ``replace_dialogues``: the rows are the complete new cut of their dialogues, so rows of this
    version for those dialogues that are not among them are deleted (same transaction).
    Dialogues must already be stored (``ffr_lib.store.write_dataset``)."""
    config = config or IndexConfig()
    rows = _check_rows(rows)
    model = str(embedder.model_version)
    model_path = model_path or _model_path(embedder)
    stats = IndexStats(embedding_model=model, fragments=len(rows))
    with connect(url) as db:
        version = register_version(
            model, int(embedder.dimension), config, model_path=model_path, conn=db
        )
        dialogue_ids = sorted({r.dialogue_id for r in rows})
        known = {
            r[0]
            for r in db.execute(
                "SELECT id FROM ffr.dialogues WHERE id = ANY(%s)", (dialogue_ids,)
            ).fetchall()
        }
        missing = [d for d in dialogue_ids if d not in known]
        if missing:
            raise ValueError(f"{len(missing)} dialogues are not stored yet, e.g. {missing[:3]}")
        present = {
            r[0]
            for r in db.execute(
                "SELECT content_hash FROM ffr.fragments WHERE embedding_model = %s "
                "AND content_hash = ANY(%s)",
                (model, [r.content_hash for r in rows]),
            ).fetchall()
        }
        db.commit()
        new = [r for r in rows if r.content_hash not in present]
        stats.unchanged = len(rows) - len(new)

        t0 = time.perf_counter()
        vectors, parts = (
            _embed(embedder, new, config.embed_batch_size)
            if new
            else (np.zeros((0, version["dimension"]), np.float32), None)
        )
        stats.embedded = len(new)
        stats.seconds_embed = time.perf_counter() - t0

        t0 = time.perf_counter()
        with db.transaction(), db.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (INDEX_LOCK_KEY,))
            if replace_dialogues and dialogue_ids:
                cur.execute(
                    "DELETE FROM ffr.fragments WHERE embedding_model = %s "
                    "AND dialogue_id = ANY(%s) AND NOT (content_hash = ANY(%s))",
                    (model, dialogue_ids, [r.content_hash for r in rows]),
                )
                stats.deleted_stale = cur.rowcount
            step = config.copy_batch_rows
            for start in range(0, len(new), step):
                inserted, written = _copy_rows(
                    cur,
                    new[start : start + step],
                    vectors[start : start + step],
                    model,
                    parts[start : start + step] if parts is not None else None,
                )
                stats.inserted += inserted
                stats.parts += written
        stats.seconds_write = time.perf_counter() - t0

        t0 = time.perf_counter()
        stats.index_built = ensure_hnsw(
            model, maintenance_work_mem=config.maintenance_work_mem, conn=db
        )
        if stats.inserted or stats.deleted_stale or stats.index_built:
            db.execute("ANALYZE ffr.fragments, ffr.fragment_parts")
        if stats.inserted or stats.deleted_stale:
            # Document frequencies of the version's words: hybrid_search's BM25 (0007).
            db.execute("SELECT ffr.refresh_text_stats(%s)", (model,))
        if stats.inserted:
            # A bulk load leaves the new rows in the GIN indexes' pending lists, which every
            # full-text and speaker-filtered search would then scan (a speaker filter at 10k
            # fragments: 1.10x the unfiltered p50 with the list, 0.48x without; BENCHMARKS.md).
            # Only the table's owner may flush; another writer leaves it to autovacuum.
            db.execute(
                "SELECT gin_clean_pending_list(i::regclass) FROM unnest(%s::text[]) AS i "
                "WHERE pg_has_role(current_user, "
                "(SELECT relowner FROM pg_class WHERE oid = 'ffr.fragments'::regclass), 'USAGE')",
                (list(GIN_INDEXES),),
            )
        db.execute(
            "UPDATE ffr.fem_versions SET status = 'ready', ready_at = coalesce(ready_at, now()) "
            "WHERE embedding_model = %s",
            (model,),
        )
        db.commit()
        stats.seconds_index = time.perf_counter() - t0
        serving = serving_version(conn=db)
        db.commit()
    if config.activate == "always" or (config.activate == "if_none" and serving is None):
        if serving != model:
            activate_version(model, url=url)
        stats.activated = True
    log.info("indexed %s", stats.as_dict())
    return stats


def ensure_hnsw(
    embedding_model: str,
    *,
    maintenance_work_mem: str = "512MB",
    url: str | None = None,
    conn: psycopg.Connection | None = None,
) -> bool:
    """Build the version's HNSW indexes (over its fragments and over their parts) where they do
    not exist; True if any was built now.

    Two writers may get here at once (two runs of the same batch): the build runs under a
    per-version advisory lock and checks again for the index once it holds the lock, so the
    second waits for the first and then finds the index, instead of failing on the catalog's
    unique name (``CREATE INDEX IF NOT EXISTS`` alone does not see an uncommitted build)."""
    with _conn(url, conn) as db:
        version = get_version(embedding_model, conn=db)
        if version is None:
            raise ValueError(f"unknown FEM version {embedding_model}")
        # Read pg_class itself, not to_regclass: the name lookup goes through the backend's
        # catalog cache, which can still hold "no such index" after another session built it.
        exists_sql = (
            "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = 'ffr' AND c.relname = %s)"
        )

        def missing() -> list[str]:
            return [
                table
                for table, name in HNSW_TABLES.items()
                if not db.execute(exists_sql, (name(embedding_model),)).fetchone()[0]
            ]

        if not missing():
            db.commit()
            return False
        with db.transaction():
            db.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (INDEX_LOCK_KEY, embedding_model)
            )
            tables = missing()
            if not tables:
                return False
            db.execute(
                sql.SQL("SET LOCAL maintenance_work_mem = {}").format(
                    sql.Literal(maintenance_work_mem)
                )
            )
            for table in tables:
                db.execute(
                    hnsw_index_sql(
                        embedding_model,
                        version["dimension"],
                        version["vector_type"],
                        version["hnsw_m"],
                        version["ef_construction"],
                        table,
                    )
                )
        return True


def remove_dialogues(
    dialogue_ids: Sequence[str], *, embedding_model: str | None = None, url: str | None = None
) -> int:
    """Remove the fragments (and vectors) of dialogues from the index (one version, or all),
    keeping the dialogues. Returns rows deleted."""
    with connect(url) as db, db.transaction():
        db.execute("SELECT pg_advisory_xact_lock(%s)", (INDEX_LOCK_KEY,))
        if embedding_model is None:
            cur = db.execute(
                "DELETE FROM ffr.fragments WHERE dialogue_id = ANY(%s)", (list(dialogue_ids),)
            )
        else:
            cur = db.execute(
                "DELETE FROM ffr.fragments WHERE dialogue_id = ANY(%s) AND embedding_model = %s",
                (list(dialogue_ids), embedding_model),
            )
        return cur.rowcount


def delete_dialogues(dialogue_ids: Sequence[str], *, url: str | None = None) -> int:
    """Delete dialogues entirely: their utterances, images, queries, fragments and vectors go
    with them (foreign-key cascades). Returns the number of dialogues that existed."""
    return store_delete(dialogue_ids, url=url)
