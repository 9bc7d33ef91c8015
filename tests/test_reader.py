"""The fine-stage reader: decoding into runs and abstention, the logistic fit, features with
their neighbours, a checkpoint round trip, and training + reading end to end with the real
offline MiniLM on a small synthetic dataset whose answers sit in known runs."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from ffr_lib.data.dataset import Dataset
from ffr_lib.data.model import Dialogue, Image, Query, QueryType, Utterance
from ffr_lib.evaluation.metrics import SetSample, set_metrics
from ffr_lib.models.encoder import TextEncoder
from ffr_lib.reader.decode import (
    DecodeConfig,
    best_run,
    compose_answer,
    decode,
    joint_f1,
    micro_f1,
    tune_decoding,
)
from ffr_lib.reader.features import FEATURES, dialogue_features, utterance_texts
from ffr_lib.reader.model import ReaderWeights, fit_logistic, fit_perceptron
from ffr_lib.reader.reader import Reader, runs_of
from ffr_lib.reader.train import ReaderTrainConfig, train_reader


def test_best_run_bridges_a_short_dip_and_never_takes_losses() -> None:
    assert best_run(np.array([-1.0, 2.0, -0.5, 2.0, -3.0])) == (1, 4, 3.5)
    assert best_run(np.array([-1.0, -2.0])) == (0, 0, 0.0)


def test_decode_takes_several_runs_and_abstains() -> None:
    p = np.array([0.1, 0.9, 0.8, 0.1, 0.1, 0.1, 0.7, 0.9, 0.1])
    assert decode(p, DecodeConfig(tau=0.5, max_runs=1)) == [1, 2]
    assert decode(p, DecodeConfig(tau=0.5, max_runs=3)) == [1, 2, 6, 7]
    # The second run must be worth a share of the first.
    assert decode(p, DecodeConfig(tau=0.5, max_runs=3, extra_run_gain=0.9)) == [1, 2]
    assert decode(p, DecodeConfig(tau=0.5, abstain=0.95)) == []
    # Nothing beats tau but no abstention: the single most likely utterance.
    assert decode(np.array([0.2, 0.3, 0.1]), DecodeConfig(tau=0.5)) == [1]


def test_micro_f1_counts_answers_to_negatives_as_false_positives() -> None:
    assert micro_f1([([1, 2], [1, 2])]) == 1.0
    assert micro_f1([([1, 2], [1, 2]), ([5], [])]) == pytest.approx(0.8)
    assert micro_f1([([], [])]) == 0.0


def test_tuning_finds_the_threshold_and_abstention_that_fit() -> None:
    rng = np.random.default_rng(0)
    probs, golds = [], []
    for i in range(30):
        p = rng.uniform(0.0, 0.3, 40)
        if i % 3:  # positive: a run of 6 at 0.6-0.9
            p[10:16] = rng.uniform(0.6, 0.9, 6)
            golds.append(list(range(10, 16)))
        else:
            golds.append([])
        probs.append(p)
    config, f1 = tune_decoding([(probs, golds)])
    assert f1 == pytest.approx(1.0)
    assert 0.3 <= config.tau <= 0.6 and 0.3 <= config.abstain <= 0.6


def test_logistic_fit_separates_a_learnable_signal() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2000, 3))
    y = (x[:, 0] - 0.5 * x[:, 1] + rng.normal(scale=0.3, size=2000) > 0).astype(float)
    mean, scale, coef, intercept = fit_logistic(x, y, l2=0.1)
    assert coef[0] > 1.0 and coef[1] < -0.5 and abs(coef[2]) < 0.3
    z = (x - mean) / scale
    accuracy = (((z @ coef + intercept) > 0) == (y > 0.5)).mean()
    assert accuracy > 0.9


def test_the_perceptron_learns_an_interaction_a_linear_score_cannot(tmp_path: Path) -> None:
    # Relevant when one signal is high and the other low, or the reverse (an XOR, like "a BM25
    # burst means a run in a chat but not in a meeting"): no linear score separates it.
    rng = np.random.default_rng(2)
    x = np.zeros((4000, len(FEATURES)))
    x[:, :2] = rng.normal(size=(4000, 2))
    y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(float)
    mean, scale, coef, intercept = fit_logistic(x, y)
    linear = ((((x - mean) / scale) @ coef + intercept > 0) == (y > 0.5)).mean()
    fitted = fit_perceptron(x, y, units=16, epochs=40, batch_size=256, seed=0)
    weights = fitted.weights()
    loaded = ReaderWeights.load(weights.save(tmp_path / "reader.json"))
    assert loaded == weights  # the hidden layer round-trips through the JSON checkpoint
    accuracy = ((loaded.probabilities(x) > 0.5) == (y > 0.5)).mean()
    assert linear < 0.6 and accuracy > 0.9, (linear, accuracy)
    again = fit_perceptron(x, y, units=16, epochs=40, batch_size=256, seed=0)
    assert np.allclose(again.hidden, fitted.hidden)  # reproducible for a seed


def test_window_features_see_the_neighbours() -> None:
    utterances = [Utterance(index=i, speaker="a", text=f"filler {i}") for i in range(9)]
    dialogue = Dialogue(id="d", source="t", speakers=["a"], utterances=utterances)
    vectors = np.zeros((9, 2))
    vectors[4] = [1.0, 0.0]
    features = dialogue_features("lake", dialogue, vectors, np.array([1.0, 0.0]))
    assert features.shape == (9, len(FEATURES))
    dense_max2 = features[:, FEATURES.index("dense_max2")]
    dense_z = features[:, FEATURES.index("dense_z")]
    # Only utterance 4 is similar; within 2 turns of it, the window maximum sees it.
    assert dense_z.argmax() == 4
    assert np.allclose(dense_max2[2:7], dense_z[4]) and dense_max2[0] < dense_z[4]


def test_images_count_through_their_caption() -> None:
    utterances = [Utterance(index=i, speaker="a", text="look") for i in range(3)]
    images = [Image(index=0, utterance_index=1, caption="a red kayak on the lake")]
    dialogue = Dialogue(id="d", source="t", speakers=["a"], utterances=utterances, images=images)
    assert "kayak" in utterance_texts(dialogue)[1]
    features = dialogue_features("the kayak photo", dialogue, np.zeros((3, 2)), np.zeros(2))
    overlap = features[:, FEATURES.index("image_overlap")]
    assert overlap[1] > 0 and overlap[0] == overlap[2] == 0


TOPICS = {
    "lake": ["we paddled the kayak across the lake", "the water of the lake was cold"],
    "concert": ["the band played our favourite song", "the concert tickets were expensive"],
    "dinner": ["we cooked pasta for dinner", "the sauce needed more garlic"],
    "train": ["the train to the coast was late", "we missed our connection at the station"],
}
FILLER = ["ok", "sure", "haha yes", "what do you mean", "right", "cool", "I see", "fine by me"]


def _dataset(n: int, seed: int, images: bool = False) -> Dataset:
    """Dialogues of filler with one topic run each (3-5 turns); one query per dialogue about it,
    and a negative query about a topic the dialogue does not have. With ``images``, the run's
    second turn sends a photo of the topic and a third query asks for that photo only."""
    rng = random.Random(seed)
    dialogues, queries = [], []
    for d in range(n):
        topic = rng.choice(sorted(TOPICS))
        start, length = rng.randint(3, 20), rng.randint(3, 5)
        texts = [rng.choice(FILLER) for _ in range(30)]
        for i in range(start, start + length):
            texts[i] = rng.choice(TOPICS[topic]) + f" ({i})"
        dialogue_id = f"r{seed}-{d}"
        dialogues.append(
            Dialogue(
                id=dialogue_id,
                source="t",
                speakers=["a", "b"],
                utterances=[
                    Utterance(index=i, speaker="ab"[i % 2], text=t) for i, t in enumerate(texts)
                ],
            )
        )
        queries.append(
            Query(
                id=f"{dialogue_id}-q",
                dialogue_id=dialogue_id,
                text=f"when did we talk about the {topic}?",
                type=QueryType.UTTERANCE_ONLY,
                gold_utterance_ids=list(range(start, start + length)),
            )
        )
        if images:
            dialogues[-1].images.append(
                Image(index=0, utterance_index=start + 1, caption=f"a photo of the {topic}")
            )
            queries.append(
                Query(
                    id=f"{dialogue_id}-i",
                    dialogue_id=dialogue_id,
                    text=f"show me the picture of the {topic}",
                    type=QueryType.IMAGE_ONLY,
                    gold_image_ids=[0],
                )
            )
        other = next(t for t in sorted(TOPICS) if t != topic)
        queries.append(
            Query(
                id=f"{dialogue_id}-n",
                dialogue_id=dialogue_id,
                text=f"when did we talk about the {other}?",
                type=QueryType.NEGATIVE,
            )
        )
    return Dataset(dialogues=dialogues, queries=queries)


@pytest.mark.slow
def test_trained_reader_finds_the_runs_and_abstains(tmp_path: Path) -> None:
    encoder = TextEncoder.get("minilm")
    weights = train_reader(
        {"toy": _dataset(60, seed=1)}, ReaderTrainConfig(holdout_share=0.3), encoder=encoder
    )
    assert weights.metrics["toy/held_micro_f1"] > 0.6
    path = weights.save(tmp_path / "reader.json")
    reader = Reader.load(tmp_path, encoder=encoder)
    assert ReaderWeights.load(path) == weights
    unseen = _dataset(20, seed=2)
    by_id = unseen.dialogue_by_id()
    pairs = [
        (reader.read(q.text, by_id[q.dialogue_id]).utterance_ids, q.gold_utterance_ids)
        for q in unseen.queries
    ]
    assert micro_f1(pairs) > 0.6
    abstained_negative = sum(not p for p, g in pairs if not g)
    answered_positive = sum(bool(p) for p, g in pairs if g)
    # It abstains where the chat has no answer far more often than where it has one.
    assert answered_positive >= 18 and abstained_negative >= 6, (
        answered_positive,
        abstained_negative,
    )
    answer = reader.read(unseen.queries[0].text, by_id[unseen.queries[0].dialogue_id])
    assert answer.runs and answer.runs[0].score == max(r.score for r in answer.runs)
    # The untrained reference scorer comes with a decoding tuned for it on the same queries.
    reference = ReaderWeights.load(path).reference()
    assert reference is not None and reference.decode == weights.reference_decode
    reference_pairs = [
        (Reader(reference, encoder).read(q.text, by_id[q.dialogue_id]).utterance_ids, g)
        for q, (_p, g) in zip(unseen.queries, pairs, strict=True)
    ]
    assert 0 < micro_f1(reference_pairs) < micro_f1(pairs)


def test_the_reference_scorer_sums_the_two_z_scores_and_old_checkpoints_have_none() -> None:
    weights = ReaderWeights.untrained()
    features = np.zeros((3, len(FEATURES)), np.float32)
    features[:, FEATURES.index("bm25_z")] = [1.0, -1.0, 0.5]
    features[:, FEATURES.index("dense_z")] = [1.0, 0.0, 0.5]
    features[:, FEATURES.index("bm25_max12")] = 9.0  # anything else is ignored
    expected = 1.0 / (1.0 + np.exp(-np.array([2.0, -1.0, 1.0])))
    assert np.allclose(weights.probabilities(features), expected)
    assert weights.reference() is None  # no decoding tuned for it: no reference to report
    retired = weights.model_copy(update={"features": [*FEATURES[:-1], "bm25_max100"]})
    with pytest.raises(ValueError, match=r"\['bm25_max100'\].*materialize reader_checkpoint"):
        retired.probabilities(features)


def test_runs_are_maximal_and_best_first() -> None:
    runs = runs_of([2, 3, 4, 9, 10], np.array([0, 0, 0.5, 0.5, 0.5, 0, 0, 0, 0, 0.9, 0.9]))
    assert [(r.start, r.end) for r in runs] == [(9, 10), (2, 4)]


def test_a_checkpoint_from_other_features_is_refused(tmp_path: Path) -> None:
    weights = ReaderWeights(features=["x"], mean=[0.0], scale=[1.0], coef=[1.0], intercept=0.0)
    with pytest.raises(ValueError, match="features"):
        weights.probabilities(np.zeros((1, len(FEATURES))))
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not a reader checkpoint"):
        ReaderWeights.load(tmp_path / "bad.json")


def test_no_abstention_is_learned_without_negative_queries() -> None:
    rng = np.random.default_rng(3)
    probs, golds = [], []
    for i in range(20):
        p = rng.uniform(0.0, 0.3, 40)
        if i % 2:
            p[5:9] = 0.9
        else:  # a weak, wrong answer: abstaining here would pay on these very queries
            p[20:24] = 0.35
        probs.append(p)
        golds.append(list(range(5, 9)))
    config, _ = tune_decoding([(probs, golds)])
    assert config.abstain == 0.0


def test_compose_answer_follows_what_the_query_wants() -> None:
    p = np.array([0.1, 0.9, 0.8, 0.1, 0.6])
    owners = {0: 2, 1: 4}  # image 0 sent by utterance 2, image 1 by utterance 4
    # No heads: the runs and the images they sent.
    assert compose_answer([1, 2], p, owners) == ([1, 2], [0])
    # The query wants the image, not the lines around it.
    assert compose_answer([1, 2], p, owners, wants_utterances=0.1, wants_images=0.9) == ([], [0])
    # It wants lines only: the run's image is left out.
    assert compose_answer([1, 2], p, owners, wants_utterances=0.9, wants_images=0.1) == ([1, 2], [])
    # It wants an image the run did not send: the one whose sender is most likely relevant.
    elsewhere = {0: 3, 1: 4}  # senders 3 (p 0.1) and 4 (p 0.6), both outside the run
    assert compose_answer([1, 2], p, elsewhere, wants_utterances=0.9, wants_images=0.9) == (
        [1, 2],
        [1],
    )
    # Lines are never dropped when there is no image to answer with.
    assert compose_answer([1], p, {}, wants_utterances=0.1, wants_images=0.9) == ([1], [])
    # The answer head abstains below its threshold.
    assert compose_answer([1, 2], p, owners, answerable=0.3, answer_min=0.4) == ([], [])
    assert compose_answer([1, 2], p, owners, answerable=0.5, answer_min=0.4) == ([1, 2], [0])


def test_joint_f1_is_the_evaluations_headline_f1() -> None:
    rng = random.Random(3)
    samples = []
    for _ in range(40):
        gu = sorted(rng.sample(range(10), rng.randint(0, 3)))
        gi = sorted(rng.sample(range(3), rng.randint(0, 1)))
        pu = sorted(rng.sample(range(10), rng.randint(0, 4)))
        pi = sorted(rng.sample(range(3), rng.randint(0, 2)))
        samples.append((pu, pi, gu, gi))
    expected = set_metrics(
        [SetSample(pu, pi, gu, gi, n_utterances=10, n_images=3) for pu, pi, gu, gi in samples]
    ).f1
    assert joint_f1(samples) == pytest.approx(expected)
    # Without images anywhere the utterances decide alone.
    text_only = [(pu, [], gu, []) for pu, _pi, gu, _gi in samples]
    assert joint_f1(text_only) == pytest.approx(micro_f1((pu, gu) for pu, _i, gu, _g in text_only))


def test_a_checkpoint_without_heads_reads_as_before(tmp_path: Path) -> None:
    weights = ReaderWeights(
        mean=[0.0] * len(FEATURES),
        scale=[1.0] * len(FEATURES),
        coef=[0.0] * len(FEATURES),
        intercept=0.0,
    )
    path = weights.save(tmp_path / "reader.json")
    payload = json.loads(path.read_text())
    del payload["heads"]  # as written before the query-level heads existed
    path.write_text(json.dumps(payload))
    loaded = ReaderWeights.load(path)
    assert loaded.heads.utterances is None and loaded.heads.answer is None


@pytest.mark.slow
def test_trained_heads_answer_a_photo_request_with_the_photo() -> None:
    encoder = TextEncoder.get("minilm")
    weights = train_reader(
        {"toy": _dataset(60, seed=1, images=True)},
        ReaderTrainConfig(holdout_share=0.3),
        encoder=encoder,
    )
    heads = weights.heads
    assert heads.utterances is not None and heads.images is not None
    assert heads.answer is not None  # the negatives taught it
    assert weights.metrics["toy/held_joint_f1"] > 0.6
    reader = Reader(weights, encoder)
    unseen = _dataset(20, seed=2, images=True)
    by_id = unseen.dialogue_by_id()
    photo = [q for q in unseen.queries if q.type == QueryType.IMAGE_ONLY]
    talk = [q for q in unseen.queries if q.type == QueryType.UTTERANCE_ONLY]
    photo_answers = [reader.read(q.text, by_id[q.dialogue_id]) for q in photo]
    talk_answers = [reader.read(q.text, by_id[q.dialogue_id]) for q in talk]
    # A photo request names the photo and (mostly) leaves the lines out; a question about the
    # talk answers with lines and (mostly) no photo.
    assert sum(a.image_ids == [0] for a in photo_answers) >= 16
    assert sum(not a.utterance_ids for a in photo_answers) >= 14
    assert sum(bool(a.utterance_ids) for a in talk_answers) >= 18
    assert sum(not a.image_ids for a in talk_answers) >= 14
    # The run that located the photo is still there as its context.
    assert all(a.runs for a in photo_answers if a.image_ids)
