"""`qmsum_dialogues` materialized alone: the tiny QMSum fixtures read and counted, a missing
folder skipped with its reason (no database: the asset writes nothing)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from dagster import DagsterInstance, materialize

from ffr_assets.assets.qmsum import qmsum_dialogues

FIXTURES = Path(__file__).parent / "fixtures/readers"


def _materialize():
    result = materialize([qmsum_dialogues], instance=DagsterInstance.ephemeral())
    assert result.success
    summary = result.output_for_node("qmsum_dialogues")
    metadata = result.asset_materializations_for_node("qmsum_dialogues")[0].metadata
    return summary, metadata


def test_reads_and_counts_every_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FFR_QMSUM_DIR", str(FIXTURES / "qmsum"))
    summary, metadata = _materialize()
    assert summary["present"] is True and metadata["present"].value is True
    splits = summary["splits"]
    assert set(splits) == {"train", "val"}
    common = {"malformed_queries": 0, "malformed_messages": []}
    assert {k: v for k, v in splits["train"].items() if k != "folder"} == {
        "meetings": 1,
        "turns": 11,
        "specific_queries": 2,
        "general_queries_skipped": 1,
        **common,
    }
    assert {k: v for k, v in splits["val"].items() if k != "folder"} == {
        "meetings": 2,
        "turns": 30,
        "specific_queries": 5,
        "general_queries_skipped": 3,
        **common,
    }
    assert splits["val"]["folder"] == str(FIXTURES / "qmsum" / "val")
    assert metadata["val/specific_queries"].value == 5 and metadata["train/turns"].value == 11
    assert "skipped" not in metadata


def test_malformed_spans_and_a_missing_split_are_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only val, holding the meeting with malformed spans: train is skipped, val counts them.
    shutil.copytree(FIXTURES / "qmsum_spans" / "val", tmp_path / "val")
    monkeypatch.setenv("FFR_QMSUM_DIR", str(tmp_path))
    summary, metadata = _materialize()
    assert summary["present"] is True
    assert "no QMSum train folder" in summary["splits"]["train"]["skipped"]
    assert "FFR_QMSUM_DIR" in metadata["train/skipped"].value
    val = summary["splits"]["val"]
    assert val["meetings"] == 1 and val["specific_queries"] == 2
    assert val["malformed_queries"] == len(val["malformed_messages"]) == 6
    assert all("Odd001" in message for message in val["malformed_messages"])
    assert any("start 5 > end 3" in message for message in val["malformed_messages"])
    assert metadata["val/malformed_queries"].value == 6


def test_missing_folder_skips_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "no-qmsum"
    monkeypatch.setenv("FFR_QMSUM_DIR", str(missing))
    summary, metadata = _materialize()
    assert summary["present"] is False and summary["splits"] == {}
    assert str(missing) in summary["reason"] and "FFR_QMSUM_DIR" in summary["reason"]
    assert metadata["skipped"].value == summary["reason"]
    assert metadata["present"].value is False
