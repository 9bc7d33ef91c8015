"""MLDR-style data: long multi-topic dialogues built from short ones, queries with gold
fragments, seeded splits disjoint by source, statistics and difficulty baselines."""

from ffr_lib.mldr.builder import (
    PROFILES,
    BuilderConfig,
    BuildProfile,
    build_long_dialogues,
    get_profile,
)
from ffr_lib.mldr.difficulty import (
    bm25_predict,
    bm25_rank,
    family_difficulty,
    overlap_window_predict,
)
from ffr_lib.mldr.queries import QueryConfig, generate_queries, is_unanswerable
from ffr_lib.mldr.splits import (
    SplitConfig,
    build_splits,
    check_gold_in_range,
    check_no_leakage,
    check_query_mix,
    write_splits,
)
from ffr_lib.mldr.stats import dataset_stats

__all__ = [
    "PROFILES",
    "BuildProfile",
    "BuilderConfig",
    "QueryConfig",
    "SplitConfig",
    "bm25_predict",
    "bm25_rank",
    "build_long_dialogues",
    "build_splits",
    "check_gold_in_range",
    "check_no_leakage",
    "check_query_mix",
    "dataset_stats",
    "family_difficulty",
    "generate_queries",
    "get_profile",
    "is_unanswerable",
    "overlap_window_predict",
    "write_splits",
]
