"""What the fragment index costs: the point one indexing run measures on itself, and the
benchmarked cost curve (``make bench``) read back from its results file.

- :func:`measure_index_point`: after a build, the version's size, the HNSW index's size, the
  process's peak RSS and the search p50 / recall@10 against exact search on a small sample of the
  version's own fragments (their stored vectors as queries: "more like this fragment", the
  ``ffr.similar_fragments`` use), all numbers, so a dashboard plots them across builds. The
  ``fragment_index`` asset records it in its metadata.
- :class:`CostCurve`: indexing fragments/s, search p50 and memory against corpus size (10k, 100k,
  1M fragments), written by ``bench/suite.py`` as ``cost_curve.json``;
  :func:`read_cost_curve` reads a committed one back as a markdown table, or says why there is
  none.
"""

from __future__ import annotations

import json
import resource
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from ffr_lib.db.engine import connect
from ffr_lib.index.checks import check_hnsw_recall
from ffr_lib.index.writer import index_name
from ffr_lib.reporting import markdown_table
from ffr_lib.settings import REPO_ROOT

#: The search methods of a cost point, in table order, with their column titles.
SEARCH_METHODS = {
    "hnsw": "HNSW p50 ms",
    "exact_sql": "SQL exact p50 ms",
    "numpy": "numpy p50 ms",
}


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (``getrusage``: free to read)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _sample_vectors(db: Any, model: str, sample: int) -> list[np.ndarray]:
    """The stored vectors of ``sample`` fragments of the version, the same ones every run
    (ordered by a hash of the id, not by insertion)."""
    rows = db.execute(
        "SELECT embedding::real[] FROM ffr.fragments WHERE embedding_model = %s "
        "ORDER BY md5(id) LIMIT %s",
        (model, sample),
    ).fetchall()
    return [np.asarray(r[0], dtype=np.float32) for r in rows]


def measure_index_point(
    embedding_model: str,
    *,
    sample: int = 20,
    k: int = 10,
    url: str | None = None,
    measured: dict[str, Any] | None = None,
) -> dict[str, float]:
    """One point of the cost curve, measured on the version as it stands: ``fragments`` (all of
    the version's rows), ``hnsw_index_mib``, ``peak_rss_mib`` (this process), and over
    ``sample`` of its fragments' vectors as queries ``search_p50_ms`` (the HNSW query
    ``ffr.search_fragments`` runs, at the version's ef_search), ``exact_p50_ms`` and
    ``search_recall_at_10`` (HNSW against exact search, :func:`check_hnsw_recall`). Numbers
    only; no search figures when ``sample`` is 0 or the version is empty. ``measured``: the
    details of a :func:`check_hnsw_recall` already run on this version (the index stage's
    recall check), used instead of measuring again: each exact query scans the whole version."""
    with connect(url) as db:
        fragments = db.execute(
            "SELECT count(*) FROM ffr.fragments WHERE embedding_model = %s", (embedding_model,)
        ).fetchone()[0]
        size = db.execute(
            "SELECT coalesce(pg_relation_size(to_regclass('ffr.' || %s)), 0)",
            (index_name(embedding_model),),
        ).fetchone()[0]
        wanted = sample > 0 and measured is None
        vectors = _sample_vectors(db, embedding_model, sample) if wanted else []
        db.rollback()
    point: dict[str, float] = {
        "fragments": int(fragments),
        "hnsw_index_mib": round(size / 2**20, 1),
        "peak_rss_mib": peak_rss_mib(),
    }
    details = measured
    if vectors:
        _, details = check_hnsw_recall(vectors, k, embedding_model=embedding_model, url=url)
    if details and "n_queries" in details:
        point.update(
            search_queries=details["n_queries"],
            search_p50_ms=details["hnsw_ms_p50"],
            exact_p50_ms=details["exact_ms_p50"],
            search_recall_at_10=details["recall"],
        )
    return point


# ----------------------------------------------------------------------------- the curve


class CostPoint(BaseModel):
    """One corpus size of the benchmarked cost curve."""

    fragments: int
    vectors: str = Field("real", description="'real' (embedded) or 'real-derived' (search only)")
    indexing_fragments_per_s: float | None = Field(
        None, description="end to end: embed + COPY + HNSW + ANALYZE; None = search only"
    )
    indexing_extrapolated: bool = False
    share_of_fp32_peak: str | None = Field(
        None, description="useful encoder GFLOP/s of that rate against the 2-core fp32 peak"
    )
    search_p50_ms: dict[str, float] = Field(
        default_factory=dict, description="k=10 query p50 per method: hnsw, exact_sql, numpy"
    )
    hnsw_recall_at_10: float | None = None
    hnsw_setting: str | None = None
    peak_rss_mib: float | None = Field(None, description="the benchmark process while indexing")
    postgres_peak_mib: float | None = Field(None, description="the server's processes (PSS)")
    db_mib: float | None = Field(None, description="table + indexes on disk")


class CostCurve(BaseModel):
    """The cost curve of one benchmark run (``bench/suite.py`` writes ``cost_curve.json``)."""

    date: str
    machine: str
    load: str = ""
    command: str = ""
    points: list[CostPoint]

    def markdown(self) -> str:
        """The curve as a markdown table, with the run it comes from."""
        methods = [m for m in SEARCH_METHODS if any(m in p.search_p50_ms for p in self.points)]
        header = [
            "fragments",
            "vectors",
            "indexing fragments/s",
            *(SEARCH_METHODS[m] for m in methods),
            "HNSW recall@10",
            "peak RSS MiB (Python / Postgres)",
            "on disk MiB",
        ]
        rows = []
        for p in sorted(self.points, key=lambda p: p.fragments):
            rate = "search only"
            if p.indexing_fragments_per_s is not None:
                rate = f"{p.indexing_fragments_per_s:g}"
                rate += " (extrapolated)" if p.indexing_extrapolated else ""
                rate += f", {p.share_of_fp32_peak} of peak" if p.share_of_fp32_peak else ""
            rows.append(
                [
                    f"{p.fragments:,}",
                    p.vectors,
                    rate,
                    *(p.search_p50_ms.get(m) for m in methods),
                    p.hnsw_recall_at_10,
                    " / ".join(
                        "-" if v is None else f"{v:g}"
                        for v in (p.peak_rss_mib, p.postgres_peak_mib)
                    ),
                    p.db_mib,
                ]
            )
        lines = [
            f"Cost curve measured {self.date} on {self.machine}"
            + (f", load average {self.load}" if self.load else "")
            + (f": `{self.command}`" if self.command else ""),
            "",
            *markdown_table(header, rows),
        ]
        return "\n".join(lines)


def resolve_path(path: str | Path) -> Path:
    """``path`` as given when absolute, else relative to the repository root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else REPO_ROOT / p


def read_cost_curve(path: str | Path | None) -> tuple[CostCurve | None, str]:
    """The cost curve in ``path`` (a ``cost_curve.json``) and its markdown table, or None and a
    note saying why there is none (no path configured, no file, a file that does not parse)."""
    if not path:
        return None, "No cost curve configured (cost_curve_path is empty)."
    file = resolve_path(path)
    if not file.is_file():
        return None, (
            f"No cost curve at {file}: `make bench` writes one (bench/results/<run>/"
            "cost_curve.json); point cost_curve_path at it."
        )
    try:
        curve = CostCurve.model_validate(json.loads(file.read_text()))
    except (OSError, ValueError) as err:
        return None, f"The cost curve at {file} could not be read: {err}"
    return curve, curve.markdown()
