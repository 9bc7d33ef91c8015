"""`mldr_splits`: MLDR-style long dialogues with queries, split by source dialogue.

No `from __future__ import annotations` in asset modules: Dagster resolves Config types at runtime.
"""

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from ffr_assets.config import from_library, library_default
from ffr_assets.partitions import dialogue_batches
from ffr_assets.resources import DatabaseResource
from ffr_lib.mldr.builder import BuilderConfig, get_profile
from ffr_lib.mldr.queries import QueryConfig
from ffr_lib.mldr.splits import SplitConfig
from ffr_lib.mldr.stage import MldrStageConfig, build_mldr


class MldrSplitsConfig(Config):
    """Defaults are those of MldrStageConfig and the SplitConfig / BuilderConfig / QueryConfig
    inside it."""

    source_names: list[str] = from_library(
        MldrStageConfig, "source_names", "stored dialogue sources to build from"
    )
    max_sources: int | None = from_library(
        MldrStageConfig, "max_sources", "use at most this many source dialogues (None = all)"
    )
    profile: str = Field(
        default=library_default(BuilderConfig, "profile").name,
        description="mldr (~25 turns), wechat (~75), long (300+)",
    )
    seed: int = from_library(SplitConfig, "seed", "one seed decides sources, splits and queries")
    queries_per_dialogue: int = from_library(
        QueryConfig, "per_dialogue", "queries generated per dialogue"
    )


def _difficulty_table(difficulty: dict) -> str:
    """How hard each query family is for the cheap baselines (lower = harder)."""
    lines = [
        f"Query-family difficulty on the {difficulty['split']} split (lower = harder)",
        "",
        "| family | queries | BM25 F1 | BM25 Recall@10 | word-overlap window F1 |",
        "|---|---|---|---|---|",
    ]
    for family, s in difficulty["families"].items():
        recall = "-" if s["bm25_recall_at_10"] is None else f"{s['bm25_recall_at_10']:.3f}"
        lines.append(
            f"| {family} | {s['queries']} | {s['bm25_f1']:.3f} | {recall} | {s['window_f1']:.3f} |"
        )
    return "\n".join(lines)


@asset(
    group_name="data",
    deps=["raw_dialogues"],
    description="MLDR-style long multi-topic dialogues built from stored short dialogues, with "
    "queries of four types and ten families; train/val/test disjoint by source dialogue. Written "
    "as canonical and ms-swift files and stored in Postgres; each split is one dialogue batch.",
    owners=["team:ffr"],
    kinds={"python", "postgres"},
    check_specs=[
        AssetCheckSpec(
            "no_leakage", asset="mldr_splits", description="no source dialogue in two splits"
        ),
        AssetCheckSpec("gold_in_range", asset="mldr_splits", description="every gold id exists"),
        AssetCheckSpec("query_mix", asset="mldr_splits", description="query types as configured"),
    ],
)
def mldr_splits(
    context: AssetExecutionContext, config: MldrSplitsConfig, database: DatabaseResource
) -> MaterializeResult:
    stage_config = MldrStageConfig(
        source_names=config.source_names,
        max_sources=config.max_sources,
        split=SplitConfig(
            seed=config.seed,
            builder=BuilderConfig(profile=get_profile(config.profile), seed=config.seed),
            queries=QueryConfig(seed=config.seed, per_dialogue=config.queries_per_dialogue),
        ),
    )
    summary = build_mldr(database.resolved_url(), stage_config)
    batches = list(summary["batches"].values())
    context.instance.add_dynamic_partitions(dialogue_batches.name, batches)
    context.log.info(f"built splits {summary['batches']} from {summary['sources_used']} sources")
    failed = [name for name, check in summary["checks"].items() if not check["passed"]]
    stats = summary["stats"]
    return MaterializeResult(
        metadata={
            "out_dir": MetadataValue.path(summary["out_dir"]),
            "dialogues": MetadataValue.json({k: v["dialogues"] for k, v in stats.items()}),
            "queries": MetadataValue.json({k: v["queries"] for k, v in stats.items()}),
            "query_types": MetadataValue.json({k: v["query_types"] for k, v in stats.items()}),
            "query_families": MetadataValue.json(
                {k: v["query_families"] for k, v in stats.items()}
            ),
            "turn_histogram": MetadataValue.json(
                {k: v["turn_histogram"] for k, v in stats.items()}
            ),
            "image_histogram": MetadataValue.json(
                {k: v["image_histogram"] for k, v in stats.items()}
            ),
            "checks": MetadataValue.json(summary["checks"]),
            "family_difficulty": MetadataValue.md(_difficulty_table(summary["family_difficulty"])),
            "failed_checks": MetadataValue.json(failed),
        },
        check_results=[
            AssetCheckResult(
                check_name=check_name,
                passed=all(
                    c["passed"] for n, c in summary["checks"].items() if n.startswith(check_name)
                ),
                severity=AssetCheckSeverity.ERROR,
                metadata={
                    "details": MetadataValue.json(
                        {n: c for n, c in summary["checks"].items() if n.startswith(check_name)}
                    )
                },
            )
            for check_name in ("no_leakage", "gold_in_range", "query_mix")
        ],
    )
