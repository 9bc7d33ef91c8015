"""The retrieval half of the graph in-process on the embedded Postgres: fragments ->
fem_checkpoint -> fragment_index, then a new inbox file indexed by the sensor's job without
re-embedding the old batch."""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import urlparse

from dagster import DagsterInstance, build_sensor_context, materialize
from dagster._serdes import serialize_value

from ffr_assets.definitions import defs
from ffr_lib.data.canonical import write_canonical
from ffr_lib.index.search import search

SMALL_FEM = {"config": {"max_pairs": 24, "batch_size": 8, "val_queries": 30}}
QMSUM = Path(__file__).parent / "fixtures" / "readers" / "qmsum"


def _assets():
    return list(defs.assets) + list(defs.asset_checks or [])


def test_index_batches_and_inbox_file_becomes_searchable(
    db_url: str, ffr_home: Path, tmp_path: Path, monkeypatch, synthetic_dataset
) -> None:
    from ffr_assets.resources import DatabaseResource, MlflowResource

    instance = DagsterInstance.ephemeral()
    resources = {"database": DatabaseResource(url=db_url), "mlflow": MlflowResource()}
    base = materialize(
        _assets(),
        selection=["raw_dialogues", "mldr_splits"],
        instance=instance,
        resources=resources,
        run_config={
            "ops": {
                "raw_dialogues": {
                    "config": {
                        "sources": [
                            {"format": "photochat", "limit": 90},
                            {"format": "chitchat", "limit": 40},
                        ]
                    }
                },
                "mldr_splits": {"config": {"max_sources": 90}},
            }
        },
    )
    assert base.success
    for batch in ("mldr-train", "mldr-val"):
        assert materialize(
            _assets(),
            selection=["fragments"],
            instance=instance,
            resources=resources,
            partition_key=batch,
            run_config={"ops": {"fragments": {"config": {"segmenter": "windows"}}}},
        ).success
    # The FEM trains and is gated on QMSum too: the three tiny meetings of the reader fixtures.
    monkeypatch.setenv("FFR_QMSUM_DIR", str(QMSUM))
    fem = materialize(
        _assets(),
        selection=["fem_checkpoint"],
        instance=instance,
        resources=resources,
        run_config={"ops": {"fem_checkpoint": SMALL_FEM}},
    )
    assert fem.success
    summary = fem.output_for_node("fem_checkpoint")
    assert summary["run_id"] and summary["alias"] in ("champion", "challenger")
    assert {"val", "questions", "qmsum_val"} <= set(summary["report"])
    assert summary["pairs_by_source"]["qmsum"] == 2
    metadata = fem.asset_materializations_for_node("fem_checkpoint")[0].metadata
    assert metadata["qmsum"].value["val"] == {"meetings": 2, "queries": 5}
    assert "qmsum_val/tuned/recall@10" in metadata
    check = fem.get_asset_check_evaluations()[0]
    assert any(r.startswith("qmsum_val: tuned") for r in check.metadata["reasons"].value)
    assert set(check.metadata["qmsum_val"].value) == {"base", "tuned", "delta"}

    indexed = materialize(
        _assets(),
        selection=["fragment_index"],
        instance=instance,
        resources=resources,
        partition_key="mldr-val",
    )
    assert indexed.success
    checks = {c.check_name: c.passed for c in indexed.get_asset_check_evaluations()}
    assert checks["no_duplicates"] and checks["coverage"] and checks["explain_uses_index"]
    first = indexed.output_for_node("fragment_index")
    assert first["serving"]["serving"] == first["embedding_model"]
    assert first["stats"]["embedded"] == first["stats"]["fragments"] > 0
    # The build's point of the cost curve: numbers the UI plots across materializations.
    metadata = indexed.asset_materializations_for_node("fragment_index")[0].metadata
    assert metadata["cost/fragments"].value == first["stats"]["fragments"]
    assert 0.0 <= metadata["cost/search_recall_at_10"].value <= 1.0
    assert metadata["cost/search_p50_ms"].value > 0 and metadata["cost/peak_rss_mib"].value > 0
    assert "cost_curve" in metadata  # the benchmarked curve, or the note saying why not

    # A new file dropped in the inbox: the sensor accepts it and its job makes it searchable.
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    monkeypatch.setenv("FFR_INBOX_DIR", str(inbox))
    dataset = synthetic_dataset(2, prefix="inbox")
    dataset.dialogues[0].utterances[3].text = "we adopted a tortoise named Archibald yesterday"
    folder = write_canonical(dataset, tmp_path / "src")
    dropped = inbox / "new-chats.jsonl"
    dropped.write_bytes((Path(folder) / "dialogues.jsonl").read_bytes())
    old = time.time() - 3600
    os.utime(dropped, (old, old))
    sensor_result = defs.get_sensor_def("inbox_sensor")(build_sensor_context(instance=instance))
    (request,) = sensor_result.run_requests
    instance.add_dynamic_partitions("dialogue_batches", [request.partition_key])
    job = defs.resolve_job_def("index_batch_job")
    run = job.execute_in_process(
        instance=instance, partition_key=request.partition_key, resources=resources
    )
    assert run.success
    new = run.output_for_node("fragment_index")
    assert new["embedding_model"] == first["embedding_model"]
    # Only the new batch was embedded: the old batch's rows were not touched.
    assert new["stats"]["embedded"] == new["stats"]["fragments"]
    assert new["stats"]["fragments"] < first["stats"]["fragments"]
    hits = search("pet tortoise Archibald", k=3, url=db_url)
    assert hits and hits[0].dialogue_id == dataset.dialogues[0].id
    # The database password appears nowhere in the index runs' events (logs, metadata, checks).
    password = urlparse(db_url).password
    for finished in (indexed, run):
        assert password and password not in serialize_value(instance.all_logs(finished.run_id))
