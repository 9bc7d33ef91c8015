"""Every system on a small hand-written corpus, with the real embedded Postgres, the real MiniLM
(segmentation, FEM index, dense baseline) and the tiny untrained F2RVLM for the FFRS path."""

from __future__ import annotations

import pytest

from ffr_lib.data.dataset import Dataset
from ffr_lib.data.model import Dialogue, Image, Query, QueryType, Utterance
from ffr_lib.evaluation.baselines import SYSTEM_NAMES, build_systems
from ffr_lib.evaluation.harness import Corpus, HarnessConfig, evaluate
from ffr_lib.ffrs import FFRSConfig, open_ffrs

pytestmark = pytest.mark.db

TOPICS = {
    "zoo": [
        "we went to the zoo on saturday",
        "the kids loved the penguins",
        "then it started to rain a little",
        "there was a purple giraffe statue at the gate",
        "the giraffe statue was taller than the fence",
        "we had ice cream after that",
        "the train home was packed",
        "i slept the whole evening",
    ],
    "cooking": [
        "i tried a new lasagna recipe",
        "the oven broke halfway through",
        "so i finished it in a frying pan",
        "it tasted surprisingly good",
        "next time i will add more basil",
        "do you have a spare baking dish",
        "mine cracked in the heat",
        "thanks i will return it soon",
    ],
    "football": [
        "did you watch the match last night",
        "the goalkeeper saved two penalties",
        "the striker missed an open goal",
        "the referee gave a red card",
        "fans were singing until midnight",
        "tickets for the final are expensive",
        "maybe we watch it at the pub",
        "sounds like a plan",
    ],
    "moving": [
        "we are moving to a new flat",
        "the boxes are everywhere",
        "the sofa did not fit through the door",
        "we had to take the legs off",
        "the neighbours seem friendly",
        "there is a bakery downstairs",
        "the rent is a bit higher",
        "but the balcony is worth it",
    ],
}


def _corpus_dataset() -> Dataset:
    dialogues, queries = [], []
    for n, (topic, lines) in enumerate(TOPICS.items()):
        did = f"t-{topic}"
        dialogues.append(
            Dialogue(
                id=did,
                source="test",
                speakers=["ann", "bob"],
                utterances=[
                    Utterance(index=i, speaker="ann" if i % 2 == 0 else "bob", text=t)
                    for i, t in enumerate(lines)
                ],
                images=[Image(index=0, utterance_index=3, caption=f"a photo about {topic}")],
            )
        )
        if topic == "zoo":
            queries.append(
                Query(
                    id="q-giraffe",
                    dialogue_id=did,
                    text="the purple giraffe statue",
                    type=QueryType.MULTIMODAL,
                    gold_utterance_ids=[3, 4],
                    gold_image_ids=[0],
                    family="question",
                )
            )
        if topic == "moving":
            queries.append(
                Query(
                    id="q-sofa",
                    dialogue_id=did,
                    text="the sofa that did not fit the door",
                    type=QueryType.UTTERANCE_ONLY,
                    gold_utterance_ids=[2, 3],
                    family="topic",
                )
            )
        if n == 1:
            queries.append(
                Query(
                    id="q-neg",
                    dialogue_id=did,
                    text="xylophone quartet rehearsal",
                    type=QueryType.NEGATIVE,
                    family="negative_question",
                )
            )
    return Dataset(dialogues=dialogues, queries=queries)


@pytest.fixture(scope="module")
def evaluated(pg_server, tmp_path_factory):
    """One database and one evaluation for the whole module (indexing + models take seconds)."""
    import uuid

    from ffr_lib.db import connect

    name = f"test_{uuid.uuid4().hex[:12]}"
    with connect(pg_server.url("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "ffr_template"')
    url = pg_server.url(name)
    dataset = _corpus_dataset()
    corpus = Corpus.prepare(dataset, url)
    systems = build_systems(model="tiny", k=5, prior_data=dataset)
    out = evaluate(dataset, systems, corpus, name="toy", config=HarnessConfig())
    yield url, dataset, corpus, out
    from ffr_lib.db import dispose_engines

    dispose_engines()
    with connect(pg_server.url("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _pick(out, mode: str, system: str, query_id: str):
    run = next(r for r in out.runs[f"toy/{mode}"] if r.system == system)
    return next(r.prediction for r in run.records if r.query.id == query_id)


def test_corpus_is_indexed_once_and_read_back(evaluated) -> None:
    url, dataset, corpus, _ = evaluated
    assert corpus.embedding_model and corpus.embedding_model.startswith("minilm@")
    covered = {(f.dialogue_id, u) for f in corpus.fragments for u in f.utterance_ids}
    assert covered == {(d.id, u.index) for d in dataset.dialogues for u in d.utterances}
    again = Corpus.prepare(dataset, url)  # nothing new to index: same fragments
    assert [f.fragment_id for f in again.fragments] == [f.fragment_id for f in corpus.fragments]
    assert again.restrict is None


def test_every_system_runs_or_says_why_not(evaluated) -> None:
    _, _, _, out = evaluated
    for mode in ("single", "corpus"):
        assert set(out.metrics[f"toy/{mode}"]) == set(SYSTEM_NAMES)
    single, corpus = out.metrics["toy/single"], out.metrics["toy/corpus"]
    for name in ("bm25-utt", "bm25-frag", "dense-minilm", "fem", "position-prior",
                 "overlap-window", "minilm-window", "f2rvlm"):  # fmt: skip
        assert single[name]["n"] == 3, name
    for name in ("bm25-utt", "bm25-frag", "dense-minilm", "fem", "ffrs-fragment", "ffrs"):
        assert corpus[name]["n"] == 3, name
    assert "single only" in corpus["overlap-window"]["skipped"]
    # Answering with everything finds every gold utterance and image, and never abstains.
    whole = single["whole-dialogue"]
    assert whole["utt_recall"] == 1.0 and whole["abstain_rate"] == 0.0
    assert whole["utt_precision"] < 1.0 and "single only" in corpus["whole-dialogue"]["skipped"]
    assert "corpus only" in single["ffrs"]["skipped"]
    assert corpus["ffrs"]["tokens_read_mean"] > 0 and "latency_p50_ms/f2rvlm" in corpus["ffrs"]
    # F2RVLM generates (constrained: every answer well-formed); a baseline has no such figure.
    assert single["f2rvlm"]["malformed_rate"] == 0.0 and single["f2rvlm"]["answers_n"] >= 3
    assert "malformed_rate" not in single["bm25-utt"]
    assert "latency_p50_ms/sql" in corpus["fem"] and "latency_p50_ms/embed" in corpus["fem"]


def test_lexical_and_dense_baselines_find_the_giraffe(evaluated) -> None:
    _, _, _, out = evaluated
    for system in ("bm25-utt", "dense-minilm"):
        p = _pick(out, "corpus", system, "q-giraffe")
        assert p.dialogue_id == "t-zoo" and 3 in p.utterance_ids, system
        assert p.units[0].dialogue_id == "t-zoo" and p.units[0].utterance_ids[0] in (3, 4)
    for system in ("bm25-frag", "fem"):
        p = _pick(out, "corpus", system, "q-giraffe")
        assert p.dialogue_id == "t-zoo" and {3, 4} & set(p.utterance_ids), system
    window = _pick(out, "single", "overlap-window", "q-giraffe")
    assert set(window.utterance_ids) <= {3, 4} and window.utterance_ids
    # BM25 finds no query word in the negative query: it correctly answers nothing.
    assert _pick(out, "corpus", "bm25-utt", "q-neg").is_empty
    assert out.metrics["toy/corpus"]["bm25-utt"]["abstain_rate"] == 1.0
    assert out.metrics["toy/corpus"]["bm25-utt"]["dialogue_acc@1"] == 1.0


def test_ffrs_with_f2rvlm_maps_picks_into_recalled_fragments(evaluated) -> None:
    _, _, _, out = evaluated
    p = _pick(out, "corpus", "ffrs", "q-giraffe")
    assert len(p.units) == 5 and all(u.read for u in p.units)
    for unit in p.units:  # whatever the untrained model says, picks stay inside their fragment
        assert set(unit.picked_utterance_ids or []) <= set(unit.utterance_ids)
        assert set(unit.picked_image_ids or []) <= set(unit.image_ids)
    whole = _pick(out, "corpus", "ffrs-fragment", "q-giraffe")
    top = whole.dialogues[0]
    assert set(top.utterance_ids) == {u for f in top.fragments for u in f.utterance_ids}


def test_api_query_over_the_serving_index(evaluated) -> None:
    url, dataset, _, _ = evaluated
    ffrs = open_ffrs(None, config=FFRSConfig(k=3), url=url)  # no adapter: whole fragments
    assert ffrs.config.stage2 == "fragment"
    prediction = ffrs.query("the goalkeeper saved penalties")
    assert prediction.dialogue_id == "t-football"
    assert 1 in prediction.utterance_ids and len(prediction.units) == 3
    restricted = ffrs.query("the goalkeeper saved penalties", dialogue_ids=["t-cooking"])
    assert {u.dialogue_id for u in restricted.units} == {"t-cooking"}
