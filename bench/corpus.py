"""One place that builds a benchmark corpus and its fragment index (used by every benchmark and
by the load test).

Corpus: real dialogues, PhotoChat first, then chitchat, cut into fixed windows of ``window``
utterances (3 by default: PhotoChat + chitchat give ~105k fragments, enough for 100k). Queries
are utterances (5+ words) of dialogues that are NOT in the corpus, so they are real held-out text.

    from bench.corpus import bench_server, build_index
    with bench_server() as url:                  # throw-away embedded Postgres, fsync off
        built = build_index(10_000, url=url)     # store dialogues, embed, COPY, HNSW, serve
        built.stats.seconds_total, built.corpus.queries

Embedding 100k fragments with MiniLM takes ~10 minutes on 2 quiet cores (ONNX Runtime), so
``build_index`` reuses vectors cached on disk by an earlier build (``cache_dir``; keyed by the
encoder's weights version and the texts): the suite embeds every fragment once and later runs
read them back. ``embed_limit`` embeds only that many fragments and gives the others
*real-derived* vectors (a random embedded vector plus Gaussian noise, re-normalised), which keeps
the clustering of real vectors but not their link to the text (the 1M search-only size, or a
quick look without the embedding time). Results built that way say so in
``BuiltIndex.derived``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ffr_lib.data.dataset import Dataset
from ffr_lib.data.model import Dialogue
from ffr_lib.fem.fragment_text import FragmentRow, FragmentTextConfig, fragment_rows
from ffr_lib.segment import FixedWindowSegmenter, WindowConfig

DIMENSION = 384
DEFAULT_WINDOW = 3
NOISE = 0.08  # per-dimension sigma of derived vectors: cosine to their seed vector ~0.6


@dataclass
class Corpus:
    """Dialogues, their fragment rows, and held-out query texts."""

    dialogues: list[Dialogue]
    rows: list[FragmentRow]
    queries: list[str]
    window: int

    @property
    def texts(self) -> list[str]:
        return [r.text for r in self.rows]


def _sources() -> Iterator[Dialogue]:
    from ffr_lib.data.readers import read_dataset
    from ffr_lib.settings import get_settings

    yield from read_dataset(get_settings().photochat_dir, "photochat").dialogues
    yield from read_dataset("-", "chitchat").dialogues


def load_corpus(
    n_fragments: int, *, window: int = DEFAULT_WINDOW, n_queries: int = 200, seed: int = 0
) -> Corpus:
    """The first ``n_fragments`` fragments (whole dialogues, so a few more) of PhotoChat then
    chitchat, plus ``n_queries`` held-out utterance queries. Raises when the sources run out."""
    segmenter = FixedWindowSegmenter(WindowConfig(size=window))
    text_config = FragmentTextConfig(ocr=False)
    dialogues: list[Dialogue] = []
    rows: list[FragmentRow] = []
    rest: list[Dialogue] = []
    for dialogue in _sources():
        if len(rows) < n_fragments:
            dialogues.append(dialogue)
            rows += fragment_rows(dialogue, segmenter.segment(dialogue), text_config)
        else:
            rest.append(dialogue)
            if len(rest) >= 4 * n_queries:
                break
    if len(rows) < n_fragments:
        raise ValueError(
            f"only {len(rows)} fragments of {window} utterances exist in PhotoChat + chitchat; "
            f"asked for {n_fragments} (use a smaller window or derived vectors)"
        )
    rng = random.Random(seed)
    pool = rest or dialogues
    queries = [
        u.text
        for d in rng.sample(pool, min(len(pool), 2 * n_queries))
        for u in d.utterances
        if len(u.text.split()) >= 5
    ]
    rng.shuffle(queries)
    return Corpus(dialogues, rows, queries[:n_queries], window)


# ----------------------------------------------------------------------------- vectors


def derived_vectors(
    seeds: np.ndarray, n: int, *, noise: float = NOISE, seed: int = 0
) -> np.ndarray:
    """``n`` unit vectors near randomly chosen rows of ``seeds`` (real embeddings): clustered
    like real data, with no two identical."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, seeds.shape[1]), dtype=np.float32)
    step = 100_000
    for start in range(0, n, step):
        m = min(step, n - start)
        base = seeds[rng.integers(0, len(seeds), m)]
        block = base + rng.normal(0.0, noise, base.shape).astype(np.float32)
        out[start : start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def _cache_key(model_version: str, texts: Sequence[str]) -> str:
    digest = hashlib.sha256(model_version.encode())
    for text in texts:
        digest.update(hashlib.sha256(text.encode()).digest())
    return digest.hexdigest()[:20]


def embed_texts(
    encoder: Any,
    texts: Sequence[str],
    *,
    cache_dir: Path | None = None,
    batch_size: int = 64,
    cache_read: bool = True,
) -> tuple[np.ndarray, bool]:
    """``encoder.encode(texts)``, read from (when ``cache_read``) / written to ``cache_dir`` when
    given. Returns (vectors, whether they came from the cache)."""
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{_cache_key(str(encoder.model_version), texts)}.npy"
        if cache_read and path.is_file():
            return np.load(path), True
    # memo=False: a benchmark measures embedding, not the encoder's per-process memo.
    vectors = np.asarray(
        encoder.encode(list(texts), batch_size=batch_size, memo=False), dtype=np.float32
    )
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, vectors)
        tmp.replace(path)
    return vectors, False


