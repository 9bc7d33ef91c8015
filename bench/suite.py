"""The benchmark suite behind ``ffr bench`` / ``make bench`` (issue 9).

Sections (each measures its baseline in the same run and records the load average):

- ``encoder``: MiniLM embedding throughput on real fragment texts: fp32 with torch's default
  threads, fp32 with 1 thread, dynamic int8; recall@10 of int8 neighbours against fp32.
- ``index``: end-to-end indexing (embed + COPY + HNSW + ANALYZE) at each ``index_sizes`` size,
  with the process's peak RSS. Beyond ``embed_limit`` fragments the vectors are real-derived
  (see ``bench/corpus.py``) and the embedding time is extrapolated; the report says so.
- ``search``: on each index: numpy brute force (the reference system: normalised matrix, dot
  product), exact scan in SQL, HNSW through ``ffr.search_fragments``; p50/p95 and recall@10
  against the numpy ground truth; an ``ef_search`` sweep; filtered queries (iterative scan).
  Sizes above the real corpus (1M) use real-derived vectors in a bare table: numpy and exact
  scan only unless ``hnsw_large`` (a 1M HNSW build takes tens of minutes on 2 cores).
  ``tune`` rebuilds the smallest index with other HNSW settings (vector vs halfvec, m,
  ef_construction).
- ``ffrs``: FFRS end-to-end latency per stage (embed, SQL, load, F2RVLM) at each K with the
  SmolLM2 backbone (untrained: latency only), model resident, plus serving peak RSS.
- ``training``: SFT and GRPO step time and peak RSS for the ``cpu-small`` profile (a few steps).

Results go to ``<out>/results.json``, ``<out>/results.md`` and ``<out>/search_cost.png``.
"""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from bench.corpus import (
    FixedVectors,
    bench_server,
    build_index,
    derived_vectors,
    embed_texts,
    load_corpus,
)
from ffr_lib.reporting import markdown_table, percentile

SECTIONS = ("encoder", "index", "search", "ffrs", "training")


class SuiteConfig(BaseModel):
    """Every knob of the suite (``ffr bench --help`` lists the command-line ones)."""

    sections: list[str] = Field(default_factory=lambda: list(SECTIONS))
    index_sizes: list[int] = Field(
        default_factory=lambda: [10_000, 100_000],
        description="fragments indexed end to end (real PhotoChat + chitchat windows)",
    )
    large_sizes: list[int] = Field(
        default_factory=lambda: [1_000_000],
        description="search-only sizes with real-derived vectors in a bare table",
    )
    embed_limit: int = Field(
        10_000, description="fragments embedded per index build; the rest get derived vectors"
    )
    encoder: str = "minilm"
    encoder_sample: int = Field(1_000, description="fragments embedded per encoder variant")
    queries: int = Field(200, description="held-out query texts (recall)")
    latency_queries: int = Field(100, description="queries timed per search variant")
    exact_queries: int = Field(30, description="queries timed for the SQL exact scan")
    ef_search: list[int] = Field(default_factory=lambda: [20, 40, 64, 100, 200])
    tune: bool = Field(True, description="rebuild the smallest index with other HNSW settings")
    hnsw_large: bool = Field(False, description="also build HNSW at the large sizes")
    ffrs_k: list[int] = Field(default_factory=lambda: [5, 10, 20])
    ffrs_queries: int = Field(5, description="queries per K")
    ffrs_profile: str = "cpu-small"
    training_steps: int = Field(2, description="SFT and GRPO steps timed")
    torch_threads: int | None = Field(
        None,
        description="torch threads for the FFRS and training sections (None = torch default, "
        "2 here); 1 is much faster when other processes oversubscribe the cores",
    )
    cache_dir: Path | None = Field(None, description="vector cache (default $FFR_HOME/bench-cache)")
    out_dir: Path = Path("bench/results/latest")

    @classmethod
    def quick(cls, **overrides: Any) -> SuiteConfig:
        """A few minutes: 2k fragments, 20k search-only, K=5/10, one training step."""
        base = {
            "index_sizes": [2_000],
            "large_sizes": [20_000],
            "embed_limit": 2_000,
            "encoder_sample": 200,
            "queries": 50,
            "latency_queries": 30,
            "exact_queries": 10,
            "ef_search": [40, 100],
            "tune": False,
            "ffrs_k": [5, 10],
            "ffrs_queries": 2,
            "training_steps": 1,
        }
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)


# ----------------------------------------------------------------------------- helpers


def load() -> float:
    return round(os.getloadavg()[0], 2)


def lat(xs: Sequence[float]) -> dict[str, float]:
    """p50 and p95 in ms of seconds ``xs`` (the percentile of every FFR report)."""
    return {f"p{q}_ms": round(1000 * percentile(xs, q), 3) for q in (50, 95)}


