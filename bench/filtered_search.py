"""Filtered search holds k (issue 18): ``ffr.search_fragments`` under selective filters (a few
dialogues, one speaker, a time range) returns k rows (or every matching fragment when fewer
match), with recall@10 measured against exact filtered search.

    .venv/bin/python bench/filtered_search.py      # 10k fragments: ~4 min, 30 s once cached
    .venv/bin/python bench/filtered_search.py --fragments 2000 --queries 50 --json out.json

Corpus: the first ``--fragments`` fragments of PhotoChat then chitchat (``bench/corpus.py``,
windows of 3 utterances), indexed through ``index_rows`` (binary COPY, HNSW halfvec m 16,
ef_construction 64, ef_search 200: the defaults) on a throw-away embedded Postgres. PhotoChat has
two speakers per dialogue (user0/user1) and no timestamps, so before storing, every dialogue's
two speakers are renamed to two of ``--people`` people (so one person speaks in ~2/people of the
dialogues) and its utterances get timestamps (dialogues start ``--hours`` hours apart in a
shuffled order, utterances one minute apart): speaker and time filters then select a small
share of the corpus, as in a real archive. Vectors: MiniLM, embedded once and cached in
``$FFR_HOME/bench-cache`` (keyed by the model version and the texts, as the suite does);
``--embed-limit`` embeds fewer and derives the rest (``derived_vectors``).

Queries: ``--queries`` held-out utterances (dialogues not in the corpus), each run with one
filter of every kind, chosen at random so that at least k fragments match:
``dialogues`` (random dialogues added until >= k fragments), ``speaker`` (a random person who
speaks in >= k fragments), ``time`` (consecutive dialogues in time order until >= 2k
fragments; since/until are their bounds) and ``time-20%`` (a window of ~20% of the corpus: a
filter broad enough for the HNSW iterative scan, not the exact search, to answer). Per kind:
the share of queries returning min(k, matching) rows, mean recall@10 against exact filtered
search (the query text of ``ffr.fragment_search_sql(model, exact => true, ...)``: no vector
index, ORDER BY the full-precision distance), p50/p95 ms. Same run, same connection: unfiltered
``ffr.search_fragments`` (the baseline latency) and the index query of
``ffr.fragment_search_sql(model, exact => false, ...)`` alone with the iterative scan off
(pgvector's default: the planner picks HNSW + WHERE or a filter index + sort by itself, and
HNSW + WHERE comes back short when the filter is selective).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.corpus import Corpus, bench_server, build_index, embed_texts, load_corpus  # noqa: E402
from bench.suite import lat, load, machine, recall_at  # noqa: E402
from ffr_lib.data.model import Dialogue  # noqa: E402
from ffr_lib.fem.fragment_text import FragmentTextConfig, fragment_rows  # noqa: E402
from ffr_lib.reporting import markdown_table  # noqa: E402
from ffr_lib.segment import FixedWindowSegmenter, WindowConfig  # noqa: E402

K = 10
KINDS = ("dialogues", "speaker", "time", "time-20%")
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


def with_filter_columns(corpus: Corpus, people: int, hours: float, seed: int = 0) -> Corpus:
    """The corpus with speakers renamed to two of ``people`` people per dialogue and timestamps
    (dialogues ``hours`` apart in a shuffled order, utterances a minute apart); rows rebuilt."""
    rng = random.Random(seed)
    slots = list(range(len(corpus.dialogues)))
    rng.shuffle(slots)
    names = [f"person-{i:04d}" for i in range(people)]
    segmenter = FixedWindowSegmenter(WindowConfig(size=corpus.window))
    text_config = FragmentTextConfig(ocr=False)
    dialogues: list[Dialogue] = []
    rows = []
    for dialogue, slot in zip(corpus.dialogues, slots, strict=True):
        cast = dict(zip(dialogue.speakers, rng.sample(names, len(dialogue.speakers)), strict=True))
        start = EPOCH + timedelta(hours=hours * slot)
        utterances = [
            u.model_copy(
                update={
                    "speaker": cast.get(u.speaker, u.speaker),
                    "timestamp": start + timedelta(minutes=u.index),
                }
            )
            for u in dialogue.utterances
        ]
        d = dialogue.model_copy(
            update={
                "utterances": utterances,
                "speakers": [cast.get(s, s) for s in dialogue.speakers],
            }
        )
        dialogues.append(d)
        rows += fragment_rows(d, segmenter.segment(d), text_config)
    return Corpus(dialogues, rows, corpus.queries, corpus.window)


def make_filters(rows: Sequence[Any], n: int, k: int, seed: int = 1) -> dict[str, list[dict]]:
    """``n`` filters of every kind (search_by_vector keyword arguments), each matching >= k
    fragments."""
    rng = random.Random(seed)
    by_dialogue: dict[str, int] = {}
    for r in rows:
        by_dialogue[r.dialogue_id] = by_dialogue.get(r.dialogue_id, 0) + 1
    dialogue_ids = sorted(by_dialogue)
    # Dialogues in time order with their span: consecutive ones make a time window.
    spans: dict[str, list[datetime]] = {}
    for r in rows:
        s = spans.setdefault(r.dialogue_id, [r.started_at, r.ended_at])
        s[0], s[1] = min(s[0], r.started_at), max(s[1], r.ended_at)
    timeline = sorted(spans, key=lambda d: spans[d][0])
    speakers = sorted({s for r in rows for s in r.speakers})
    count = {s: 0 for s in speakers}
    for r in rows:
        for s in r.speakers:
            count[s] += 1
    speakers = [s for s in speakers if count[s] >= k]

    def window(min_rows: int) -> dict:
        start = rng.randrange(len(timeline))
        end, total = start, 0
        while total < min_rows:
            if end == len(timeline):  # ran past the end: grow backwards instead
                start -= 1
                total += by_dialogue[timeline[start]]
                continue
            total += by_dialogue[timeline[end]]
            end += 1
        return {"since": spans[timeline[start]][0], "until": spans[timeline[end - 1]][1]}

    out: dict[str, list[dict]] = {kind: [] for kind in KINDS}
    for _ in range(n):
        chosen: list[str] = []
        while sum(by_dialogue[d] for d in chosen) < k:
            chosen.append(rng.choice([d for d in dialogue_ids if d not in chosen]))
        out["dialogues"].append({"dialogue_ids": chosen})
        out["speaker"].append({"speaker": rng.choice(speakers)})
        out["time"].append(window(2 * k))
        out["time-20%"].append(window(len(rows) // 5))
    return out


def _run_sql(db: Any, query: str, q: np.ndarray, k: int, filt: dict) -> list[str]:
    """A query text of ``ffr.fragment_search_sql`` ($1..$6) with the filter's values bound."""
    names = ["v", "k", "dialogue_ids", "speaker", "since", "until"]
    for i in range(6, 0, -1):
        query = query.replace(f"${i}", f"%({names[i - 1]})s")
    params = {"v": q, "k": k, "dialogue_ids": None, "speaker": None, "since": None, "until": None}
    params.update(filt)
    return [r[0] for r in db.execute(query, params).fetchall()]


