"""The data half of the asset graph materialized in-process against the embedded Postgres:
raw_dialogues -> mldr_splits -> fragments (one dynamic partition)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

import pytest
from dagster import DagsterInstance, materialize
from dagster._serdes import serialize_value

from ffr_assets.assets.fragments import fragments
from ffr_assets.assets.mldr import mldr_splits
from ffr_assets.assets.raw import raw_dialogues
from ffr_assets.resources import DatabaseResource, MlflowResource
from ffr_lib.store import count_rows


def _run_config(limit: int) -> dict:
    return {
        "ops": {
            "raw_dialogues": {"config": {"sources": [{"format": "photochat", "limit": limit}]}},
            "mldr_splits": {"config": {"max_sources": limit, "seed": 3}},
        }
    }


def test_data_assets_materialize_idempotently(db_url: str, ffr_home: Path) -> None:
    instance = DagsterInstance.ephemeral()
    resources = {"database": DatabaseResource(url=db_url), "mlflow": MlflowResource()}

    def materialize_data():  # the same run twice: the second must store nothing new
        return materialize(
            [raw_dialogues, mldr_splits],
            instance=instance,
            resources=resources,
            run_config=_run_config(90),
        )

    result = materialize_data()
    assert result.success
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {"no_leakage": True, "gold_in_range": True, "query_mix": True}
    # The database password appears nowhere in the run's events (logs, metadata, outputs).
    password = urlparse(db_url).password
    assert password and password not in serialize_value(instance.all_logs(result.run_id))
    table = result.asset_materializations_for_node("mldr_splits")[0].metadata["family_difficulty"]
    assert "| question |" in table.value and "word-overlap window F1" in table.value
    counts = count_rows(db_url)
    assert counts["queries"] > 0
    partitions = set(instance.get_dynamic_partitions("dialogue_batches"))
    assert {"mldr-train", "mldr-val", "mldr-test"} <= partitions

    # Re-materializing the same config stores nothing new.
    again = materialize_data()
    assert again.success
    assert count_rows(db_url) == counts

    cut = materialize(
        [fragments],
        instance=instance,
        resources=resources,
        partition_key="mldr-val",
        selection=[fragments],
    )
    assert cut.success
    materialization = cut.asset_materializations_for_node("fragments")[0]
    path = Path(materialization.metadata["path"].value)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows and {r["dialogue_id"] for r in rows}
    # Every utterance of every dialogue of the batch is in exactly one fragment.
    by_dialogue: dict[str, list[int]] = {}
    for row in rows:
        by_dialogue.setdefault(row["dialogue_id"], []).extend(row["utterance_ids"])
    for ids in by_dialogue.values():
        assert sorted(ids) == list(range(len(ids)))
    assert "pk/texttiling" in materialization.metadata
    assert "pk/fixed_windows" in materialization.metadata


def test_raw_dialogues_skips_a_missing_data_folder_and_says_why(
    db_url: str, ffr_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a container without the PhotoChat mount the first asset still succeeds: PhotoChat is
    skipped with the setting to fix in the log and the metadata; chitchat (in the image) loads."""
    empty = tmp_path / "photochat"
    empty.mkdir()  # what a bind mount of a missing host folder leaves
    monkeypatch.setenv("FFR_PHOTOCHAT_DIR", str(empty))
    config = {"sources": [{"format": "photochat"}, {"format": "chitchat", "limit": 3}]}
    result = materialize(
        [raw_dialogues],
        resources={"database": DatabaseResource(url=db_url)},
        run_config={"ops": {"raw_dialogues": {"config": config}}},
    )
    assert result.success
    metadata = result.asset_materializations_for_node("raw_dialogues")[0].metadata
    assert metadata["dialogues_per_source"].value == {"chitchat": 3}
    reason = metadata["skipped_sources"].value["photochat"]
    assert "FFR_PHOTOCHAT_DIR" in reason and str(empty) in reason
    # A path given in the config is not skipped: a wrong one is the user's error to see.
    config["sources"][0]["path"] = str(empty)
    failed = materialize(
        [raw_dialogues],
        resources={"database": DatabaseResource(url=db_url)},
        run_config={"ops": {"raw_dialogues": {"config": config}}},
        raise_on_error=False,
    )
    assert not failed.success