class PeakRSS:
    """Peak resident memory of this process while the block runs (sampled every 20 ms)."""

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            self._stop.wait(0.02)

    def __enter__(self) -> PeakRSS:
        self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mib(self) -> float:
        return round(self.peak / 2**20, 1)


def recall_at(found: Sequence[Any], truth: Sequence[Any]) -> float:
    return len(set(found) & set(truth)) / max(1, len(truth))


def numpy_search(matrix: np.ndarray, queries: np.ndarray, k: int) -> tuple[list, list[float]]:
    """The reference system's search: dot product against the normalised matrix, top k. One
    BLAS thread: a matrix-vector product is memory-bound, and on a shared 2-core machine
    OpenBLAS's second thread made each product 100x slower (spin waits)."""
    from threadpoolctl import threadpool_limits

    tops, times = [], []
    with threadpool_limits(1):
        return _numpy_search(matrix, queries, k, tops, times)


def _numpy_search(
    matrix: np.ndarray, queries: np.ndarray, k: int, tops: list, times: list[float]
) -> tuple[list, list[float]]:
    for q in queries:
        t0 = time.perf_counter()
        scores = matrix @ q
        part = np.argpartition(-scores, k)[:k]
        top = part[np.argsort(-scores[part])]
        times.append(time.perf_counter() - t0)
        tops.append(top.tolist())
    return tops, times


@contextmanager
def step(
    log: Callable[[str], None], name: str, results: dict | None = None, out: Path | None = None
) -> Iterator[None]:
    """Log a section; afterwards write what is measured so far (a later failure loses nothing)."""
    t0 = time.perf_counter()
    log(f"[{datetime.now(UTC):%H:%M:%S}] {name} (load {load()})")
    yield
    log(f"    done in {time.perf_counter() - t0:.1f}s")
    if results is not None and out is not None:
        write_results(results, out)


# ----------------------------------------------------------------------------- sections


def bench_encoder(cfg: SuiteConfig, log: Callable[[str], None]) -> dict[str, Any]:
    """Embedding throughput per variant on the same texts, and int8 quality vs fp32."""
    import torch

    from ffr_lib.models.encoder import TextEncoder

    corpus = load_corpus(cfg.encoder_sample, n_queries=min(cfg.queries, 200))
    texts = corpus.texts[: cfg.encoder_sample]
    fp32 = TextEncoder.get(cfg.encoder)
    int8 = TextEncoder.get(cfg.encoder, quantize="int8")
    tok = fp32.model.tokenizer
    lengths = [len(ids) for ids in tok(texts)["input_ids"]]
    fp32.encode(texts[:16])
    int8.encode(texts[:16])  # warm both
    default_threads = torch.get_num_threads()
    out: dict[str, Any] = {
        "texts": len(texts),
        "tokens_mean": round(float(np.mean(lengths)), 1),
        "tokens_max": int(max(lengths)),
        "torch_threads_default": default_threads,
        "variants": {},
    }
    vecs: dict[str, np.ndarray] = {}
    for name, enc, threads in (
        ("fp32", fp32, None),
        ("fp32-1thread", fp32, 1),
        ("int8", int8, None),
        ("int8-1thread", int8, 1),
        ("fp32 (again)", fp32, None),
    ):
        before = enc.threads
        enc.threads = threads
        l0 = load()
        hits = enc.memo_hits
        t0 = time.perf_counter()
        # memo=False: the encoder's per-process memo would serve repeated texts from memory.
        v = enc.encode(texts, memo=False)
        dt = time.perf_counter() - t0
        enc.threads = before
        vecs.setdefault(name.split(" ")[0].split("-")[0], v)
        out["variants"][name] = {
            "fragments_per_s": round(len(texts) / dt, 1),
            "seconds": round(dt, 2),
            "threads": threads or default_threads,
            "memo_hits": enc.memo_hits - hits,
            "load": [l0, load()],
        }
        log(f"    {name}: {len(texts) / dt:.1f} fragments/s (load {l0})")
    # Quality: neighbours of held-out queries among the texts, int8 vs fp32.
    qf = fp32.encode(corpus.queries)
    qi = int8.encode(corpus.queries)
    k = min(10, len(texts) - 1)
    top_f, _ = numpy_search(vecs["fp32"], qf, k)
    top_i, _ = numpy_search(vecs["int8"], qi, k)
    cos = (vecs["fp32"] * vecs["int8"]).sum(1)
    out["int8_vs_fp32"] = {
        "recall_at_10": round(
            float(np.mean([recall_at(a, b) for a, b in zip(top_i, top_f, strict=False)])), 4
        ),
        "cosine_mean": round(float(cos.mean()), 4),
        "cosine_min": round(float(cos.min()), 4),
        "queries": len(qf),
    }
    return out


