"""The F2RVLM ablation's resume support (bench/f2rvlm_ablation.py): per-query samples survive a
stop and give the same paired intervals, and a resumed run must have the stopped run's settings.
The ablation itself (hours) is proven by its tiny command in the script's docstring."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ffr_lib.evaluation.metrics import SetSample
from ffr_lib.settings import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT))

from bench.f2rvlm_ablation import difference, main, read_samples, write_samples  # noqa: E402


def _samples(shift: int) -> list[SetSample]:
    return [
        SetSample(
            pred_utt=(i % 5, (i + shift) % 7),
            pred_img=[i % 2] if i % 3 else [],
            gold_utt=[i % 5, 3],
            gold_img=[0],
            n_utterances=9,
            n_images=2,
        )
        for i in range(30)
    ]


def test_samples_round_trip_and_give_the_same_paired_interval(tmp_path: Path) -> None:
    a, b = _samples(1), _samples(4)
    write_samples(tmp_path, "whole/sft", a)
    assert (tmp_path / "samples" / "whole__sft.json").exists()
    back = read_samples(tmp_path, "whole/sft")
    assert back is not None and len(back) == len(a)
    for got, want in zip(back, a, strict=True):
        assert list(got.pred_utt) == list(want.pred_utt)
        assert list(got.gold_img) == list(want.gold_img)
        assert got.n_utterances == want.n_utterances
    assert difference(back, b, 200) == difference(a, b, 200)
    assert read_samples(tmp_path, "whole/grpo") is None


def test_resume_refuses_a_run_with_other_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stopped = {
        "args": {"queries": 4, "sft_examples": 4, "resamples": 200, "fragment_weight": 1.0},
        "whole/sft": {"f1": 0.5},
    }
    (tmp_path / "results.json").write_text(json.dumps(stopped))
    with pytest.raises(SystemExit) as stop:
        main(["--queries", "5", "--sft-examples", "4", "--out", str(tmp_path), "--resume"])
    assert stop.value.code == 2
    message = capsys.readouterr().err
    assert "queries" in message and "results.json" in message
    # Nothing of the stopped run is overwritten by the refused one.
    assert json.loads((tmp_path / "results.json").read_text()) == stopped
