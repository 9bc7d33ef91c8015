"""`raw_dialogues`: read the configured sources and load them into Postgres.

No `from __future__ import annotations` in asset modules: Dagster resolves Config types at runtime."""

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from ffr_assets.resources import DatabaseResource
from ffr_lib.settings import PHOTOCHAT_DIR, QMSUM_DIR, Variable

#: Sources read from a data-folder setting when their path is empty. A deployment mounts the
#: folder there (infra/README.md); when it is missing or empty the source is skipped, with why.
DATA_FOLDERS: dict[str, Variable] = {"photochat": PHOTOCHAT_DIR, "qmsum": QMSUM_DIR}


class SourceConfig(Config):
    format: str = Field(description="reader name, see `ffr_lib.data.readers.FORMATS`")
    path: str | None = Field(
        default=None, description="file or folder; empty uses the reader's default location"
    )
    limit: int | None = Field(default=None, description="read at most this many dialogues")


def missing_data(source: SourceConfig) -> str | None:
    """Why ``source`` cannot be read from its default folder, or None when it can (or has a path
    of its own: a configured path that does not exist is an error, not a skip)."""
    variable = DATA_FOLDERS.get(source.format)
    if source.path or variable is None:
        return None
    folder = variable.get()
    if folder.is_dir() and any(folder.iterdir()):
        return None
    return (
        f"{source.format} skipped: no files at {folder} ({variable.name}); mount the data set "
        "there (infra/README.md). mldr_splits builds from PhotoChat and fails without it"
    )


class RawDialoguesConfig(Config):
    sources: list[SourceConfig] = Field(
        default_factory=lambda: [
            SourceConfig(format="photochat"),
            # Chitchat is the FEM's out-of-source check (it reads a few dozen); 1,000 is ample.
            SourceConfig(format="chitchat", limit=1000),
        ],
        description="dialogue sources to ingest; PhotoChat is read from FFR_PHOTOCHAT_DIR "
        "(skipped, with the reason, when that folder is missing or empty)",
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
    skipped: dict[str, str] = {}
    for source in config.sources:
        reason = missing_data(source)
        if reason:
            context.log.warning(reason)
            skipped[source.format] = reason
            continue
        dataset = read_dataset(source.path or "", source.format, limit=source.limit)
        stats = write_dataset(dataset, url=url)
        per_source[source.format] = len(dataset.dialogues)
        context.log.info(f"{source.format}: {len(dataset.dialogues)} dialogues, {stats.as_dict()}")
    counts = count_rows(url)
    return MaterializeResult(
        metadata={
            "dialogues_per_source": MetadataValue.json(per_source),
            "skipped_sources": MetadataValue.json(skipped),
            "row_counts": MetadataValue.json(counts),
            "dialogues": counts.get("dialogues", 0),
            "utterances": counts.get("utterances", 0),
            "images": counts.get("images", 0),
        }
    )
