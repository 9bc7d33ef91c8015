"""F2RVLM inference and the prompts shared by training and inference.

How a dialogue becomes prompts is the profile's ``prompt_shape``:

- ``whole`` (the paper): one prompt holding the whole dialogue whenever its utterance lines fit
  ``profile.max_prompt_tokens`` (counted by the backbone's tokenizer, :func:`line_token_counter`);
  a longer chat is cut into windows of at most ``window_utterances`` utterances and that many
  tokens, overlapping by ``window_overlap``.
- ``windowed``: every dialogue in windows of ``window_utterances`` utterances.

Each prompt is rendered with local ids (plus cheap-retriever hints when the profile has them),
the model answers each one, and the answers are mapped back to global ids and merged (union; a
single whole-dialogue prompt maps one to one). With candidate pre-selection
(``profile.hints.preselect_top``, windowed shape only) the model reads one prompt of the
best-scored utterances instead (:mod:`ffr_lib.f2rvlm.hints`). Training records are built by the
same function, so train and inference prompts never drift.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ffr_lib.data.format.answer import ParsedAnswer, format_in, parse
from ffr_lib.data.format.prompt import IMAGE_TOKEN, PromptConfig, RenderedPrompt, render_prompt
from ffr_lib.data.model import Dialogue, Query
from ffr_lib.f2rvlm.backbone import (
    Backbone,
    load_backbone,
    load_tokenizer,
    load_trained,
    read_adapter_meta,
)
from ffr_lib.f2rvlm.constrained import AnswerGrammar, allowed_tokens_fn
from ffr_lib.f2rvlm.hints import (
    annotations_from_scores,
    default_embedder,
    preselect_ids,
    relevance_scores,
)
from ffr_lib.f2rvlm.profiles import F2RVLMProfile, get_profile
from ffr_lib.f2rvlm.windows import Window, WindowConfig, merge_window_answers, plan_windows

Embedder = Callable[[list[str]], np.ndarray]
#: Tokens of one rendered utterance line.
TokenCounter = Callable[[str], int]


@dataclass(frozen=True)
class WindowPrompt:
    window: Window
    prompt: RenderedPrompt


def prompt_config(profile: F2RVLMProfile) -> PromptConfig:
    instruction = profile.instruction
    if instruction is not None and (profile.hints.method == "none" or not profile.hints.annotate):
        instruction = instruction.replace("(rN) is a relevance hint, higher is more relevant. ", "")
    return PromptConfig(
        image_mode=profile.image_mode, answer_form=profile.answer_form, instruction=instruction
    )


def tokenizer_counter(tokenizer: Any) -> TokenCounter:
    """Count the tokens of a text with ``tokenizer`` (no BOS/EOS added)."""
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


def line_token_counter(profile: F2RVLMProfile) -> TokenCounter:
    """The token counter of the profile's backbone (tokenizer only, cached, markers as the model
    sees them): what ``max_prompt_tokens`` is measured with."""
    return tokenizer_counter(load_tokenizer(profile.backbone, profile.add_marker_tokens))


def plan_prompts(
    dialogue: Dialogue,
    profile: F2RVLMProfile,
    token_counter: TokenCounter | None = None,
    config: PromptConfig | None = None,
    utterance_ids: Sequence[int] | None = None,
) -> list[Window]:
    """The windows ``profile.prompt_shape`` reads ``dialogue`` in (module doc): the whole shape
    gives ONE window when the lines fit ``max_prompt_tokens``. ``token_counter`` defaults to
    :func:`line_token_counter` (whole shape only; the windowed shape counts utterances).
    ``utterance_ids``: read only those utterances (FFRS's recalled fragment), None = all."""
    overlap = min(profile.window_overlap, profile.window_utterances - 1)
    if profile.prompt_shape == "windowed":
        return plan_windows(
            dialogue,
            WindowConfig(max_utterances=profile.window_utterances, overlap=overlap),
            utterance_ids=utterance_ids,
        )
    count = token_counter or line_token_counter(profile)
    hints = profile.hints
    # plan_windows renders the lines without their hint; each line will carry one.
    note = (
        count(" " + hints.template.format(level=hints.buckets))
        if hints.method != "none" and hints.annotate
        else 0
    )
    config = config or prompt_config(profile)
    budget = profile.max_prompt_tokens

    def plan(window: WindowConfig) -> list[Window]:
        return plan_windows(
            dialogue, window, lambda line: count(line) + note, config, utterance_ids
        )

    # The token budget alone decides whether the lines are one prompt (however many turns).
    whole = plan(WindowConfig(max_utterances=None, max_tokens=budget, overlap=0))
    if len(whole) <= 1:
        return whole
    return plan(
        WindowConfig(max_utterances=profile.window_utterances, max_tokens=budget, overlap=overlap)
    )


def window_prompts(
    dialogue: Dialogue,
    query: str,
    profile: F2RVLMProfile,
    embed: Embedder | None = None,
    token_counter: TokenCounter | None = None,
) -> list[WindowPrompt]:
    """The prompts of ``query`` over ``dialogue`` (one per window; in the whole shape one for
    a dialogue that fits). ``token_counter``: see :func:`plan_prompts`."""
    config = prompt_config(profile)
    hints = profile.hints
    scores = (
        relevance_scores(dialogue, query, hints, embed)
        if hints.method != "none" and (hints.annotate or hints.preselect_top)
        else None
    )
    if hints.preselect_top is not None and scores is not None and dialogue.utterances:
        shown = preselect_ids(scores, hints.preselect_top, hints.preselect_context)
        keep = set(shown)
        images = tuple(im.index for u in shown for im in dialogue.images if im.utterance_index == u)
        windows = [Window(tuple(shown), images)] if keep else []
    else:
        windows = plan_prompts(dialogue, profile, token_counter, config)
    notes = annotations_from_scores(scores, hints) if scores is not None else None
    return [
        WindowPrompt(w, render_prompt(dialogue, query, config, list(w.utterance_ids), notes))
        for w in windows
    ]


def answer_grammars(
    prompts: Sequence[RenderedPrompt], profile: F2RVLMProfile
) -> list[AnswerGrammar] | None:
    """The answer grammar of each prompt (its own ids), or None when the profile does not
    constrain decoding (``profile.constrained_decoding``)."""
    if not profile.constrained_decoding:
        return None
    return [
        AnswerGrammar(profile.answer_form, len(p.utterance_ids), len(p.image_ids)) for p in prompts
    ]


def chat_messages(prompt: RenderedPrompt, vlm: bool) -> list[dict[str, Any]]:
    """Chat messages for the model: plain strings (text LM) or content parts with one image
    part per ``<image>`` tag (VLM chat templates insert the vision tokens there)."""
    if not vlm:
        return [dict(m) for m in prompt.messages]
    out: list[dict[str, Any]] = []
    for message in prompt.messages:
        pieces = message["content"].split(IMAGE_TOKEN)
        parts: list[dict[str, Any]] = []
        for k, piece in enumerate(pieces):
            if k:
                parts.append({"type": "image"})
            if piece:
                parts.append({"type": "text", "text": piece})
        out.append({"role": message["role"], "content": parts})
    return out


def _local_texts(
    dialogue: Dialogue, prompt: RenderedPrompt
) -> tuple[list[str], list[str], list[int]]:
    """Per local id: utterance texts, image texts, owner (local utterance id) of each image:
    the columns R_Fragment needs."""
    utt = [dialogue.utterances[g].text for g in prompt.utterance_ids]
    local_of = {g: i for i, g in enumerate(prompt.utterance_ids)}
    imgs = [dialogue.images[g] for g in prompt.image_ids]
    return utt, [i.content_text() for i in imgs], [local_of[i.utterance_index] for i in imgs]


def _chosen_prompts(
    prompts: list[WindowPrompt], query: Query, profile: F2RVLMProfile, rng: random.Random
) -> list[tuple[WindowPrompt, list[int], list[int]]]:
    """The prompts of one query that become training records, each with its gold in local ids
    (see :func:`training_records`)."""
    with_gold, without = [], []
    for wp in prompts:
        local_u, local_i = wp.prompt.to_local(query.gold_utterance_ids, query.gold_image_ids)
        (with_gold if (local_u or local_i) else without).append((wp, local_u, local_i))
    if profile.prompt_shape == "whole":
        if with_gold:  # the whole dialogue, or the windows of a long chat that hold gold
            return with_gold
        # A negative query: its one prompt, or one seeded window of a long chat ("none").
        return rng.sample(without, min(1, len(without)))
    if with_gold:
        n_neg = int(profile.negative_window_ratio * len(with_gold) + 0.5)
    else:
        n_neg = profile.negative_query_windows
    return with_gold + rng.sample(without, min(n_neg, len(without)))


def training_records(
    dialogues: dict[str, Dialogue],
    queries: Sequence[Query],
    profile: F2RVLMProfile,
    embed: Embedder | None = None,
    seed: int = 0,
    load_pixels: Callable[[Any], Any] | None = None,
    token_counter: TokenCounter | None = None,
) -> list[dict[str, Any]]:
    """Training records: prompt, target and the gold the rewards and the curriculum score.

    - ``whole`` shape: one record per query whose dialogue fits one prompt, with the query's
      gold as target (its answer to the whole dialogue; "none" for a negative query). A chat
      read in windows gives one record per window holding gold, with the query's gold inside
      that window (rewards and curriculum F1 are then scored on that share); its windows
      without gold are not trained on: such a window reads like a negative query's prompt,
      which the negative queries already teach, and sampling them biased the windowed shape
      towards "none". A negative query over a long chat gets one seeded window.
    - ``windowed`` shape: one record per (query, window): windows holding gold, plus a sample
      of windows without it so the model learns to answer "none": ``negative_window_ratio``
      per window with gold for a query with gold (rounded half up), ``negative_query_windows``
      for a negative query.

    Records carry chat ``prompt``, ``completion`` (SFT), ``solution`` and gold/text columns
    (rewards)."""
    rng = random.Random(seed)
    vlm = profile.image_mode == "placeholder"
    records: list[dict[str, Any]] = []
    for query in queries:
        dialogue = dialogues[query.dialogue_id or ""]
        prompts = window_prompts(dialogue, query.text, profile, embed, token_counter)
        for wp, local_u, local_i in _chosen_prompts(prompts, query, profile, rng):
            answer = format_in(local_u, local_i, profile.answer_form)
            utt_texts, img_texts, owners = _local_texts(dialogue, wp.prompt)
            record: dict[str, Any] = {
                "prompt": chat_messages(wp.prompt, vlm),
                "completion": [{"role": "assistant", "content": answer}],
                "solution": answer,
                "gold_utterance_ids": local_u,
                "gold_image_ids": local_i,
                "utterance_texts": utt_texts,
                "image_texts": img_texts,
                "image_owner": owners,
                "query_id": query.id,
            }
            if vlm:
                loader = load_pixels or _default_pixels
                record["images"] = [loader(image) for image in wp.prompt.images]
            records.append(record)
    return records


def _default_pixels(image: Any) -> Any:
    """Pixels of an image: its file when it has one, else a grey placeholder (PhotoChat ships
    no photos; the VLM then relies on the caption in ``both`` mode)."""
    from PIL import Image as PILImage

    if image.path and Path(image.path).is_file():
        return PILImage.open(image.path).convert("RGB")
    return PILImage.new("RGB", (56, 56), (128, 128, 128))


MIN_SHARED_PREFIX = 16  # tokens; below this, caching the shared prefix is not worth a pass


def shared_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """Tokens every row starts with, leaving at least one token of each row uncached."""
    if not rows:
        return 0
    n = min(len(r) for r in rows) - 1
    first = rows[0]
    for k in range(max(0, n)):
        token = first[k]
        if any(r[k] != token for r in rows[1:]):
            return k
    return max(0, n)


def _prefix_cache(model: Any, prefix: Sequence[int]) -> Any:
    """The KV cache of ``prefix`` (batch 1)."""
    import torch

    with torch.no_grad():
        out = model(input_ids=torch.tensor([list(prefix)], device=model.device), use_cache=True)
    cache = out.get("cache") if hasattr(out, "get") else None
    return cache if cache is not None else out.past_key_values


def generate(
    backbone: Backbone,
    messages: Sequence[list[dict[str, Any]]],
    max_new_tokens: int,
    images: Sequence[list[Any]] | None = None,
    with_logprobs: bool = False,
    batch_size: int = 8,
    share_prefix: bool = True,
    grammars: Sequence[AnswerGrammar] | None = None,
) -> list[tuple[str, list[float]]]:
    """Greedy completions for chat prompts (batched, left padding), optionally with the log
    probability of each generated token.

    ``grammars`` (one per prompt): constrained decoding, each completion can only be a
    well-formed answer with the ids of its prompt (:mod:`ffr_lib.f2rvlm.constrained`, through
    transformers' ``prefix_allowed_tokens_fn``); log probabilities are then those of the
    constrained distribution.

    ``share_prefix`` (text models): the tokens all prompts start with (system prompt and
    instruction; FFRS candidates of one query share them) are run through the model once and
    their KV cache is reused by every batch, so only the rest of each prompt is computed. Each
    row is then [shared prefix, left padding, own tokens] with the padding masked out; the
    answers are those of the uncached run up to float rounding."""
    import copy

    import torch

    tokenizer = backbone.tokenizer
    tokenizer.padding_side = "left"
    model = backbone.model
    model.eval()
    out: list[tuple[str, list[float]]] = []
    all_texts = [
        backbone.processor.apply_chat_template(m, tokenize=False, add_generation_prompt=True)
        for m in messages
    ]
    prefix: list[int] = []
    cache = None
    token_rows: list[list[int]] = []
    if share_prefix and not backbone.is_vlm and len(all_texts) > 1:
        token_rows = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in all_texts]
        shared = shared_prefix_length(token_rows)
        if shared >= MIN_SHARED_PREFIX:
            prefix = token_rows[0][:shared]
            cache = _prefix_cache(model, prefix)
    for start in range(0, len(messages), batch_size):
        texts = all_texts[start : start + batch_size]
        kwargs: dict[str, Any] = {}
        if backbone.is_vlm:
            chunk_images = [
                img for group in (images or [])[start : start + batch_size] for img in group
            ]
            inputs = backbone.processor(
                text=texts, images=chunk_images or None, return_tensors="pt", padding=True
            )
        elif cache is not None:
            own = [r[len(prefix) :] for r in token_rows[start : start + batch_size]]
            width = max(len(r) for r in own)
            pad = tokenizer.pad_token_id
            ids = [prefix + [pad] * (width - len(r)) + r for r in own]
            mask = [[1] * len(prefix) + [0] * (width - len(r)) + [1] * len(r) for r in own]
            inputs = {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}
            chunk_cache = copy.deepcopy(cache)
            chunk_cache.batch_repeat_interleave(len(own))
            kwargs["cache"] = chunk_cache
        else:
            inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        inputs = {k: v.to(model.device) for k, v in inputs.items()}
        if grammars is not None:
            kwargs["prefix_allowed_tokens_fn"] = allowed_tokens_fn(
                tokenizer,
                grammars[start : start + batch_size],
                inputs["input_ids"].shape[1],
                max_new_tokens,
            )
        with torch.no_grad():
            result = model.generate(
                **inputs,
                **kwargs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                output_scores=with_logprobs,
                return_dict_in_generate=True,
            )
        new_tokens = result.sequences[:, inputs["input_ids"].shape[1] :]
        logprobs = None
        if with_logprobs:
            logprobs = model.compute_transition_scores(
                result.sequences, result.scores, normalize_logits=True
            )
        for row in range(new_tokens.shape[0]):
            ids = new_tokens[row]
            keep = ids != tokenizer.pad_token_id
            # Stop at the first end-of-turn token: what follows is padding of the batch.
            eos = tokenizer.eos_token_id
            length = int(keep.sum())
            for k, token in enumerate(ids.tolist()):
                if token == eos or token == tokenizer.pad_token_id:
                    length = k
                    break
            text = tokenizer.decode(ids[:length], skip_special_tokens=True)
            lp = [float(x) for x in logprobs[row, :length]] if logprobs is not None else []
            out.append((text, lp))
    return out


