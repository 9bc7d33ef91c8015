"""Load benchmark (issue 8): N concurrent clients call ``ffr.search_fragments`` against an index
of >= 100k fragments for a fixed time; reports throughput, p50/p95/p99 latency and errors.

    FFR_HOME=/tmp/rel-home FFR_PG_PORT=55491 python bench/bench_load.py \\
        --fragments 100000 --clients 4 --seconds 60

The index is built once per database (and reused by later runs): ``--fragments`` utterances in
dialogues of 20, one fragment each, with clustered random unit vectors (``--clusters`` centres
plus noise, like embeddings of chats on a few hundred topics) written straight through the index
writer (binary COPY, then the HNSW build). Nothing is embedded: the benchmark measures the
database, not the encoder. Query vectors are fresh points near random centres.

Each client is a process with its own connection (a service's pooled connection); with
``--reconnect`` every query opens a new connection, as one ``ffr search`` invocation does.
Uses FFR_DATABASE_URL, else the embedded server of FFR_HOME / FFR_PG_PORT.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.corpus import FixedVectors  # noqa: E402
from ffr_lib.db import connect, database_url, migrate, redact_url  # noqa: E402
from ffr_lib.reporting import markdown_table, percentile  # noqa: E402

WORDS = [
    "lake",
    "hike",
    "photo",
    "dinner",
    "train",
    "cat",
    "birthday",
    "rain",
    "beach",
    "concert",
    "map",
    "coffee",
    "museum",
    "ticket",
    "bike",
    "garden",
    "movie",
    "snow",
    "pizza",
    "guitar",
    "flight",
    "hotel",
    "market",
    "soccer",
    "book",
    "exam",
    "dog",
    "party",
]
UTTERANCES_PER_DIALOGUE = 20


def version_name(fragments: int, dim: int, clusters: int) -> str:
    return f"loadbench-{fragments}x{dim}-c{clusters}@v1"


def centres(dim: int, clusters: int, seed: int = 7) -> np.ndarray:
    c = np.random.default_rng(seed).standard_normal((clusters, dim)).astype(np.float32)
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def clustered(n: int, centre: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    which = rng.integers(0, len(centre), n)
    dim = centre.shape[1]
    v = centre[which] + noise * rng.standard_normal((n, dim)).astype(np.float32) / np.sqrt(dim)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def build_index(url: str, fragments: int, dim: int, clusters: int, noise: float) -> dict:
    """Store the dialogues and index one fragment per utterance under the bench version, unless
    that version already holds ``fragments`` rows. Returns timings."""
    from ffr_lib.data.dataset import Dataset
    from ffr_lib.data.model import Dialogue, Utterance
    from ffr_lib.fem.fragment_text import FragmentRow
    from ffr_lib.index import IndexConfig, activate_version, index_rows
    from ffr_lib.store import write_dataset

    version = version_name(fragments, dim, clusters)
    with connect(url) as db:
        have = db.execute(
            "SELECT count(*) FROM ffr.fragments WHERE embedding_model = %s", (version,)
        ).fetchone()[0]
    if have == fragments:
        activate_version(version, url=url)
        return {"reused": True, "version": version}

    rng = np.random.default_rng(11)
    n_dialogues = -(-fragments // UTTERANCES_PER_DIALOGUE)
    t0 = time.perf_counter()
    dialogues, rows = [], []
    for d in range(n_dialogues):
        dialogue_id = f"loadbench-{d:06d}"
        count = min(UTTERANCES_PER_DIALOGUE, fragments - d * UTTERANCES_PER_DIALOGUE)
        utterances = [
            Utterance(
                index=i,
                speaker=("ann", "ben")[i % 2],
                text=" ".join(rng.choice(WORDS, rng.integers(4, 15))),
            )
            for i in range(count)
        ]
        dialogues.append(
            Dialogue(
                id=dialogue_id, source="loadbench", speakers=["ann", "ben"], utterances=utterances
            )
        )
        rows += [
            FragmentRow(
                id=f"lb-{d:06d}-{u.index:02d}",
                dialogue_id=dialogue_id,
                utterance_ids=[u.index],
                image_ids=[],
                text=f"{u.speaker}: {u.text} #{d}.{u.index}",  # unique text per fragment
                speakers=[u.speaker],
                started_at=None,
                ended_at=None,
            )
            for u in utterances
        ]
    write_dataset(Dataset(dialogues=dialogues), url=url)
    seconds_store = time.perf_counter() - t0
    vectors = clustered(len(rows), centres(dim, clusters), rng, noise)
    embedder = FixedVectors(version, [r.text for r in rows], vectors)
    stats = index_rows(rows, embedder, config=IndexConfig(activate="always"), url=url)
    return {
        "reused": False,
        "version": version,
        "seconds_store_dialogues": round(seconds_store, 1),
        "seconds_copy": round(stats.seconds_write, 1),
        "seconds_hnsw_and_analyze": round(stats.seconds_index, 1),
        "inserted": stats.inserted,
    }


SEARCH = "SELECT fragment_id, score FROM ffr.search_fragments(%s, %s)"


@dataclass(frozen=True)
class Load:
    """What every client of a run does: ``k``-NN searches of vectors drawn like the index's
    (``dim``, ``clusters``, ``noise``) for ``seconds`` after ``warmup``, on one connection or
    on a new one per query (``reconnect``)."""

    url: str
    seconds: float
    warmup: float
    k: int
    dim: int
    clusters: int
    noise: float
    reconnect: bool


def client(load: Load, seed: int, out: mp.Queue) -> None:
    url, k, reconnect = load.url, load.k, load.reconnect
    rng = np.random.default_rng(1000 + seed)
    queries = clustered(512, centres(load.dim, load.clusters), rng, load.noise)
    latencies: list[float] = []
    errors: list[str] = []
    rows_short = 0
    conn = None if reconnect else connect(url, autocommit=True)
    start = time.monotonic()
    measure_from, stop_at = start + load.warmup, start + load.warmup + load.seconds
    i = 0
    while True:
        now = time.monotonic()
        if now >= stop_at:
            break
        vector = queries[i % len(queries)]
        i += 1
        began = time.perf_counter()
        try:
            if reconnect:
                with connect(url, autocommit=True) as db:
                    got = db.execute(SEARCH, (vector, k)).fetchall()
            else:
                got = conn.execute(SEARCH, (vector, k)).fetchall()
            if len(got) != k:
                rows_short += 1
        except Exception as exc:  # noqa: BLE001 - counted and reported
            errors.append(f"{type(exc).__name__}: {exc}"[:200])
            if not reconnect:
                conn = connect(url, autocommit=True)
            continue
        if now >= measure_from:
            latencies.append(time.perf_counter() - began)
    if conn is not None:
        conn.close()
    out.put({"latencies": latencies, "errors": errors, "short": rows_short})


def run_load(load: Load, clients: int) -> dict:
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    procs = [ctx.Process(target=client, args=(load, n, queue)) for n in range(clients)]
    load_before = os.getloadavg()
    for p in procs:
        p.start()
    results = [queue.get(timeout=load.seconds + load.warmup + 120) for _ in procs]
    for p in procs:
        p.join(30)
    load_after = os.getloadavg()
    latencies = np.array([x for r in results for x in r["latencies"]]) * 1000.0
    errors = [e for r in results for e in r["errors"]]
    return {
        "clients": clients,
        "reconnect": load.reconnect,
        "seconds": load.seconds,
        "queries": int(latencies.size),
        "qps": round(latencies.size / load.seconds, 1),
        **{f"p{q}_ms": round(percentile(latencies, q), 2) for q in (50, 95, 99)},
        "max_ms": round(float(latencies.max()), 1),
        "errors": len(errors),
        "error_samples": sorted(set(errors))[:5],
        "short_results": sum(r["short"] for r in results),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fragments", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--clusters", type=int, default=300)
    parser.add_argument("--noise", type=float, default=0.8, help="spread around a centre")
    parser.add_argument("--clients", type=int, nargs="+", default=[4])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--reconnect", action="store_true", help="a new connection per query")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()

    url = database_url()
    migrate(url)
    print(f"database {redact_url(url)}", flush=True)
    t0 = time.perf_counter()
    built = build_index(url, args.fragments, args.dim, args.clusters, args.noise)
    built["seconds_total"] = round(time.perf_counter() - t0, 1)
    print(f"index {json.dumps(built)}", flush=True)
    with connect(url) as db:
        server = db.execute("SHOW server_version").fetchone()[0]
        ef = db.execute(
            "SELECT ef_search FROM ffr.fem_versions WHERE embedding_model = %s",
            (built["version"],),
        ).fetchone()[0]
    load = Load(
        url, args.seconds, args.warmup, args.k, args.dim, args.clusters, args.noise, args.reconnect
    )
    runs = []
    for n in args.clients:
        result = run_load(load, n)
        runs.append(result)
        print(json.dumps(result), flush=True)
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, PostgreSQL {server}",
        "fragments": args.fragments,
        "dim": args.dim,
        "k": args.k,
        "ef_search": ef,
        "index": built,
        "runs": runs,
        "command": " ".join(sys.argv),
    }
    header = ["clients", "conn/query", "queries", "QPS"]
    header += ["p50 ms", "p95 ms", "p99 ms", "max ms", "errors"]
    rows = [
        [r["clients"], "new" if r["reconnect"] else "kept", f"{r['queries']:,}", r["qps"]]
        + [r[k] for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms", "errors")]
        for r in runs
    ]
    print("\n" + "\n".join(markdown_table(header, rows)))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    return 1 if any(r["errors"] for r in runs) else 0


if __name__ == "__main__":
    raise SystemExit(main())
