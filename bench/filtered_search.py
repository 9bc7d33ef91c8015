"""Filtered search holds k (issue 18): ``ffr.search_fragments`` under selective filters (a few
dialogues, one speaker, a time range) returns k rows (or every matching fragment when fewer
match), with recall@10 measured against exact filtered search.

    .venv/bin/python bench/filtered_search.py --out bench/results/latest-filtered   # 100k
    .venv/bin/python bench/filtered_search.py --fragments 10000 --crossover ''      # 10k
    .venv/bin/python bench/filtered_search.py --fragments 2000 --queries 50 --json out.json

Corpus: the first ``--fragments`` fragments of PhotoChat then chitchat (``bench/corpus.py``,
windows of 3 utterances), indexed through ``index_rows`` (binary COPY, HNSW with the
``IndexConfig`` defaults) on a throw-away embedded Postgres. PhotoChat has
two speakers per dialogue (user0/user1) and no timestamps, so before storing, every dialogue's
two speakers are renamed to two of ``--people`` people (so one person speaks in ~2/people of the
dialogues) and its utterances get timestamps (dialogues start ``--hours`` hours apart in a
shuffled order, utterances one minute apart): speaker and time filters then select a small
share of the corpus, as in a real archive. Vectors: MiniLM, embedded once and cached in
``$FFR_HOME/bench-cache`` (keyed by the model version and the texts, as the suite does);
``--embed-limit`` embeds fewer and derives the rest (``derived_vectors``).

Default: 100,000 fragments (the whole ~105k PhotoChat + chitchat corpus at windows of 3, real
vectors; the first run embeds them, ~10 min on 2 quiet cores, later runs read the cache).

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

Threshold (``--crossover``): is ``ffr.exact_filter_rows`` (1000) still the right switch between
the exact filtered search and the HNSW iterative scan at this size? Time windows of about 250 to
16,000 fragments, ``--crossover-queries`` each, searched with the switch forced both ways: p50 /
p95 of each path, recall@10 and k rows of the HNSW path against the exact one.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.corpus import Corpus, bench_server, build_index, embed_texts, load_corpus  # noqa: E402
from bench.suite import get_ef_search, lat, load, machine, recall_at, set_ef_search  # noqa: E402
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


class Timeline:
    """The corpus's dialogues in time order with their spans: consecutive ones make a time
    window that matches about as many fragments as asked."""

    def __init__(self, rows: Sequence[Any]) -> None:
        self.by_dialogue: dict[str, int] = {}
        self.spans: dict[str, list[datetime]] = {}
        for r in rows:
            self.by_dialogue[r.dialogue_id] = self.by_dialogue.get(r.dialogue_id, 0) + 1
            s = self.spans.setdefault(r.dialogue_id, [r.started_at, r.ended_at])
            s[0], s[1] = min(s[0], r.started_at), max(s[1], r.ended_at)
        self.order = sorted(self.spans, key=lambda d: self.spans[d][0])

    def window(self, rng: random.Random, min_rows: int) -> dict:
        """since/until of consecutive dialogues from a random start until >= ``min_rows``
        fragments."""
        order, count = self.order, self.by_dialogue
        start = rng.randrange(len(order))
        end, total = start, 0
        while total < min_rows:
            if end == len(order):  # ran past the end: grow backwards instead
                start -= 1
                total += count[order[start]]
                continue
            total += count[order[end]]
            end += 1
        return {"since": self.spans[order[start]][0], "until": self.spans[order[end - 1]][1]}


def make_filters(rows: Sequence[Any], n: int, k: int, seed: int = 1) -> dict[str, list[dict]]:
    """``n`` filters of every kind (search_by_vector keyword arguments), each matching >= k
    fragments."""
    rng = random.Random(seed)
    timeline = Timeline(rows)
    by_dialogue = timeline.by_dialogue
    dialogue_ids = sorted(by_dialogue)
    speakers = sorted({s for r in rows for s in r.speakers})
    count = {s: 0 for s in speakers}
    for r in rows:
        for s in r.speakers:
            count[s] += 1
    speakers = [s for s in speakers if count[s] >= k]

    def window(min_rows: int) -> dict:
        return timeline.window(rng, min_rows)

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


def crossover(
    url: str,
    qv: np.ndarray,
    rows: Sequence[Any],
    sizes: Sequence[int],
    k: int,
    n_queries: int,
    seed: int = 2,
) -> list[dict[str, Any]]:
    """Where exact filtered search stops paying: per size, ``n_queries`` time windows of about
    that many fragments, each searched through ``ffr.search_fragments`` twice, once forced onto
    the exact path (``ffr.exact_filter_rows`` above any match count: count, then exact search)
    and once onto the HNSW iterative scan (``ffr.exact_filter_rows`` 0: no count). p50 / p95 of
    both; recall@10 and k rows of the index path against the exact one (the truth)."""
    from ffr_lib.db import connect
    from ffr_lib.index import search_by_vector

    rng = random.Random(seed)
    timeline = Timeline(rows)
    started = np.array([r.started_at.timestamp() for r in rows])
    ended = np.array([r.ended_at.timestamp() for r in rows])
    out = []
    with connect(url) as db:
        for size in sizes:
            filters = [timeline.window(rng, size) for _ in range(n_queries)]
            matching = [
                int(((ended >= f["since"].timestamp()) & (started <= f["until"].timestamp())).sum())
                for f in filters
            ]
            runs: dict[str, tuple[list[float], list[list[str]]]] = {}
            for path, limit in (("exact", 2**31 - 1), ("index", 0)):
                db.execute("SELECT set_config('ffr.exact_filter_rows', %s, false)", (str(limit),))
                for q, f in zip(qv[:3], filters[:3], strict=False):  # warm the caches
                    search_by_vector(q, k, conn=db, **f)
                times, got = [], []
                for q, f in zip(qv, filters, strict=False):
                    t0 = time.perf_counter()
                    hits = search_by_vector(q, k, conn=db, **f)
                    times.append(time.perf_counter() - t0)
                    got.append([h.fragment_id for h in hits])
                runs[path] = (times, got)
            truth, index = runs["exact"][1], runs["index"][1]
            out.append(
                {
                    "target_rows": size,
                    "matching_median": int(np.median(matching)),
                    "share_median": round(float(np.median(matching)) / len(rows), 4),
                    "queries": len(truth),
                    "exact": lat(runs["exact"][0]),
                    "index": {
                        **lat(runs["index"][0]),
                        "recall_at_10": _recall(index, truth),
                        "k_rows_share": _share(index, truth),
                    },
                    "load": load(),
                }
            )
        db.rollback()
    return out


def fetch_sweep(
    url: str, model: str, qv: np.ndarray, filters: list[dict], k: int, fetches: Sequence[int]
) -> list[dict[str, Any]]:
    """How many filtered rows the HNSW path should fetch before keeping the k nearest: the index
    path of ``ffr.search_fragments`` (the query of ``ffr.fragment_search_sql(model, false,
    ...)`` with the function's settings: relaxed-order iterative scan, the version's ef_search)
    with ``fetch`` rows instead of the function's max(4k, 40), re-ranked by the full-precision
    distance, against exact filtered search. What a change of the function's fetch would give;
    the function itself is not changed."""
    from ffr_lib.db import connect

    out = []
    with connect(url) as db:
        ef = get_ef_search(url, model)
        truth = [
            _run_sql(db, _sql_text(db, model, True, f), q, k, f)
            for q, f in zip(qv, filters, strict=True)
        ]
        for fetch in fetches:
            got, times = [], []
            for q, f in zip(qv, filters, strict=True):
                with db.transaction():
                    db.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
                    db.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(max(ef, k)),))
                    t0 = time.perf_counter()
                    rows = _run_sql(db, _sql_text(db, model, False, f), q, fetch, f)
                    times.append(time.perf_counter() - t0)
                got.append(rows[:k])  # ordered by the full-precision distance already
            out.append(
                {
                    "fetch": fetch,
                    "queries": len(got),
                    **lat(times),
                    "recall_at_10": _recall(got, truth),
                    "k_rows_share": _share(got, truth),
                    "load": load(),
                }
            )
        db.rollback()
    return out


def render_crossover(rows: list[dict[str, Any]]) -> str:
    header = [
        "time window (median matching fragments)",
        "exact path p50 / p95 ms",
        "HNSW iterative path p50 / p95 ms",
        "HNSW path recall@10, k rows",
        "faster",
    ]
    table = [
        [
            f"{r['matching_median']:,} ({100 * r['share_median']:.2f}%)",
            f"{r['exact']['p50_ms']} / {r['exact']['p95_ms']}",
            f"{r['index']['p50_ms']} / {r['index']['p95_ms']}",
            f"{r['index']['recall_at_10']:.3f}, {100 * r['index']['k_rows_share']:.0f}%",
            "exact" if r["exact"]["p50_ms"] <= r["index"]["p50_ms"] else "HNSW",
        ]
        for r in rows
    ]
    return "\n".join(markdown_table(header, table))


def render(result: dict[str, Any], m: dict[str, Any] | None = None) -> str:
    """The table of one measurement (default: ``result["measured"]``)."""
    m = m or result["measured"]
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
    started = time.perf_counter()
    cache_dir = get_settings().home / "bench-cache"
    encoder = TextEncoder.get(args.encoder)
    base = load_corpus(args.fragments, n_queries=args.queries)
    corpus = with_filter_columns(base, args.people, args.hours)
    qv, _ = embed_texts(encoder, corpus.queries, cache_dir=cache_dir)
    filters = make_filters(corpus.rows, len(qv), K)
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
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
        model = built.stats.embedding_model
        result["ef_search"] = get_ef_search(url, model)
        result["measured"] = measure(url, model, qv, filters, K)
        for ef in args.ef_search:  # the same filters at other ef_search values, same index
            set_ef_search(url, model, ef)
            result.setdefault("by_ef_search", {})[str(ef)] = measure(url, model, qv, filters, K)
        set_ef_search(url, model, result["ef_search"])
        if args.fetch_sweep:
            result["fetch_sweep"] = fetch_sweep(
                url, model, qv, filters["time-20%"], K, args.fetch_sweep
            )
        if args.crossover:
            result["crossover"] = crossover(
                url, qv, corpus.rows, args.crossover, K, args.crossover_queries
            )
    result["load_end"] = load()
    result["wall_s"] = round(time.perf_counter() - started, 1)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fragments", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200, help="queries per filter kind")
    parser.add_argument("--people", type=int, default=400, help="speakers of the corpus")
    parser.add_argument("--hours", type=float, default=6.0, help="between dialogue starts")
    parser.add_argument("--embed-limit", type=int, default=None, help="embed fewer, derive rest")
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument(
        "--crossover",
        type=lambda v: [int(x) for x in v.split(",") if x],
        default=[250, 500, 1000, 2000, 4000, 8000, 16000],
        help="time-window sizes (fragments) timed on the exact and the HNSW path ('' = none)",
    )
    parser.add_argument("--crossover-queries", type=int, default=50, help="queries per size")
    parser.add_argument(
        "--ef-search",
        type=lambda v: [int(x) for x in v.split(",") if x],
        default=[],
        help="also measure every filter at these ef_search values (e.g. 150,200), same index",
    )
    parser.add_argument(
        "--fetch-sweep",
        type=lambda v: [int(x) for x in v.split(",") if x],
        default=[],
        help="time-20%% filters through the HNSW path fetching these many rows before the "
        "re-rank (the function fetches max(4k, 40)), e.g. 40,100,200",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--out", type=Path, help="also write results.json and results.md here")
    args = parser.parse_args(argv)
    result = run(args)
    text = "\n".join(
        [
            f"{result['fragments']:,} fragments ({result['dialogues']:,} dialogues; "
            f"{result['embedded']:,} embedded, {result['derived']:,} derived), k={K}, "
            f"load {result['load_start']} -> {result['load_end']}, build "
            f"{result['seconds_build']} s, wall {result['wall_s']} s; command `{result['command']}`",
            "",
            f"ef_search {result['ef_search']} (the index's default):",
            "",
            render(result),
        ]
    )
    for ef, measured in result.get("by_ef_search", {}).items():
        text += f"\n\nef_search {ef}:\n\n" + render(result, measured)
    if result.get("fetch_sweep"):
        text += (
            "\n\nHNSW path of the time-20% filter with more rows fetched before the re-rank:\n\n"
        )
        text += "\n".join(
            markdown_table(
                ["fetch", "p50 / p95 ms", "recall@10", "k rows"],
                [
                    [
                        r["fetch"],
                        f"{r['p50_ms']} / {r['p95_ms']}",
                        f"{r['recall_at_10']:.3f}",
                        f"{100 * r['k_rows_share']:.0f}%",
                    ]
                    for r in result["fetch_sweep"]
                ],
            )
        )
    if result.get("crossover"):
        text += "\n\nExact path vs HNSW iterative path by filter size (ffr.exact_filter_rows):\n\n"
        text += render_crossover(result["crossover"])
    print(text)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(result, indent=2, default=str))
        (args.out / "results.md").write_text(f"# Filtered search\n\n{text}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