def _sql_text(db: Any, model: str, exact: bool, filt: dict) -> str:
    flags = [filt.get(n) is not None for n in ("dialogue_ids", "speaker", "since", "until")]
    return (
        db.execute("SELECT ffr.fragment_search_sql(%s, %s, %s, %s, %s, %s)", (model, exact, *flags))
        .fetchone()[0]
        .replace("%", "%%")
    )


def measure(url: str, model: str, qv: np.ndarray, filters: dict[str, list[dict]], k: int) -> dict:
    """Per filter kind: exact truth, ffr.search_fragments, plain HNSW + WHERE; unfiltered."""
    from ffr_lib.db import connect
    from ffr_lib.index import search_by_vector

    out: dict[str, Any] = {}
    with connect(url) as db:
        ef = db.execute(
            "SELECT ef_search FROM ffr.fem_versions WHERE embedding_model = %s", (model,)
        ).fetchone()[0]
        for q in qv[:5]:  # warm the caches
            search_by_vector(q, k, conn=db)
        times = []
        for q in qv:
            t0 = time.perf_counter()
            search_by_vector(q, k, conn=db)
            times.append(time.perf_counter() - t0)
        out["unfiltered"] = {"queries": len(qv), **lat(times)}
        for kind, flts in filters.items():
            truth, got, plain, times, plain_times = [], [], [], [], []
            for q, filt in zip(qv, flts, strict=True):
                truth.append(_run_sql(db, _sql_text(db, model, True, filt), q, k, {**filt}))
                t0 = time.perf_counter()
                hits = search_by_vector(q, k, conn=db, **filt)
                times.append(time.perf_counter() - t0)
                got.append([h.fragment_id for h in hits])
                # pgvector's default: HNSW with the filter as a WHERE, no iterative scan.
                with db.transaction():
                    db.execute("SET LOCAL hnsw.iterative_scan = off")
                    db.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(ef),))
                    t0 = time.perf_counter()
                    plain.append(_run_sql(db, _sql_text(db, model, False, filt), q, k, filt))
                    plain_times.append(time.perf_counter() - t0)
            matching = [len(t) for t in truth]
            out[kind] = {
                "queries": len(flts),
                "k_rows_share": _share(got, truth),
                "recall_at_10": _recall(got, truth),
                "min_recall": round(
                    min(recall_at(g, t) for g, t in zip(got, truth, strict=True)), 4
                ),
                **lat(times),
                "plain_hnsw": {
                    "k_rows_share": _share(plain, truth),
                    "recall_at_10": _recall(plain, truth),
                    **lat(plain_times),
                },
                "matching_min": min(matching),
            }
        db.rollback()
    return out