def _ids_matrix(built: Any) -> tuple[list[str], np.ndarray]:
    ids = [r.id for r in built.corpus.rows]
    return ids, built.vectors


def _set_ef(url: str, model: str, ef: int) -> None:
    from ffr_lib.db import connect

    with connect(url) as db:
        db.execute(
            "UPDATE ffr.fem_versions SET ef_search = %s WHERE embedding_model = %s", (ef, model)
        )
        db.commit()


def _exact_sql(url: str, model: str, queries: np.ndarray, k: int) -> tuple[list, list[float]]:
    from ffr_lib.db import connect
    from ffr_lib.index.checks import _top_ids

    tops, times = [], []
    with connect(url) as db:
        for q in queries:
            t0 = time.perf_counter()
            tops.append(_top_ids(db, model, q, k, exact=True))
            times.append(time.perf_counter() - t0)
        db.rollback()
    return tops, times


def _hnsw(
    url: str, queries: np.ndarray, k: int, dialogue_ids: Sequence[Sequence[str]] | None = None
) -> tuple[list, list[float]]:
    from ffr_lib.db import connect
    from ffr_lib.index import search_by_vector

    tops, times = [], []
    with connect(url) as db:
        for n, q in enumerate(queries):
            ids = dialogue_ids[n] if dialogue_ids else None
            t0 = time.perf_counter()
            hits = search_by_vector(q, k, dialogue_ids=ids, conn=db)
            times.append(time.perf_counter() - t0)
            tops.append([h.fragment_id for h in hits])
        db.rollback()
    return tops, times


def _index_size(url: str, model: str) -> str:
    from ffr_lib.db import connect

    with connect(url) as db:
        return db.execute(
            "SELECT pg_size_pretty(pg_relation_size(('ffr.' || index_name)::regclass)) "
            "FROM ffr.fem_versions WHERE embedding_model = %s",
            (model,),
        ).fetchone()[0]


def search_on_index(
    cfg: SuiteConfig, url: str, built: Any, qv: np.ndarray, log: Callable[[str], None]
) -> dict[str, Any]:
    """numpy vs exact SQL vs HNSW (+ ef sweep, filters) on one built index."""
    k = 10
    model = built.stats.embedding_model
    ids, matrix = _ids_matrix(built)
    n_lat = min(cfg.latency_queries, len(qv))
    truth_idx, np_times = numpy_search(matrix, qv, k)
    truth = [[ids[i] for i in top] for top in truth_idx]
    out: dict[str, Any] = {"fragments": len(ids), "load": load(), "k": k}
    out["numpy"] = {**lat(np_times[:n_lat]), "recall_at_10": 1.0}
    n_ex = min(cfg.exact_queries, len(qv))
    ex_tops, ex_times = _exact_sql(url, model, qv[:n_ex], k)
    out["exact_sql"] = {
        **lat(ex_times),
        "recall_at_10": round(
            float(np.mean([recall_at(a, b) for a, b in zip(ex_tops, truth, strict=False)])), 4
        ),
        "queries": n_ex,
    }
    log(f"    numpy p50 {out['numpy']['p50_ms']} ms, exact SQL p50 {out['exact_sql']['p50_ms']} ms")
    default_ef = built.stats and _get_ef(url, model)
    sweep = []
    for ef in sorted(set(cfg.ef_search) | {default_ef}):
        _set_ef(url, model, ef)
        _hnsw(url, qv[:5], k)  # warm the cache at this setting
        tops, times = _hnsw(url, qv, k)
        row = {
            "ef_search": ef,
            **lat(times[:n_lat] if len(times) > n_lat else times),
            "recall_at_10": round(
                float(np.mean([recall_at(a, b) for a, b in zip(tops, truth, strict=False)])), 4
            ),
        }
        sweep.append(row)
        log(f"    ef_search {ef}: p50 {row['p50_ms']} ms recall@10 {row['recall_at_10']}")
    _set_ef(url, model, default_ef)
    out["hnsw_default_ef"] = default_ef
    out["hnsw"] = next(r for r in sweep if r["ef_search"] == default_ef)
    out["ef_sweep"] = sweep
    out["index_size"] = _index_size(url, model)
    # Filtered: restricted to 3 random dialogues (iterative scan), recall vs exact in them.
    rng = random.Random(1)
    dialogue_of = [r.dialogue_id for r in built.corpus.rows]
    all_dialogues = sorted(set(dialogue_of))
    filters = [rng.sample(all_dialogues, 3) for _ in range(n_lat)]
    tops, times = _hnsw(url, qv[:n_lat], k, filters)
    recalls = []
    for q, flt, got in zip(qv[:n_lat], filters, tops, strict=False):
        rows = [i for i, d in enumerate(dialogue_of) if d in set(flt)]
        scores = matrix[rows] @ q
        best = [ids[rows[i]] for i in np.argsort(-scores)[:k]]
        recalls.append(recall_at(got, best))
    out["filtered_3_dialogues"] = {**lat(times), "recall_at_10": round(float(np.mean(recalls)), 4)}
    log(f"    filtered p50 {out['filtered_3_dialogues']['p50_ms']} ms")
    return out


