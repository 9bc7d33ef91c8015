"""Constrained decoding: the generator can only write a well-formed answer whose ids exist in its
prompt.

:class:`AnswerGrammar` is a character-level automaton of the canonical answers of one prompt
(``format_compact`` / ``format_answer`` spelling): ``U 3-5, 9; I none`` or
``<|utt_ids_start|>[3, 4, 5]<|utt_ids_end|>;<|img_ids_start|>[]<|img_ids_end|>``, utterance ids
in ``0..n_utterances-1`` and image ids in ``0..n_images-1``, each number larger than the one
before it (sorted, no duplicates, no reversed or overlapping range), no leading zeros, and in the
compact form neighbouring ids written as a range (``3-4``, not ``3, 4``): exactly the spellings
of the SFT targets.

:func:`allowed_tokens_fn` turns it into transformers' ``prefix_allowed_tokens_fn`` for one batch
of ``model.generate``: at each step only the tokens whose text keeps the completion a prefix of
some answer are allowed, and the end-of-turn token only once the answer is complete. When the
remaining budget (``max_new_tokens``) only just fits the shortest way to finish the answer, only
that way is allowed, so a completion is never cut mid-answer (a budget below the shortest answer,
``U none; I none`` = 5 SmolLM2 tokens, cannot be helped). The decoder loop is transformers' own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ffr_lib.data.format.answer import (
    IMG_IDS_END,
    IMG_IDS_START,
    UTT_IDS_END,
    UTT_IDS_START,
    AnswerForm,
)

DIGITS = "0123456789"


@dataclass(frozen=True)
class _Ids:
    """An id list part: ids ``0..bound-1``; ranges ``a-b`` (compact); ``empty`` spells no id."""

    bound: int
    ranges: bool
    empty: str


class State(NamedTuple):
    """Where the automaton is: ``part`` (== number of parts: done), chars ``pos`` of a literal
    or of the empty word, and in an id list ``phase`` (start, empty, num, hi, sep), the
    ``digits`` of the number being written and the ``low``-est value it may take."""

    part: int
    phase: str = "start"
    pos: int = 0
    digits: str = ""
    low: int = 0


def _canonical(digits: str) -> bool:
    return bool(digits) and (digits == "0" or digits[0] != "0")


def _smallest_with_prefix(digits: str, low: int, high: int) -> int | None:
    """The smallest v in [low, high] whose decimal spelling starts with ``digits``."""
    if not digits:
        return low if low <= high else None
    if digits != "0" and digits[0] == "0":
        return None
    if digits == "0":
        return 0 if low <= 0 <= high else None
    p, scale = int(digits), 1
    while p * scale <= high:
        v = max(p * scale, low)
        if v <= min((p + 1) * scale - 1, high):
            return v
        scale *= 10
    return None


class AnswerGrammar:
    """The canonical answers of one prompt (see the module doc) as a character automaton."""

    def __init__(self, form: AnswerForm, n_utterances: int, n_images: int) -> None:
        self.form, self.n_utterances, self.n_images = form, n_utterances, n_images
        if form == "compact":
            self.parts: list[str | _Ids] = [
                "U ",
                _Ids(n_utterances, True, "none"),
                "; I ",
                _Ids(n_images, True, "none"),
            ]
        else:
            self.parts = [
                f"{UTT_IDS_START}[",
                _Ids(n_utterances, False, ""),
                f"]{UTT_IDS_END};{IMG_IDS_START}[",
                _Ids(n_images, False, ""),
                f"]{IMG_IDS_END}",
            ]
        self.alphabet = frozenset(
            DIGITS + ", -" + "".join(p if isinstance(p, str) else p.empty for p in self.parts)
        )

    # -------------------------------------------------------------------------- automaton

    def _ended(self, state: State) -> bool:
        """The id list of ``state`` may end here."""
        part = self.parts[state.part]
        assert isinstance(part, _Ids)
        if state.phase == "start":
            return part.empty == ""
        if state.phase == "empty":
            return state.pos == len(part.empty)
        if state.phase in ("num", "hi"):
            value = _value(state)
            return value is not None and state.low <= value < part.bound
        return False

    def _next(self, state: State, ch: str) -> State | None:
        """After the id list of ``state`` ended: ``ch`` read by the next part."""
        if state.part + 1 >= len(self.parts):
            return None
        return self.step(State(state.part + 1), ch)

    def step(self, state: State, ch: str) -> State | None:
        """The state after reading ``ch``; None if no answer continues that way."""
        if state.part >= len(self.parts):
            return None
        part = self.parts[state.part]
        if isinstance(part, str):
            if part[state.pos] != ch:
                return None
            if state.pos + 1 < len(part):
                return state._replace(pos=state.pos + 1)
            return State(state.part + 1)
        if state.phase == "start" and part.empty and ch == part.empty[0]:
            return state._replace(phase="empty", pos=1)
        if state.phase == "empty" and state.pos < len(part.empty):
            return state._replace(pos=state.pos + 1) if part.empty[state.pos] == ch else None
        if state.phase in ("start", "num", "hi") and ch in DIGITS:
            digits = state.digits + ch
            if _smallest_with_prefix(digits, state.low, part.bound - 1) is None:
                return None
            return state._replace(phase="hi" if state.phase == "hi" else "num", digits=digits)
        if state.phase == "sep":
            return state._replace(phase="num") if ch == " " else None
        if state.phase in ("num", "hi") and self._ended(state):
            value = _value(state)
            assert value is not None
            if ch == "-" and part.ranges and state.phase == "num" and value + 1 < part.bound:
                return state._replace(phase="hi", digits="", low=value + 1)
            # Canonical compact form: neighbours are a range ("3-4"), never "3, 4".
            gap = 2 if part.ranges else 1
            if ch == "," and value + gap < part.bound:
                return state._replace(phase="sep", digits="", low=value + gap)
        return self._next(state, ch) if self._ended(state) else None

    def run(self, text: str, state: State | None = None) -> State | None:
        """The state after ``text`` (from the start or ``state``); None if it left the
        grammar."""
        current: State | None = state or State(0)
        for ch in text:
            current = self.step(current, ch)
            if current is None:
                return None
        return current

    def complete(self, state: State) -> bool:
        """``state`` ends a whole answer (it may still go on, e.g. ``I 1`` -> ``I 12``)."""
        if state.part >= len(self.parts):
            return True
        last = state.part == len(self.parts) - 1
        return last and isinstance(self.parts[-1], _Ids) and self._ended(state)

    def finish(self, state: State) -> str:
        """The shortest text that completes an answer from ``state``."""
        out = ""
        while not self.complete(state):
            part = self.parts[state.part]
            if isinstance(part, str):
                text = part[state.pos :]
            elif state.phase in ("start", "empty"):
                text = part.empty[state.pos if state.phase == "empty" else 0 :]
            elif state.phase == "sep":
                text = " " + str(state.low)
            elif self._ended(state):
                text = ""
            else:
                value = _smallest_with_prefix(state.digits, state.low, part.bound - 1)
                assert value is not None
                text = str(value)[len(state.digits) :]
            out += text
            if isinstance(part, _Ids) and not text and not self._ended(state):
                raise AssertionError(f"no way to finish from {state}")
            state = State(state.part + 1)
        return out


def _value(state: State) -> int | None:
    return int(state.digits) if _canonical(state.digits) else None


# ------------------------------------------------------------------------------ tokens


@dataclass
class TokenTable:
    """Per tokenizer and alphabet: the text of every token made only of answer characters,
    grouped by first character, plus the tokens of the shortest finishes seen (cached)."""

    by_first: dict[str, list[tuple[int, str]]]
    text: dict[int, str]
    encoded: dict[str, list[int]]


_TABLES: dict[tuple[int, frozenset[str]], TokenTable] = {}


def token_table(tokenizer: Any, alphabet: frozenset[str]) -> TokenTable:
    """The :class:`TokenTable` of ``tokenizer`` for ``alphabet`` (built once per process)."""
    key = (id(tokenizer), alphabet)
    if key not in _TABLES:
        ids = list(range(len(tokenizer)))
        texts = tokenizer.batch_decode([[i] for i in ids], skip_special_tokens=False)
        by_first: dict[str, list[tuple[int, str]]] = {}
        text: dict[int, str] = {}
        for i, t in zip(ids, texts, strict=True):
            if t and set(t) <= alphabet:
                by_first.setdefault(t[0], []).append((i, t))
                text[i] = t
        _TABLES[key] = TokenTable(by_first, text, {})
    return _TABLES[key]


def _encode(table: TokenTable, tokenizer: Any, text: str) -> list[int]:
    if text not in table.encoded:
        table.encoded[text] = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return table.encoded[text]


def allowed_next(
    grammar: AnswerGrammar,
    table: TokenTable,
    tokenizer: Any,
    generated: Sequence[int],
    steps_left: int,
    stop: int,
) -> list[int]:
    """The tokens ``generated`` may go on with (``stop``: the end-of-turn token)."""
    if stop in generated:
        return [stop]
    state = grammar.run("".join(table.text.get(t, "\x00") for t in generated))
    if state is None:  # cannot happen under the constraint; end the row
        return [stop]
    rest = grammar.finish(state)
    if not rest:
        if steps_left <= 1:
            return [stop]
    elif steps_left <= len(_encode(table, tokenizer, rest)) + 1:
        first = _encode(table, tokenizer, rest)[0]
        head = table.text.get(first)
        if head is not None and rest.startswith(head):
            return [first]
        forced = [t for t, s in table.by_first.get(rest[0], []) if rest.startswith(s)]
        if forced:
            return forced
    out = [stop] if not rest else []
    for first_char, tokens in table.by_first.items():
        after = grammar.step(state, first_char)
        if after is None:
            continue
        out.extend(t for t, s in tokens if grammar.run(s[1:], after) is not None)
    return out or [stop]


def allowed_tokens_fn(
    tokenizer: Any,
    grammars: Sequence[AnswerGrammar],
    prompt_length: int,
    max_new_tokens: int,
) -> Callable[[int, Any], list[int]]:
    """``prefix_allowed_tokens_fn`` for one ``model.generate`` batch: row ``batch_id`` follows
    ``grammars[batch_id]``; its completion starts after ``prompt_length`` tokens."""
    stop = int(tokenizer.eos_token_id)

    def allowed(batch_id: int, input_ids: Any) -> list[int]:
        grammar = grammars[batch_id]
        table = token_table(tokenizer, grammar.alphabet)
        generated = input_ids[prompt_length:].tolist()
        return allowed_next(
            grammar, table, tokenizer, generated, max_new_tokens - len(generated), stop
        )

    return allowed
