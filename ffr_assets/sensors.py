"""Re-indexing of new dialogues: an inbox sensor, a job per batch, and a periodic schedule."""

from dagster import (
    AssetSelection,
    DefaultSensorStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    schedule,
    sensor,
)

from ffr_assets.partitions import dialogue_batches

INDEX_BATCH_ASSETS = ["inbox_dialogues", "fragments", "fragment_index"]

index_batch_job = define_asset_job(
    "index_batch_job",
    selection=AssetSelection.assets(*INDEX_BATCH_ASSETS),
    partitions_def=dialogue_batches,
    description="Ingest, cut and index one dialogue batch (old batches are not touched).",
)

reindex_job = define_asset_job(
    "reindex_job",
    selection=AssetSelection.assets("fragment_index"),
    partitions_def=dialogue_batches,
    description="Re-embed one batch with the serving FEM (only new or changed fragments).",
)


@sensor(
    job=index_batch_job,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.STOPPED,
    description="Watches the inbox folder (FFR_INBOX_DIR, default $FFR_HOME/inbox) for new "
    "dialogue files: validates each, moves bad ones to inbox/rejected/ with the reason, registers "
    "a dialogue_batches partition per good file and launches index_batch_job for it.",
)
def inbox_sensor(context: SensorEvaluationContext):
    from ffr_lib.data.errors import InputError
    from ffr_lib.inbox import accept, pending_files

    files = pending_files()
    if not files:
        return SkipReason("inbox is empty")
    accepted, rejected = [], []
    for path in files:
        try:
            accepted.append(accept(path))
        except InputError as exc:
            context.log.warning(f"rejected {path.name}: {exc}")
            rejected.append(path.name)
    if not accepted:
        return SkipReason(f"rejected {len(rejected)} file(s): {rejected}")
    keys = [a.batch for a in accepted]
    return SensorResult(
        run_requests=[RunRequest(run_key=a.batch, partition_key=a.batch) for a in accepted],
        dynamic_partitions_requests=[dialogue_batches.build_add_request(keys)],
    )


@schedule(
    job=reindex_job,
    cron_schedule="0 3 * * *",
    description="Nightly: re-index every dialogue batch with the serving FEM. Unchanged "
    "fragments already embedded by that FEM version are skipped, so this is cheap unless the "
    "FEM changed.",
)
def nightly_reindex(context: ScheduleEvaluationContext):
    keys = context.instance.get_dynamic_partitions(dialogue_batches.name)
    return [RunRequest(run_key=f"reindex-{k}", partition_key=k) for k in keys]
