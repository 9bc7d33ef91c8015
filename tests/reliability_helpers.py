"""Helpers shared by the reliability tests (issue 8): a database fingerprint, a deterministic
embedder, and fragment rows made straight from stored dialogues. Also run as a script by
tests/test_reliability_crash.py (the indexing process that gets SIGKILLed):

    python tests/reliability_helpers.py index URL [COPY_BATCH_ROWS]
"""

from __future__ import annotations

import sys
import threading
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ffr_lib.db import connect  # noqa: E402
from ffr_lib.fem.fragment_text import FragmentRow  # noqa: E402

MODEL = "hash32@reliability"


def fingerprint(url: str) -> dict[str, str]:
    """md5 of every table of schema ffr, rows AND their physical versions (xmin): a write that
    rewrote a row with identical values still changes it."""
    with connect(url) as db:
        tables = [
            r[0]
            for r in db.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'ffr' AND table_type = 'BASE TABLE' ORDER BY 1"
            ).fetchall()
        ]
        out = {}
        for table in tables:
            out[table] = db.execute(
                f"SELECT count(*) || ':' || coalesce(md5(string_agg(t.xmin::text || ' ' || t::text,"
                f" E'\\n' ORDER BY t::text)), '') FROM ffr.{table} t"
            ).fetchone()[0]
        indexes = db.execute(
            "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes "
            "WHERE schemaname = 'ffr'"
        ).fetchone()[0]
        out["_indexes"] = indexes
    return out


def index_content(url: str, model: str = MODEL) -> dict[str, tuple[str, str]]:
    """fragment id -> (content hash, md5 of the stored vector) of one version."""
    with connect(url) as db:
        rows = db.execute(
            "SELECT id, content_hash, md5(embedding::text) FROM ffr.fragments "
            "WHERE embedding_model = %s",
            (model,),
        ).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


class HashEmbedder:
    """Deterministic unit vectors from a text's bag of words (no model, microseconds a text)."""

    def __init__(self, dim: int = 32, version: str = MODEL) -> None:
        self.dimension, self.model_version = dim, version

    def encode(self, texts, batch_size: int = 64, normalize: bool = True, **_kw) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().replace(":", " ").split()[:200]:
                out[i, zlib.crc32(word.encode()) % self.dimension] += 1.0
            out[i] += 0.3 * np.random.default_rng(zlib.crc32(text.encode())).standard_normal(
                self.dimension
            )
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def utterance_rows(url: str) -> list[FragmentRow]:
    """One fragment per stored utterance (a cheap, deterministic large batch)."""
    with connect(url) as db:
        found = db.execute(
            "SELECT dialogue_id, idx, speaker, text, ts FROM ffr.utterances ORDER BY 1, 2"
        ).fetchall()
    return [
        FragmentRow(
            id=f"u-{zlib.crc32(f'{d}/{i}'.encode()):08x}-{i}",
            dialogue_id=d,
            utterance_ids=[i],
            image_ids=[],
            text=f"{speaker}: {text}",
            speakers=[speaker],
            started_at=ts,
            ended_at=ts,
        )
        for d, i, speaker, text, ts in found
    ]


def run_at_once(
    task: Callable[[], object], copies: int = 2, timeout: float = 60
) -> tuple[list, list]:
    """Run ``copies`` of ``task`` in threads released together (a barrier, so they really
    race); returns (results, exceptions raised)."""
    results: list = []
    errors: list = []
    barrier = threading.Barrier(copies)

    def run() -> None:
        barrier.wait()
        try:
            results.append(task())
        except Exception as exc:  # noqa: BLE001 - returned to the caller, which asserts on it
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(copies)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    return results, errors


def main(argv: list[str]) -> int:
    from ffr_lib.index import IndexConfig, index_rows

    command, url = argv[0], argv[1]
    if command != "index":
        raise SystemExit(f"unknown command {command}")
    copy_rows = int(argv[2]) if len(argv) > 2 else 20_000
    rows = utterance_rows(url)
    print(f"indexing {len(rows)}", flush=True)
    stats = index_rows(rows, HashEmbedder(), config=IndexConfig(copy_batch_rows=copy_rows), url=url)
    print(f"done {stats.as_dict()}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
