"""`raw_dialogues`: read the configured sources and load them into Postgres.

No `from __future__ import annotations` in asset modules: Dagster resolves Config types at runtime."""

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from ffr_assets.resources import DatabaseResource


class SourceConfig(Config):
    format: str = Field(description="reader name, see `ffr_lib.data.readers.FORMATS`")
    path: str | None = Field(
        default=None, description="file or folder; empty uses the reader's default location"
    )
    limit: int | None = Field(default=None, description="read at most this many dialogues")


class RawDialoguesConfig(Config):
    sources: list[SourceConfig] = Field(
        default_factory=lambda: [
            SourceConfig(format="photochat"),
            # Chitchat is the FEM's out-of-source check (it reads a few dozen); 1,000 is ample.
            SourceConfig(format="chitchat", limit=1000),
        ],
        description="dialogue sources to ingest; PhotoChat is read from FFR_PHOTOCHAT_DIR",
    )


@asset(
    group_name="data",
    description="Dialogues from the configured sources (PhotoChat, chitchat, canonical files, ...) "
    "validated and upserted into Postgres (schema ffr). Idempotent: re-materializing identical "
    "data changes nothing.",
    owners=["team:ffr"],
    kinds={"postgres", "python"},
)
def raw_dialogues(
    context: AssetExecutionContext, config: RawDialoguesConfig, database: DatabaseResource
) -> MaterializeResult:
    from ffr_lib.data.readers import read_dataset
    from ffr_lib.store import count_rows, write_dataset

    url = database.resolved_url()
    per_source: dict[str, int] = {}
    for source in config.sources:
        dataset = read_dataset(source.path or "", source.format, limit=source.limit)
        stats = write_dataset(dataset, url=url)
        per_source[source.format] = len(dataset.dialogues)
        context.log.info(f"{source.format}: {len(dataset.dialogues)} dialogues, {stats.as_dict()}")
    counts = count_rows(url)
    return MaterializeResult(
        metadata={
            "dialogues_per_source": MetadataValue.json(per_source),
            "row_counts": MetadataValue.json(counts),
            "dialogues": counts.get("dialogues", 0),
            "utterances": counts.get("utterances", 0),
            "images": counts.get("images", 0),
        }
    )
