"""The Dagster code location loads and holds the whole lineage graph of DESIGN.md."""

from __future__ import annotations

import os
import subprocess
import sys

from dagster import AssetKey

from ffr_assets.definitions import defs

LINEAGE = {
    "mldr_splits": {"raw_dialogues"},
    "fragments": {"mldr_splits", "inbox_dialogues"},
    "qmsum_dialogues": set(),
    "fem_checkpoint": {"fragments", "mldr_splits", "raw_dialogues", "qmsum_dialogues"},
    "fragment_index": {"fragments", "fem_checkpoint"},
    "reader_checkpoint": {"mldr_splits", "qmsum_dialogues"},
    "f2rvlm_sft": {"mldr_splits"},
    "f2rvlm_curriculum": {"f2rvlm_sft", "mldr_splits"},
    "f2rvlm_grpo": {"f2rvlm_sft", "f2rvlm_curriculum"},
    "evaluation_report": {"fragment_index", "mldr_splits", "f2rvlm_grpo", "reader_checkpoint"},
}


def test_graph_has_the_lineage_of_the_design() -> None:
    graph = defs.resolve_asset_graph()
    for asset, parents in LINEAGE.items():
        node = graph.get(AssetKey(asset))
        assert {key.to_user_string() for key in node.parent_keys} == parents, asset
        assert node.description, f"{asset} has no description"
    assert defs.resolve_job_def("index_batch_job") is not None
    assert defs.get_schedule_def("nightly_reindex") is not None


def test_dagster_cli_validates_the_code_location(tmp_path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dagster",
            "definitions",
            "validate",
            "-m",
            "ffr_assets.definitions",
        ],
        env={**os.environ, "DAGSTER_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr
