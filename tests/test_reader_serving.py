"""The trained reader where users meet it: the `reader_checkpoint` stage (train, judge, promote),
FFRS serving it as the fine stage (`ffr query`, the `ffrs` and `reader` evaluation systems), on
a real Postgres and the real offline MiniLM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_reader import _dataset
from typer.testing import CliRunner

from ffr_lib.cli import app
from ffr_lib.data.canonical import write_canonical
from ffr_lib.ffrs import open_ffrs
from ffr_lib.index.stage import IndexStageConfig, index_fragments
from ffr_lib.mldr.splits import split_dir
from ffr_lib.reader.model import ReaderWeights
from ffr_lib.reader.stage import ReaderStageConfig, champion_path, run_reader
from ffr_lib.reader.train import ReaderTrainConfig
from ffr_lib.segment.stage import FragmentStageConfig, cut_dialogues
from ffr_lib.store import write_dataset

pytestmark = [pytest.mark.db, pytest.mark.slow]


@pytest.fixture
def trained(ffr_home: Path) -> dict:
    """MLDR-shaped toy splits under the test's FFR_HOME and one reader_checkpoint run."""
    write_canonical(_dataset(50, seed=1), split_dir("train"))
    write_canonical(_dataset(16, seed=2), split_dir("val"))
    summary = run_reader(
        ReaderStageConfig(use_qmsum=False, train=ReaderTrainConfig(holdout_share=0.3))
    )
    return summary


def test_the_first_reader_becomes_champion_and_a_worse_one_does_not(trained: dict) -> None:
    assert trained["promoted"] and trained["reasons"] == ["no champion yet"]
    assert champion_path() == Path(trained["path"])
    assert trained["skipped_sources"] == {"qmsum": "use_qmsum is off"}
    assert trained["val"]["mldr-val"]["micro_f1"] > 0.5
    assert trained["alias"] == "champion" and trained["mlflow_run_id"]
    # A reader that cannot learn (everything shrunk to the intercept) loses to the champion.
    worse = run_reader(
        ReaderStageConfig(
            use_qmsum=False,
            train=ReaderTrainConfig(hidden_units=0, l2=1e9, holdout_share=0.3),
        )
    )
    assert not worse["promoted"] and worse["alias"] == "challenger"
    assert champion_path() == Path(trained["path"])
    # The untrained reference scorer, decoded as tuned for it, is reported beside the reader.
    reference = trained["reference_val"]["mldr-val"]
    assert 0 < reference["f1"] < trained["val"]["mldr-val"]["f1"]
    # A champion that reads features this code no longer computes is replaced, and says why.
    old = ReaderWeights.load(champion_path())
    old_path = old.model_copy(update={"features": ["retired"]}).save(
        champion_path().parent.parent / "old" / "reader.json"
    )
    pointer = champion_path().parent.parent / "champion.json"
    pointer.write_text(json.dumps({"path": str(old_path)}), encoding="utf-8")
    again = run_reader(
        ReaderStageConfig(use_qmsum=False, train=ReaderTrainConfig(holdout_share=0.3))
    )
    assert again["promoted"] and "no longer computes" in again["reasons"][0]
    assert champion_path() == Path(again["path"])


def test_ffrs_serves_the_champion_reader(trained: dict, db_url: str) -> None:
    data = _dataset(12, seed=3)
    write_dataset(data, url=db_url)
    fragments = cut_dialogues(data.dialogues, FragmentStageConfig(segmenter="windows"))
    index_fragments(db_url, data.dialogues, fragments, "minilm", IndexStageConfig())
    ffrs = open_ffrs(url=db_url)
    assert ffrs.config.stage2 == "reader"  # auto: the champion reader serves
    query = next(q for q in data.queries if q.gold_utterance_ids)
    result = ffrs.query(query.text, 10)
    assert result.dialogues, "the reader answered nothing"
    top = result.dialogues[0]
    runs = [f for f in top.fragments if f.confidence is not None]
    assert runs and all(0 <= f.confidence <= 1 for f in runs)
    assert set(top.utterance_ids) == {u for f in runs for u in f.utterance_ids}
    whole = ffrs.query_dialogue(query.text, query.dialogue_id)
    assert set(whole.utterance_ids) & set(query.gold_utterance_ids)

    output = CliRunner().invoke(app, ["query", query.text, "--k", "10"])
    assert output.exit_code == 0, output.output
    assert "fine stage: the trained reader" in output.output
    assert "run " in output.output and "score" in output.output
    assert "loading" in output.output and "answering" in output.output
    forced = CliRunner().invoke(app, ["query", query.text, "--fine-stage", "f2rvlm"])
    assert forced.exit_code == 1 and "no trained F2RVLM adapter" in forced.output