def _share(got: list[list[str]], truth: list[list[str]]) -> float:
    """Share of queries with min(k, matching) rows (``truth`` has exactly that many)."""
    return round(float(np.mean([len(g) == len(t) for g, t in zip(got, truth, strict=True)])), 4)


def _recall(got: list[list[str]], truth: list[list[str]]) -> float:
    return round(float(np.mean([recall_at(g, t) for g, t in zip(got, truth, strict=True)])), 4)


def _selectivity(rows: Sequence[Any], filt: dict) -> int:
    def keep(r: Any) -> bool:
        if "dialogue_ids" in filt and r.dialogue_id not in filt["dialogue_ids"]:
            return False
        if "speaker" in filt and filt["speaker"] not in r.speakers:
            return False
        if "since" in filt and r.ended_at < filt["since"]:
            return False
        return not ("until" in filt and r.started_at > filt["until"])

    return sum(1 for r in rows if keep(r))


def render(result: dict[str, Any]) -> str:
    m = result["measured"]
    n = result["fragments"]
    header = [
        "filter",
        "matching fragments (median)",
        "queries",
        "k rows",
        "recall@10",
        "p50 / p95 ms",
        "index query alone, iterative scan off: k rows, recall@10, p50 ms",
    ]
    rows = []
    for kind in KINDS:
        r = m[kind]
        med = result["matching_median"][kind]
        p = r["plain_hnsw"]
        rows.append(
            [
                kind,
                f"{med:,} ({100 * med / n:.2f}%)",
                r["queries"],
                f"{100 * r['k_rows_share']:.1f}%",
                f"{r['recall_at_10']:.3f} (min {r['min_recall']:.2f})",
                f"{r['p50_ms']} / {r['p95_ms']}",
                f"{100 * p['k_rows_share']:.1f}%, {p['recall_at_10']:.3f}, {p['p50_ms']}",
            ]
        )
    u = m["unfiltered"]
    rows.append(
        ["none (baseline)", f"{n:,}", u["queries"], "", "", f"{u['p50_ms']} / {u['p95_ms']}", ""]
    )
    return "\n".join(markdown_table(header, rows))


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ffr_lib.models.encoder import TextEncoder
    from ffr_lib.settings import get_settings

    os.environ.pop("FFR_DATABASE_URL", None)
    cache_dir = get_settings().home / "bench-cache"
    encoder = TextEncoder.get(args.encoder)
    base = load_corpus(args.fragments, n_queries=args.queries)
    corpus = with_filter_columns(base, args.people, args.hours)
    qv, _ = embed_texts(encoder, corpus.queries, cache_dir=cache_dir)
    filters = make_filters(corpus.rows, len(qv), K)
    result: dict[str, Any] = {
        "fragments": len(corpus.rows),
        "dialogues": len(corpus.dialogues),
        "k": K,
        "machine": machine(),
        "load_start": load(),
        "matching_median": {
            kind: int(np.median([_selectivity(corpus.rows, f) for f in flts]))
            for kind, flts in filters.items()
        },
    }
    with bench_server() as url:
        t0 = time.perf_counter()
        built = build_index(
            args.fragments,
            url=url,
            encoder=encoder,
            corpus=corpus,
            cache_dir=cache_dir,
            embed_limit=args.embed_limit,
        )
        result["seconds_build"] = round(time.perf_counter() - t0, 1)
        result["embedded"], result["derived"] = built.embedded, built.derived
        result["measured"] = measure(url, built.stats.embedding_model, qv, filters, K)
    result["load_end"] = load()
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fragments", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=200, help="queries per filter kind")
    parser.add_argument("--people", type=int, default=400, help="speakers of the corpus")
    parser.add_argument("--hours", type=float, default=6.0, help="between dialogue starts")
    parser.add_argument("--embed-limit", type=int, default=None, help="embed fewer, derive rest")
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    result = run(args)
    print(
        f"{result['fragments']:,} fragments ({result['dialogues']:,} dialogues; "
        f"{result['embedded']:,} embedded, {result['derived']:,} derived), k={K}, "
        f"load {result['load_start']} -> {result['load_end']}"
    )
    print(render(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
