"""Index benchmark: ~10k PhotoChat fragments with the real MiniLM FEM on a throw-away embedded
server. Prints throughput (embed + write + index), search latency p50, HNSW recall@10."""

import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.pop("FFR_DATABASE_URL", None)
from ffr_lib.data.readers import read_dataset
from ffr_lib.db import EmbeddedConfig, EmbeddedServer, connect, free_port, migrate
from ffr_lib.fem.encoder import TextEncoder
from ffr_lib.fem.fragment_text import fragment_rows
from ffr_lib.index import (
    check_coverage,
    check_explain_uses_index,
    check_hnsw_recall,
    check_no_duplicates,
    embed_query,
    hybrid_by_vector,
    index_rows,
    search_by_vector,
)
from ffr_lib.segment import FixedWindowSegmenter, WindowConfig
from ffr_lib.settings import get_settings
from ffr_lib.store import write_dataset

target = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
root = Path(tempfile.mkdtemp(prefix="ffrbench-", dir=tempfile.gettempdir()))
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
    t = time.perf_counter()
    ds = read_dataset(get_settings().photochat_dir, "photochat")
    seg = FixedWindowSegmenter(WindowConfig(size=4))
    rows, dialogues = [], []
    for d in ds.dialogues:
        if len(rows) >= target:
            break
        dialogues.append(d)
        rows += fragment_rows(d, seg.segment(d))
    from ffr_lib.data.dataset import Dataset

    write_dataset(Dataset(dialogues=dialogues), url=url)
    print(
        f"{len(dialogues)} dialogues, {len(rows)} fragments, read+store {time.perf_counter() - t:.1f}s",
        flush=True,
    )
    enc = TextEncoder.get("minilm")
    _ = enc.model_version  # load the weights before timing
    t = time.perf_counter()
    stats = index_rows(rows, enc, url=url)
    wall = time.perf_counter() - t
    print(json.dumps(stats.as_dict()), flush=True)
    print(
        f"THROUGHPUT total {len(rows) / wall:.1f} frag/s (wall {wall:.1f}s); embed {stats.seconds_embed:.1f}s "
        f"write {stats.seconds_write:.2f}s ({len(rows) / stats.seconds_write:.0f}/s) index+analyze {stats.seconds_index:.2f}s"
    )
    t = time.perf_counter()
    again = index_rows(rows, enc, url=url)
    print(
        f"re-index (no change): {time.perf_counter() - t:.2f}s embedded={again.embedded} inserted={again.inserted}"
    )
    # real queries: PhotoChat utterances from dialogues NOT indexed, plus question-style texts
    rng = random.Random(0)
    rest = ds.dialogues[len(dialogues) :]
    qtexts = [
        u.text
        for d in rng.sample(rest, min(200, len(rest)))
        for u in d.utterances
        if len(u.text.split()) >= 5
    ][:200]
    qv = enc.encode(qtexts)
    ok, det = check_hnsw_recall(qv, k=10, url=url)
    print("RECALL", ok, json.dumps(det))
    print("EXPLAIN", check_explain_uses_index(qv[0], url=url))
    print("COVERAGE", check_coverage(url=url))
    print("DUPS", check_no_duplicates(url=url))
    lat, lat_f, lat_h, lat_e2e = [], [], [], []
    with connect(url) as db:
        for v in qv[:100]:
            t = time.perf_counter()
            search_by_vector(v, 10, conn=db)
            lat.append(time.perf_counter() - t)
        ids = [d.id for d in dialogues[:3]]
        for v in qv[:100]:
            t = time.perf_counter()
            h = search_by_vector(v, 10, dialogue_ids=ids, conn=db)
            lat_f.append(time.perf_counter() - t)
        for v, q in zip(qv[:100], qtexts[:100], strict=False):
            t = time.perf_counter()
            hybrid_by_vector(v, q, 10, conn=db)
            lat_h.append(time.perf_counter() - t)
        for q in qtexts[:50]:
            t = time.perf_counter()
            search_by_vector(embed_query(enc, q), 10, conn=db)
            lat_e2e.append(time.perf_counter() - t)
        spk = search_by_vector(qv[0], 10, speaker=dialogues[5].utterances[0].speaker, conn=db)

    def p(xs):
        return f"p50 {1000 * statistics.median(xs):.2f} ms p95 {1000 * sorted(xs)[int(0.95 * len(xs)) - 1]:.2f} ms"

    print("LATENCY search_fragments k=10:", p(lat))
    print("LATENCY search_fragments 3-dialogue filter:", p(lat_f), "rows", len(h))
    print("LATENCY hybrid_search:", p(lat_h))
    print("LATENCY embed+search:", p(lat_e2e))
    print("speaker filter rows", len(spk))
finally:
    server.stop(mode="immediate")