def test_evaluation_reports_the_reader_and_which_fine_stage_served(
    trained: dict, db_url: str, tmp_path: Path
) -> None:
    from ffr_lib.evaluation.run import EvaluationConfig, run_evaluation

    folder = tmp_path / "mldr" / "val"
    write_canonical(_dataset(10, seed=4), folder)
    result = run_evaluation(
        EvaluationConfig(
            path=folder,
            systems=["reader", "ffrs", "minilm-window"],
            reports_dir=tmp_path / "reports",
            run_name="r",
            mlflow=False,
            corpus_queries="as-written",
        ),
        url=db_url,
    )
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    single, corpus = metrics["mldr-val/single"], metrics["mldr-val/corpus"]
    assert single["reader"]["n"] == 20 and corpus["reader"]["n"] == 20
    assert single["reader"]["f1"] > single["minilm-window"]["f1"]
    assert corpus["ffrs"]["note"].startswith("fine stage: the trained reader")
    assert "fine stage: the trained reader" in result.markdown


def _tiny_adapter(folder: Path) -> Path:
    """A one-step SFT adapter of the tiny model (real training code path, seconds)."""
    from ffr_lib.f2rvlm.profiles import get_profile
    from ffr_lib.f2rvlm.retriever import training_records
    from ffr_lib.f2rvlm.sft import train_sft

    profile = get_profile("tiny")
    profile.sft.max_steps = 1
    data = _dataset(4, seed=5)
    dialogues = {d.id: d for d in data.dialogues}
    records = training_records(dialogues, data.queries[:2], profile)
    return train_sft(profile, records, folder, track=False).adapter_dir


def test_f2rvlm_serves_only_when_it_beats_the_champion_reader(
    trained: dict, db_url: str, tmp_path: Path
) -> None:
    from ffr_lib.ffrs.serving import (
        FineStageJudgeConfig,
        choice_path,
        judge_fine_stage,
        serving_fine_stage,
        verdict_adapter,
    )
    from ffr_lib.reader.stage import reader_dir

    adapter = _tiny_adapter(tmp_path / "adapter")
    judge = FineStageJudgeConfig(val_queries=6)
    # The untrained tiny F2RVLM against the champion reader, on the same 6 MLDR val queries.
    verdict = judge_fine_stage(adapter, judge)
    assert verdict["serves"] == "reader" and verdict["queries"] == 6
    assert verdict["val"]["reader"]["f1"] >= verdict["val"]["f2rvlm"]["f1"]
    assert verdict["reader"] == trained["path"] and "does not beat" in verdict["reason"]
    assert json.loads(choice_path().read_text())["serves"] == "reader"
    assert verdict_adapter() is None and serving_fine_stage() == ("reader", champion_path())
    assert open_ffrs(url=db_url).config.stage2 == "reader"
    # Without a champion reader F2RVLM serves, and FFRS follows the verdict.
    pointer = reader_dir() / "champion.json"
    pointer.unlink()
    verdict = judge_fine_stage(adapter, judge)
    assert verdict["serves"] == "f2rvlm" and verdict["reader"] is None
    assert verdict["val"]["reader"] is None
    assert verdict_adapter() == adapter
    assert serving_fine_stage() == ("f2rvlm", adapter)
    assert open_ffrs(url=db_url).config.stage2 == "f2rvlm"
    # A reader named by the caller is what serves, whatever the verdict.
    assert serving_fine_stage(trained["path"]) == ("reader", Path(trained["path"]))
    assert open_ffrs(url=db_url, reader=trained["path"]).config.stage2 == "reader"
    # A reader promoted after the verdict makes it stale: the champion reader serves again.
    pointer.write_text(json.dumps({"path": trained["path"]}), encoding="utf-8")
    assert verdict_adapter() is None
    assert open_ffrs(url=db_url).config.stage2 == "reader"
    # Naming a fine stage or a model still overrides the verdict.
    assert open_ffrs(adapter, url=db_url).config.stage2 == "f2rvlm"


def test_no_val_split_leaves_the_verdict_alone(ffr_home: Path, tmp_path: Path) -> None:
    from ffr_lib.ffrs.serving import choice_path, judge_fine_stage, verdict_adapter

    verdict = judge_fine_stage(tmp_path / "never-read")
    assert verdict["serves"] is None and "not judged" in verdict["reason"]
    assert not choice_path().exists() and verdict_adapter() is None
