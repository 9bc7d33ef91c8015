"""Write a :class:`Dataset` to Postgres and read it back.

Guarantees:

- one transaction per :func:`write_dataset` call (one batch): if anything fails (a foreign key,
  a bad value, an exception in the middle) the database is exactly as before;
- idempotent: keyed by the stable dialogue and query ids, rows are only touched when something
  differs, so writing identical data twice changes nothing (not even ``updated_at``);
- a dialogue whose content (utterances, images) changed has its utterances and images replaced
  and its fragments deleted (they were cut from the old content and must be re-cut), atomically;
- fast: rows go in by COPY (PhotoChat's ~3,500 dialogues in about a second).

Timestamps: PostgreSQL stores instants (``timestamptz``). A naive utterance timestamp is taken as
UTC; everything comes back as UTC-aware datetimes. :func:`normalized` applies the same rule up
front, and the stored ``content_hash`` is that of the normalised dialogue, so
``load_dialogues()[i].content_hash()`` equals the stored hash.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from pydantic_core import to_jsonable_python

from ffr_lib.data.dataset import Dataset
from ffr_lib.data.model import Dialogue, Image, Query, QueryType, Utterance
from ffr_lib.db.engine import connect

# Serialises concurrent writers (two ingests of overlapping data would otherwise race between
# "delete old utterances" and "insert new ones"). Readers are never blocked.
STORE_LOCK_KEY = 0x0FF2_0002

# Child tables first: the order in which `count_rows` lists them is the order users read them.
CORE_TABLES = ("dialogues", "utterances", "images", "queries", "fragments")


@dataclass
class WriteStats:
    """What one :func:`write_dataset` call did."""

    dialogues_inserted: int = 0
    dialogues_replaced: int = 0  # content changed: utterances/images rewritten, fragments dropped
    dialogues_metadata_updated: int = 0  # same content, new source/speakers/metadata
    dialogues_unchanged: int = 0
    queries_inserted: int = 0
    queries_updated: int = 0
    queries_unchanged: int = 0
    utterances_written: int = 0
    images_written: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @property
    def changed(self) -> bool:
        return any(
            (
                self.dialogues_inserted,
                self.dialogues_replaced,
                self.dialogues_metadata_updated,
                self.queries_inserted,
                self.queries_updated,
            )
        )


@contextlib.contextmanager
def _connection(url: str | None, conn: psycopg.Connection | None) -> Iterator[psycopg.Connection]:
    if conn is not None:
        yield conn
        return
    with connect(url) as owned:
        yield owned


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _is_utc(value: datetime | None) -> bool:
    return value is None or (value.tzinfo is not None and value.utcoffset() == timedelta(0))


def normalized(dialogue: Dialogue) -> Dialogue:
    """The dialogue as the database will give it back: timestamps UTC-aware (naive = UTC),
    metadata JSON-safe. Returns the same object when nothing needs to change."""
    metadata = to_jsonable_python(dialogue.metadata)
    if all(_is_utc(u.timestamp) for u in dialogue.utterances):
        if metadata == dialogue.metadata:
            return dialogue
        return dialogue.model_copy(update={"metadata": metadata})
    utterances = [
        u
        if _is_utc(u.timestamp)
        # model_construct: the other fields are already validated, only the zone changes
        else Utterance.model_construct(
            index=u.index, speaker=u.speaker, text=u.text, timestamp=_utc(u.timestamp)
        )
        for u in dialogue.utterances
    ]
    return dialogue.model_copy(update={"utterances": utterances, "metadata": metadata})


def _check_batch(dataset: Dataset) -> None:
    """Problems that would otherwise surface as obscure constraint errors (or, for gold ids,
    not at all)."""
    seen: set[str] = set()
    for dialogue in dataset.dialogues:
        if dialogue.id in seen:
            raise ValueError(f"dialogue id {dialogue.id!r} appears twice in one batch")
        seen.add(dialogue.id)
    by_id = dataset.dialogue_by_id()
    seen = set()
    for query in dataset.queries:
        if query.id in seen:
            raise ValueError(f"query id {query.id!r} appears twice in one batch")
        seen.add(query.id)
        if query.dialogue_id in by_id:
            try:
                query.check_against(by_id[query.dialogue_id])
            except ValueError as exc:
                raise ValueError(f"query {query.id!r}: {exc}") from exc


def write_dataset(
    dataset: Dataset, *, url: str | None = None, conn: psycopg.Connection | None = None
) -> WriteStats:
    """Upsert the dataset's dialogues (with utterances and images) and queries in ONE
    transaction (a savepoint when ``conn`` is already inside one). Raises on any problem, leaving
    the database unchanged. Queries may refer to dialogues stored earlier."""
    _check_batch(dataset)
    dialogues = [normalized(d) for d in dataset.dialogues]
    stats = WriteStats()
    with _connection(url, conn) as db, db.transaction(), db.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (STORE_LOCK_KEY,))
        if dialogues:
            _write_dialogues(cur, dialogues, stats)
        if dataset.queries:
            _write_queries(cur, dataset.queries, stats)
    return stats


def _stage_table(cur: psycopg.Cursor, name: str, like: str) -> None:
    # DROP first: a caller may run several batches inside one outer transaction.
    cur.execute(f"DROP TABLE IF EXISTS pg_temp.{name}")
    cur.execute(f"CREATE TEMP TABLE {name} (LIKE {like} INCLUDING DEFAULTS) ON COMMIT DROP")


def _write_dialogues(cur: psycopg.Cursor, dialogues: list[Dialogue], stats: WriteStats) -> None:
    hashes = {d.id: d.content_hash() for d in dialogues}
    cur.execute("SELECT id, content_hash FROM ffr.dialogues WHERE id = ANY(%s)", (list(hashes),))
    stored = dict(cur.fetchall())
    replaced = [i for i, h in hashes.items() if i in stored and stored[i] != h]
    fresh = [i for i in hashes if i not in stored]

    _stage_table(cur, "_stage_dialogues", "ffr.dialogues")
    with cur.copy(
        "COPY _stage_dialogues (id, source, speakers, metadata, content_hash) FROM STDIN"
    ) as copy:
        for d in dialogues:
            copy.write_row((d.id, d.source, d.speakers, Jsonb(d.metadata), hashes[d.id]))
    # The WHERE makes identical rows a no-op (no new tuple, updated_at kept); RETURNING lists
    # only rows actually inserted or updated.
    cur.execute(
        """
        INSERT INTO ffr.dialogues AS d (id, source, speakers, metadata, content_hash)
        SELECT id, source, speakers, metadata, content_hash FROM _stage_dialogues
        ON CONFLICT (id) DO UPDATE SET
            source = EXCLUDED.source, speakers = EXCLUDED.speakers,
            metadata = EXCLUDED.metadata, content_hash = EXCLUDED.content_hash,
            updated_at = now()
        WHERE (d.source, d.speakers, d.metadata, d.content_hash)
              IS DISTINCT FROM (EXCLUDED.source, EXCLUDED.speakers, EXCLUDED.metadata,
                                EXCLUDED.content_hash)
        RETURNING id
        """
    )
    touched = {row[0] for row in cur.fetchall()}
    stats.dialogues_inserted = len(fresh)
    stats.dialogues_replaced = len(replaced)
    stats.dialogues_metadata_updated = len(touched) - len(fresh) - len(replaced)
    stats.dialogues_unchanged = len(dialogues) - len(touched)

    if replaced:
        # Images go with their utterances (FK cascade); fragments were cut from the old content.
        cur.execute("DELETE FROM ffr.fragments WHERE dialogue_id = ANY(%s)", (replaced,))
        cur.execute("DELETE FROM ffr.utterances WHERE dialogue_id = ANY(%s)", (replaced,))
    rewrite = set(fresh) | set(replaced)
    if not rewrite:
        return
    todo = [d for d in dialogues if d.id in rewrite]
    with cur.copy("COPY ffr.utterances (dialogue_id, idx, speaker, text, ts) FROM STDIN") as copy:
        for d in todo:
            for u in d.utterances:
                copy.write_row((d.id, u.index, u.speaker, u.text, u.timestamp))
                stats.utterances_written += 1
    columns = "dialogue_id, idx, utterance_idx, path, url, caption, ocr_text, sha256, width, height"
    with cur.copy(f"COPY ffr.images ({columns}) FROM STDIN") as copy:
        for d in todo:
            for i in d.images:
                copy.write_row(
                    (
                        d.id,
                        i.index,
                        i.utterance_index,
                        i.path,
                        i.url,
                        i.caption,
                        i.ocr_text,
                        i.sha256,
                        i.width,
                        i.height,
                    )
                )
                stats.images_written += 1


def _write_queries(cur: psycopg.Cursor, queries: list[Query], stats: WriteStats) -> None:
    columns = "id, dialogue_id, text, type, gold_utterance_ids, gold_image_ids, family, metadata"
    _stage_table(cur, "_stage_queries", "ffr.queries")
    with cur.copy(f"COPY _stage_queries ({columns}) FROM STDIN") as copy:
        for q in queries:
            copy.write_row(
                (
                    q.id,
                    q.dialogue_id,
                    q.text,
                    q.type.value,
                    q.gold_utterance_ids,
                    q.gold_image_ids,
                    q.family,
                    Jsonb(to_jsonable_python(q.metadata)),
                )
            )
    cur.execute("SELECT count(*) FROM ffr.queries WHERE id IN (SELECT id FROM _stage_queries)")
    existing = cur.fetchone()[0]
    cur.execute(
        f"""
        INSERT INTO ffr.queries AS q ({columns})
        SELECT {columns} FROM _stage_queries
        ON CONFLICT (id) DO UPDATE SET
            dialogue_id = EXCLUDED.dialogue_id, text = EXCLUDED.text, type = EXCLUDED.type,
            gold_utterance_ids = EXCLUDED.gold_utterance_ids,
            gold_image_ids = EXCLUDED.gold_image_ids, family = EXCLUDED.family,
            metadata = EXCLUDED.metadata, updated_at = now()
        WHERE (q.dialogue_id, q.text, q.type, q.gold_utterance_ids, q.gold_image_ids, q.family,
               q.metadata)
              IS DISTINCT FROM (EXCLUDED.dialogue_id, EXCLUDED.text, EXCLUDED.type,
                                EXCLUDED.gold_utterance_ids, EXCLUDED.gold_image_ids,
                                EXCLUDED.family, EXCLUDED.metadata)
        RETURNING id
        """
    )
    touched = len(cur.fetchall())
    stats.queries_inserted = len(queries) - existing
    stats.queries_updated = touched - stats.queries_inserted
    stats.queries_unchanged = existing - stats.queries_updated


# --------------------------------------------------------------------------------------- reads
def count_rows(url: str | None = None, *, conn: psycopg.Connection | None = None) -> dict[str, int]:
    """Exact row count of every table in schema ``ffr`` (core tables first, then any table a
    later migration added, e.g. ``schema_migrations``)."""
    with _connection(url, conn) as db:
        tables = [
            row[0]
            for row in db.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'ffr' AND table_type = 'BASE TABLE'"
            ).fetchall()
        ]
        ordered = [t for t in CORE_TABLES if t in tables] + sorted(
            t for t in tables if t not in CORE_TABLES
        )
        counts = {
            table: db.execute(
                sql.SQL("SELECT count(*) FROM ffr.{}").format(sql.Identifier(table))
            ).fetchone()[0]
            for table in ordered
        }
    return counts


def content_hashes(url: str | None = None) -> dict[str, str]:
    """dialogue id -> stored content hash."""
    with connect(url) as db:
        return dict(db.execute("SELECT id, content_hash FROM ffr.dialogues").fetchall())


def delete_dialogues(ids: Iterable[str], *, url: str | None = None) -> int:
    """Delete dialogues with their utterances, images, queries and fragments (FK cascades).
    Returns how many dialogues existed."""
    ids = list(ids)
    with connect(url) as db, db.transaction():
        db.execute("SELECT pg_advisory_xact_lock(%s)", (STORE_LOCK_KEY,))
        return len(
            db.execute(
                "DELETE FROM ffr.dialogues WHERE id = ANY(%s) RETURNING id", (ids,)
            ).fetchall()
        )


def load_dialogues(ids: Sequence[str] | None = None, *, url: str | None = None) -> list[Dialogue]:
    """Dialogues (all, or those with ``ids``; unknown ids are skipped) ordered by id."""
    params: tuple[Any, ...] = (list(ids),) if ids is not None else ()
    where = "WHERE dialogue_id = ANY(%s)" if ids is not None else ""
    with connect(url) as db:
        heads = db.execute(
            "SELECT id, source, speakers, metadata FROM ffr.dialogues "
            f"{'WHERE id = ANY(%s)' if ids is not None else ''} ORDER BY id",
            params,
        ).fetchall()
        utterances: dict[str, list[Utterance]] = defaultdict(list)
        for dialogue_id, idx, speaker, text, ts in db.execute(
            f"SELECT dialogue_id, idx, speaker, text, ts FROM ffr.utterances {where} "
            "ORDER BY dialogue_id, idx",
            params,
        ):
            utterances[dialogue_id].append(
                Utterance(index=idx, speaker=speaker, text=text, timestamp=ts)
            )
        images: dict[str, list[Image]] = defaultdict(list)
        for row in db.execute(
            "SELECT dialogue_id, idx, utterance_idx, path, url, caption, ocr_text, sha256, "
            f"width, height FROM ffr.images {where} ORDER BY dialogue_id, idx",
            params,
        ):
            images[row[0]].append(
                Image(
                    index=row[1],
                    utterance_index=row[2],
                    path=row[3],
                    url=row[4],
                    caption=row[5],
                    ocr_text=row[6],
                    sha256=row[7],
                    width=row[8],
                    height=row[9],
                )
            )
    return [
        Dialogue(
            id=dialogue_id,
            source=source,
            speakers=list(speakers),
            metadata=metadata,
            utterances=utterances.get(dialogue_id, []),
            images=images.get(dialogue_id, []),
        )
        for dialogue_id, source, speakers, metadata in heads
    ]


def load_queries(
    ids: Sequence[str] | None = None,
    *,
    dialogue_ids: Sequence[str] | None = None,
    url: str | None = None,
) -> list[Query]:
    """Queries (all, by id, and/or by dialogue) ordered by id."""
    clauses, params = [], []
    if ids is not None:
        clauses.append("id = ANY(%s)")
        params.append(list(ids))
    if dialogue_ids is not None:
        clauses.append("dialogue_id = ANY(%s)")
        params.append(list(dialogue_ids))
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    with connect(url) as db:
        rows = db.execute(
            "SELECT id, dialogue_id, text, type, gold_utterance_ids, gold_image_ids, family, "
            f"metadata FROM ffr.queries {where} ORDER BY id",
            params,
        ).fetchall()
    return [
        Query(
            id=row[0],
            dialogue_id=row[1],
            text=row[2],
            type=QueryType(row[3]),
            gold_utterance_ids=list(row[4]),
            gold_image_ids=list(row[5]),
            family=row[6],
            metadata=row[7],
        )
        for row in rows
    ]


def load_dataset(dialogue_ids: Sequence[str] | None = None, *, url: str | None = None) -> Dataset:
    """Dialogues plus the queries about them (all queries, corpus ones included, when
    ``dialogue_ids`` is None)."""
    return Dataset(
        dialogues=load_dialogues(dialogue_ids, url=url),
        queries=load_queries(dialogue_ids=dialogue_ids, url=url),
    )
