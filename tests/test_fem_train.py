"""FEM fine-tuning on a tiny pair set (real MiniLM, a few CPU steps): pairs are built right, the
loss goes down, the model changes, and retrieval on the training queries gets better; the
promotion rule; MLflow logging and registration."""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np
import pytest

from ffr_lib.data.dataset import Dataset
from ffr_lib.fem.evaluate import (
    PromotionPolicy,
    evaluate_retrieval,
    log_fem_run,
    promotion_decision,
    question_style,
)
from ffr_lib.fem.train import FemTrainConfig, build_pairs, default_segmenter, train_fem
from ffr_lib.mldr import BuilderConfig, SplitConfig, build_splits
from ffr_lib.mldr.synthetic import synthetic_sources


@pytest.fixture(scope="module")
def splits() -> dict[str, Dataset]:
    return build_splits(
        synthetic_sources(80, seed=3), SplitConfig(builder=BuilderConfig(n_dialogues=20))
    )


def _small(dataset: Dataset, n_dialogues: int) -> Dataset:
    keep = {d.id for d in dataset.dialogues[:n_dialogues]}
    return Dataset(
        dialogues=[d for d in dataset.dialogues if d.id in keep],
        queries=[q for q in dataset.queries if q.dialogue_id in keep],
    )


def test_pairs_use_gold_fragment_and_same_dialogue_negative(splits) -> None:
    train = splits["train"]
    config = FemTrainConfig(window=6, max_pairs=None)
    segment = default_segmenter(6)
    rows_by_dialogue: dict = {}
    pairs = build_pairs(train, segment, config, rows_by_dialogue)
    answerable = [q for q in train.queries if q.gold_utterance_ids or q.gold_image_ids]
    assert len(pairs) == len(answerable) > 0
    by_query = {q.id: q for q in answerable}
    dialogues = train.dialogue_by_id()
    for pair in pairs:
        query = by_query[pair.query_id]
        rows = rows_by_dialogue[query.dialogue_id]
        positive = next(r for r in rows if r.text == pair.positive)
        owners = {
            dialogues[query.dialogue_id].images[j].utterance_index for j in query.gold_image_ids
        }
        gold = set(query.gold_utterance_ids) | owners
        assert gold & set(positive.utterance_ids)
        assert all(
            len(gold & set(r.utterance_ids)) <= len(gold & set(positive.utterance_ids))
            for r in rows
        )
        assert pair.negative and pair.negative != pair.positive
        same_dialogue = [r for r in rows if r.text == pair.negative]
        if same_dialogue:  # a hard negative: same dialogue, no gold in it
            assert not gold & set(same_dialogue[0].utterance_ids)
    assert len(build_pairs(train, segment, FemTrainConfig(window=6, max_pairs=5))) == 5


def test_training_lowers_loss_and_improves_recall_on_training_queries(
    splits, tmp_path: Path
) -> None:
    from ffr_lib.models.encoder import TextEncoder

    tiny = _small(splits["train"], 3)
    config = FemTrainConfig(
        window=6,
        epochs=2,
        batch_size=6,
        learning_rate=1e-4,
        max_seq_length=64,
        max_pairs=12,
        seed=0,
    )
    segment = default_segmenter(6)
    pairs = build_pairs(tiny, segment, config)
    base = TextEncoder.get("minilm")
    before = evaluate_retrieval(base, tiny, segment)
    result = train_fem(tiny, tmp_path / "fem", config, pairs=pairs)
    assert result.n_pairs == len(pairs) and result.steps == 2 * math.ceil(len(pairs) / 6)
    assert len(result.losses) == result.steps
    assert np.mean(result.losses[2:]) < np.mean(result.losses[:2])  # epoch 2 < epoch 1
    tuned = TextEncoder(str(tmp_path / "fem"))
    assert tuned.model_version != base.model_version  # new weights, new FEM version
    probe = [pairs[0].query, pairs[0].positive]
    assert not np.allclose(tuned.encode(probe), base.encode(probe), atol=1e-3)
    after = evaluate_retrieval(tuned, tiny, segment)
    assert after["n_queries"] == before["n_queries"] > 0
    assert after["mrr"] > before["mrr"], (before, after)


def _report(val: tuple[float, float], oos: tuple[float, float] | None) -> dict:
    def m(x: float) -> dict[str, float]:
        return {"recall@1": x, "recall@5": x, "recall@10": x}

    report = {"val": {"base": m(val[0]), "tuned": m(val[1])}}
    if oos is not None:
        report["out_of_source"] = {"base": m(oos[0]), "tuned": m(oos[1])}
    return report