class FixedVectors:
    """An embedder that returns precomputed vectors for known texts (row or query texts), so
    ``index_rows`` and the search functions can run on cached or derived vectors."""

    def __init__(
        self, model_version: str, texts: Sequence[str], vectors: np.ndarray, encoder: Any = None
    ) -> None:
        self.model_version = model_version
        self.dimension = int(vectors.shape[1])
        self._lookup = dict(zip(texts, vectors, strict=True))
        self._encoder = encoder
        self.resolved = getattr(encoder, "resolved", None)
        spec = getattr(encoder, "spec", None)
        if isinstance(spec, str):
            self.spec = spec

    @property
    def prompts(self) -> dict[str, str]:
        return dict(getattr(self._encoder, "prompts", None) or {})

    def encode(self, texts: Sequence[str], batch_size: int = 64, **kwargs: Any) -> np.ndarray:
        missing = [t for t in texts if t not in self._lookup]
        if missing:
            if self._encoder is None:
                raise KeyError(f"no vector for {len(missing)} texts, e.g. {missing[0][:60]!r}")
            for text, vector in zip(
                missing, self._encoder.encode(missing, batch_size=batch_size), strict=True
            ):
                self._lookup[text] = np.asarray(vector, dtype=np.float32)
        return np.stack([self._lookup[t] for t in texts])


# ----------------------------------------------------------------------------- server + index


@contextlib.contextmanager
def bench_server(home: Path | None = None, port: int | None = None) -> Iterator[str]:
    """A throw-away embedded Postgres (fsync off) with the migrations applied; yields its URL.
    ``home``: data folder parent (default: a fresh temp folder, removed afterwards); ``port``:
    default ``FFR_PG_PORT`` when set and free, else a free one."""
    from ffr_lib.db import EmbeddedConfig, EmbeddedServer, free_port, migrate

    owned = home is None
    root = Path(home) if home else Path(tempfile.mkdtemp(prefix="ffrbench-"))
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    if port is None:
        from ffr_lib.db.embedded import _port_open

        env_port = int(os.environ.get("FFR_PG_PORT") or 0)
        # FFR_PG_PORT when it is free; another engineer's server may hold it.
        port = env_port if env_port and not _port_open("127.0.0.1", env_port) else free_port()
    server = EmbeddedServer(
        EmbeddedConfig(
            pgdata=root / "pgdata",
            port=port,
            server_options={
                "fsync": "off",
                "synchronous_commit": "off",
                "full_page_writes": "off",
                "shared_buffers": "1GB",
                "max_wal_size": "4GB",
            },
        )
    )
    try:
        url = server.start()
        try:
            migrate(url)
            yield url
        finally:
            server.stop(mode="immediate")
    finally:
        if owned:
            shutil.rmtree(root, ignore_errors=True)


