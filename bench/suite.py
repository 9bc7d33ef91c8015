"""The benchmark suite behind ``ffr bench`` / ``make bench`` (issue 9).

Sections (each measures its baseline in the same run and records the load average):

- ``encoder``: MiniLM embedding throughput on real fragment texts: fp32 with torch's default
  threads, fp32 with 1 thread, dynamic int8; recall@10 of int8 neighbours against fp32.
- ``index``: end-to-end indexing (embed + COPY + HNSW + ANALYZE) at each ``index_sizes`` size,
  with the peak RSS of this process and of the Postgres server, the size on disk, and the
  encoder's share of the fp32 peak at that rate. Every fragment is embedded (real vectors,
  cached in ``$FFR_HOME/bench-cache`` by model version and texts); with ``embed_limit``, only
  that many, the others get real-derived vectors (see ``bench/corpus.py``) and the embedding time
  is extrapolated; the report says so.
- ``search``: on each index: numpy brute force (the reference system: normalised matrix, dot
  product), exact scan in SQL, HNSW through ``ffr.search_fragments``; p50/p95 and recall@10
  against the numpy ground truth; an ``ef_search`` sweep; filtered queries (iterative scan).
  Sizes above the real corpus (1M) use real-derived vectors in a bare table: numpy and exact
  scan only unless ``hnsw_large`` (a 1M HNSW build takes tens of minutes on 2 cores).
  ``tune`` rebuilds the HNSW index of the ``tune_size`` index (default the largest) in place
  with every setting of the grid (vector vs halfvec, m, ef_construction), sweeps ef_search on
  each, names the setting that meets ``recall_target`` at the lowest p50 and measures it again
  beside the default (``IndexConfig``).
- ``ffrs``: FFRS end-to-end latency per stage (embed, SQL, load, F2RVLM) at each K with the
  SmolLM2 backbone (untrained: latency only), model resident, plus serving peak RSS.
- ``training``: SFT and GRPO step time and peak RSS for the ``cpu-small`` profile (a few steps).

Results go to ``<out>/results.json``, ``<out>/results.md``, ``<out>/cost_curve.json`` (the curve
the ``fragment_index`` asset shows, :class:`ffr_lib.index.cost.CostCurve`) and
``<out>/cost_curves.png`` (indexing fragments/s, search p50 and memory against corpus size).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import shlex
import statistics
import sys
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
    bench_server,
    build_index,
    derived_vectors,
    embed_texts,
    load_corpus,
)
from ffr_lib.reporting import markdown_table, percentile
from ffr_lib.threads import wanted_threads

SECTIONS = ("encoder", "index", "search", "ffrs", "training")


def _serving_read_top() -> int:
    """FFRS's default ``read_top`` (0 when it reads every fragment)."""
    from ffr_lib.ffrs.pipeline import FFRSConfig

    return FFRSConfig().read_top or 0


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
    embed_limit: int | None = Field(
        None,
        description="fragments embedded per index build (None = all, real vectors); the rest get "
        "real-derived vectors",
    )
    encoder: str = "minilm"
    encoder_sample: int = Field(1_000, description="fragments embedded per encoder variant")
    queries: int = Field(200, description="held-out query texts (recall)")
    latency_queries: int = Field(100, description="queries timed per search variant")
    exact_queries: int = Field(30, description="queries timed for the SQL exact scan")
    ef_search: list[int] = Field(default_factory=lambda: [20, 40, 64, 100, 200])
    tune: bool = Field(True, description="rebuild one index with every HNSW setting of the grid")
    tune_size: int | None = Field(
        None, description="the index_sizes size the grid runs on (None = the largest)"
    )
    tune_vector_types: list[str] = Field(default_factory=lambda: ["vector", "halfvec"])
    tune_m: list[int] = Field(default_factory=lambda: [16, 24, 32])
    tune_ef_construction: list[int] = Field(default_factory=lambda: [64, 128])
    tune_ef_search: list[int] = Field(default_factory=lambda: [40, 64, 100, 150, 200])
    recall_target: float = Field(0.95, description="recall@10 the chosen HNSW setting must meet")
    hnsw_large: bool = Field(False, description="also build HNSW at the large sizes")
    ffrs_k: list[int] = Field(default_factory=lambda: [5, 10, 20])
    ffrs_queries: int = Field(5, description="queries per K")
    ffrs_profile: str = "cpu-small"
    ffrs_adapter: Path | None = Field(
        None,
        description="a trained F2RVLM adapter for the FFRS section (None = the untrained "
        "backbone of ffrs_profile, which writes to its token budget; a trained one stops after "
        "its answer)",
    )
    ffrs_read_top: int = Field(
        default_factory=_serving_read_top,
        ge=0,
        description="FFRSConfig.read_top in the FFRS section: F2RVLM reads the best N of the K "
        "recalled fragments (default: FFRS's own, 4; 0 = all K)",
    )

    @property
    def read_top(self) -> int | None:
        """``ffrs_read_top`` as FFRSConfig takes it (None = all K)."""
        return self.ffrs_read_top or None

    training_steps: int = Field(2, description="SFT and GRPO steps timed")
    torch_threads: int | None = Field(
        None,
        description="torch threads for the FFRS and training sections (None = torch default, "
        "2 here); 1 is much faster when other processes oversubscribe the cores",
    )
    cache_dir: Path | None = Field(None, description="vector cache (default $FFR_HOME/bench-cache)")
    reembed: bool = Field(
        False,
        description="embed at every index size even when the vectors are cached (the first "
        "size always embeds; the others otherwise extrapolate its rate)",
    )
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


