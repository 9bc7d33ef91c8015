"""LoCoMo evaluation on the reader fixture: categories 1-4 apart, category 5 as abstention,
the image-evidence subset; and `ffr eval` / `ffr query` end to end on the real database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ffr_lib.evaluation.harness import Corpus, HarnessConfig
from ffr_lib.evaluation.locomo import evaluate_locomo, read_locomo_dataset
from ffr_lib.evaluation.systems import build_systems
from ffr_lib.mldr.difficulty import bm25_predict

FIXTURE = Path(__file__).parent / "fixtures" / "readers" / "locomo" / "locomo10.json"


def test_single_dialogue_groups_match_the_predictions() -> None:
    dataset = read_locomo_dataset(FIXTURE)
    systems = build_systems(["bm25-utt", "overlap-window", "position-prior"])
    out = evaluate_locomo(
        dataset, systems, corpus=Corpus.in_memory(dataset), config=HarnessConfig(modes=["single"])
    )
    m = out.metrics["locomo/single"]["bm25-utt"]
    by_id = dataset.dialogue_by_id()
    # Hand check against the BM25 helper: per category, the share of exact answers.
    adversarial = [q for q in dataset.queries if q.metadata["category"] == 5]
    empty = [not bm25_predict(q.text, by_id[q.dialogue_id])[0] for q in adversarial]
    assert m["group/category=5/abstain_rate"] == pytest.approx(sum(empty) / len(empty))
    assert m["adversarial_abstain_rate"] == m["group/category=5/abstain_rate"]
    for category in (1, 2, 4):
        members = [q for q in dataset.queries if q.metadata["category"] == category]
        assert m[f"group/category={category}/n"] == len(members)
    with_image = [q for q in dataset.queries if q.gold_image_ids]
    assert m["group/evidence=image/n"] == len(with_image) == 3
    assert m["group/evidence=text/n"] == 4
    assert "group/category=3/n" not in m  # no category-3 question in the fixture
    # The position prior never abstains.
    assert out.metrics["locomo/single"]["position-prior"]["adversarial_abstain_rate"] == 0.0


@pytest.mark.db
def test_eval_and_query_commands_end_to_end(
    db_url: str, ffr_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer

    from ffr_lib.cli.evaluate import eval_command, query_command
    from ffr_lib.db import connect, dispose_engines
    from ffr_lib.db.scratch import with_database

    app = typer.Typer()
    app.command("eval")(eval_command)
    app.command("query")(query_command)
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["eval", "--dataset", "locomo", "--path", str(FIXTURE), "--systems", "bm25-utt,fem",
         "--systems", "f2rvlm", "--reports-dir", str(tmp_path), "--run-name", "t",
         "--no-mlflow", "--keep", "eval_locomo_kept"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "latest" / "metrics.json").read_text())
    assert set(metrics) == {"locomo/single", "locomo/corpus"}
    assert metrics["locomo/corpus"]["fem"]["n"] == 9
    assert "recall@10" in metrics["locomo/corpus"]["fem"]
    assert "skipped" in metrics["locomo/single"]["f2rvlm"]  # no adapter given
    assert (tmp_path / "t" / "predictions" / "locomo__corpus__fem.jsonl").is_file()

    # The serving database got nothing; the kept evaluation database holds the corpus, and
    # `ffr query` pointed at it finds the conversation.
    with connect(db_url) as db:
        assert db.execute("SELECT count(*) FROM ffr.dialogues").fetchone()[0] == 0
    kept = with_database(db_url, "eval_locomo_kept")
    try:
        monkeypatch.setenv("FFR_DATABASE_URL", kept)
        result = runner.invoke(app, ["query", "What did Melanie paint?", "--k", "3"])
        assert result.exit_code == 0, result.output
        assert "locomo:conv-1" in result.output and "utterances [" in result.output
    finally:
        dispose_engines()
        with connect(with_database(db_url, "postgres"), autocommit=True) as db:
            db.execute('DROP DATABASE IF EXISTS "eval_locomo_kept" WITH (FORCE)')
    bad = runner.invoke(app, ["eval", "--dataset", "locomo"])
    assert bad.exit_code == 2
