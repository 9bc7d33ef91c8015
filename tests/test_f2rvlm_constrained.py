"""Constrained decoding: the answer grammar of a prompt, its token-level form with the real
SmolLM2 tokenizer, and the untrained tiny model writing only well-formed answers with its
prompt's ids (and not without the constraint)."""

from __future__ import annotations

import random

import pytest
import torch

from ffr_lib.data.format.answer import AnswerForm, format_answer, format_in, parse
from ffr_lib.data.model import Dialogue, Image, Utterance
from ffr_lib.f2rvlm.constrained import (
    AnswerGrammar,
    State,
    allowed_next,
    allowed_tokens_fn,
    token_table,
)
from ffr_lib.f2rvlm.profiles import get_profile
from ffr_lib.f2rvlm.retriever import F2RVLMRetriever, chat_messages


def _accepts(grammar: AnswerGrammar, text: str) -> bool:
    state = grammar.run(text)
    return state is not None and grammar.complete(state)


def test_grammar_accepts_canonical_answers_with_prompt_ids_only() -> None:
    g = AnswerGrammar("compact", 12, 2)
    for text in ("U 3-5, 9; I 1", "U none; I none", "U 0, 2-3, 7-9, 11; I 0-1", "U 11; I none"):
        assert _accepts(g, text), text
    for text in (
        "U 12; I none",  # utterance 12 is not in a 12-line prompt
        "U 1; I 2",  # nor image 2
        "U 5-3; I none",
        "U 3, 3; I none",
        "U 3-5, 4; I none",  # overlap = duplicate
        "U 03; I none",
        "U 3,4; I none",
        "U none, 1; I none",
        "U 1; I none trailing",
        "U 1",  # incomplete
    ):
        assert not _accepts(g, text), text
    assert g.finish(State(0)) == "U none; I none"
    assert g.finish(g.run("U 1-")) == "2; I none"  # type: ignore[arg-type]
    r = AnswerGrammar("reference", 3, 0)
    assert _accepts(r, format_answer([0, 2], []))
    assert not _accepts(r, format_answer([0, 3], [])) and not _accepts(r, format_answer([], [0]))
    assert r.finish(State(0)) == format_answer([], [])


@pytest.mark.parametrize("form", ["compact", "reference"])
def test_every_walk_through_the_grammar_finishes_well_formed(form: AnswerForm) -> None:
    rng = random.Random(0)
    for _ in range(500):
        n_utt, n_img = rng.randint(0, 30), rng.randint(0, 3)
        g = AnswerGrammar(form, n_utt, n_img)
        state, text = State(0), ""
        for _ in range(rng.randint(0, 60)):
            options = [c for c in sorted(g.alphabet) if g.step(state, c) is not None]
            if not options:
                break
            ch = rng.choice(options)
            state, text = g.step(state, ch), text + ch  # type: ignore[assignment]
        answer = parse(text + g.finish(state), form)
        assert answer.well_formed and answer.status == "exact", text
        assert all(0 <= i < n_utt for i in answer.utt_ids)
        assert all(0 <= i < n_img for i in answer.img_ids)
        # the canonical spelling: what SFT targets look like
        assert text + g.finish(state) == format_in(answer.utt_ids, answer.img_ids, form)


@pytest.fixture(scope="module")
def untrained() -> F2RVLMRetriever:
    return F2RVLMRetriever.from_base(get_profile("tiny"))


@pytest.mark.parametrize("budget", [6, 9, 24])
def test_random_token_choices_under_the_constraint_end_as_answers(
    untrained: F2RVLMRetriever, budget: int
) -> None:
    tokenizer = untrained.backbone.tokenizer
    stop = tokenizer.eos_token_id
    rng = random.Random(budget)
    picked_ids = 0
    for _ in range(60):
        g = AnswerGrammar("compact", rng.randint(1, 14), rng.randint(0, 3))
        table = token_table(tokenizer, g.alphabet)
        generated: list[int] = []
        while len(generated) < budget:
            token = rng.choice(
                allowed_next(g, table, tokenizer, generated, budget - len(generated), stop)
            )
            generated.append(token)
            if token == stop:
                break
        text = tokenizer.decode(generated, skip_special_tokens=True)
        answer = parse(text, "compact")
        assert answer.well_formed and answer.status == "exact", (budget, text)
        assert all(i < g.n_utterances for i in answer.utt_ids)
        assert all(i < g.n_images for i in answer.img_ids)
        picked_ids += not answer.is_empty
    if budget == 6:  # "U none; I none" + end of turn: the budget forces the shortest answer
        assert picked_ids == 0
    else:  # the walks do name ids, not only "none"
        assert picked_ids > 5


def _dialogue() -> Dialogue:
    texts = [f"line {i} about topic {i % 5} and more words" for i in range(20)]
    return Dialogue(
        id="d",
        source="test",
        utterances=[Utterance(index=i, speaker="AB"[i % 2], text=t) for i, t in enumerate(texts)],
        images=[
            Image(index=0, utterance_index=3, caption="a lake"),
            Image(index=1, utterance_index=9, caption="a dog"),
        ],  # fmt: skip
    )


@pytest.mark.slow
def test_untrained_tiny_model_writes_answers_only_when_constrained(
    untrained: F2RVLMRetriever,
) -> None:
    free = F2RVLMRetriever(untrained.backbone, get_profile("tiny", constrained_decoding=False))
    statuses_free = []
    for query in ("topic 3", "the lake photo"):
        prompts, answers, texts = untrained.answer_windows(_dialogue(), query)
        for wp, answer, text in zip(prompts, answers, texts, strict=True):
            assert answer.well_formed and answer.status == "exact", text
            assert all(i < len(wp.prompt.utterance_ids) for i in answer.utt_ids)
            assert all(i < len(wp.prompt.image_ids) for i in answer.img_ids)
        statuses_free += [a.status for a in free.answer_windows(_dialogue(), query)[1]]
    assert "malformed" in statuses_free  # the untrained model does not answer by itself

    # Sampling through transformers' own loop with the same constraint: varied, still answers.
    backbone = untrained.backbone
    tokenizer = backbone.tokenizer
    (wp, *_) = [p for p in untrained.answer_windows(_dialogue(), "x")[0] if p.prompt.image_ids]
    text = backbone.processor.apply_chat_template(
        chat_messages(wp.prompt, False), tokenize=False, add_generation_prompt=True
    )
    inputs = tokenizer([text] * 8, return_tensors="pt", add_special_tokens=False)
    grammar = AnswerGrammar("compact", len(wp.prompt.utterance_ids), len(wp.prompt.image_ids))
    torch.manual_seed(0)
    out = backbone.model.generate(
        **inputs,
        do_sample=True,
        temperature=1.5,
        max_new_tokens=16,
        pad_token_id=tokenizer.pad_token_id,
        prefix_allowed_tokens_fn=allowed_tokens_fn(
            tokenizer, [grammar] * 8, inputs["input_ids"].shape[1], 16
        ),
    )
    sampled = tokenizer.batch_decode(
        out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True
    )
    answers = [parse(s, "compact") for s in sampled]
    assert all(a.well_formed and a.status == "exact" for a in answers), sampled
    assert all(i < grammar.n_utterances for a in answers for i in a.utt_ids)
    assert len(set(sampled)) > 1
