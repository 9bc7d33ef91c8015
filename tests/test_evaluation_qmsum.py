"""QMSum evaluation on the hand-written fixture: dataset keys, meeting-length buckets, the prior
from train, no corpus-style variants, and segmentation against the human topic spans."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ffr_lib.cli import app
from ffr_lib.data.readers import read_dataset
from ffr_lib.evaluation.harness import length_bucket
from ffr_lib.evaluation.qmsum import BUCKETS, qmsum_groupers, qmsum_split, segmentation_scores
from ffr_lib.evaluation.run import EvaluationConfig, run_evaluation

QMSUM = Path(__file__).parent / "fixtures" / "readers" / "qmsum"
SYSTEMS = ["bm25-utt", "position-prior", "fem"]


def test_meeting_buckets_and_groupers() -> None:
    assert [length_bucket(n, BUCKETS) for n in (12, 299, 300, 600, 601)] == [
        "<300",
        "<300",
        "300-600",
        "300-600",
        ">600",
    ]
    groupers = qmsum_groupers()
    assert set(groupers) == {"bucket", "type", "spans"}
    data = read_dataset(QMSUM / "val", "qmsum")
    meeting = data.dialogues[0]
    by_id = {q.id: q for q in data.queries}
    assert groupers["spans"](by_id["qmsum:val:Demo002:q0"], meeting) == "2+"
    assert groupers["spans"](by_id["qmsum:val:Demo002:q1"], meeting) == "1"


def test_split_from_the_setting_with_the_prior_from_train(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FFR_QMSUM_DIR", str(QMSUM))
    data, prior, name = qmsum_split("val")
    assert name == "qmsum-val" and len(data.dialogues) == 2 and len(data.queries) == 5
    assert prior is not None and [d.id for d in prior.dialogues] == ["qmsum:train:Demo001"]
    data, prior, name = qmsum_split("val", QMSUM / "val")
    assert name == "qmsum" and prior is not None
    with pytest.raises(FileNotFoundError, match="FFR_QMSUM_DIR"):
        qmsum_split("test")
    with pytest.raises(FileNotFoundError):
        qmsum_split("val", tmp_path / "nothing")


def test_segmentation_scores_against_topic_spans() -> None:
    data = read_dataset(QMSUM / "val", "qmsum")
    scores = segmentation_scores(data.dialogues)
    assert set(scores) == {"texttiling", "fixed_windows"}
    for figures in scores.values():
        assert figures["dialogues"] == 2
        assert 0.0 <= figures["pk"] <= 1.0 and 0.0 <= figures["window_diff"] <= 1.0
    assert scores["fixed_windows"]["segments_reference"] == pytest.approx((5 + 2) / 2)
    for d in data.dialogues:
        d.metadata.pop("topic_boundaries")
    assert segmentation_scores(data.dialogues) == {}


@pytest.mark.db
def test_run_evaluation_on_the_fixture(
    db_url: str, ffr_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FFR_QMSUM_DIR", str(QMSUM))
    result = run_evaluation(
        EvaluationConfig(
            dataset="qmsum",
            split="val",
            systems=SYSTEMS,
            reports_dir=tmp_path / "reports",
            run_name="q",
            mlflow=False,
        ),
        url=db_url,
    )
    metrics = json.loads((tmp_path / "reports" / "q" / "metrics.json").read_text())
    assert set(metrics) == {"qmsum-val/single", "qmsum-val/corpus"}  # no corpus-style table
    for key in metrics:
        assert set(metrics[key]) == set(SYSTEMS)
        for system in SYSTEMS:
            m = metrics[key][system]
            if key.endswith("corpus") and system == "position-prior":
                assert "skipped" in m  # single-dialogue only
                continue
            assert m["n"] == 5, (key, system, m)
            assert m["group/bucket=<300/n"] == 5  # meetings of 12 and 18 turns
            assert m["group/spans=2+/n"] == 1 and m["group/spans=1/n"] == 4
            assert m["group/type=utterance-only/n"] == 5
            assert not any(k.startswith("group/family=") for k in m)
    assert "recall@10" in metrics["qmsum-val/corpus"]["bm25-utt"]
    assert metrics["qmsum-val/single"]["bm25-utt"]["f1"] > 0
    report = (tmp_path / "reports" / "q" / "report.md").read_text()
    assert result.markdown and "qmsum-val/corpus" in report
    assert "## Fragment segmentation on qmsum-val, against the human topic spans" in report
    assert "| texttiling |" in report and "| fixed_windows |" in report
    assert "| system | <300 | 300-600 | >600 |" in report  # meeting buckets, empty ones too
    assert "<35" not in report
    assert "QMSum: each human-written query against its own meeting" in report
    assert "2 meetings, 5 specific queries scored; 3 general queries" in report


@pytest.mark.db
def test_eval_command_with_a_path(db_url: str, ffr_home: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["eval", "--dataset", "qmsum", "--path", str(QMSUM / "val"), "--systems", "bm25-utt",
         "--modes", "corpus", "--reports-dir", str(tmp_path), "--run-name", "p", "--no-mlflow"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "p" / "metrics.json").read_text())
    assert set(metrics) == {"qmsum/corpus"}
    assert metrics["qmsum/corpus"]["bm25-utt"]["n"] == 5
    bad = CliRunner().invoke(app, ["eval", "--dataset", "qmsumm"])
    assert bad.exit_code == 2
