"""Convert (Dialogue, Query) to an ms-swift sample and back.

An ms-swift sample (the schema of the released MLDR files)::

    {"messages": [{"role": "system", ...}, {"role": "user", ...}, {"role": "assistant", ...}],
     "images": [paths in <image> order], "solution": reference answer, "dialogue_id": str}

Going back is tolerant, because the reference prompts were never seen: the dialogue is read from
the lines of the user message that START with an utterance id marker (any instruction text
before or after is ignored), ``speaker: text`` with or without a speaker, images as id markers
with an ``<image>`` tag and/or a caption written as ``[image: ...]`` (a bare ``<image>`` tag takes
the next image id), the query from the last ``<|query_start|>...<|query_end|>`` span. (A line
without a speaker whose text starts like ``Note: ...`` reads "Note" as the speaker: the format
cannot tell them apart.) The gold
answer comes from ``solution`` or else from the assistant message (reference or compact form).
Bad samples raise :class:`InputError` naming the field (the reader adds file and record).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ffr_lib.data.dataset import Dataset
from ffr_lib.data.errors import InputError
from ffr_lib.data.format.answer import (
    ParsedAnswer,
    format_answer,
    format_in,
    parse_answer,
    parse_compact,
)
from ffr_lib.data.format.prompt import (
    IMAGE_TOKEN,
    IMG_ID_END,
    IMG_ID_START,
    QUERY_END,
    QUERY_START,
    UTT_ID_END,
    UTT_ID_START,
    PromptConfig,
    render_prompt,
)
from ffr_lib.data.model import Dialogue, Image, Query, QueryType, Utterance

SOURCE = "msswift"

_UTT_LINE_RE = re.compile(rf"^\s*{re.escape(UTT_ID_START)}\s*(\d+)\s*{re.escape(UTT_ID_END)}(.*)$")
_IMAGE_RE = re.compile(
    rf"(?:{re.escape(IMG_ID_START)}\s*(\d+)\s*{re.escape(IMG_ID_END)}\s*({re.escape(IMAGE_TOKEN)})?"
    rf"|({re.escape(IMAGE_TOKEN)}))"
    # an optional caption as the default template writes it, up to the next image or line end
    rf"(?:\s*\[image(?::\s*(.*?))?\](?=\s*(?:{re.escape(IMG_ID_START)}|{re.escape(IMAGE_TOKEN)}|$)))?"
)
_QUERY_RE = re.compile(rf"{re.escape(QUERY_START)}(.*?){re.escape(QUERY_END)}", re.DOTALL)
_SPEAKER_RE = re.compile(r"^([^:<>\[\]\n]{1,64}?):(?:\s+(.*))?$", re.DOTALL)
_WS_RE = re.compile(r"\s+")


def to_msswift(
    dialogue: Dialogue,
    query: Query,
    config: PromptConfig | None = None,
    utterance_ids: Sequence[int] | None = None,
    reward_columns: bool = False,
) -> dict[str, Any]:
    """One ms-swift sample. With ``utterance_ids`` (a window or fragment, global ids) the prompt
    and the gold use local ids, ``dialogue_id`` gets a ``:first-last`` suffix and the sample keeps
    the map in ``utterance_ids``/``image_ids``. ``reward_columns`` adds the columns R_Fragment
    reads (``utterance_texts``, ``image_texts``, ``image_owner``, local ids) and the gold ids.
    The assistant turn uses ``config.answer_form``; ``solution`` is always the reference form."""
    config = config or PromptConfig()
    if utterance_ids is not None and not utterance_ids:
        raise ValueError("utterance_ids selects no utterance")
    rendered = render_prompt(dialogue, query.text, config, utterance_ids)
    gold_u, gold_i = rendered.to_local(query.gold_utterance_ids, query.gold_image_ids)
    images = []
    for image in rendered.images:
        ref = image.path or image.url
        if ref is None:
            raise ValueError(
                f"image {image.index} of dialogue {dialogue.id} has no path or url; "
                "use image_mode='caption' for images without pixels"
            )
        images.append(ref)
    sample: dict[str, Any] = {
        "messages": [
            *rendered.messages,
            {"role": "assistant", "content": format_in(gold_u, gold_i, config.answer_form)},
        ],
        "images": images,
        "solution": format_answer(gold_u, gold_i),
        "dialogue_id": dialogue.id,
        "query_id": query.id,
    }
    full = rendered.utterance_ids == list(range(len(dialogue.utterances)))
    if not full:
        first, last = rendered.utterance_ids[0], rendered.utterance_ids[-1]
        sample["dialogue_id"] = f"{dialogue.id}:{first}-{last}"
        sample["utterance_ids"] = rendered.utterance_ids
        sample["image_ids"] = rendered.image_ids
    if reward_columns:
        local_u = {g: i for i, g in enumerate(rendered.utterance_ids)}
        sample["utterance_texts"] = [
            _utterance_text(dialogue.utterances[g]) for g in rendered.utterance_ids
        ]
        sample["image_texts"] = [
            dialogue.images[g].content_text() or "image" for g in rendered.image_ids
        ]
        sample["image_owner"] = [
            local_u[dialogue.images[g].utterance_index] for g in rendered.image_ids
        ]
        sample["gold_utterance_ids"] = gold_u
        sample["gold_image_ids"] = gold_i
    return sample


def _utterance_text(utterance: Utterance) -> str:
    return f"{utterance.speaker}: {utterance.text}" if utterance.speaker else utterance.text


def message_text(content: Any) -> str:
    """Text of a message content: a string, or a list of parts (image parts become <image>)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for part in content:
            if isinstance(part, dict):
                if part.get("type") == "text":
                    out.append(str(part.get("text", "")))
                elif part.get("type") == "image":
                    out.append(IMAGE_TOKEN)
            elif isinstance(part, str):
                out.append(part)
        return "".join(out)
    raise TypeError(f"message content is {type(content).__name__}, not a string or parts list")


