"""FFRS, the two-stage corpus retriever of METHOD.md.

1. **Recall**: the Fragment Embedding Model embeds the query and ``ffr.search_fragments`` (or
   ``ffr.hybrid_search``) returns the top-K fragments of the serving index.
2. **Read**: F2RVLM reads the best ``read_top`` candidate fragments (default 4 of the K), each
   rendered with fragment-LOCAL ids (0.. inside the fragment, as training prompts are
   rendered), answers with local ids, and :meth:`RenderedPrompt.to_global` maps them back to
   dialogue-wide ids. A fragment is read in the profile's prompt shape
   (:func:`ffr_lib.f2rvlm.retriever.plan_prompts`): the whole shape reads it in one prompt while
   its lines fit ``max_prompt_tokens``; a longer fragment (and every fragment in the windowed
   shape) is read in overlapping windows whose answers are unioned.
3. **Merge**: picks are merged per dialogue and dialogues ranked by the best recall score among
   the fragments F2RVLM picked something in (:func:`ffr_lib.ffrs.types.merge_per_dialogue`).
   When F2RVLM picks nothing in any candidate, the answer is empty (a negative query).

With the trained reader (``stage2="reader"``, :mod:`ffr_lib.reader`), stage 2 reads the dialogues
of the best recalled fragments whole (``read_dialogues`` of them, default 3): it scores every
utterance with its neighbours and answers with contiguous runs, or abstains; a run may cross the
recalled fragment's borders. Dialogues keep their recall rank.

Without a model (``stage2="fragment"``) every recalled fragment counts whole: the ablation
"FFRS with the whole recalled fragment".

The single-dialogue query is F2RVLM over the whole dialogue in the profile's prompt shape: windows,
or one prompt per dialogue that fits (:meth:`F2RVLMRetriever.answer_windows`, ``prompt_shape``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ffr_lib.data.format.answer import parse, status_counts
from ffr_lib.data.format.prompt import RenderedPrompt, render_prompt
from ffr_lib.data.model import Dialogue
from ffr_lib.f2rvlm.hints import hint_annotations
from ffr_lib.f2rvlm.retriever import (
    F2RVLMRetriever,
    _default_pixels,
    answer_grammars,
    chat_messages,
    generate,
    plan_prompts,
    prompt_config,
    tokenizer_counter,
)
from ffr_lib.f2rvlm.windows import merge_window_answers
from ffr_lib.ffrs.types import Prediction, RankedFragment, merge_per_dialogue, timed
from ffr_lib.index.search import (
    Hit,
    embed_query,
    hybrid_by_vector,
    search_by_vector,
    serving_encoder,
)
from ffr_lib.reader.reader import Reader
from ffr_lib.store import load_dialogues

DialogueSource = Mapping[str, Dialogue] | Callable[[Sequence[str]], Mapping[str, Dialogue]]


class FFRSConfig(BaseModel):
    """Knobs of the two-stage query."""

    model_config = ConfigDict(extra="forbid")

    k: int = Field(20, ge=1, le=1000, description="fragments recalled by the FEM (paper: 20)")
    hybrid: bool = Field(
        True,
        description="recall with ffr.hybrid_search (RRF of full-text and vector search; a query "
        "restricted to dialogues uses the vector search): it recalls the right chat more often "
        "than the vector search alone on MLDR val and QMSum val (BENCHMARKS.md)",
    )
    stage2: Literal["reader", "f2rvlm", "fragment"] = Field(
        "f2rvlm",
        description="the trained reader reads the top dialogues, F2RVLM picks inside each "
        "fragment, or the whole fragment counts",
    )
    read_top: int | None = Field(
        4,
        ge=1,
        description="F2RVLM reads only the best N of the K recalled fragments (None = all). "
        "Reading the best 4 of 10 scored the same corpus F1 as reading all 10 (+0.010 "
        "[-0.007, +0.022] on 80 MLDR val corpus-style queries) in 2.8 s instead of 6.7 s "
        "(BENCHMARKS.md, bench/ffrs_read_top.py)",
    )
    read_dialogues: int = Field(
        3, ge=1, description="the reader reads the dialogues of the best N recalled fragments"
    )
    batch_size: int = Field(8, ge=1, description="prompts per generation batch")
    rank_by: Literal["recall", "reader"] = Field(
        "reader",
        description="with the trained reader: rank the dialogues it read by their recall score, "
        "or by the reader's confidence that the dialogue answers the query",
    )


# ----------------------------------------------------------------------------- stage 2


def fragment_prompts(
    dialogue: Dialogue,
    query: str,
    utterance_ids: Sequence[int],
    retriever: F2RVLMRetriever,
    annotations: Mapping[int, str] | None = None,
) -> list[RenderedPrompt]:
    """The fragment-local prompts of one candidate fragment: one per window the profile's prompt
    shape reads the fragment in (the whole shape: one prompt when its lines fit the token
    budget, as for a whole dialogue in training)."""
    profile = retriever.profile
    config = prompt_config(profile)
    windows = plan_prompts(
        dialogue,
        profile,
        tokenizer_counter(retriever.backbone.tokenizer),
        config,
        utterance_ids,
    )
    return [
        render_prompt(dialogue, query, config, list(w.utterance_ids), annotations) for w in windows
    ]


@dataclass
class ReadResult:
    """Global picks per candidate, in candidate order, and the prompt tokens read."""

    picks: list[tuple[list[int], list[int]]]
    tokens: int
    raw: list[list[str]]


class FragmentReader:
    """F2RVLM as the second stage: reads candidate fragments with local ids."""

    def __init__(
        self, retriever: F2RVLMRetriever, batch_size: int = 8, share_prefix: bool = True
    ) -> None:
        self.retriever = retriever
        self.batch_size = batch_size
        # The candidates' prompts share system prompt + instruction: compute that KV once.
        self.share_prefix = share_prefix

    def count_tokens(self, messages: list[dict[str, Any]]) -> int:
        """Prompt tokens of one chat prompt under the backbone's chat template (vision tokens
        behind an ``<image>`` tag are not counted)."""
        backbone = self.retriever.backbone
        text = backbone.processor.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        return len(backbone.tokenizer(text, add_special_tokens=False)["input_ids"])

    def read(self, query: str, candidates: Sequence[tuple[Dialogue, Sequence[int]]]) -> ReadResult:
        """Answer ``query`` inside each (dialogue, fragment utterance ids) candidate."""
        profile = self.retriever.profile
        vlm = self.retriever.backbone.is_vlm
        notes: dict[str, Mapping[int, str] | None] = {}
        prompts: list[RenderedPrompt] = []
        owner: list[int] = []
        for k, (dialogue, utterance_ids) in enumerate(candidates):
            if dialogue.id not in notes:
                # Hints are relative to the whole dialogue, as in training windows.
                notes[dialogue.id] = hint_annotations(
                    dialogue, query, profile.hints, self.retriever.embed
                )
            for prompt in fragment_prompts(
                dialogue, query, utterance_ids, self.retriever, notes[dialogue.id]
            ):
                prompts.append(prompt)
                owner.append(k)
        messages = [chat_messages(p, vlm) for p in prompts]
        tokens = sum(self.count_tokens(m) for m in messages)
        outputs = generate(
            self.retriever.backbone,
            messages,
            profile.max_new_tokens,
            images=[[_default_pixels(i) for i in p.images] for p in prompts] if vlm else None,
            batch_size=self.batch_size,
            share_prefix=self.share_prefix,
            grammars=answer_grammars(prompts, profile),
        )
        texts = [text for text, _ in outputs]
        picks, raw = map_answers(prompts, owner, texts, len(candidates), profile.answer_form)
        return ReadResult(picks, tokens, raw)


def map_answers(
    prompts: Sequence[RenderedPrompt],
    owner: Sequence[int],
    texts: Sequence[str],
    n_candidates: int,
    answer_form: str = "compact",
) -> tuple[list[tuple[list[int], list[int]]], list[list[str]]]:
    """Parse each prompt's answer (local ids), map it to global ids with the prompt's tables
    and union per candidate (``owner[k]`` = candidate of prompt k). Local ids outside a prompt
    are dropped; an unparsable answer picks nothing."""
    utt: list[set[int]] = [set() for _ in range(n_candidates)]
    img: list[set[int]] = [set() for _ in range(n_candidates)]
    raw: list[list[str]] = [[] for _ in range(n_candidates)]
    for prompt, k, text in zip(prompts, owner, texts, strict=True):
        answer = parse(text, answer_form)  # type: ignore[arg-type]
        g_utt, g_img = prompt.to_global(answer.utt_ids, answer.img_ids)
        utt[k].update(g_utt)
        img[k].update(g_img)
        raw[k].append(text)
    return [(sorted(u), sorted(i)) for u, i in zip(utt, img, strict=True)], raw


# ----------------------------------------------------------------------------- pipeline


def hits_to_units(hits: Sequence[Hit]) -> list[RankedFragment]:
    return [
        RankedFragment(
            dialogue_id=h.dialogue_id,
            utterance_ids=list(h.utterance_ids),
            image_ids=list(h.image_ids),
            score=float(h.score),
            fragment_id=h.fragment_id,
            text=h.text,
        )
        for h in hits
    ]


class FFRSPipeline:
    """FEM recall + F2RVLM read + merge per dialogue (see the module docstring).

    ``encoder``: the query encoder (default: the serving FEM of the index). ``dialogues``: where
    candidate dialogues come from (a mapping, a loader function, or None = Postgres).
    """

    def __init__(
        self,
        config: FFRSConfig | None = None,
        reader: FragmentReader | None = None,
        *,
        encoder: Any = None,
        url: str | None = None,
        dialogues: DialogueSource | None = None,
        span_reader: Reader | None = None,
    ) -> None:
        self.config = config or FFRSConfig()
        if self.config.stage2 == "f2rvlm" and reader is None:
            raise ValueError("stage2='f2rvlm' needs a FragmentReader (a trained F2RVLM)")
        if self.config.stage2 == "reader" and span_reader is None:
            raise ValueError("stage2='reader' needs a trained reader (ffr_lib.reader.Reader)")
        self.reader = reader
        self.span_reader = span_reader
        self.url = url
        self._encoder = encoder
        self._dialogues = dialogues
        self._cache: dict[str, Dialogue] = {}

    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            self._encoder = serving_encoder(self.url)
        return self._encoder

    def dialogues(self, ids: Sequence[str]) -> dict[str, Dialogue]:
        """The dialogues ``ids`` (cached)."""
        missing = [d for d in dict.fromkeys(ids) if d not in self._cache]
        if missing:
            source = self._dialogues
            if source is None:
                found = {d.id: d for d in load_dialogues(missing, url=self.url)}
            elif callable(source):
                found = dict(source(missing))
            else:
                found = {d: source[d] for d in missing if d in source}
            self._cache.update(found)
        return {d: self._cache[d] for d in ids if d in self._cache}

    def recall(
        self,
        text: str,
        k: int | None = None,
        dialogue_ids: Sequence[str] | None = None,
        timings: dict[str, float] | None = None,
    ) -> list[RankedFragment]:
        """Stage 1: the top-k fragments for ``text`` (restricted to ``dialogue_ids``)."""
        timings = timings if timings is not None else {}
        k = k or self.config.k
        with timed(timings, "embed"):
            vector = embed_query(self.encoder, text)
        with timed(timings, "sql"):
            if self.config.hybrid and not dialogue_ids:
                hits = hybrid_by_vector(vector, text, k, url=self.url)
            else:
                # ffr.hybrid_search takes no filters: a restricted query uses the vector search.
                hits = search_by_vector(vector, k, dialogue_ids=dialogue_ids, url=self.url)
        return hits_to_units(hits)

    def read(
        self, text: str, units: list[RankedFragment], timings: dict[str, float]
    ) -> tuple[list[RankedFragment], int]:
        """Stage 2: F2RVLM picks inside the best ``read_top`` units (the rest are not read and
        contribute nothing). Returns the units with their picks and the tokens read."""
        if self.config.stage2 == "fragment" or not units:
            return units, 0
        if self.config.stage2 == "reader":
            return self.read_dialogues(text, units, timings), 0
        assert self.reader is not None
        top = units[: self.config.read_top] if self.config.read_top else units
        with timed(timings, "load"):
            found = self.dialogues([u.dialogue_id for u in top])
        readable = [u for u in top if u.dialogue_id in found]
        with timed(timings, "f2rvlm"):
            result = self.reader.read(
                text, [(found[u.dialogue_id], u.utterance_ids) for u in readable]
            )
        for unit, (utt, img) in zip(readable, result.picks, strict=True):
            unit.picked_utterance_ids, unit.picked_image_ids = utt, img
        for unit in units:
            if not unit.read:
                unit.picked_utterance_ids, unit.picked_image_ids = [], []
        return units, result.tokens

    def read_dialogues(
        self, text: str, units: list[RankedFragment], timings: dict[str, float]
    ) -> list[RankedFragment]:
        """Stage 2 with the trained reader: the dialogues of the best units, read whole. Every
        recalled unit then contributes nothing itself; each read dialogue contributes one unit per
        run of its answer, at the dialogue's best recall score, with the run's own score as
        ``confidence`` (nothing when the reader abstains)."""
        assert self.span_reader is not None
        order = list(dict.fromkeys(u.dialogue_id for u in units))[: self.config.read_dialogues]
        best = {d: max(u.score for u in units if u.dialogue_id == d) for d in order}
        with timed(timings, "load"):
            found = self.dialogues(order)
        answers: list[RankedFragment] = []
        with timed(timings, "reader"):
            for dialogue_id in order:
                if dialogue_id not in found:
                    continue
                answer = self.span_reader.read(text, found[dialogue_id])
                rank = best[dialogue_id] if self.config.rank_by == "recall" else answer.confidence
                for run in answer.runs:
                    answers.append(  # one unit per run, best first
                        RankedFragment(
                            dialogue_id=dialogue_id,
                            utterance_ids=run.utterance_ids,
                            image_ids=run.image_ids,
                            score=rank,
                            picked_utterance_ids=(
                                run.utterance_ids if run.utterances_answered else []
                            ),
                            picked_image_ids=run.image_ids,
                            confidence=run.score,
                        )
                    )
        for unit in units:
            unit.picked_utterance_ids, unit.picked_image_ids = [], []
        return answers + units

    def query(
        self, text: str, k: int | None = None, dialogue_ids: Sequence[str] | None = None
    ) -> Prediction:
        """Corpus query: ranked dialogues with their exact utterance and image ids."""
        timings: dict[str, float] = {}
        units = self.recall(text, k, dialogue_ids, timings)
        units, tokens = self.read(text, units, timings)
        with timed(timings, "merge"):
            dialogues = merge_per_dialogue(units)
        return Prediction(dialogues=dialogues, units=units, timings=timings, tokens_read=tokens)

    def query_dialogue(self, text: str, dialogue: Dialogue | str) -> Prediction:
        """Single-dialogue query: the trained reader over the whole dialogue, or F2RVLM in its
        sliding windows (whichever fine stage this pipeline serves)."""
        if self.reader is None and self.span_reader is None:
            raise ValueError("a single-dialogue query needs a trained reader or F2RVLM")
        if isinstance(dialogue, str):
            found = self.dialogues([dialogue])
            if dialogue not in found:
                raise LookupError(f"no stored dialogue with id {dialogue!r}")
            dialogue = found[dialogue]
        if self.config.stage2 == "reader" or self.reader is None:
            timings: dict[str, float] = {}
            whole = RankedFragment(
                dialogue.id, list(range(len(dialogue.utterances))), [], score=1.0
            )
            units = self.read_dialogues(text, [whole], timings)
            return Prediction(dialogues=merge_per_dialogue(units), units=units, timings=timings)
        return read_whole_dialogue(self.reader, dialogue, text)


def read_whole_dialogue(reader: FragmentReader, dialogue: Dialogue, text: str) -> Prediction:
    """F2RVLM over all of ``dialogue`` (one prompt, or the profile's windows merged to global
    ids by union)."""
    timings: dict[str, float] = {}
    with timed(timings, "f2rvlm"):
        prompts, answers, _ = reader.retriever.answer_windows(dialogue, text)
        utt, img = merge_window_answers([wp.window for wp in prompts], answers, policy="union")
    vlm = reader.retriever.backbone.is_vlm
    tokens = sum(reader.count_tokens(chat_messages(wp.prompt, vlm)) for wp in prompts)
    unit = RankedFragment(
        dialogue_id=dialogue.id,
        utterance_ids=list(range(len(dialogue.utterances))),
        image_ids=list(range(len(dialogue.images))),
        score=1.0,
        picked_utterance_ids=utt,
        picked_image_ids=img,
    )
    return Prediction(
        dialogues=merge_per_dialogue([unit]),
        units=[unit],
        timings=timings,
        tokens_read=tokens,
        answers=status_counts(answers),
    )
