"""Checks of the fragment index, each returning ``(passed, details)`` for asset checks and tests.

- :func:`check_hnsw_recall`: recall@k of the HNSW search against exact search on sample queries;
- :func:`check_explain_uses_index`: the planner uses the version's HNSW index;
- :func:`check_no_duplicates`: no content indexed twice under one version;
- :func:`check_coverage`: every utterance of every indexed dialogue in exactly one fragment.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg

from ffr_lib.db.engine import connect


def _version(db: psycopg.Connection, embedding_model: str | None) -> str:
    if embedding_model:
        return embedding_model
    row = db.execute("SELECT embedding_model FROM ffr.serving WHERE singleton").fetchone()
    if row is None:
        raise LookupError("no FEM version is serving and none was named")
    return row[0]


def _top_ids(db: psycopg.Connection, model: str, vector: np.ndarray, k: int, exact: bool) -> list:
    query = db.execute("SELECT ffr.fragment_search_sql(%s, %s)", (model, exact)).fetchone()[0]
    # $1 vector, $2 k; the other parameters are unused without filters.
    query = query.replace("%", "%%").replace("$1", "%(v)s").replace("$2", "%(k)s")
    return [r[0] for r in db.execute(query, {"v": vector, "k": k}).fetchall()]


def check_hnsw_recall(
    query_vectors: Sequence[Any],
    k: int = 10,
    threshold: float = 0.95,
    *,
    embedding_model: str | None = None,
    url: str | None = None,
) -> tuple[bool, dict[str, Any]]:
    """Mean recall@k of the HNSW index (with the version's ef_search, as the search functions
    use it) against exact search, over ``query_vectors`` (embeddings of real queries)."""
    if len(query_vectors) == 0:
        return False, {"error": "no query vectors"}
    recalls, ann_ms, exact_ms = [], [], []
    with connect(url) as db:
        model = _version(db, embedding_model)
        ef = db.execute(
            "SELECT ef_search FROM ffr.fem_versions WHERE embedding_model = %s", (model,)
        ).fetchone()[0]
        db.execute("SELECT set_config('hnsw.ef_search', %s, false)", (str(max(ef, k)),))
        for vector in query_vectors:
            v = np.asarray(vector, dtype=np.float32)
            t0 = time.perf_counter()
            ann = _top_ids(db, model, v, k, exact=False)
            t1 = time.perf_counter()
            exact = _top_ids(db, model, v, k, exact=True)
            t2 = time.perf_counter()
            ann_ms.append((t1 - t0) * 1000)
            exact_ms.append((t2 - t1) * 1000)
            if exact:
                recalls.append(len(set(ann) & set(exact)) / len(exact))
        db.rollback()
    recall = float(np.mean(recalls)) if recalls else 0.0
    details = {
        "embedding_model": model,
        "k": k,
        "ef_search": max(ef, k),
        "n_queries": len(recalls),
        "recall": round(recall, 4),
        "min_recall": round(float(min(recalls)), 4) if recalls else 0.0,
        "threshold": threshold,
        "hnsw_ms_p50": round(statistics.median(ann_ms), 3),
        "exact_ms_p50": round(statistics.median(exact_ms), 3),
    }
    return bool(recalls) and recall >= threshold, details


def explain_search(
    query_vector: Any,
    k: int = 10,
    *,
    dialogue_ids: Sequence[str] | None = None,
    speaker: str | None = None,
    embedding_model: str | None = None,
    disable_seqscan: bool = False,
    url: str | None = None,
) -> dict[str, Any]:
    """The JSON plan of the query ``ffr.search_fragments`` runs first (the index path), with the
    same settings (iterative scan) and the same parameters. ``disable_seqscan`` asks whether the
    index CAN serve the query (for tables so small that a scan is cheaper)."""
    with connect(url) as db:
        model = _version(db, embedding_model)
        query = db.execute(
            "SELECT ffr.fragment_search_sql(%s, false, %s, %s)",
            (model, dialogue_ids is not None, speaker is not None),
        ).fetchone()[0]
        ef = db.execute(
            "SELECT ef_search FROM ffr.fem_versions WHERE embedding_model = %s", (model,)
        ).fetchone()[0]
        types = "vector, integer, text[], text, timestamptz, timestamptz"
        with db.transaction():
            # The settings search_fragments runs with (the planner's HNSW cost depends on them).
            db.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            db.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(max(ef, k)),))
            if disable_seqscan:
                # Scans and sorts off: the only plan left that is not "disabled" is an ordered
                # index scan, if the HNSW index matches the query.
                for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
                    db.execute(f"SET LOCAL {setting} = off")
            db.execute("DEALLOCATE ALL")
            db.execute(f"PREPARE ffr_explain ({types}) AS {query}")
            cur = psycopg.ClientCursor(db)
            cur.execute(
                "EXPLAIN (FORMAT JSON) EXECUTE ffr_explain(%s::vector, %s, %s::text[], %s, "
                "NULL, NULL)",
                (
                    "[" + ",".join(f"{x:.7g}" for x in np.asarray(query_vector).ravel()) + "]",
                    k,
                    list(dialogue_ids) if dialogue_ids is not None else None,
                    speaker,
                ),
            )
            plan = cur.fetchone()[0]
            db.execute("DEALLOCATE ffr_explain")
    return plan[0] if isinstance(plan, list) else json.loads(plan)[0]


def _index_names(node: dict[str, Any]) -> list[str]:
    names = [node["Index Name"]] if "Index Name" in node else []
    for child in node.get("Plans", []):
        names += _index_names(child)
    return names


def check_explain_uses_index(
    query_vector: Any,
    k: int = 10,
    *,
    embedding_model: str | None = None,
    url: str | None = None,
) -> tuple[bool, dict[str, Any]]:
    """The search plan uses the version's HNSW index.

    Passes when the planner picks the index by itself (``forced`` false). When it prefers an
    exact scan (a small table, or an ef_search so large that the scan is cheaper: both right
    choices), the check asks whether the index CAN serve the query with scans and sorts
    disabled, i.e. the index exists and its expression and predicate match the query; it
    passes then with ``forced`` true and the natural plan's top node in the details. It fails
    when the index cannot serve the query at all."""
    with connect(url) as db:
        model = _version(db, embedding_model)
        expected = db.execute(
            "SELECT index_name FROM ffr.fem_versions WHERE embedding_model = %s", (model,)
        ).fetchone()[0]
        rows = db.execute(
            "SELECT count(*) FROM ffr.fragments WHERE embedding_model = %s", (model,)
        ).fetchone()[0]
    plan = explain_search(query_vector, k, embedding_model=model, url=url)
    used = _index_names(plan["Plan"])
    details = {
        "embedding_model": model,
        "fragments": rows,
        "forced": False,
        "expected_index": expected,
        "indexes_used": used,
        "natural_plan": _node_types(plan["Plan"]),
    }
    if expected in used:
        return True, details
    forced = explain_search(query_vector, k, embedding_model=model, disable_seqscan=True, url=url)
    details.update(forced=True, indexes_used=_index_names(forced["Plan"]))
    return expected in details["indexes_used"], details


def _node_types(node: dict[str, Any]) -> list[str]:
    out = [node.get("Node Type", "?")]
    for child in node.get("Plans", []):
        out += _node_types(child)
    return out


def check_no_duplicates(
    *, embedding_model: str | None = None, url: str | None = None
) -> tuple[bool, dict[str, Any]]:
    """No two rows of one version with the same content or the same utterance span."""
    with connect(url) as db:
        model = _version(db, embedding_model)
        same_content = db.execute(
            "SELECT count(*) FROM (SELECT content_hash FROM ffr.fragments WHERE embedding_model = "
            "%s GROUP BY content_hash HAVING count(*) > 1) d",
            (model,),
        ).fetchone()[0]
        same_span = db.execute(
            "SELECT count(*) FROM (SELECT dialogue_id, utterance_ids FROM ffr.fragments WHERE "
            "embedding_model = %s GROUP BY 1, 2 HAVING count(*) > 1) d",
            (model,),
        ).fetchone()[0]
        total = db.execute(
            "SELECT count(*) FROM ffr.fragments WHERE embedding_model = %s", (model,)
        ).fetchone()[0]
    return same_content == 0 and same_span == 0, {
        "embedding_model": model,
        "fragments": total,
        "duplicate_content": same_content,
        "duplicate_spans": same_span,
    }


def check_coverage(
    *, embedding_model: str | None = None, url: str | None = None
) -> tuple[bool, dict[str, Any]]:
    """Every utterance of every dialogue that has fragments in this version is covered by
    exactly one fragment (none missing, none twice), and no fragment names a missing
    utterance."""
    with connect(url) as db:
        model = _version(db, embedding_model)
        row = db.execute(
            """
            WITH indexed AS (
                SELECT DISTINCT dialogue_id FROM ffr.fragments WHERE embedding_model = %(m)s
            ), covered AS (
                SELECT f.dialogue_id, u AS idx, count(*) AS n
                FROM ffr.fragments f, unnest(f.utterance_ids) AS u
                WHERE f.embedding_model = %(m)s
                GROUP BY 1, 2
            )
            SELECT
                (SELECT count(*) FROM indexed),
                (SELECT count(*) FROM ffr.utterances t JOIN indexed USING (dialogue_id)),
                (SELECT count(*) FROM ffr.utterances t JOIN indexed USING (dialogue_id)
                    LEFT JOIN covered c ON c.dialogue_id = t.dialogue_id AND c.idx = t.idx
                    WHERE c.n IS NULL),
                (SELECT count(*) FROM covered WHERE n > 1),
                (SELECT count(*) FROM covered c LEFT JOIN ffr.utterances t
                    ON t.dialogue_id = c.dialogue_id AND t.idx = c.idx WHERE t.idx IS NULL)
            """,
            {"m": model},
        ).fetchone()
    dialogues, utterances, missing, twice, unknown = row
    return missing == 0 and twice == 0 and unknown == 0, {
        "embedding_model": model,
        "dialogues": dialogues,
        "utterances": utterances,
        "uncovered": missing,
        "covered_twice": twice,
        "unknown_utterances": unknown,
    }