@dataclass
class BuiltIndex:
    """What :func:`build_index` did: the corpus, the index stats and the timings (seconds)."""

    corpus: Corpus
    stats: Any
    embedder: Any
    vectors: np.ndarray
    seconds_store: float = 0.0
    seconds_embed: float = 0.0
    embedded: int = 0
    derived: int = 0
    from_cache: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def fragments_per_s(self) -> float:
        """End-to-end (embed + write + index) throughput of the fragments embedded here; with
        derived vectors the embedding time is scaled up to all fragments (extrapolated)."""
        n = len(self.corpus.rows)
        embed = self.seconds_embed
        if self.derived and self.embedded:
            embed = self.seconds_embed * n / self.embedded
        total = embed + self.stats.seconds_write + self.stats.seconds_index
        return n / total if total else 0.0


def build_index(
    n_fragments: int,
    *,
    url: str | None = None,
    encoder: Any = "minilm",
    config: Any = None,
    window: int = DEFAULT_WINDOW,
    n_queries: int = 200,
    embed_limit: int | None = None,
    cache_dir: Path | None = None,
    cache_read: bool = True,
    version_suffix: str = "",
    corpus: Corpus | None = None,
) -> BuiltIndex:
    """Store the dialogues of a ``n_fragments`` corpus and index it with ``index_rows`` (COPY,
    HNSW after load, ANALYZE, serving flip per ``config.activate``).

    ``encoder``: an encoder name (``TextEncoder.get``) or object. ``embed_limit``: embed only that
    many fragments, derive the others' vectors (see the module doc). ``cache_dir``: reuse
    vectors of an identical earlier build (``cache_read=False``: embed and only write them, to
    time the embedding). ``version_suffix`` names a separate FEM version (e.g.
    to index the same vectors with another IndexConfig in the same database)."""
    from ffr_lib.index import IndexConfig, index_rows
    from ffr_lib.models.encoder import TextEncoder
    from ffr_lib.store import write_dataset

    config = config or IndexConfig()
    corpus = corpus or load_corpus(n_fragments, window=window, n_queries=n_queries)
    t0 = time.perf_counter()
    write_dataset(Dataset(dialogues=corpus.dialogues), url=url)
    seconds_store = time.perf_counter() - t0

    enc = TextEncoder.get(encoder) if isinstance(encoder, str) else encoder
    version = str(enc.model_version) + version_suffix
    texts = corpus.texts
    n_embed = len(texts) if embed_limit is None else min(embed_limit, len(texts))
    t0 = time.perf_counter()
    head, from_cache = embed_texts(
        enc,
        texts[:n_embed],
        cache_dir=cache_dir,
        batch_size=config.embed_batch_size,
        cache_read=cache_read,
    )
    seconds_embed = time.perf_counter() - t0
    tail = derived_vectors(head, len(texts) - n_embed) if n_embed < len(texts) else head[:0]
    vectors = np.concatenate([head, tail]) if len(tail) else head
    embedder = FixedVectors(version, texts, vectors, encoder=enc)
    stats = index_rows(corpus.rows, embedder, config=config, url=url)
    # index_rows embedded from the lookup (microseconds); report the real embedding time.
    stats.seconds_embed = seconds_embed
    return BuiltIndex(
        corpus=corpus,
        stats=stats,
        embedder=embedder,
        vectors=vectors,
        seconds_store=seconds_store,
        seconds_embed=seconds_embed,
        embedded=n_embed,
        derived=len(texts) - n_embed,
        from_cache=from_cache,
    )
