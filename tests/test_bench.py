"""The benchmark suite (`ffr bench`): a tiny end-to-end run writes consistent results, and the
shared corpus helpers behave (derived vectors, vector cache). Benchmarks never assert timings."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ffr_lib.settings import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT))

from bench.corpus import derived_vectors, embed_texts, load_corpus  # noqa: E402
from bench.suite import best_setting  # noqa: E402
from ffr_lib.index.cost import read_cost_curve  # noqa: E402


def test_derived_vectors_are_unit_and_near_their_seeds() -> None:
    rng = np.random.default_rng(0)
    seeds = rng.normal(size=(20, 384)).astype(np.float32)
    seeds /= np.linalg.norm(seeds, axis=1, keepdims=True)
    out = derived_vectors(seeds, 500, seed=1)
    assert out.shape == (500, 384) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    nearest = (out @ seeds.T).max(axis=1)
    assert nearest.min() > 0.4  # clustered around real vectors, not uniform noise (~0.15)
    assert len({v.tobytes() for v in out}) == 500


def test_corpus_queries_are_held_out_and_cache_round_trips(tmp_path: Path) -> None:
    corpus = load_corpus(120, n_queries=10)
    assert len(corpus.rows) >= 120 and len(corpus.queries) == 10
    texts = {u.text for d in corpus.dialogues for u in d.utterances}
    assert not any(q in texts for q in corpus.queries)

    class Counting:
        model_version = "fake@1"
        calls = 0

        def encode(self, texts, batch_size=64, memo=True):
            assert memo is False  # the memo would hide the embedding cost being measured
            Counting.calls += 1
            return np.ones((len(texts), 4), np.float32)

    enc = Counting()
    a, hit_a = embed_texts(enc, corpus.texts[:5], cache_dir=tmp_path)
    b, hit_b = embed_texts(enc, corpus.texts[:5], cache_dir=tmp_path)
    c, hit_c = embed_texts(enc, corpus.texts[:5], cache_dir=tmp_path, cache_read=False)
    assert (hit_a, hit_b, hit_c) == (False, True, False) and Counting.calls == 2
    np.testing.assert_array_equal(a, b)


def test_best_setting_meets_the_recall_target_at_the_lowest_p50() -> None:
    rows = [
        {"m": 16, "ef_search": 40, "p50_ms": 1.0, "recall_at_10": 0.90},
        {"m": 16, "ef_search": 100, "p50_ms": 2.5, "recall_at_10": 0.96},
        {"m": 24, "ef_search": 64, "p50_ms": 2.0, "recall_at_10": 0.95},
        {"m": 32, "ef_search": 200, "p50_ms": 4.0, "recall_at_10": 0.99},
    ]
    assert best_setting(rows, 0.95) == rows[2]
    assert best_setting(rows, 0.999) is None


@pytest.mark.slow
def test_ffr_bench_tiny_run_writes_results(tmp_path: Path, ffr_home: Path, monkeypatch) -> None:
    from ffr_lib.cli import app

    monkeypatch.delenv("FFR_PG_PORT", raising=False)  # bench_server picks a free port
    out = tmp_path / "results"
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "--quick",
            "--sections",
            "encoder,index,search",
            "--encoder-sample",
            "24",
            "--sizes",
            "150",
            "--large-sizes",
            "600",
            "--tune-size",
            "150",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads((out / "results.json").read_text())
    index = data["index"][0]
    assert index["fragments"] >= 150 and index["embedded"] + index["derived"] == index["fragments"]
    small, large = data["search"]
    assert small["fragments"] == index["fragments"] and large["fragments"] == 600
    # numpy is the ground truth; the SQL exact scan finds the same neighbours.
    assert small["numpy"]["recall_at_10"] == 1.0
    assert small["exact_sql"]["recall_at_10"] >= 0.99
    assert large["exact_sql"]["recall_at_10"] >= 0.99
    assert [e["ef_search"] for e in small["ef_sweep"]] == sorted(
        e["ef_search"] for e in small["ef_sweep"]
    )
    assert 0.0 < small["hnsw"]["recall_at_10"] <= 1.0
    assert "## Search" in (out / "results.md").read_text()
    assert (out / "cost_curves.png").stat().st_size > 1000
    # The cost curve the fragment_index asset reads: the indexed size and the search-only one.
    curve, table = read_cost_curve(out / "cost_curve.json")
    assert curve is not None and [p.fragments for p in curve.points] == [index["fragments"], 600]
    indexed, search_only = curve.points
    assert indexed.indexing_fragments_per_s == index["fragments_per_s"]
    assert indexed.search_p50_ms["hnsw"] == small["hnsw"]["p50_ms"]
    assert indexed.peak_rss_mib and indexed.postgres_peak_mib and indexed.db_mib
    assert search_only.indexing_fragments_per_s is None and "search only" in table
    assert index["share_of_fp32_peak"].endswith("%") and index["useful_gflop_s"] > 0
    # The HNSW grid: every setting swept, the choice meets the target, the default built last.
    tune = data["tune"]
    settings = {(t["vector_type"], t["m"], t["ef_construction"]) for t in tune["grid"]}
    assert len(settings) == 2 * 3 * 2 and tune["fragments"] == index["fragments"]
    assert tune["chosen"] is None or tune["chosen"]["recall_at_10"] >= 0.95
    default = tune["default"]
    last = tune["again"][-1]
    assert (last["vector_type"], last["m"], last["ef_construction"]) == (
        default["vector_type"],
        default["m"],
        default["ef_construction"],
    )
    assert "## HNSW settings at" in (out / "results.md").read_text()
    # Every encoder variant embedded the texts itself (none came from the encoder's memo).
    variants = data["encoder"]["variants"]
    assert set(variants) == {"fp32", "fp32-1thread", "int8", "int8-1thread", "fp32 (again)"}
    assert all(v["memo_hits"] == 0 and v["fragments_per_s"] > 0 for v in variants.values())
    assert 0.0 <= data["encoder"]["int8_vs_fp32"]["recall_at_10"] <= 1.0