def _get_ef(url: str, model: str) -> int:
    from ffr_lib.db import connect

    with connect(url) as db:
        return int(
            db.execute(
                "SELECT ef_search FROM ffr.fem_versions WHERE embedding_model = %s", (model,)
            ).fetchone()[0]
        )


def bench_large(
    cfg: SuiteConfig, n: int, seeds: np.ndarray, qv: np.ndarray, log: Callable[[str], None]
) -> dict[str, Any]:
    """Search-only at ``n`` real-derived vectors: numpy, SQL exact scan (bare table), and HNSW
    when ``cfg.hnsw_large``."""
    from ffr_lib.db import connect

    k = 10
    matrix = derived_vectors(seeds, n, seed=n)
    truth, np_times = numpy_search(matrix, qv, k)
    out: dict[str, Any] = {"fragments": n, "vectors": "real-derived", "load": load()}
    out["numpy"] = {**lat(np_times[: cfg.latency_queries]), "recall_at_10": 1.0}
    log(f"    numpy p50 {out['numpy']['p50_ms']} ms")
    with bench_server() as url, connect(url) as db:
        db.execute("CREATE TABLE bench_vec (id int PRIMARY KEY, embedding vector(384))")
        t0 = time.perf_counter()
        with (
            db.cursor() as cur,
            cur.copy("COPY bench_vec (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy,
        ):
            copy.set_types(["int4", "vector"])
            for i, v in enumerate(matrix):
                copy.write_row((i, v))
        db.commit()
        db.execute("ANALYZE bench_vec")
        db.commit()
        out["copy_s"] = round(time.perf_counter() - t0, 1)
        n_ex = min(cfg.exact_queries, len(qv))
        times, recalls = [], []
        db.execute("SET max_parallel_workers_per_gather = 2")
        for q, tr in zip(qv[:n_ex], truth, strict=False):
            t0 = time.perf_counter()
            got = [
                r[0]
                for r in db.execute(
                    "SELECT id FROM bench_vec ORDER BY embedding <=> %s LIMIT %s", (q, k)
                ).fetchall()
            ]
            times.append(time.perf_counter() - t0)
            recalls.append(recall_at(got, tr))
        out["exact_sql"] = {**lat(times), "recall_at_10": round(float(np.mean(recalls)), 4)}
        log(f"    exact SQL p50 {out['exact_sql']['p50_ms']} ms")
        if cfg.hnsw_large:
            t0 = time.perf_counter()
            db.execute("SET maintenance_work_mem = '4GB'")
            db.execute(
                "CREATE INDEX ON bench_vec USING hnsw ((embedding::halfvec(384)) "
                "halfvec_cosine_ops) WITH (m = 16, ef_construction = 64)"
            )
            db.commit()
            out["hnsw_build_s"] = round(time.perf_counter() - t0, 1)
            for ef in cfg.ef_search:
                db.execute(f"SET hnsw.ef_search = {int(ef)}")
                times, recalls = [], []
                for q, tr in zip(qv, truth, strict=False):
                    t0 = time.perf_counter()
                    got = [
                        r[0]
                        for r in db.execute(
                            "SELECT id FROM bench_vec ORDER BY embedding::halfvec(384) <=> "
                            "%s::halfvec(384) LIMIT %s",
                            (q, k),
                        ).fetchall()
                    ]
                    times.append(time.perf_counter() - t0)
                    recalls.append(recall_at(got, tr))
                out.setdefault("ef_sweep", []).append(
                    {
                        "ef_search": ef,
                        **lat(times),
                        "recall_at_10": round(float(np.mean(recalls)), 4),
                    }
                )
    return out


def bench_ffrs(
    cfg: SuiteConfig, url: str, built: Any, log: Callable[[str], None]
) -> dict[str, Any]:
    """FFRS latency per stage with the model resident (loaded once, warmed with one query)."""
    import torch

    from ffr_lib.f2rvlm.profiles import get_profile
    from ffr_lib.f2rvlm.retriever import F2RVLMRetriever
    from ffr_lib.ffrs.pipeline import FFRSConfig, FFRSPipeline, FragmentReader

    out: dict[str, Any] = {
        "profile": cfg.ffrs_profile,
        "model": "untrained backbone",
        "torch_threads": torch.get_num_threads(),
    }
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        retriever = F2RVLMRetriever.from_base(get_profile(cfg.ffrs_profile))
        out["load_s"] = round(time.perf_counter() - t0, 2)
        out["backbone"] = retriever.backbone.source
        dialogues = {d.id: d for d in built.corpus.dialogues}
        queries = built.corpus.queries[: cfg.ffrs_queries]
        encoder = built.embedder._encoder
        reader = FragmentReader(retriever, batch_size=max(cfg.ffrs_k))
        per_k = []
        warm = FFRSPipeline(FFRSConfig(k=2), reader, encoder=encoder, url=url, dialogues=dialogues)
        warm.query(queries[0])
        for k in cfg.ffrs_k:
            pipe = FFRSPipeline(
                FFRSConfig(k=k, batch_size=max(cfg.ffrs_k)),
                reader,
                encoder=encoder,
                url=url,
                dialogues=dialogues,
            )
            totals, stages, tokens = [], {}, []
            for q in queries:
                t0 = time.perf_counter()
                pred = pipe.query(q)
                totals.append(time.perf_counter() - t0)
                tokens.append(pred.tokens_read)
                for name, sec in pred.timings.items():
                    stages.setdefault(name, []).append(sec)
            row = {
                "k": k,
                "queries": len(queries),
                "total": lat(totals),
                "stages_p50_ms": {
                    s: round(1000 * statistics.median(v), 1) for s, v in stages.items()
                },
                "prompt_tokens_mean": round(float(np.mean(tokens)), 1),
                "load": load(),
            }
            per_k.append(row)
            log(f"    K={k}: p50 {row['total']['p50_ms'] / 1000:.2f} s {row['stages_p50_ms']}")
        # Baselines at K=10, same queries: no shared-prefix cache; one candidate per batch.
        for name, variant in (
            ("K=10 without prefix cache", FragmentReader(retriever, 10, share_prefix=False)),
            ("K=10 one prompt per batch", FragmentReader(retriever, 1, share_prefix=False)),
        ):
            pipe = FFRSPipeline(
                FFRSConfig(k=10), variant, encoder=encoder, url=url, dialogues=dialogues
            )
            totals, f2r = [], []
            for q in queries:
                t0 = time.perf_counter()
                pred = pipe.query(q)
                totals.append(time.perf_counter() - t0)
                f2r.append(pred.timings.get("f2rvlm", 0.0))
            row = {
                "variant": name,
                "total": lat(totals),
                "f2rvlm_p50_ms": round(1000 * statistics.median(f2r), 1),
                "load": load(),
            }
            out.setdefault("baselines_k10", []).append(row)
            log(f"    {name}: p50 {row['total']['p50_ms'] / 1000:.2f} s")
        out["per_k"] = per_k
        out["profile_k10"] = profile_query(
            FFRSPipeline(
                FFRSConfig(k=10, batch_size=max(cfg.ffrs_k)),
                reader,
                encoder=encoder,
                url=url,
                dialogues=dialogues,
            ),
            queries[0],
        )
        log(f"    torch profile of one K=10 query: {out['profile_k10']}")
    out["serving_peak_rss_mib"] = rss.mib
    return out


def profile_query(pipe: Any, text: str, top: int = 6) -> dict[str, Any]:
    """torch profiler summary of one query: the operators with the most self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        pipe.query(text)
        wall = time.perf_counter() - t0
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    return {
        "wall_s": round(wall, 2),
        "top_ops": [
            {
                "op": e.key,
                "self_cpu_share": round(e.self_cpu_time_total / total, 3),
                "calls": e.count,
            }
            for e in events[:top]
        ],
    }


def bench_training(cfg: SuiteConfig, log: Callable[[str], None]) -> dict[str, Any]:
    """A few SFT and GRPO steps of the profile on window prompts of real dialogues."""
    from ffr_lib.data.model import Query, QueryType
    from ffr_lib.f2rvlm.grpo import train_grpo
    from ffr_lib.f2rvlm.profiles import get_profile
    from ffr_lib.f2rvlm.retriever import training_records
    from ffr_lib.f2rvlm.sft import train_sft

    corpus = load_corpus(400, n_queries=1)
    rng = random.Random(0)
    dialogues = {d.id: d for d in corpus.dialogues if len(d.utterances) >= 12}
    queries = []
    for n, d in enumerate(list(dialogues.values())[:16]):
        i = rng.randrange(len(d.utterances) - 2)
        queries.append(
            Query(
                id=f"bench-{n}",
                dialogue_id=d.id,
                text=d.utterances[i].text,
                type=QueryType.UTTERANCE_ONLY,
                gold_utterance_ids=[i, i + 1],
            )
        )
    base = get_profile(cfg.training_profile if hasattr(cfg, "training_profile") else "cpu-small")
    steps = cfg.training_steps
    profile = base.model_copy(
        update={
            "sft": base.sft.model_copy(update={"max_steps": steps, "logging_steps": 1}),
            "grpo": base.grpo.model_copy(update={"max_steps": steps, "dynamic_sampling": False}),
        },
        deep=True,
    )
    records = training_records(dialogues, queries, profile)
    import torch

    out: dict[str, Any] = {
        "profile": profile.name,
        "steps": steps,
        "records": len(records),
        "torch_threads": torch.get_num_threads(),
    }
    with tempfile.TemporaryDirectory(prefix="ffrbench-train-") as tmp:
        with PeakRSS() as rss:
            l0 = load()
            sft = train_sft(profile, records, Path(tmp) / "sft", track=False)
        out["sft"] = {
            "seconds_per_step": round(sft.metrics["sft_seconds"] / steps, 2),
            "peak_rss_mib": rss.mib,
            "load": [l0, load()],
            "batch_size": profile.sft.batch_size,
        }
        log(f"    SFT {out['sft']}")
        with PeakRSS() as rss:
            l0 = load()
            grpo = train_grpo(profile, records, sft.adapter_dir, Path(tmp) / "grpo", track=False)
        out["grpo"] = {
            "seconds_per_step": round(grpo.metrics["grpo_seconds_per_step"], 2),
            "peak_rss_mib": rss.mib,
            "load": [l0, load()],
            "generations": profile.grpo.num_generations,
            "completion_tokens": profile.grpo.max_completion_length,
        }
        log(f"    GRPO {out['grpo']}")
    return out


# ----------------------------------------------------------------------------- driver


def _threads(cfg: SuiteConfig) -> None:
    import torch

    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)


def machine() -> dict[str, Any]:
    import psutil

    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def run_suite(cfg: SuiteConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the selected sections; write results.json / results.md / search_cost.png."""
    from ffr_lib.index import IndexConfig
    from ffr_lib.models.encoder import TextEncoder
    from ffr_lib.settings import get_settings

    os.environ.pop("FFR_DATABASE_URL", None)
    cache_dir = cfg.cache_dir or get_settings().home / "bench-cache"
    started = time.perf_counter()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_start": list(os.getloadavg()),
        "config": json.loads(cfg.model_dump_json()),
        "env": {
            k: os.environ.get(k)
            for k in ("FFR_TORCH_THREADS", "FFR_ENCODER_THREADS", "OMP_NUM_THREADS", "FFR_PG_PORT")
            if os.environ.get(k)
        },
    }
    sections = set(cfg.sections)
    if "encoder" in sections:
        with step(log, "encoder", results, cfg.out_dir):
            results["encoder"] = bench_encoder(cfg, log)
    encoder = TextEncoder.get(cfg.encoder)
    seeds = None
    qv = None
    if sections & {"index", "search", "ffrs"}:
        results["index"], results["search"] = [], []
        rate = None  # fragments/s of the first (timed) embedding, for extrapolation
        for n in sorted(cfg.index_sizes):
            with step(log, f"index {n}", results, cfg.out_dir), bench_server() as url:
                with PeakRSS() as rss:
                    built = build_index(
                        n,
                        url=url,
                        encoder=encoder,
                        n_queries=cfg.queries,
                        embed_limit=cfg.embed_limit,
                        cache_dir=cache_dir,
                        cache_read=rate is not None,  # the first build always embeds (timed)
                    )
                st = built.stats
                n_rows = len(built.corpus.rows)
                if not built.from_cache and built.seconds_embed:
                    rate = built.embedded / built.seconds_embed
                extrapolated = built.from_cache or built.derived > 0.01 * n_rows
                embed_s = n_rows / rate if rate else float("nan")
                end_to_end = n_rows / (embed_s + st.seconds_write + st.seconds_index)
                row = {
                    "fragments": n_rows,
                    "embedded": built.embedded,
                    "derived": built.derived,
                    "embed_from_cache": built.from_cache,
                    "store_dialogues_s": round(built.seconds_store, 2),
                    "embed_s": round(built.seconds_embed, 2),
                    "embed_per_s": round(rate, 1) if rate else None,
                    "embed_all_s": round(embed_s, 1),
                    "write_s": round(st.seconds_write, 2),
                    "copy_per_s": round(n_rows / st.seconds_write, 0),
                    "hnsw_analyze_s": round(st.seconds_index, 2),
                    "fragments_per_s": round(end_to_end, 1),
                    "fragments_per_s_without_embed": round(
                        n_rows / (st.seconds_write + st.seconds_index), 1
                    ),
                    "extrapolated": extrapolated,
                    "peak_rss_mib": rss.mib,
                    "load": load(),
                }
                results["index"].append(row)
                log(f"    {row}")
                # Held-out queries of this corpus (dialogues it does not contain).
                qv, _ = embed_texts(encoder, built.corpus.queries, cache_dir=cache_dir)
                if seeds is None:
                    seeds = built.vectors[: built.embedded]
                if "search" in sections:
                    res = search_on_index(cfg, url, built, qv, log)
                    if built.derived:
                        res["vectors"] = f"{built.embedded} embedded + {built.derived} derived"
                    results["search"].append(res)
                    if cfg.tune and n == min(cfg.index_sizes):
                        results["tune"] = bench_tune(cfg, url, built, qv, log)
                if "ffrs" in sections and n == min(cfg.index_sizes):
                    _threads(cfg)
                    with step(log, "ffrs", results, cfg.out_dir):
                        results["ffrs"] = bench_ffrs(cfg, url, built, log)
        if "search" in sections and seeds is not None:
            for n in cfg.large_sizes:
                with step(log, f"search {n} (derived vectors)", results, cfg.out_dir):
                    results["search"].append(bench_large(cfg, n, seeds, qv, log))
    if "training" in sections:
        _threads(cfg)
        with step(log, "training", results, cfg.out_dir):
            results["training"] = bench_training(cfg, log)
    results["load_end"] = list(os.getloadavg())
    results["wall_s"] = round(time.perf_counter() - started, 1)
    write_results(results, cfg.out_dir)
    _ = IndexConfig  # documented default settings are in results["config"]
    return results


