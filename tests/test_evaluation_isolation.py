"""Evaluation never touches serving: `ffr eval` indexes its corpus in a database of its own
(throw-away, or kept under a name), the serving database's fingerprint stays the same, and the
report that MLflow keeps is the whole report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from reliability_helpers import fingerprint
from typer.testing import CliRunner

from ffr_lib.cli import app
from ffr_lib.data.canonical import write_canonical
from ffr_lib.db import connect
from ffr_lib.db.scratch import ScratchDatabaseError, scratch_database, with_database
from ffr_lib.index.stage import IndexStageConfig, index_fragments
from ffr_lib.segment.stage import FragmentStageConfig, cut_dialogues
from ffr_lib.store import write_dataset

pytestmark = pytest.mark.db


def _databases(url: str) -> set[str]:
    with connect(with_database(url, "postgres"), autocommit=True) as db:
        return {r[0] for r in db.execute("SELECT datname FROM pg_database").fetchall()}


@pytest.fixture
def serving(db_url: str, synthetic_dataset) -> str:
    """The user's database: other chats, indexed and served by the base MiniLM."""
    served = synthetic_dataset(12, prefix="mine", seed=3)
    write_dataset(served, url=db_url)
    fragments = cut_dialogues(served.dialogues, FragmentStageConfig(segmenter="windows"))
    report = index_fragments(db_url, served.dialogues, fragments, "minilm", IndexStageConfig())
    assert report["serving"]["serving"] == report["embedding_model"]
    return db_url


def test_ffr_eval_leaves_the_serving_database_unchanged(
    serving: str, synthetic_dataset, ffr_home: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "mldr" / "val"
    write_canonical(synthetic_dataset(8, prefix="bench", seed=7), folder)
    before, databases = fingerprint(serving), _databases(serving)

    result = CliRunner().invoke(
        app,
        ["eval", "--dataset", "mldr", "--path", str(folder), "--systems", "bm25-utt,fem",
         "--reports-dir", str(tmp_path / "reports"), "--run-name", "iso"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output

    assert fingerprint(serving) == before
    assert _databases(serving) == databases  # the throw-away database is gone
    metrics = json.loads((tmp_path / "reports" / "iso" / "metrics.json").read_text())
    fem = metrics["mldr-val/corpus"]["fem"]
    assert fem["n"] == 8 and "recall@10" in fem  # the corpus was indexed, elsewhere
    report = (tmp_path / "reports" / "iso" / "report.md").read_text()
    assert "Evaluation index:" in report and "throw-away database" in report
    assert "minilm@" in report  # indexed with the serving FEM

    # MLflow keeps the whole report, the sections added after the tables included.
    import mlflow

    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert len(runs) == 1
    logged = mlflow.artifacts.download_artifacts(
        run_id=runs[0].info.run_id, artifact_path="report/report.md", dst_path=str(tmp_path / "a")
    )
    assert Path(logged).read_text() == report


def test_a_kept_evaluation_database_holds_the_corpus(serving: str, synthetic_dataset) -> None:
    before = fingerprint(serving)
    with scratch_database(serving, "eval_kept_here", keep=True) as url:
        write_dataset(synthetic_dataset(3, prefix="bench"), url=url)
    try:
        assert "eval_kept_here" in _databases(serving)
        with connect(url) as db:
            assert db.execute("SELECT count(*) FROM ffr.dialogues").fetchone()[0] == 3
        # Kept again: made anew, empty.
        with (
            scratch_database(serving, "eval_kept_here", keep=True) as again,
            connect(again) as db,
        ):
            assert db.execute("SELECT count(*) FROM ffr.dialogues").fetchone()[0] == 0
    finally:
        with connect(with_database(serving, "postgres"), autocommit=True) as db:
            db.execute('DROP DATABASE IF EXISTS "eval_kept_here" WITH (FORCE)')
    assert fingerprint(serving) == before


def test_a_throw_away_database_is_dropped_after_an_error(serving: str) -> None:
    databases = _databases(serving)
    with pytest.raises(RuntimeError, match="boom"), scratch_database(serving) as url:
        assert url != serving
        raise RuntimeError("boom")
    assert _databases(serving) == databases


def test_the_serving_database_and_bad_names_are_refused(serving: str) -> None:
    own = serving.rsplit("/", 1)[1].split("?")[0]
    with (
        pytest.raises(ScratchDatabaseError, match="never writes there"),
        scratch_database(serving, own),
    ):
        pass
    with (
        pytest.raises(ScratchDatabaseError, match="lower-case"),
        scratch_database(serving, 'x"; DROP DATABASE ffr; --'),
    ):
        pass
