"""The cost of the index (ffr_lib.index.cost): the point a build measures on itself, against the
real embedded Postgres, and the benchmarked cost curve read back from its results file. Never
asserts timings, only that the figures are there and consistent."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import RandomEmbedder

from ffr_lib.data.dataset import Dataset
from ffr_lib.fem.fragment_text import fragment_rows
from ffr_lib.index import index_rows
from ffr_lib.index.cost import CostCurve, CostPoint, measure_index_point, read_cost_curve
from ffr_lib.segment import FixedWindowSegmenter, WindowConfig
from ffr_lib.store import write_dataset


@pytest.mark.db
def test_measured_point_of_a_build(db_url: str, synthetic_dataset: Callable[..., Dataset]) -> None:
    dataset = synthetic_dataset(30)
    write_dataset(dataset, url=db_url)
    segmenter = FixedWindowSegmenter(WindowConfig(size=3))
    rows = [r for d in dataset.dialogues for r in fragment_rows(d, segmenter.segment(d))]
    stats = index_rows(rows, RandomEmbedder(32, "rand32@cost"), url=db_url)

    point = measure_index_point(stats.embedding_model, sample=12, url=db_url)
    assert point["fragments"] == len(rows) == stats.inserted
    assert point["hnsw_index_mib"] > 0 and point["peak_rss_mib"] > 0
    assert point["search_queries"] == 12
    assert point["search_p50_ms"] > 0 and point["exact_p50_ms"] > 0
    assert 0.9 <= point["search_recall_at_10"] <= 1.0  # its own vectors: HNSW finds them
    assert all(isinstance(v, int | float) for v in point.values())  # plotted by the UI
    # The same fragments serve as queries every time.
    assert measure_index_point(stats.embedding_model, sample=12, url=db_url)["fragments"] == len(
        rows
    )
    # No search figures on request, and none for a version without rows.
    assert "search_p50_ms" not in measure_index_point(stats.embedding_model, sample=0, url=db_url)
    # A recall check already run on the version is the point's search figures (not run again).
    check = {"n_queries": 3, "hnsw_ms_p50": 1.5, "exact_ms_p50": 9.0, "recall": 0.9}
    reused = measure_index_point(stats.embedding_model, url=db_url, measured=check)
    assert (reused["search_queries"], reused["search_p50_ms"]) == (3, 1.5)
    assert (reused["exact_p50_ms"], reused["search_recall_at_10"]) == (9.0, 0.9)
    empty = measure_index_point("no-such@version", url=db_url)
    assert empty["fragments"] == 0 and "search_p50_ms" not in empty


def test_cost_curve_reads_back_as_a_table_or_says_why_not(tmp_path: Path) -> None:
    curve = CostCurve(
        date="2026-12-07",
        machine="2 CPUs",
        load="1.2-2.0",
        command="ffr bench",
        points=[
            CostPoint(
                fragments=1_000_000,
                vectors="real-derived",
                search_p50_ms={"numpy": 40.0, "exact_sql": 900.0},
            ),
            CostPoint(
                fragments=10_000,
                indexing_fragments_per_s=160.5,
                share_of_fp32_peak="60-76%",
                search_p50_ms={"hnsw": 2.1, "exact_sql": 60.0, "numpy": 0.4},
                hnsw_recall_at_10=0.99,
                peak_rss_mib=900.0,
                postgres_peak_mib=300.0,
                db_mib=40.0,
            ),
        ],
    )
    path = tmp_path / "cost_curve.json"
    path.write_text(curve.model_dump_json())
    read, table = read_cost_curve(path)
    assert read == curve
    lines = table.splitlines()
    assert "2026-12-07" in lines[0] and "`ffr bench`" in lines[0]
    assert lines[2].startswith("| fragments | vectors | indexing fragments/s | HNSW p50 ms")
    # Smallest first; a search-only size says so and leaves the HNSW cell empty.
    assert lines[4].startswith("| 10,000 | real | 160.5, 60-76% of peak | 2.1 | 60.0 | 0.4 |")
    assert lines[5].startswith("| 1,000,000 | real-derived | search only |  | 900.0 | 40.0 |")

    assert read_cost_curve(None) == (None, "No cost curve configured (cost_curve_path is empty).")
    missing, note = read_cost_curve(tmp_path / "absent.json")
    assert missing is None and "No cost curve at" in note and "make bench" in note
    path.write_text(json.dumps({"date": "x"}))
    broken, note = read_cost_curve(path)
    assert broken is None and "could not be read" in note
