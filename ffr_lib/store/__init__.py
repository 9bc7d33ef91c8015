"""Dialogues and queries in Postgres: idempotent, atomic batch writes and reads back as model
objects. The schema is ``sql/migrations/0001_core_schema.sql``."""

from ffr_lib.store.dialogues import (
    WriteStats,
    content_hashes,
    count_rows,
    delete_dialogues,
    load_dataset,
    load_dialogues,
    load_queries,
    normalized,
    write_dataset,
)

__all__ = [
    "WriteStats",
    "content_hashes",
    "count_rows",
    "delete_dialogues",
    "load_dataset",
    "load_dialogues",
    "load_queries",
    "normalized",
    "write_dataset",
]