def postmaster(url: str) -> Any:
    """The ``psutil.Process`` of the Postgres server behind ``url`` (the parent of a backend)."""
    import psutil

    from ffr_lib.db import connect

    with connect(url) as db:
        backend = db.execute("SELECT pg_backend_pid()").fetchone()[0]
    return psutil.Process(backend).parent()


def server_pss(server: Any) -> int:
    """Proportional set size of a server and its processes (shared buffers counted once)."""
    import psutil

    total = 0
    for proc in [server, *server.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_full_info().pss
    return total


class PeakRSS:
    """Peak resident memory of this process while the block runs (sampled every 20 ms) and,
    given the server's ``url``, the peak PSS of the Postgres server's processes (every 0.5 s)."""

    def __init__(self, url: str | None = None) -> None:
        import psutil

        self._proc = psutil.Process()
        self._server = postmaster(url) if url else None
        self.peak = 0
        self.server_peak = 0
        self._stop = threading.Event()

    def _run(self) -> None:
        tick = 0
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            if self._server is not None and tick % 25 == 0:
                self.server_peak = max(self.server_peak, server_pss(self._server))
            tick += 1
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

    @property
    def server_mib(self) -> float | None:
        return round(self.server_peak / 2**20, 1) if self._server is not None else None


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


def set_ef_search(url: str, model: str, ef: int) -> None:
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


def _index_mib(url: str, model: str) -> float:
    """Size of the version's HNSW index over its fragments, MiB (the index stage's own measure)."""
    from ffr_lib.index.cost import measure_index_point

    return measure_index_point(model, sample=0, url=url)["hnsw_index_mib"]


def _db_mib(url: str) -> float:
    """Size of the benchmark database on disk (tables, indexes, TOAST), MiB."""
    from ffr_lib.db import connect

    with connect(url) as db:
        size = db.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    return round(size / 2**20, 1)


def peak_share(
    encoder: Any, texts: Sequence[str], embed_rate: float | None, end_to_end: float
) -> dict[str, Any]:
    """Useful encoder GFLOP/s at the embedding rate and at the end-to-end rate, and the latter's
    share of the 2-core fp32 peak, counted as ``bench/encoder_runtime.py`` does (real token
    counts, no padding)."""
    from bench.encoder_runtime import PEAK_GFLOPS, useful_gflop

    try:
        per_fragment = useful_gflop(encoder, texts) / max(1, len(texts))
    except (AttributeError, IndexError, TypeError):  # an encoder without a transformer config
        return {}
    useful = end_to_end * per_fragment
    low, high = (100 * useful / peak for peak in sorted(PEAK_GFLOPS, reverse=True))
    return {
        "gflop_per_fragment": round(per_fragment, 3),
        "embed_useful_gflop_s": round(embed_rate * per_fragment, 1) if embed_rate else None,
        "useful_gflop_s": round(useful, 1),
        "share_of_fp32_peak": f"{low:.0f}-{high:.0f}%",
    }


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
    default_ef = built.stats and get_ef_search(url, model)
    sweep = []
    for ef in sorted(set(cfg.ef_search) | {default_ef}):
        set_ef_search(url, model, ef)
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
    set_ef_search(url, model, default_ef)
    out["hnsw_default_ef"] = default_ef
    out["hnsw"] = next(r for r in sweep if r["ef_search"] == default_ef)
    out["ef_sweep"] = sweep
    out["hnsw_index_mib"] = _index_mib(url, model)
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


def get_ef_search(url: str, model: str) -> int:
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
    with the default settings (``IndexConfig``) when ``cfg.hnsw_large``."""
    from ffr_lib.db import connect
    from ffr_lib.index import IndexConfig

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
            # The default index settings (IndexConfig), as the fragment index builds them.
            config = IndexConfig()
            typ = f"{config.vector_type}(384)"
            # The graph of a million vectors must fit in memory, or the build is many times slower.
            db.execute("SET maintenance_work_mem = '4GB'")
            with PeakRSS(url) as rss:
                t0 = time.perf_counter()
                db.execute(
                    f"CREATE INDEX bench_vec_hnsw ON bench_vec USING hnsw ((embedding::{typ}) "
                    f"{config.vector_type}_cosine_ops) WITH (m = {int(config.hnsw_m)}, "
                    f"ef_construction = {int(config.ef_construction)})"
                )
                db.commit()
                out["hnsw_build_s"] = round(time.perf_counter() - t0, 1)
            out["hnsw_setting"] = setting_name(config)
            out["hnsw_build_postgres_peak_mib"] = rss.server_mib
            out["hnsw_index_mib"] = round(
                db.execute("SELECT pg_relation_size('bench_vec_hnsw')").fetchone()[0] / 2**20, 1
            )
            log(f"    HNSW {out['hnsw_setting']} built in {out['hnsw_build_s']} s")
            for ef in sorted(set(cfg.ef_search) | {config.ef_search}):
                db.execute(f"SET hnsw.ef_search = {int(ef)}")
                times, recalls = [], []
                for q, tr in zip(qv, truth, strict=False):
                    t0 = time.perf_counter()
                    got = [
                        r[0]
                        for r in db.execute(
                            f"SELECT id FROM bench_vec ORDER BY embedding::{typ} <=> %s::{typ} "
                            "LIMIT %s",
                            (q, k),
                        ).fetchall()
                    ]
                    times.append(time.perf_counter() - t0)
                    recalls.append(recall_at(got, tr))
                row = {
                    "ef_search": ef,
                    **lat(times),
                    "recall_at_10": round(float(np.mean(recalls)), 4),
                }
                out.setdefault("ef_sweep", []).append(row)
                log(f"    ef_search {ef}: p50 {row['p50_ms']} ms recall@10 {row['recall_at_10']}")
            out["hnsw"] = next(r for r in out["ef_sweep"] if r["ef_search"] == config.ef_search)
        out["db_mib"] = _db_mib(url)
    return out


def setting_name(config: Any) -> str:
    """An IndexConfig's HNSW setting in one phrase (``halfvec m16 efc128 ef_search 100``)."""
    return (
        f"{config.vector_type} m{config.hnsw_m} efc{config.ef_construction} "
        f"ef_search {config.ef_search}"
    )


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
        "model": str(cfg.ffrs_adapter) if cfg.ffrs_adapter else "untrained backbone",
        "read_top": cfg.read_top,
        "torch_threads": torch.get_num_threads(),
    }
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        if cfg.ffrs_adapter:
            retriever = F2RVLMRetriever.from_adapter(cfg.ffrs_adapter)
            out["profile"] = retriever.profile.name
        else:
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
                FFRSConfig(k=k, batch_size=max(cfg.ffrs_k), read_top=cfg.read_top),
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
                FFRSConfig(k=10, read_top=cfg.read_top),
                variant,
                encoder=encoder,
                url=url,
                dialogues=dialogues,
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
                FFRSConfig(k=10, batch_size=max(cfg.ffrs_k), read_top=cfg.read_top),
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

    from bench.encoder_runtime import cpu_model

    return {
        "cpus": os.cpu_count(),
        "cpu": cpu_model(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def run_suite(cfg: SuiteConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the selected sections; write results.json, results.md, cost_curve.json and
    cost_curves.png."""
    from ffr_lib.index import IndexConfig
    from ffr_lib.models.encoder import TextEncoder
    from ffr_lib.settings import get_settings

    os.environ.pop("FFR_DATABASE_URL", None)
    cache_dir = cfg.cache_dir or get_settings().home / "bench-cache"
    started = time.perf_counter()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": machine(),
        "load_start": list(os.getloadavg()),
        "config": json.loads(cfg.model_dump_json()),
        "index_config": IndexConfig().model_dump(),  # the default settings this run measures
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
        tune_size = cfg.tune_size or max(cfg.index_sizes)
        if cfg.tune and "search" in sections and tune_size not in cfg.index_sizes:
            raise ValueError(f"tune_size {tune_size} is not one of index_sizes {cfg.index_sizes}")
        for n in sorted(cfg.index_sizes):
            with step(log, f"index {n}", results, cfg.out_dir), bench_server() as url:
                with PeakRSS(url) as rss:
                    built = build_index(
                        n,
                        url=url,
                        encoder=encoder,
                        n_queries=cfg.queries,
                        embed_limit=cfg.embed_limit,
                        cache_dir=cache_dir,
                        # The first build always embeds (timed); with reembed, every build.
                        cache_read=rate is not None and not cfg.reembed,
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
                    **peak_share(encoder, built.corpus.texts, rate, end_to_end),
                    "peak_rss_mib": rss.mib,
                    "postgres_peak_mib": rss.server_mib,
                    "db_mib": _db_mib(url),
                    "hnsw_index_mib": _index_mib(url, st.embedding_model),
                    "threads": wanted_threads(),
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
                    if cfg.tune and n == tune_size:
                        with step(log, f"tune HNSW at {n}", results, cfg.out_dir):
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
    return results


def _rebuild_hnsw(url: str, model: str, vector_type: str, m: int, ef_construction: int) -> float:
    """Drop the version's HNSW indexes and build them again with these settings, on the same
    rows (``ensure_hnsw`` builds from the version's row in ``ffr.fem_versions``, and the search
    functions read its vector type from there). Returns the build's seconds."""
    from psycopg import sql

    from ffr_lib.db import connect
    from ffr_lib.index import IndexConfig, ensure_hnsw
    from ffr_lib.index.writer import HNSW_TABLES

    with connect(url) as db:
        with db.transaction():
            db.execute(
                "UPDATE ffr.fem_versions SET vector_type = %s, hnsw_m = %s, ef_construction = %s "
                "WHERE embedding_model = %s",
                (vector_type, m, ef_construction, model),
            )
            for name in HNSW_TABLES.values():
                db.execute(
                    sql.SQL("DROP INDEX IF EXISTS ffr.{}").format(sql.Identifier(name(model)))
                )
        t0 = time.perf_counter()
        ensure_hnsw(model, maintenance_work_mem=IndexConfig().maintenance_work_mem, conn=db)
        db.commit()
        return time.perf_counter() - t0


def _sweep(
    url: str, model: str, qv: np.ndarray, truth: list[list[str]], efs: Sequence[int]
) -> list[dict[str, Any]]:
    """p50 / p95 over every query and recall@10 against ``truth`` through
    ``ffr.search_fragments`` at each ef_search (after 5 warm-up queries)."""
    rows = []
    for ef in efs:
        set_ef_search(url, model, ef)
        _hnsw(url, qv[:5], 10)
        tops, times = _hnsw(url, qv, 10)
        rows.append(
            {
                "ef_search": ef,
                **lat(times),
                "recall_at_10": round(
                    float(np.mean([recall_at(a, b) for a, b in zip(tops, truth, strict=False)])), 4
                ),
                "load": load(),
            }
        )
    return rows


def best_setting(rows: Sequence[dict[str, Any]], target: float) -> dict[str, Any] | None:
    """The row that meets ``target`` recall@10 at the lowest p50 (None if none does)."""
    meeting = [r for r in rows if r["recall_at_10"] >= target]
    return min(meeting, key=lambda r: r["p50_ms"]) if meeting else None


def bench_tune(
    cfg: SuiteConfig, url: str, built: Any, qv: np.ndarray, log: Callable[[str], None]
) -> dict[str, Any]:
    """Rebuild the version's HNSW index in place with every setting of the grid (same rows,
    same vectors), sweep ef_search on each through ``ffr.search_fragments``, name the setting
    that meets ``recall_target`` at the lowest p50, then measure it again beside the default
    setting (rebuilt last, so the index ends as it was built)."""
    from ffr_lib.index import IndexConfig

    model = built.stats.embedding_model
    default = IndexConfig()
    default_ef = get_ef_search(url, model)
    ids, matrix = _ids_matrix(built)
    truth = [[ids[i] for i in t] for t in numpy_search(matrix, qv, 10)[0]]
    efs = sorted(set(cfg.tune_ef_search) | {default.ef_search})
    rows: list[dict[str, Any]] = []
    for vector_type in cfg.tune_vector_types:
        for m in cfg.tune_m:
            for efc in cfg.tune_ef_construction:
                build_s = _rebuild_hnsw(url, model, vector_type, m, efc)
                setting = {"vector_type": vector_type, "m": m, "ef_construction": efc}
                base = {
                    **setting,
                    "build_s": round(build_s, 1),
                    "hnsw_index_mib": _index_mib(url, model),
                }
                for r in _sweep(url, model, qv, truth, efs):
                    rows.append({**base, **r})
                    log(f"    tune {rows[-1]}")
    chosen = best_setting(rows, cfg.recall_target)
    is_default = {
        "vector_type": default.vector_type,
        "m": default.hnsw_m,
        "ef_construction": default.ef_construction,
    }
    default_rows = [r for r in rows if all(r[k] == v for k, v in is_default.items())]
    default_best = best_setting(default_rows, cfg.recall_target)
    # Measured again, same run: the chosen setting, then the default (which stays built).
    confirm = []
    finals = [chosen] if chosen and any(chosen[k] != v for k, v in is_default.items()) else []
    for r in [*finals, {**is_default, "ef_search": (default_best or {}).get("ef_search")}]:
        efs_again = sorted({r["ef_search"] or default.ef_search, default.ef_search})
        build_s = _rebuild_hnsw(url, model, r["vector_type"], r["m"], r["ef_construction"])
        for again in _sweep(url, model, qv, truth, efs_again):
            confirm.append(
                {
                    "vector_type": r["vector_type"],
                    "m": r["m"],
                    "ef_construction": r["ef_construction"],
                    "build_s": round(build_s, 1),
                    **again,
                }
            )
            log(f"    again {confirm[-1]}")
    set_ef_search(url, model, default_ef)
    return {
        "fragments": len(ids),
        "queries": len(qv),
        "recall_target": cfg.recall_target,
        "grid": rows,
        "chosen": chosen,
        "default": {**is_default, "ef_search": default.ef_search},
        "default_best": default_best,
        "again": confirm,
    }


def write_results(results: dict[str, Any], out_dir: Path) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (out_dir / "results.md").write_text(render_markdown(results))
    if results.get("search") or results.get("index"):
        curve = cost_curve(results)
        (out_dir / "cost_curve.json").write_text(curve.model_dump_json(indent=2))
        plot_cost_curves(curve, out_dir / "cost_curves.png")


def cost_curve(results: dict[str, Any]) -> Any:
    """The run's indexing and search cost against corpus size, as the ``fragment_index`` asset
    reads it (:class:`ffr_lib.index.cost.CostCurve`): one point per index size (end-to-end
    indexing, search, memory) and per search-only size (real-derived vectors)."""
    from ffr_lib.index import IndexConfig
    from ffr_lib.index.cost import CostCurve, CostPoint

    search = {s["fragments"]: s for s in results.get("search", [])}
    config = results.get("index_config")
    default = setting_name(IndexConfig.model_validate(config)) if config else None
    points, loads = [], []
    for row in results.get("index", []):
        s = search.pop(row["fragments"], {})
        loads += [row["load"], s.get("load", row["load"])]
        points.append(
            CostPoint(
                fragments=row["fragments"],
                vectors="real"
                if not row["derived"]
                else f"{row['embedded']:,} real + {row['derived']:,} derived",
                indexing_fragments_per_s=row["fragments_per_s"],
                indexing_extrapolated=row["extrapolated"],
                share_of_fp32_peak=row.get("share_of_fp32_peak"),
                search_p50_ms=_p50s(s),
                hnsw_recall_at_10=s.get("hnsw", {}).get("recall_at_10"),
                hnsw_setting=default if "hnsw" in s else None,
                peak_rss_mib=row["peak_rss_mib"],
                postgres_peak_mib=row.get("postgres_peak_mib"),
                db_mib=row.get("db_mib"),
            )
        )
    for s in search.values():
        loads.append(s["load"])
        points.append(
            CostPoint(
                fragments=s["fragments"],
                vectors=s.get("vectors", "real-derived"),
                search_p50_ms=_p50s(s),
                hnsw_recall_at_10=s.get("hnsw", {}).get("recall_at_10"),
                hnsw_setting=s.get("hnsw_setting"),
                postgres_peak_mib=s.get("hnsw_build_postgres_peak_mib"),
                db_mib=s.get("db_mib"),
            )
        )
    m = results["machine"]
    return CostCurve(
        date=results["date"],
        machine=f"{m['cpus']} CPUs ({m.get('cpu', 'unknown CPU')}), {m['memory_gib']} GiB",
        load=f"{min(loads):.1f}-{max(loads):.1f}" if loads else "",
        command=results.get("command", ""),
        points=points,
    )


def _p50s(search: dict[str, Any]) -> dict[str, float]:
    return {k: search[k]["p50_ms"] for k in ("hnsw", "exact_sql", "numpy") if k in search}


def plot_cost_curves(curve: Any, path: Path) -> None:
    """One figure, three panels against corpus size: indexing fragments/s (end to end), search
    p50 per method, peak memory and size on disk."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = sorted(curve.points, key=lambda p: p.fragments)
    fig, (ax_idx, ax_search, ax_mem) = plt.subplots(1, 3, figsize=(14, 4.2), sharex=True)
    indexed = [p for p in points if p.indexing_fragments_per_s is not None]
    if indexed:
        ax_idx.plot(
            [p.fragments for p in indexed],
            [p.indexing_fragments_per_s for p in indexed],
            marker="o",
            label="end to end (embed + COPY + HNSW + ANALYZE)",
        )
        for p in indexed:
            if p.indexing_extrapolated:
                ax_idx.annotate("extrapolated", (p.fragments, p.indexing_fragments_per_s))
    ax_idx.set_ylim(bottom=0)
    ax_idx.set_ylabel("fragments per second")
    ax_idx.set_title("indexing throughput")
    for key, label in (
        ("numpy", "numpy brute force"),
        ("exact_sql", "SQL exact scan"),
        ("hnsw", "HNSW (default setting)"),
    ):
        pts = [(p.fragments, p.search_p50_ms[key]) for p in points if key in p.search_p50_ms]
        if pts:
            ax_search.plot(*zip(*pts, strict=True), marker="o", label=label)
    for p in points:
        if "hnsw" in p.search_p50_ms and p.hnsw_recall_at_10 is not None:
            note = f"recall {p.hnsw_recall_at_10:.2f}" + (
                " (derived)" if p.vectors != "real" else ""
            )
            last = p is points[-1]
            ax_search.annotate(
                note,
                (p.fragments, p.search_p50_ms["hnsw"]),
                xytext=(-4 if last else 4, -6),
                textcoords="offset points",
                fontsize=7,
                va="top",
                ha="right" if last else "left",
            )
    ax_search.set_yscale("log")
    ax_search.set_ylabel("p50 latency per query, k=10 (ms)")
    ax_search.set_title("search cost")
    for attr, label in (
        ("peak_rss_mib", "indexing process, peak RSS"),
        ("postgres_peak_mib", "Postgres, peak PSS"),
        ("db_mib", "database on disk"),
    ):
        pts = [(p.fragments, getattr(p, attr)) for p in points if getattr(p, attr)]
        if pts:
            ax_mem.plot(*zip(*pts, strict=True), marker="o", label=label)
    ax_mem.set_yscale("log")
    ax_mem.set_ylabel("MiB")
    ax_mem.set_title("memory and size")
    for ax in (ax_idx, ax_search, ax_mem):
        ax.set_xscale("log")
        ax.set_xlabel("fragments")
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(f"cost against corpus size ({curve.machine}, load {curve.load})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _setting(row: dict[str, Any]) -> str:
    return f"{row['vector_type']} m{row['m']} efc{row['ef_construction']}"


def render_tune(t: dict[str, Any]) -> list[str]:
    """The HNSW grid: ef_search sweep per setting, the choice, and the same-run re-measure."""
    target = t["recall_target"]

    def choice(row: dict[str, Any] | None) -> str:
        if row is None:
            return f"none meets recall@10 >= {target}"
        return (
            f"**{_setting(row)} ef_search {row['ef_search']}**: p50 {row['p50_ms']} ms, "
            f"p95 {row['p95_ms']} ms, recall@10 {row['recall_at_10']}"
        )

    d = t["default"]
    return [
        f"## HNSW settings at {t['fragments']:,} fragments (same rows, index rebuilt in place; "
        f"{t['queries']} queries through ffr.search_fragments, recall@10 vs numpy)",
        "",
        *markdown_table(
            [
                "setting",
                "build s",
                "index MiB",
                "ef_search",
                "p50 ms",
                "p95 ms",
                "recall@10",
                "load",
            ],
            [
                [
                    _setting(x),
                    x["build_s"],
                    x["hnsw_index_mib"],
                    x["ef_search"],
                    x["p50_ms"],
                    x["p95_ms"],
                    x["recall_at_10"],
                    x["load"],
                ]
                for x in t["grid"]
            ],
        ),
        "",
        f"Recall@10 >= {target} at the lowest p50: {choice(t['chosen'])}. The default "
        f"({_setting(d)} ef_search {d['ef_search']}) at its best: {choice(t['default_best'])}.",
        "",
        "Measured again at the end of the grid, same run:",
        "",
        *markdown_table(
            ["setting", "build s", "ef_search", "p50 ms", "p95 ms", "recall@10", "load"],
            [
                [
                    _setting(x),
                    x["build_s"],
                    x["ef_search"],
                    x["p50_ms"],
                    x["p95_ms"],
                    x["recall_at_10"],
                    x["load"],
                ]
                for x in t["again"]
            ],
        ),
    ]


def render_markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    parts = [
        "# Benchmark results",
        "",
        f"Date {r['date']}; {m['cpus']} CPUs, {m['memory_gib']} GiB; load average at start "
        f"{', '.join(f'{x:.1f}' for x in r['load_start'])}, at end "
        f"{', '.join(f'{x:.1f}' for x in r.get('load_end', []))}; suite wall time "
        f"{r.get('wall_s')} s. Command: `{r.get('command')}`; environment "
        f"{r.get('env') or 'default'}.",
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
                    "useful GFLOP/s (share of fp32 peak)",
                    "peak RSS MiB (Python / Postgres)",
                    "on disk MiB",
                    "threads",
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
                        f"{x.get('useful_gflop_s')} ({x.get('share_of_fp32_peak')})",
                        f"{x['peak_rss_mib']} / {x.get('postgres_peak_mib')}",
                        x.get("db_mib"),
                        x.get("threads"),
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
        parts += ["", *render_tune(r["tune"])]
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
    if r.get("index") or r.get("search"):
        parts += ["", "## Cost curve", "", cost_curve(r).markdown(), "", "![](cost_curves.png)"]
    return "\n".join(parts) + "\n"