def bench_tune(
    cfg: SuiteConfig, url: str, built: Any, qv: np.ndarray, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Rebuild the index with other settings beside the default one, same vectors; the search
    functions serve each in turn (activate='always')."""
    from ffr_lib.index import IndexConfig, activate_version, index_rows

    default_model = built.stats.embedding_model
    ids, matrix = _ids_matrix(built)
    truth = [[ids[i] for i in t] for t in numpy_search(matrix, qv, 10)[0]]
    rows = []
    variants = [
        ("vector m16 efc64", IndexConfig(vector_type="vector", activate="always")),
        ("halfvec m16 efc128", IndexConfig(ef_construction=128, activate="always")),
        ("halfvec m24 efc128", IndexConfig(hnsw_m=24, ef_construction=128, activate="always")),
    ]
    for name, config in variants:
        suffix = "+" + name.replace(" ", "-")
        embedder = FixedVectors(
            default_model + suffix, built.corpus.texts, built.vectors, built.embedder._encoder
        )
        stats = index_rows(built.corpus.rows, embedder, config=config, url=url)
        for ef in (40, 100, 200):
            _set_ef(url, stats.embedding_model, ef)
            _hnsw(url, qv[:5], 10)
            tops, times = _hnsw(url, qv, 10)
            row = {
                "variant": name,
                "build_s": round(stats.seconds_index, 2),
                "index_size": _index_size(url, stats.embedding_model),
                "ef_search": ef,
                **lat(times[: cfg.latency_queries]),
                "recall_at_10": round(
                    float(np.mean([recall_at(a, b) for a, b in zip(tops, truth, strict=False)])), 4
                ),
                "load": load(),
            }
            rows.append(row)
            log(f"    tune {row}")
    activate_version(default_model, url=url)
    return rows


def write_results(results: dict[str, Any], out_dir: Path) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (out_dir / "results.md").write_text(render_markdown(results))
    if results.get("search"):
        plot_search(results["search"], out_dir / "search_cost.png")


def plot_search(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (
        ("numpy", "numpy brute force"),
        ("exact_sql", "SQL exact scan"),
        ("hnsw", "HNSW (search_fragments)"),
    ):
        pts = sorted((r["fragments"], r[key]["p50_ms"]) for r in rows if key in r)
        if pts:
            ax.plot(*zip(*pts, strict=False), marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("fragments")
    ax.set_ylabel("p50 latency per query (ms)")
    ax.set_title("search cost against corpus size (k=10)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render_markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    parts = [
        "# Benchmark results",
        "",
        f"Date {r['date']}; {m['cpus']} CPUs, {m['memory_gib']} GiB; load average at start "
        f"{', '.join(f'{x:.1f}' for x in r['load_start'])}, at end "
        f"{', '.join(f'{x:.1f}' for x in r.get('load_end', []))}; suite wall time {r.get('wall_s')} s.",
    ]
    if "encoder" in r:
        e = r["encoder"]
        parts += [
            "",
            f"## Encoder ({e['texts']} fragment texts, {e['tokens_mean']} tokens mean, "
            f"max {e['tokens_max']})",
            "",
            *markdown_table(
                ["variant", "fragments/s", "threads", "load"],
                [
                    [k, v["fragments_per_s"], v["threads"], v["load"][0]]
                    for k, v in e["variants"].items()
                ],
            ),
            "",
            f"int8 vs fp32: recall@10 {e['int8_vs_fp32']['recall_at_10']}, cosine mean "
            f"{e['int8_vs_fp32']['cosine_mean']} (min {e['int8_vs_fp32']['cosine_min']}).",
        ]
    if r.get("index"):
        parts += [
            "",
            "## Indexing end to end (embed + COPY + HNSW + ANALYZE)",
            "",
            *markdown_table(
                [
                    "fragments",
                    "embedded",
                    "derived",
                    "embed/s",
                    "COPY+insert s",
                    "HNSW+ANALYZE s",
                    "end to end frag/s",
                    "peak RSS MiB",
                    "load",
                ],
                [
                    [
                        x["fragments"],
                        x["embedded"],
                        x["derived"],
                        x["embed_per_s"],
                        x["write_s"],
                        x["hnsw_analyze_s"],
                        f"{x['fragments_per_s']}{' (extrapolated)' if x['extrapolated'] else ''}",
                        x["peak_rss_mib"],
                        x["load"],
                    ]
                    for x in r["index"]
                ],
            ),
        ]
    if r.get("search"):
        rows = []
        for s in r["search"]:
            for key in ("numpy", "exact_sql", "hnsw", "filtered_3_dialogues"):
                if key in s:
                    rows.append(
                        [
                            s["fragments"],
                            s.get("vectors", "real"),
                            key,
                            s[key]["p50_ms"],
                            s[key]["p95_ms"],
                            s[key].get("recall_at_10"),
                            s["load"],
                        ]
                    )
        parts += [
            "",
            "## Search, k=10 (recall against numpy brute force)",
            "",
            *markdown_table(
                ["fragments", "vectors", "method", "p50 ms", "p95 ms", "recall@10", "load"], rows
            ),
            "",
            "ef_search sweep (HNSW through ffr.search_fragments):",
            "",
            *markdown_table(
                ["fragments", "ef_search", "p50 ms", "p95 ms", "recall@10"],
                [
                    [s["fragments"], e["ef_search"], e["p50_ms"], e["p95_ms"], e["recall_at_10"]]
                    for s in r["search"]
                    for e in s.get("ef_sweep", [])
                ],
            ),
        ]
    if r.get("tune"):
        parts += [
            "",
            "## HNSW settings (smallest index, same vectors)",
            "",
            *markdown_table(
                ["variant", "build s", "size", "ef_search", "p50 ms", "p95 ms", "recall@10"],
                [
                    [
                        t["variant"],
                        t["build_s"],
                        t["index_size"],
                        t["ef_search"],
                        t["p50_ms"],
                        t["p95_ms"],
                        t["recall_at_10"],
                    ]
                    for t in r["tune"]
                ],
            ),
        ]
    if r.get("ffrs"):
        f = r["ffrs"]
        parts += [
            "",
            f"## FFRS end to end ({f['profile']}, {f['model']}, model load {f['load_s']} s, "
            f"serving peak RSS {f['serving_peak_rss_mib']} MiB)",
            "",
            *markdown_table(
                ["K", "queries", "p50 s", "p95 s", "stage p50 ms", "prompt tokens", "load"],
                [
                    [
                        x["k"],
                        x["queries"],
                        round(x["total"]["p50_ms"] / 1000, 2),
                        round(x["total"]["p95_ms"] / 1000, 2),
                        ", ".join(f"{k} {v}" for k, v in x["stages_p50_ms"].items()),
                        x["prompt_tokens_mean"],
                        x["load"],
                    ]
                    for x in f["per_k"]
                ],
            ),
            "",
            "Baselines at K=10 (same queries): "
            + "; ".join(
                f"{b['variant']}: p50 {b['total']['p50_ms'] / 1000:.2f} s "
                f"(F2RVLM {b['f2rvlm_p50_ms'] / 1000:.2f} s, load {b['load']})"
                for b in f.get("baselines_k10", [])
            ),
            "",
            "torch profiler, one K=10 query ("
            + str(f.get("profile_k10", {}).get("wall_s"))
            + " s): "
            + ", ".join(
                f"{o['op']} {100 * o['self_cpu_share']:.0f}%"
                for o in f.get("profile_k10", {}).get("top_ops", [])
            ),
        ]
    if r.get("training"):
        t = r["training"]
        parts += [
            "",
            f"## Training ({t['profile']}, {t['steps']} steps each)",
            "",
            *markdown_table(
                ["stage", "s/step", "peak RSS MiB", "load"],
                [
                    [name, t[name]["seconds_per_step"], t[name]["peak_rss_mib"], t[name]["load"][0]]
                    for name in ("sft", "grpo")
                ],
            ),
        ]
    return "\n".join(parts) + "\n"