def _image_ref(entry: Any) -> str | None:
    if isinstance(entry, str):
        return entry
    if isinstance(entry, dict):
        ref = entry.get("path") or entry.get("url") or entry.get("image")
        return str(ref) if ref is not None else None
    return None


def _gold_from(text: Any) -> ParsedAnswer:
    if not isinstance(text, str):
        return ParsedAnswer()
    parsed = parse_answer(text)
    return parsed if parsed.syntax_ok else parse_compact(text)


def _content_key(utterances: list[Utterance], images: list[Image]) -> str:
    payload = {
        "utterances": [u.model_dump(mode="json") for u in utterances],
        "images": [i.model_dump(mode="json") for i in images],
    }
    data = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def parse_dialogue_lines(
    text: str, image_refs: Sequence[str | None] = (), field: str = "messages"
) -> tuple[list[Utterance], list[Image]]:
    """Utterances and images from the utterance lines of a user message."""
    utterances: list[Utterance] = []
    images: list[Image] = []
    n_tags = 0
    for line in text.splitlines():
        match = _UTT_LINE_RE.match(line)
        if not match:
            continue
        uid = int(match.group(1))
        if uid != len(utterances):
            raise InputError(
                f"utterance id {uid} where {len(utterances)} was expected (ids are 0.. in order)",
                field=field,
            )
        rest = match.group(2)
        for image_match in _IMAGE_RE.finditer(rest):
            marker_id, tag, bare_tag, caption = image_match.groups()
            iid = len(images)
            if marker_id is not None and int(marker_id) != iid:
                raise InputError(
                    f"image id {marker_id} where {iid} was expected (ids are 0.. in order)",
                    field=field,
                )
            path = None
            if tag or bare_tag:
                if n_tags < len(image_refs):
                    path = image_refs[n_tags]
                n_tags += 1
            images.append(Image(index=iid, utterance_index=uid, path=path, caption=caption or None))
        body = _WS_RE.sub(" ", _IMAGE_RE.sub(" ", rest)).strip()
        speaker_match = _SPEAKER_RE.match(body)
        speaker, utt_text = ("", body)
        if speaker_match:
            speaker, utt_text = speaker_match.group(1).strip(), (speaker_match.group(2) or "")
        utterances.append(Utterance(index=uid, speaker=speaker, text=utt_text.strip()))
    if not utterances:
        raise InputError("no utterance lines (<|utt_id_start|>i<|utt_id_end|> ...)", field=field)
    if image_refs and n_tags != len(image_refs):
        raise InputError(
            f"{n_tags} <image> tags in the prompt but {len(image_refs)} entries in images",
            field="images",
        )
    return utterances, images