class F2RVLMRetriever:
    """A loaded generator plus its profile. ``from_adapter`` reads what ``train_sft`` /
    ``train_grpo`` saved; ``from_base`` uses an untrained backbone (zero-shot)."""

    def __init__(
        self, backbone: Backbone, profile: F2RVLMProfile, embed: Embedder | None = None
    ) -> None:
        self.backbone = backbone
        self.profile = profile
        self.embed = embed if embed is not None else default_embedder(profile.hints)

    @classmethod
    def from_adapter(
        cls, adapter_dir: str | Path, embed: Embedder | None = None
    ) -> F2RVLMRetriever:
        meta = read_adapter_meta(Path(adapter_dir))
        profile = F2RVLMProfile.model_validate(meta["profile"])
        return cls(load_trained(adapter_dir), profile, embed)

    @classmethod
    def from_base(cls, profile: F2RVLMProfile, embed: Embedder | None = None) -> F2RVLMRetriever:
        backbone = load_backbone(
            profile.backbone, profile.backbone_kind, add_markers=profile.add_marker_tokens
        )
        return cls(backbone, profile, embed)

    def answer_windows(
        self, dialogue: Dialogue, query: str
    ) -> tuple[list[WindowPrompt], list[ParsedAnswer], list[str]]:
        """Per-window prompts, parsed local answers and raw completions (one of each for a
        whole-shape dialogue that fits)."""
        prompts = window_prompts(
            dialogue, query, self.profile, self.embed, tokenizer_counter(self.backbone.tokenizer)
        )
        vlm = self.backbone.is_vlm
        outputs = generate(
            self.backbone,
            [chat_messages(wp.prompt, vlm) for wp in prompts],
            self.profile.max_new_tokens,
            images=[[_default_pixels(i) for i in wp.prompt.images] for wp in prompts]
            if vlm
            else None,
            grammars=answer_grammars([wp.prompt for wp in prompts], self.profile),
        )
        texts = [text for text, _ in outputs]
        return prompts, [parse(t, self.profile.answer_form) for t in texts], texts

    def retrieve(self, dialogue: Dialogue, query: str) -> tuple[list[int], list[int]]:
        """Global (utterance ids, image ids) of the fragment that answers ``query``."""
        prompts, answers, _ = self.answer_windows(dialogue, query)
        return merge_window_answers([wp.window for wp in prompts], answers, policy="union")


_CACHE: dict[str, F2RVLMRetriever] = {}


def retrieve(
    dialogue: Dialogue, query: str, model: str | Path | F2RVLMRetriever
) -> tuple[list[int], list[int]]:
    """Retrieve the fragment of ``dialogue`` that answers ``query``. ``model`` is a loaded
    retriever, an adapter folder saved by training, or a profile name (untrained backbone)."""
    if isinstance(model, F2RVLMRetriever):
        return model.retrieve(dialogue, query)
    key = str(model)
    if key not in _CACHE:
        if Path(key).is_dir():
            _CACHE[key] = F2RVLMRetriever.from_adapter(key)
        else:
            _CACHE[key] = F2RVLMRetriever.from_base(get_profile(key))
    return _CACHE[key].retrieve(dialogue, query)