def test_promotion_requires_winning_everywhere() -> None:
    assert promotion_decision(_report((0.5, 0.6), (0.4, 0.45))).promote
    lost_general = promotion_decision(_report((0.5, 0.9), (0.4, 0.39)))
    assert not lost_general.promote and any(
        "out_of_source" in r and "FAIL" in r for r in lost_general.reasons
    )
    assert not promotion_decision(_report((0.5, 0.5), (0.4, 0.5))).promote  # no in-domain win
    assert not promotion_decision(_report((0.5, 0.6), None)).promote  # unchecked: no promotion
    assert not promotion_decision(_report((0.5, 0.6), (math.nan, math.nan))).promote
    tolerant = PromotionPolicy(out_of_source_tolerance=0.02)
    assert promotion_decision(_report((0.5, 0.6), (0.4, 0.39)), tolerant).promote
    assert not promotion_decision(
        _report((0.5, 0.52), (0.4, 0.5)), PromotionPolicy(min_gain=0.05)
    ).promote


def test_question_style_keeps_questions(splits) -> None:
    subset = question_style(splits["val"])
    assert subset.queries and all(
        (q.family or "").startswith("question") or q.text.endswith("?") for q in subset.queries
    )
    assert len(subset.queries) < len(splits["val"].queries)


def test_log_and_register(tmp_path: Path, ffr_home: Path) -> None:
    from mlflow import MlflowClient

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    report = _report((0.5, 0.6), (0.4, 0.45))
    decision = promotion_decision(report)
    out = log_fem_run(model_dir, {"epochs": 1}, report, decision, losses=[1.0, 0.5])
    assert out["alias"] == "champion" and out["version"] == "1"
    client = MlflowClient()
    run = client.get_run(out["run_id"])
    assert run.data.metrics["val.tuned.recall_at_10"] == 0.6
    assert run.data.metrics["out_of_source.base.recall_at_1"] == 0.4
    assert run.data.params["epochs"] == "1"
    assert str(client.get_model_version_by_alias("ffr-fem", "champion").version) == "1"
    worse = _report((0.5, 0.4), (0.4, 0.45))
    out2 = log_fem_run(model_dir, {"epochs": 2}, worse, promotion_decision(worse))
    assert out2["alias"] == "challenger"
    assert str(client.get_model_version_by_alias("ffr-fem", "champion").version) == "1"  # unchanged


class _Random:
    """A base model that knows nothing: a random vector per text."""

    prompts: dict = {}

    def encode(self, texts, **_kw) -> np.ndarray:
        return np.stack(
            [np.random.default_rng(zlib.crc32(t.encode())).standard_normal(64) for t in texts]
        ).astype(np.float32)


def test_compare_on_out_of_source_chitchat_and_decide(splits) -> None:
    from ffr_lib.data.readers import read_dataset
    from ffr_lib.fem.evaluate import compare_models, out_of_source_set

    oos = out_of_source_set(read_dataset("-", "chitchat", limit=90).dialogues, n_dialogues=6)
    assert oos.queries and all(d.id.startswith("oos-") for d in oos.dialogues)
    sets = {"val": splits["val"], "out_of_source": oos, "questions": question_style(oos)}
    segment = default_segmenter(6)
    from ffr_lib.models.encoder import TextEncoder

    minilm = TextEncoder.get("minilm")
    report = compare_models(_Random(), minilm, sets, segment)
    assert set(report) == set(sets)
    for pair in report.values():
        assert pair["base"]["n_queries"] == pair["tuned"]["n_queries"] > 0
        assert pair["tuned"]["recall@10"] >= pair["tuned"]["recall@1"]
        assert pair["tuned"]["mrr"] > pair["base"]["mrr"]
    assert promotion_decision(report).promote
    backwards = {name: {"base": p["tuned"], "tuned": p["base"]} for name, p in report.items()}
    assert not promotion_decision(backwards).promote


def test_the_stage_trains_and_judges_on_the_fragments_the_index_serves(
    splits, ffr_home: Path
) -> None:
    """`served_segmenter` returns the fragments the `fragments` stage wrote for the split's batch
    (here windows of 5, not the trainer's fallback of 8), and refuses a missing or stale batch."""
    from ffr_lib.fem.stage import served_segmenter
    from ffr_lib.segment.stage import fragments_path, write_fragments
    from ffr_lib.segment.windows import FixedWindowSegmenter, WindowConfig

    train = _small(splits["train"], 4)
    with pytest.raises(FileNotFoundError, match="mldr-train"):
        served_segmenter("train", train)
    cut = FixedWindowSegmenter(WindowConfig(size=5))
    stored = [f for d in train.dialogues for f in cut.segment(d)]
    write_fragments(stored, fragments_path("mldr-train"))
    segment = served_segmenter("train", train)
    for dialogue in train.dialogues:
        assert [f.id for f in segment(dialogue)] == [f.id for f in cut.segment(dialogue)]
    pairs = build_pairs(train, segment, FemTrainConfig(max_pairs=None))
    texts = {f.text for f in stored}
    assert pairs and all(p.positive in texts for p in pairs)

    write_fragments(stored[1:], fragments_path("mldr-train"))  # one fragment lost: stale
    with pytest.raises(ValueError, match="do not match 1 of the 4 dialogues"):
        served_segmenter("train", train)