def from_msswift(sample: Any, query_id: str, source: str = SOURCE) -> tuple[Dialogue, Query]:
    """Rebuild (Dialogue, Query) from one ms-swift sample; raises InputError naming the field."""
    if not isinstance(sample, dict):
        raise InputError(f"a sample is a JSON object, got {type(sample).__name__}")
    messages = sample.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InputError("missing or empty message list", field="messages")
    user_index = assistant_index = None
    for k, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message:
            raise InputError("a message is an object with a role", field=f"messages[{k}]")
        if message["role"] == "user" and user_index is None:
            user_index = k
        elif message["role"] == "assistant":
            assistant_index = k
    if user_index is None:
        raise InputError("no user message", field="messages")
    field = f"messages[{user_index}].content"
    try:
        user = message_text(messages[user_index].get("content"))
    except TypeError as exc:
        raise InputError(str(exc), field=field) from exc

    raw_images = sample.get("images") or []
    if not isinstance(raw_images, list):
        raise InputError("images is a list of paths", field="images")
    refs = [_image_ref(entry) for entry in raw_images]
    try:
        utterances, images = parse_dialogue_lines(user, refs, field=field)
    except ValueError as exc:  # pydantic errors of a bad utterance/image
        if isinstance(exc, InputError):
            raise
        raise InputError(str(exc), field=field) from exc
    queries = _QUERY_RE.findall(user)
    query_text = _WS_RE.sub(" ", queries[-1]).strip() if queries else ""
    if not query_text:
        raise InputError("no query between <|query_start|> and <|query_end|>", field=field)

    gold: ParsedAnswer | None = None
    if sample.get("solution") is not None:
        gold = _gold_from(sample["solution"])
        if not gold.syntax_ok:
            raise InputError(f"not an answer: {sample['solution']!r}", field="solution")
    if assistant_index is not None:
        afield = f"messages[{assistant_index}].content"
        try:
            assistant = _gold_from(message_text(messages[assistant_index].get("content")))
        except TypeError as exc:
            raise InputError(str(exc), field=afield) from exc
        if gold is None:
            if not assistant.syntax_ok:
                raise InputError("assistant message is not an answer", field=afield)
            gold = assistant
        elif assistant.syntax_ok and (assistant.utt_ids, assistant.img_ids) != (
            gold.utt_ids,
            gold.img_ids,
        ):
            raise InputError("assistant answer and solution disagree", field="solution")
    if gold is None:
        raise InputError("no gold answer (solution or assistant message)", field="solution")
    gold_field = (
        "solution" if sample.get("solution") is not None else f"messages[{assistant_index}]"
    )
    bad_u = [i for i in gold.utt_ids if i >= len(utterances)]
    bad_i = [i for i in gold.img_ids if i >= len(images)]
    if bad_u or bad_i:
        raise InputError(
            f"gold ids out of range: utterances {bad_u}, images {bad_i} "
            f"({len(utterances)} utterances, {len(images)} images in the prompt)",
            field=gold_field,
        )

    raw_id = sample.get("dialogue_id")
    if raw_id is not None and not isinstance(raw_id, (str, int)):
        raise InputError("dialogue_id is a string", field="dialogue_id")
    dialogue_id = str(raw_id).strip() if raw_id is not None else ""
    if not dialogue_id:
        dialogue_id = "msswift-" + _content_key(utterances, images)[:12]
    speakers = list(dict.fromkeys(u.speaker for u in utterances if u.speaker))
    try:
        dialogue = Dialogue(
            id=dialogue_id,
            source=source,
            speakers=speakers,
            utterances=utterances,
            images=images,
            metadata={"msswift_dialogue_id": raw_id},
        )
        query = Query(
            id=query_id,
            dialogue_id=dialogue_id,
            text=query_text,
            type=QueryType.from_gold(gold.utt_ids, gold.img_ids),
            gold_utterance_ids=gold.utt_ids,
            gold_image_ids=gold.img_ids,
        )
    except ValueError as exc:
        raise InputError(str(exc), field=field) from exc
    return dialogue, query


def write_swift(
    dataset: Dataset,
    path: str | Path,
    config: PromptConfig | None = None,
    reward_columns: bool = True,
) -> Path:
    """Write one ms-swift sample per single-dialogue query of ``dataset`` as JSON Lines (what
    :func:`ffr_lib.data.readers.msswift.read_msswift` reads back). Corpus queries (no
    ``dialogue_id``) are skipped. Without ``config``, images are ``<image>`` tags when every
    image has a path or url, else the whole file writes images as captions (``caption`` mode:
    a file must not mix the two). Returns the path."""
    path = Path(path)
    by_id = dataset.dialogue_by_id()
    if config is None:
        pixels = all(i.path or i.url for d in dataset.dialogues for i in d.images)
        config = PromptConfig(image_mode="placeholder" if pixels else "caption")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for query in dataset.queries:
            if query.dialogue_id is None:
                continue
            if query.dialogue_id not in by_id:
                raise ValueError(f"query {query.id} refers to unknown dialogue {query.dialogue_id}")
            sample = to_msswift(by_id[query.dialogue_id], query, config, None, reward_columns)
            out.write(json.dumps(sample, ensure_ascii=False) + "\n")
    return path


def content_key(dialogue: Dialogue) -> str:
    """Hash of a dialogue's utterances and images (not its id or metadata)."""
    return _content_key(dialogue.utterances, dialogue.images)
