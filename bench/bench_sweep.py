"""Sweep ef_search and halfvec vs vector on ~10k PhotoChat fragments (MiniLM vectors embedded once)."""

import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.pop("FFR_DATABASE_URL", None)
from ffr_lib.data.dataset import Dataset
from ffr_lib.data.readers import read_dataset
from ffr_lib.db import EmbeddedConfig, EmbeddedServer, connect, free_port, migrate
from ffr_lib.fem.fragment_text import fragment_rows
from ffr_lib.index import (
    IndexConfig,
    check_hnsw_recall,
    index_rows,
    search_by_vector,
)
from ffr_lib.segment import FixedWindowSegmenter, WindowConfig
from ffr_lib.settings import get_settings
from ffr_lib.store import write_dataset

ds = read_dataset(get_settings().photochat_dir, "photochat")
seg = FixedWindowSegmenter(WindowConfig(size=4))
rows, dialogues = [], []
for d in ds.dialogues:
    if len(rows) >= 10000:
        break
    dialogues.append(d)
    rows += fragment_rows(d, seg.segment(d))
rng = random.Random(0)
rest = ds.dialogues[len(dialogues) :]
qtexts = [u.text for d in rng.sample(rest, 200) for u in d.utterances if len(u.text.split()) >= 5][
    :200
]
cache = Path(tempfile.gettempdir()) / "ffrbench-vecs.npz"
if cache.exists():
    z = np.load(cache)
    fv, qv = z["f"], z["q"]
else:
    from ffr_lib.fem.encoder import TextEncoder

    enc = TextEncoder.get("minilm")
    t = time.perf_counter()
    fv = enc.encode([r.text for r in rows])
    qv = enc.encode(qtexts)
    print(f"embedded {len(rows)} in {time.perf_counter() - t:.0f}s", flush=True)
    np.savez(cache, f=fv, q=qv)
lookup = {r.text: v for r, v in zip(rows, fv, strict=False)}


class Cached:
    dimension = 384

    def __init__(self, v):
        self.model_version = v

    def encode(self, texts, **kw):
        return np.stack([lookup[t] for t in texts])


root = Path(tempfile.mkdtemp(prefix="ffrsweep-", dir=tempfile.gettempdir()))
os.chmod(root, 0o755)
server = EmbeddedServer(
    EmbeddedConfig(
        pgdata=root / "pgdata",
        port=free_port(),
        server_options={"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"},
    )
)
url = server.start()
try:
    migrate(url)
    write_dataset(Dataset(dialogues=dialogues), url=url)
    for vt in ("halfvec", "vector"):
        s = index_rows(
            rows,
            Cached(f"minilm-{vt}"),
            config=IndexConfig(vector_type=vt, activate="always"),
            url=url,
        )
        print(
            vt,
            f"write {s.seconds_write:.2f}s ({len(rows) / s.seconds_write:.0f}/s) hnsw+analyze {s.seconds_index:.2f}s",
            flush=True,
        )
        with connect(url) as db:
            size = db.execute(
                "SELECT pg_size_pretty(pg_relation_size(('ffr.' || index_name)::regclass)) FROM ffr.fem_versions WHERE embedding_model=%s",
                (f"minilm-{vt}",),
            ).fetchone()[0]
        print("  index size", size)
        for ef in (40, 100, 200, 400):
            with connect(url) as db:
                db.execute(
                    "UPDATE ffr.fem_versions SET ef_search=%s WHERE embedding_model=%s",
                    (ef, f"minilm-{vt}"),
                )
                db.commit()
            ok, det = check_hnsw_recall(qv, k=10, url=url)
            lat = []
            with connect(url) as db:
                for v in qv[:100]:
                    t = time.perf_counter()
                    search_by_vector(v, 10, conn=db)
                    lat.append(time.perf_counter() - t)
            print(
                f"  ef_search {ef}: recall@10 {det['recall']:.4f} (min {det['min_recall']}) search_fragments p50 {1000 * statistics.median(lat):.2f} ms; raw hnsw p50 {det['hnsw_ms_p50']} ms exact p50 {det['exact_ms_p50']} ms",
                flush=True,
            )
finally:
    server.stop(mode="immediate")
