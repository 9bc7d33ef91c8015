"""The FEM stage on real meetings (QMSum): training pairs from QMSum train beside the MLDR ones
(positive = the fragment overlapping the gold spans most, hard negative from the same meeting),
QMSum val in the promotion gate, and a user without the QMSum folder still trains, with a reason
line saying QMSum val was not checked. The meetings are QMSum-shaped files written by the test
(one long dialogue each, span gold) under a temp FFR_QMSUM_DIR."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ffr_lib.data.dataset import Dataset
from ffr_lib.fem.evaluate import promotion_decision
from ffr_lib.fem.fragment_text import fragment_rows
from ffr_lib.fem.stage import (
    QMSUM_VAL,
    FemStageConfig,
    cut_segmenter,
    qmsum_sets,
    training_pairs,
)
from ffr_lib.fem.train import FemTrainConfig, default_segmenter
from ffr_lib.mldr import BuilderConfig, SplitConfig, build_splits
from ffr_lib.mldr.synthetic import synthetic_sources
from ffr_lib.segment.stage import FragmentStageConfig
from ffr_lib.segment.windows import WindowConfig

TOPICS = (
    ("battery", "the battery should be rechargeable and sit in a charging cradle"),
    ("budget", "the production cost must stay under twelve euros per unit"),
    ("case", "the case is curved, made of soft rubber, in a fruity yellow"),
    ("buttons", "the buttons are large and the menu on the screen is simple"),
)
TURNS_PER_TOPIC = 30
SPEAKERS = ("Project Manager", "Marketing", "Industrial Designer")
# Windows of 6 turns: a 120-turn meeting is 20 fragments, a gold span touches at most 5.
WINDOWS = FragmentStageConfig(segmenter="windows", windows=WindowConfig(size=6))


def _meeting(offset: int) -> dict:
    """A QMSum-shaped meeting: 120 turns on four topics, three specific queries with string
    spans (inclusive ends; one with two spans), one general query, the topic segmentation."""
    turns = []
    for t, (_name, sentence) in enumerate(TOPICS):
        for i in range(TURNS_PER_TOPIC):
            n = t * TURNS_PER_TOPIC + i
            artefact = " {vocalsound}" if n % 7 == 0 else ""
            turns.append(
                {
                    "speaker": SPEAKERS[n % len(SPEAKERS)],
                    "content": f"So {sentence}, point {n + offset}.{artefact}",
                }
            )
    return {
        "meeting_transcripts": turns,
        "specific_query_list": [
            {
                "query": "What did the group decide about the battery?",
                "answer": "A rechargeable battery with a cradle.",
                "relevant_text_span": [["2", "20"]],
            },
            {
                "query": "What was said about the production cost?",
                "answer": "Under twelve euros.",
                "relevant_text_span": [["32", "45"], ["50", "52"]],
            },
            {
                "query": "How should the case of the remote look?",
                "answer": "Curved, rubber, yellow.",
                "relevant_text_span": [["62", "88"]],
            },
        ],
        "general_query_list": [{"query": "Summarize the whole meeting.", "answer": "..."}],
        "topic_list": [
            {
                "topic": name,
                "relevant_text_span": [
                    [str(t * TURNS_PER_TOPIC), str((t + 1) * TURNS_PER_TOPIC - 1)]
                ],
            }
            for t, (name, _sentence) in enumerate(TOPICS)
        ],
    }


@pytest.fixture
def qmsum_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """FFR_QMSUM_DIR with train/ (two meetings) and val/ (one meeting)."""
    root = tmp_path / "qmsum"
    for split, names in (("train", ("Tr001", "Tr002")), ("val", ("Va001",))):
        (root / split).mkdir(parents=True)
        for k, name in enumerate(names):
            (root / split / f"{name}.json").write_text(json.dumps(_meeting(100 * k)))
    monkeypatch.setenv("FFR_QMSUM_DIR", str(root))
    return root


@pytest.fixture(scope="module")
def splits() -> dict[str, Dataset]:
    return build_splits(
        synthetic_sources(60, seed=5), SplitConfig(builder=BuilderConfig(n_dialogues=12))
    )


def _config(**overrides) -> FemStageConfig:
    return FemStageConfig(
        train=FemTrainConfig(max_pairs=None), out_of_source_cut=WINDOWS, **overrides
    )


def test_qmsum_pairs_train_beside_mldr_pairs_with_same_meeting_negatives(
    splits, qmsum_dir: Path
) -> None:
    config = _config(qmsum_pairs=None)
    sets = qmsum_sets(config)
    assert sets.skipped == {}
    assert [d.id for d in sets.train.dialogues] == ["qmsum:train:Tr001", "qmsum:train:Tr002"]
    assert [d.id for d in sets.val.dialogues] == ["qmsum:val:Va001"]
    assert sets.summary() == {
        "train": {"meetings": 2, "queries": 6},
        "val": {"meetings": 1, "queries": 3},
    }
    by_source = training_pairs(splits["train"], default_segmenter(6), sets.train, config)
    assert set(by_source) == {"mldr", "qmsum"}
    assert by_source["mldr"] and all(not p.query_id.startswith("qmsum") for p in by_source["mldr"])
    qmsum = by_source["qmsum"]
    assert sorted(p.query_id for p in qmsum) == sorted(q.id for q in sets.train.queries)

    # Positive: the fragment of the query's own meeting overlapping its gold most; negative: a
    # fragment of the SAME meeting with no gold in it. The meetings are cut as configured.
    cut = cut_segmenter(sets.train, WINDOWS)
    by_dialogue = sets.train.dialogue_by_id()
    queries = {q.id: q for q in sets.train.queries}
    for pair in qmsum:
        query = queries[pair.query_id]
        rows = fragment_rows(by_dialogue[query.dialogue_id], cut(by_dialogue[query.dialogue_id]))
        assert len(rows) == 20
        gold = set(query.gold_utterance_ids)
        overlap = {r.text: len(gold & set(r.utterance_ids)) for r in rows}
        assert overlap[pair.positive] == max(overlap.values()) > 0
        assert pair.negative in overlap and overlap[pair.negative] == 0
    # The gold of the two-span query is the union of its inclusive spans.
    assert queries["qmsum:train:Tr001:q1"].gold_utterance_ids == [*range(32, 46), 50, 51, 52]

    # qmsum_pairs caps the QMSum pairs only; qmsum_train_meetings takes the first meetings.
    capped = training_pairs(splits["train"], default_segmenter(6), sets.train, _config())
    assert len(capped["qmsum"]) == 6 and len(capped["mldr"]) == len(by_source["mldr"])
    assert (
        len(training_pairs(splits["train"], None, sets.train, _config(qmsum_pairs=2))["qmsum"]) == 2
    )
    first = qmsum_sets(_config(qmsum_train_meetings=1))
    assert [d.id for d in first.train.dialogues] == ["qmsum:train:Tr001"]
    off = qmsum_sets(_config(qmsum_train_meetings=0))
    assert off.train is None and off.val is not None
    assert off.skipped == {"train": "qmsum_train_meetings is 0"}
    assert set(training_pairs(splits["train"], None, off.train, _config())) == {"mldr"}


def test_qmsum_is_cut_as_a_new_batch_is_by_default() -> None:
    assert FemStageConfig().out_of_source_cut == FragmentStageConfig()
    assert FemStageConfig().qmsum_val_meetings is None  # all of QMSum val gates by default


def _m(x: float) -> dict[str, float]:
    return {"recall@1": x, "recall@5": x, "recall@10": x}


def _report(qmsum: tuple[float, float] | None) -> dict:
    report = {
        "val": {"base": _m(0.5), "tuned": _m(0.7)},
        "questions": {"base": _m(0.4), "tuned": _m(0.6)},
        "out_of_source": {"base": _m(0.3), "tuned": _m(0.35)},
    }
    if qmsum is not None:
        report[QMSUM_VAL] = {"base": _m(qmsum[0]), "tuned": _m(qmsum[1])}
    return report


def test_the_gate_blocks_a_model_that_loses_on_qmsum_val() -> None:
    lost = promotion_decision(_report((0.45, 0.44)))
    assert not lost.promote
    assert [r for r in lost.reasons if r.startswith(QMSUM_VAL)] == [
        f"{QMSUM_VAL}: tuned 0.4400 vs base 0.4500 (FAIL: > base)"
    ]
    assert all("ok" in r for r in lost.reasons if not r.startswith(QMSUM_VAL))
    tied = promotion_decision(_report((0.45, 0.45)))
    assert not tied.promote  # a tie is no win
    won = promotion_decision(_report((0.45, 0.5)))
    assert won.promote and any(
        r.startswith(f"{QMSUM_VAL}: tuned") and "ok" in r for r in won.reasons
    )
    assert not promotion_decision(_report((math.nan, math.nan))).promote  # no scorable query


def test_without_the_qmsum_folder_training_and_the_gate_go_on_and_say_so(
    splits, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "no-qmsum"
    monkeypatch.setenv("FFR_QMSUM_DIR", str(missing))
    sets = qmsum_sets(_config())
    assert sets.train is None and sets.val is None
    assert sets.skipped == {
        "train": f"no QMSum train folder at {missing / 'train'} (FFR_QMSUM_DIR)",
        "val": f"no QMSum val folder at {missing / 'val'} (FFR_QMSUM_DIR)",
    }
    assert sets.summary()["val"] == {"skipped": sets.skipped["val"]}
    assert set(training_pairs(splits["train"], None, sets.train, _config())) == {"mldr"}
    # Today's gate decides (MLDR val, question-style, out-of-source), and the reasons say that
    # QMSum val was not checked.
    decision = promotion_decision(_report(None), not_checked={QMSUM_VAL: sets.skipped["val"]})
    assert decision.promote
    assert decision.reasons[-1] == f"{QMSUM_VAL}: not checked ({sets.skipped['val']})"
    worse = _report(None)
    worse["val"]["tuned"] = _m(0.4)
    assert not promotion_decision(worse, not_checked={QMSUM_VAL: "absent"}).promote


@pytest.mark.db
@pytest.mark.slow
def test_the_stage_trains_on_both_gates_on_qmsum_val_and_runs_without_it(
    splits, qmsum_dir: Path, ffr_home: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run_fem end to end (real MiniLM, a few CPU steps, twice): both sources in the pairs,
    QMSum val in the report, the MLflow metrics and the reasons, and the decision follows every
    set; then, the folder gone, MLDR alone with a reason line for QMSum val."""
    from mlflow import MlflowClient

    from ffr_lib.data.canonical import write_canonical
    from ffr_lib.fem.stage import run_fem
    from ffr_lib.mldr.splits import split_dir
    from ffr_lib.segment.stage import fragments_path, write_fragments
    from ffr_lib.segment.windows import FixedWindowSegmenter

    cut = FixedWindowSegmenter(WindowConfig(size=6))
    for split in ("train", "val"):
        write_canonical(splits[split], split_dir(split))
        stored = [f for d in splits[split].dialogues for f in cut.segment(d)]
        write_fragments(stored, fragments_path(f"mldr-{split}"))
    train = FemTrainConfig(max_pairs=10, batch_size=8, max_seq_length=64)
    config = FemStageConfig(train=train, out_of_source_cut=WINDOWS, qmsum_pairs=6, val_queries=20)
    summary = run_fem(db_url, config)
    assert summary["pairs_by_source"] == {"mldr": 10, "qmsum": 6} and summary["pairs"] == 16
    assert summary["qmsum"] == {
        "train": {"meetings": 2, "queries": 6},
        "val": {"meetings": 1, "queries": 3},
    }
    assert set(summary["report"]) == {"val", "questions", QMSUM_VAL}  # no chitchat stored
    assert summary["report"][QMSUM_VAL]["base"]["n_queries"] == 3
    assert summary["report"][QMSUM_VAL]["base"]["n_fragments"] == 20
    reasons = [r for r in summary["reasons"] if r.startswith(f"{QMSUM_VAL}: tuned")]
    assert len(reasons) == 1
    won = {name: s["delta"] > 0 for name, s in summary["scores"].items()}
    assert summary["promoted"] == all(won.values())
    run = MlflowClient().get_run(summary["run_id"])
    assert f"{QMSUM_VAL}.tuned.recall_at_10" in run.data.metrics
    assert run.data.params["pairs.qmsum"] == "6" and run.data.params["qmsum_pairs"] == "6"
    assert QMSUM_VAL in run.data.tags["decision"]

    # Without the folder: MLDR pairs only, today's sets decide, and a reason says why QMSum val
    # was not checked.
    monkeypatch.setenv("FFR_QMSUM_DIR", str(qmsum_dir.parent / "absent"))
    bare = run_fem(db_url, config)
    assert bare["pairs_by_source"] == {"mldr": 10}
    assert set(bare["report"]) == {"val", "questions"}
    why = f"no QMSum val folder at {qmsum_dir.parent / 'absent' / 'val'} (FFR_QMSUM_DIR)"
    assert bare["qmsum"]["val"] == {"skipped": why}
    assert bare["reasons"][-1] == f"{QMSUM_VAL}: not checked ({why})"
    assert bare["promoted"] == all(s["delta"] > 0 for s in bare["scores"].values())
