"""Reader for LoCoMo (``locomo10.json``, Maharana et al. 2024): very long two-person chats in
sessions, with images shared as URLs, and QA annotated with evidence turns.

Mapping (also in docs/canonical-format.md, "Readers"):

- One Dialogue per sample, id ``locomo:<sample_id>``, sessions concatenated in session order.
  Every utterance's timestamp is its session's ``session_N_date_time``.
  ``metadata['sessions']`` keeps each session's number, raw date and utterance span;
  ``metadata['dia_ids'][i]`` is the ``dia_id`` of utterance i.
- ``img_url`` (a list, or one string) gives one Image per URL owned by that utterance, caption =
  ``blip_caption``. The ``query`` field (the stock-photo search string, which leaks answers) is
  never read; other unknown fields are ignored.
- A QA item is Query ``locomo:<sample_id>:q<index in qa>``: gold utterance ids from ``evidence``,
  gold image ids = the images owned by those utterances; ``category`` and the answer go to
  metadata. Category 5 (adversarial: the answer is not in the chat) is a negative query.
- Malformed evidence is normalised when unambiguous ("D8:6; D9:17" -> two refs, "D:11:26" ->
  D11:26, "D30:05" -> D30:5); what cannot be resolved is reported as a warning, never raised.
  A non-adversarial QA with no resolvable evidence is skipped (it would otherwise look negative).
  Warnings are in ``Query.metadata['evidence_warnings']``, ``Dialogue.metadata['reader_warnings']``
  and returned by :func:`read_locomo_with_warnings`.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from pathlib import Path

from ffr_lib.data.dataset import Dataset
from ffr_lib.data.errors import InputError
from ffr_lib.data.model import Dialogue, Image, Query, QueryType, Utterance
from ffr_lib.data.readers._common import Where, check_dataset, check_first, load_json

SOURCE = "locomo"
ADVERSARIAL_CATEGORY = 5
log = logging.getLogger(__name__)

_SESSION_KEY = re.compile(r"^session_(\d+)$")
# A dialogue reference: "D1:3", tolerant of a stray colon ("D:11:26") and spaces.
_REF = re.compile(r"D\s*:?\s*(\d+)\s*:\s*(\d+)")
_SEPARATORS = re.compile(r"[\s;,&]+|\band\b")
_DATE_FORMATS = ("%I:%M %p on %d %B, %Y", "%I:%M %p on %d %b, %Y", "%I:%M %p on %B %d, %Y")


def parse_session_date(text: str) -> datetime | None:
    """``"1:56 pm on 8 May, 2023"`` -> datetime(2023, 5, 8, 13, 56); None if unparseable."""
    cleaned = " ".join(text.strip().split())
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(cleaned, fmt)
        except ValueError:
            continue
    return None


def normalise_evidence(raw: object) -> tuple[list[str], list[str]]:
    """Split one evidence entry into canonical refs ``D<session>:<turn>`` (no leading zeros).

    Returns (refs, problems). Never raises: LoCoMo's evidence has typos, and one bad reference
    must not cost the whole benchmark.
    """
    if not isinstance(raw, str):
        return [], [f"evidence entry {raw!r} is not a string"]
    refs = [f"D{int(s)}:{int(t)}" for s, t in _REF.findall(raw)]
    leftover = _SEPARATORS.sub("", _REF.sub("", raw))
    problems: list[str] = []
    if not refs:
        problems.append(f"evidence {raw!r} holds no dialogue reference")
    elif leftover:
        problems.append(f"evidence {raw!r} has unparsed text {leftover!r}")
    return refs, problems


def _read_sample(obj: object, where: Where) -> tuple[Dialogue, list[Query], list[str]]:
    sample_id = where.require(obj, "sample_id", (str, int))
    conv = where.require(obj, "conversation", dict)
    qa = where.require(obj, "qa", list, optional=True) or []
    at_conv = where.child("conversation")
    speaker_a = at_conv.require(conv, "speaker_a", str)
    speaker_b = at_conv.require(conv, "speaker_b", str)
    dialogue_id = f"{SOURCE}:{sample_id}"
    warnings: list[str] = []

    sessions = sorted(
        (int(m.group(1)), key) for key in conv if (m := _SESSION_KEY.match(key)) is not None
    )
    utterances: list[Utterance] = []
    images: list[Image] = []
    dia_ids: list[str] = []
    position_of: dict[str, int] = {}
    session_meta: list[dict[str, object]] = []
    speakers = [speaker_a, speaker_b]
    for number, key in sessions:
        turns = at_conv.require(conv, key, list)
        date_key = f"{key}_date_time"
        date_text = at_conv.require(conv, date_key, str, optional=True)
        stamp = parse_session_date(date_text) if date_text else None
        if date_text and stamp is None:
            warnings.append(f"{dialogue_id}: {date_key} {date_text!r} is not a date")
        session_meta.append(
            {
                "session": number,
                "date_time": date_text,
                "first_utterance": len(utterances),
                "utterances": len(turns),
            }
        )
        for t, turn in enumerate(turns):
            at = at_conv.child(key).child(t)
            speaker = at.require(turn, "speaker", str)
            dia_id = at.require(turn, "dia_id", str)
            urls = at.require(turn, "img_url", (list, str), optional=True)
            text = at.require(turn, "text", str, optional=urls is not None) or ""
            caption = at.require(turn, "blip_caption", str, optional=True)
            # turn["query"] is deliberately never read (see the module docstring).
            index = len(utterances)
            utterances.append(Utterance(index=index, speaker=speaker, text=text, timestamp=stamp))
            if speaker not in speakers:
                speakers.append(speaker)
            normalised = normalise_evidence(dia_id)[0]
            ref = normalised[0] if len(normalised) == 1 else dia_id
            dia_ids.append(dia_id)
            if ref in position_of:
                warnings.append(
                    f"{dialogue_id}: dia_id {dia_id!r} repeats (utterances "
                    f"{position_of[ref]} and {index}); evidence maps to the first"
                )
            else:
                position_of[ref] = index
            for k, url in enumerate([urls] if isinstance(urls, str) else urls or []):
                at.child("img_url").expect(url, str, f"img_url[{k}]")
                if url.strip():
                    images.append(
                        Image(index=len(images), utterance_index=index, url=url, caption=caption)
                    )
    if not utterances:
        raise where.error("sample has no session with utterances", "conversation")

    images_of: dict[int, list[int]] = {}
    for image in images:
        images_of.setdefault(image.utterance_index, []).append(image.index)

    queries: list[Query] = []
    for q, item in enumerate(qa):
        at = where.child("qa").child(q)
        question = at.require(item, "question", str)
        category = at.require(item, "category", int)
        evidence = at.require(item, "evidence", list, optional=True) or []
        answer = at.require(item, "answer", (str, int, float), optional=True)
        adversarial = at.require(item, "adversarial_answer", (str, int, float), optional=True)
        if not 1 <= category <= 5:
            raise at.error(f"category must be 1..5, got {category}", "category")
        query_id = f"{dialogue_id}:q{q}"
        if not question.strip():
            warnings.append(f"{query_id}: empty question skipped")
            continue
        problems: list[str] = []
        refs: list[str] = []
        for entry in evidence:
            found, issues = normalise_evidence(entry)
            refs.extend(found)
            problems.extend(issues)
        utt_ids: list[int] = []
        for ref in dict.fromkeys(refs):
            if ref in position_of:
                utt_ids.append(position_of[ref])
            else:
                problems.append(f"evidence {ref} is not a dia_id of this sample")
        utt_ids = sorted(set(utt_ids))
        img_ids = sorted(i for u in utt_ids for i in images_of.get(u, []))
        warnings.extend(f"{query_id}: {p}" for p in problems)
        metadata: dict[str, object] = {
            "category": category,
            "evidence": evidence,
            "evidence_refs": list(dict.fromkeys(refs)),
        }
        if answer is not None:
            metadata["answer"] = str(answer)
        if adversarial is not None:
            metadata["adversarial_answer"] = str(adversarial)
        if problems:
            metadata["evidence_warnings"] = problems
        if category == ADVERSARIAL_CATEGORY:
            # The question presupposes something the chat never says: nothing should match.
            metadata["evidence_utterance_ids"] = utt_ids
            utt_ids, img_ids = [], []
        elif not utt_ids:
            warnings.append(f"{query_id}: no resolvable evidence; question skipped")
            continue
        queries.append(
            Query(
                id=query_id,
                dialogue_id=dialogue_id,
                text=question,
                type=QueryType.from_gold(utt_ids, img_ids),
                gold_utterance_ids=utt_ids,
                gold_image_ids=img_ids,
                metadata=metadata,
            )
        )

    dialogue = Dialogue(
        id=dialogue_id,
        source=SOURCE,
        speakers=speakers,
        utterances=utterances,
        images=images,
        metadata={
            "sample_id": sample_id,
            "speaker_a": speaker_a,
            "speaker_b": speaker_b,
            "sessions": session_meta,
            "dia_ids": dia_ids,
            "reader_warnings": warnings,
        },
    )
    return dialogue, queries, warnings


def read_locomo_with_warnings(
    path: str | Path, limit: int | None = None
) -> tuple[Dataset, list[str]]:
    """Read ``locomo10.json``; return the dataset and every normalisation warning."""
    file = Path(path)
    if file.is_dir():
        file = file / "locomo10.json"
    if not file.is_file():
        raise InputError("LoCoMo file does not exist", file=file)
    data = load_json(file)
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise InputError(f"expected a JSON list of samples, got {type(data).__name__}", file=file)
    dialogues: list[Dialogue] = []
    queries: list[Query] = []
    warnings: list[str] = []
    seen: dict[str, str] = {}
    for index, obj in enumerate(data):
        if limit is not None and len(dialogues) >= limit:
            break
        dialogue, sample_queries, sample_warnings = _read_sample(obj, Where(file, index))
        here = f"as sample #{index}"
        check_first(
            seen, dialogue.id, here, "dialogue id", file=file, record=index, field="sample_id"
        )
        dialogues.append(dialogue)
        queries.extend(sample_queries)
        warnings.extend(sample_warnings)
    dataset = Dataset(dialogues=dialogues, queries=queries)
    check_dataset(dataset, file=file)
    return dataset, warnings


def read_locomo(path: str | Path, limit: int | None = None) -> Dataset:
    """Read ``locomo10.json`` (or a folder holding it); warnings are logged and kept in
    metadata (see :func:`read_locomo_with_warnings`)."""
    dataset, warnings = read_locomo_with_warnings(path, limit)
    if warnings:
        log.warning("LoCoMo %s: %d warnings, first: %s", path, len(warnings), warnings[0])
    return dataset
