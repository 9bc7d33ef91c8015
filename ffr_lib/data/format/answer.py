"""The F2RVLM answer: two id sets, in the reference format or a compact internal form.

Reference format (METHOD.md), the interface format of the whole project::

    <|utt_ids_start|>[3, 4, 5]<|utt_ids_end|>;<|img_ids_start|>[1]<|img_ids_end|>

Compact internal form (cheaper for small models: ranges collapse contiguous fragments)::

    U 3-5, 9; I 1          U none; I none   (a negative answer)

Both converters are exact on canonical answers (sorted, unique ids).

Parsing policy (one policy, used by the prompt, the parser and every reward):

- **Think tags.** A completion may start with ONE ``<think>...</think>`` block (reasoning
  models emit it); that block and the whitespace around it are stripped. After it, an exact
  answer is the whole rest of the completion: nothing before it, nothing after it (surrounding
  whitespace and a trailing end-of-turn marker such as ``<|im_end|>`` or ``<|endoftext|>`` are
  ignored). A second think block, an unclosed ``<think>`` or a stray ``</think>`` is not exact
  (an answer after it may still be recovered, below).
  The prompt never asks for think tags and SFT targets never contain them.
- **Exact format.** Markers exactly as above, utterance part first, ``;`` between the parts
  (whitespace around ``;`` and inside the brackets is tolerated, ``[3,4]`` reads like
  ``[3, 4]``), ids are non-negative decimal integers, ``[]`` is an empty set.
- **Lenient recovery.** A completion that is not an answer as a whole is searched for its
  first answer anywhere (after a leading think block, if any), as the official evaluation does
  with ``re.search``: ``"The answer is U 3; I none."`` gives ``[3]`` with ``recovered`` True and
  ``syntax_ok`` / ``well_formed`` False, so inference keeps the ids while R_F1, R_Fragment and
  R_Format (which check ``syntax_ok`` / ``well_formed``) still score only the exact format. Only
  the first answer found counts; if it is invalid (a reversed or huge range) the completion is
  malformed. :attr:`ParsedAnswer.status` names the three cases: ``exact``, ``recovered``,
  ``malformed``.
- **Never raises.** Anything with no answer in it parses to empty sets with ``syntax_ok``,
  ``well_formed`` and ``recovered`` False (status ``malformed``).
- **Duplicates.** ``[3, 3]`` parses (``syntax_ok`` True, ids deduplicated to ``[3]``) but is not
  ``well_formed``: R_F1 scores the deduplicated sets, R_Format gives 0.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

UTT_IDS_START = "<|utt_ids_start|>"
UTT_IDS_END = "<|utt_ids_end|>"
IMG_IDS_START = "<|img_ids_start|>"
IMG_IDS_END = "<|img_ids_end|>"
ANSWER_SEPARATOR = ";"
THINK_START = "<think>"
THINK_END = "</think>"

AnswerForm = Literal["reference", "compact"]
#: ``exact``: the whole completion is an answer; ``recovered``: an answer was found inside other
#: text; ``malformed``: no answer at all (see the module policy).
AnswerStatus = Literal["exact", "recovered", "malformed"]
ANSWER_STATUSES: tuple[AnswerStatus, ...] = ("exact", "recovered", "malformed")

# End-of-turn markers a decoded completion may still carry when special tokens were not skipped.
_TRAILING_EOS = ("<|im_end|>", "<|endoftext|>", "</s>", "<|eot_id|>", "<end_of_turn>")

_ID_LIST = r"\[\s*(\d+(?:\s*,\s*\d+)*)?\s*\]"
_REFERENCE_RE = re.compile(
    re.escape(UTT_IDS_START)
    + _ID_LIST
    + re.escape(UTT_IDS_END)
    + r"\s*;\s*"
    + re.escape(IMG_IDS_START)
    + _ID_LIST
    + re.escape(IMG_IDS_END)
)
_RANGES = r"(none|\d+(?:\s*-\s*\d+)?(?:\s*,\s*\d+(?:\s*-\s*\d+)?)*)"
# Not preceded by a word character, so a search does not start inside a word ("YOU 3; I 2").
_COMPACT_RE = re.compile(r"(?<!\w)U\s+" + _RANGES + r"\s*;\s*I\s+" + _RANGES)
_THINK_BLOCK_RE = re.compile(r"\s*<think>(.*?)</think>", re.DOTALL)


@dataclass(frozen=True)
class ParsedAnswer:
    """A parsed answer. ``utt_ids``/``img_ids`` are sorted and unique (empty when malformed).

    ``syntax_ok``: the text is in the exact format (duplicates allowed).
    ``well_formed``: ``syntax_ok`` and no duplicate ids (what R_Format rewards).
    ``recovered``: the ids come from the first answer found inside other text.
    """

    utt_ids: list[int] = field(default_factory=list)
    img_ids: list[int] = field(default_factory=list)
    well_formed: bool = False
    syntax_ok: bool = False
    recovered: bool = False

    @property
    def is_empty(self) -> bool:
        return not self.utt_ids and not self.img_ids

    @property
    def status(self) -> AnswerStatus:
        if self.syntax_ok:
            return "exact"
        return "recovered" if self.recovered else "malformed"


def status_counts(answers: Iterable[ParsedAnswer]) -> dict[str, int]:
    """How many of ``answers`` are exact, recovered and malformed (every status present)."""
    counts = dict.fromkeys(ANSWER_STATUSES, 0)
    for answer in answers:
        counts[answer.status] += 1
    return counts


MALFORMED = ParsedAnswer()


def _canonical(ids: Iterable[int]) -> list[int]:
    out = sorted({int(i) for i in ids})
    if out and out[0] < 0:
        raise ValueError(f"ids must be non-negative, got {out[0]}")
    return out


def format_answer(utt_ids: Iterable[int], img_ids: Iterable[int]) -> str:
    """The reference answer for two id sets (sorted, deduplicated)."""
    utt, img = _canonical(utt_ids), _canonical(img_ids)
    return (
        f"{UTT_IDS_START}[{', '.join(map(str, utt))}]{UTT_IDS_END}{ANSWER_SEPARATOR}"
        f"{IMG_IDS_START}[{', '.join(map(str, img))}]{IMG_IDS_END}"
    )


def strip_think(text: str) -> str | None:
    """Apply the think-tag policy: drop one leading think block and trailing end-of-turn
    markers; return None if the think tags are malformed."""
    match = _THINK_BLOCK_RE.match(text)
    if match:
        text = text[match.end() :]
    if THINK_START in text or THINK_END in text:
        return None
    text = text.strip()
    stripped = True
    while stripped:
        stripped = False
        for eos in _TRAILING_EOS:
            if text.endswith(eos):
                text = text[: -len(eos)].rstrip()
                stripped = True
    return text


def _ids(group: str | None) -> list[int]:
    if not group:
        return []
    return [int(part) for part in group.split(",")]


def _result(utt: list[int], img: list[int], recovered: bool = False) -> ParsedAnswer:
    unique = len(set(utt)) == len(utt) and len(set(img)) == len(img)
    if recovered:
        return ParsedAnswer(sorted(set(utt)), sorted(set(img)), recovered=True)
    return ParsedAnswer(sorted(set(utt)), sorted(set(img)), well_formed=unique, syntax_ok=True)


def _match(text: object, pattern: re.Pattern[str]) -> tuple[re.Match[str] | None, bool]:
    """(match, recovered): ``pattern`` over the whole completion less its think block (the
    module policy), else its first occurrence anywhere after a leading think block
    (``recovered``); (None, False) for a non-string or no answer at all."""
    if not isinstance(text, str):
        return None, False
    body = strip_think(text)
    whole = pattern.fullmatch(body) if body is not None else None
    if whole:
        return whole, False
    think = _THINK_BLOCK_RE.match(text)
    found = pattern.search(text, think.end() if think else 0)
    return found, found is not None


def parse_answer(text: object) -> ParsedAnswer:
    """Parse a completion in the reference format. Never raises (see the module policy)."""
    match, recovered = _match(text, _REFERENCE_RE)
    if not match:
        return MALFORMED
    return _result(_ids(match.group(1)), _ids(match.group(2)), recovered)


def _ranges(ids: list[int]) -> str:
    if not ids:
        return "none"
    parts: list[str] = []
    start = prev = ids[0]
    for i in ids[1:]:
        if i == prev + 1:
            prev = i
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = i
    parts.append(str(start) if start == prev else f"{start}-{prev}")
    return ", ".join(parts)


def format_compact(utt_ids: Iterable[int], img_ids: Iterable[int]) -> str:
    """The compact answer for two id sets, e.g. ``U 3-5, 9; I 1``."""
    return f"U {_ranges(_canonical(utt_ids))}; I {_ranges(_canonical(img_ids))}"


def _expand(group: str) -> tuple[list[int], bool]:
    """Expand ``3-5, 9`` to ids; False if a range is reversed (``5-3``)."""
    if group == "none":
        return [], True
    ids: list[int] = []
    for part in group.split(","):
        if "-" in part:
            lo, hi = (int(x) for x in part.split("-"))
            if hi < lo:
                return [], False
            ids.extend(range(lo, hi + 1))
        else:
            ids.append(int(part))
    return ids, True


# A compact answer with a huge range ("U 0-999999999") must not allocate a huge list.
_MAX_COMPACT_IDS = 100_000


def parse_compact(text: object) -> ParsedAnswer:
    """Parse a completion in the compact form, same policy as :func:`parse_answer`.
    Overlapping ranges (``1-3, 2``) count as duplicates."""
    match, recovered = _match(text, _COMPACT_RE)
    if not match:
        return MALFORMED
    total = 0
    for group in (match.group(1), match.group(2)):
        for part in group.split(","):
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-"))
                total += max(0, hi - lo + 1)
    if total > _MAX_COMPACT_IDS:
        return MALFORMED
    utt, ok_u = _expand(match.group(1))
    img, ok_i = _expand(match.group(2))
    if not (ok_u and ok_i):
        return MALFORMED
    return _result(utt, img, recovered)


def parse(text: object, form: AnswerForm = "reference") -> ParsedAnswer:
    """Parse in the given answer form."""
    return parse_compact(text) if form == "compact" else parse_answer(text)


def format_in(
    utt_ids: Iterable[int], img_ids: Iterable[int], form: AnswerForm = "reference"
) -> str:
    """Format in the given answer form."""
    return (
        format_compact(utt_ids, img_ids) if form == "compact" else format_answer(utt_ids, img_ids)
    )


def compact_to_reference(text: str) -> str | None:
    """Convert a compact answer to the reference format; None if it does not parse."""
    parsed = parse_compact(text)
    return format_answer(parsed.utt_ids, parsed.img_ids) if parsed.syntax_ok else None


def reference_to_compact(text: str) -> str | None:
    """Convert a reference answer to the compact form; None if it does not parse."""
    parsed = parse_answer(text)
    return format_compact(parsed.utt_ids, parsed.img_ids) if parsed.syntax_ok else None
