"""The fragment index in PostgreSQL + pgvector: writing (binary COPY, HNSW after load, upsert by
content hash, versioned builds with an atomic serving flip), searching through the SQL serving
functions, and the index checks."""

from ffr_lib.index.checks import (
    check_coverage,
    check_explain_uses_index,
    check_hnsw_recall,
    check_no_duplicates,
    explain_search,
)
from ffr_lib.index.search import (
    Hit,
    embed_query,
    hybrid_by_vector,
    search,
    search_by_vector,
    serving_encoder,
    similar_fragments,
)
from ffr_lib.index.writer import (
    IndexConfig,
    IndexStats,
    activate_version,
    delete_dialogues,
    ensure_hnsw,
    get_version,
    index_rows,
    list_versions,
    register_version,
    remove_dialogues,
    retire_version,
    serving_version,
)

__all__ = [
    "Hit",
    "IndexConfig",
    "IndexStats",
    "activate_version",
    "check_coverage",
    "check_explain_uses_index",
    "check_hnsw_recall",
    "check_no_duplicates",
    "delete_dialogues",
    "embed_query",
    "ensure_hnsw",
    "explain_search",
    "get_version",
    "hybrid_by_vector",
    "index_rows",
    "list_versions",
    "register_version",
    "remove_dialogues",
    "retire_version",
    "search",
    "search_by_vector",
    "serving_encoder",
    "serving_version",
    "similar_fragments",
]
