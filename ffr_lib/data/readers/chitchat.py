"""Reader for the ``chitchat-dataset`` PyPI package (Chit Chat Challenge, 7,168 real English
conversations, MIT). The package ships one JSON file, ``{conversation uuid: {"messages":
[[{"text", "timestamp", "sender"}, ...], ...], "prompt"?, "start"?, "ratings"?}}``, where each
inner list is a group of consecutive messages by one sender.

Mapping: one Dialogue per conversation, id ``chitchat:<uuid>``; one Utterance per message (each
is a separate chat line with its own timestamp, as in the real chats FFR targets), so the
package's 258,145 messages become 258,145 utterances. Group boundaries are kept as
``metadata['group_starts']`` (utterance id opening each group). Senders are global user uuids;
speakers are ``A`` and ``B`` in order of first appearance, the uuids kept in
``metadata['sender_ids']``. No images and no queries.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError

from ffr_lib.data.dataset import Dataset
from ffr_lib.data.errors import InputError
from ffr_lib.data.model import Dialogue, Utterance
from ffr_lib.data.readers._common import Where, check_dataset, from_validation_error, load_json

SOURCE = "chitchat"
_SPEAKER_NAMES = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def chitchat_package_file() -> Path:
    """The dataset.json the installed package ships."""
    try:
        import chitchat_dataset
    except ImportError as exc:  # pragma: no cover - it is a declared dependency
        raise InputError("the chitchat-dataset package is not installed") from exc
    return Path(chitchat_dataset._PATH)


def _timestamp(value: str | None, where: Where, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError as exc:
        raise where.error(f"timestamp {value!r} is not ISO 8601", field) from exc


def _read_one(conv_id: str, conv: object, file: Path) -> Dialogue:
    where = Where(file, conv_id)
    groups = where.require(conv, "messages", list)
    prompt = where.require(conv, "prompt", str, optional=True)
    start = where.require(conv, "start", str, optional=True)
    ratings = where.require(conv, "ratings", dict, optional=True)
    if not groups:
        raise where.error("conversation has no messages", "messages")
    speakers: dict[str, str] = {}
    utterances: list[Utterance] = []
    group_starts: list[int] = []
    for g, group in enumerate(groups):
        at_group = where.child("messages").child(g)
        at_group.expect(group, list, "a message group")
        if not group:
            raise at_group.error("message group is empty")
        group_starts.append(len(utterances))
        for m, message in enumerate(group):
            # Fast path for 258k messages: plain type checks, and the named checks (which build
            # a field path) only for a message that fails them.
            try:
                text, sender = message["text"], message["sender"]
                stamp = message.get("timestamp")
                well_typed = (
                    type(text) is str
                    and type(sender) is str
                    and (stamp is None or type(stamp) is str)
                )
            except (TypeError, KeyError, AttributeError):
                well_typed = False
            if not well_typed:
                at = at_group.child(m)
                text = at.require(message, "text", str)
                sender = at.require(message, "sender", str)
                stamp = at.require(message, "timestamp", str, optional=True)
            if sender not in speakers:
                count = len(speakers)
                speakers[sender] = (
                    _SPEAKER_NAMES[count] if count < len(_SPEAKER_NAMES) else f"S{count}"
                )
            # Plain dicts: pydantic validates the whole dialogue (and parses the timestamps) in
            # one call, several times faster than building Utterance objects one by one.
            utterances.append(
                {
                    "index": len(utterances),
                    "speaker": speakers[sender],
                    "text": text,
                    "timestamp": stamp,
                }
            )
    metadata: dict[str, object] = {
        "sender_ids": list(speakers),
        "group_starts": group_starts,
    }
    if prompt is not None:
        metadata["prompt"] = prompt
    if start is not None:
        metadata["start"] = start
    if ratings is not None:
        metadata["ratings"] = ratings
    try:
        return Dialogue.model_validate(
            {
                "id": f"{SOURCE}:{conv_id}",
                "source": SOURCE,
                "speakers": list(speakers.values()),
                "utterances": utterances,
                "metadata": metadata,
            }
        )
    except ValidationError as exc:
        # Only a timestamp can fail here (types were checked); name the message it came from.
        for g, group in enumerate(groups):
            for m, message in enumerate(group):
                at = where.child("messages").child(g).child(m)
                _timestamp(message.get("timestamp"), at, "timestamp")
        raise from_validation_error(exc, file=file, record=conv_id) from exc


def _reject_duplicate_keys(file: Path):
    def hook(pairs: list[tuple[str, object]]) -> dict[str, object]:
        out: dict[str, object] = {}
        for key, value in pairs:
            if key in out and isinstance(value, dict) and "messages" in value:
                raise InputError(
                    f"duplicate conversation id {key!r}", file=file, record=key, field="id"
                )
            out[key] = value
        return out

    return hook


def read_chitchat(path: str | Path | None = None, limit: int | None = None) -> Dataset:
    """Read the chitchat-dataset conversations. ``path`` None, ``""`` or ``"-"`` means the
    installed package's file; any other path is a JSON file in the same layout."""
    file = chitchat_package_file() if path is None or str(path) in ("", "-") else Path(path)
    data = load_json(file)
    # A JSON object silently keeps the last of two equal keys; re-parse to catch duplicate
    # conversation ids only when the cheap count says some key appeared twice.
    if isinstance(data, dict) and file.read_bytes().count(b'"messages"') > len(data):
        json.loads(file.read_text("utf-8"), object_pairs_hook=_reject_duplicate_keys(file))
    if not isinstance(data, dict):
        raise InputError(
            f"expected a JSON object of conversations, got {type(data).__name__}", file=file
        )
    dialogues: list[Dialogue] = []
    for conv_id, conv in data.items():
        if limit is not None and len(dialogues) >= limit:
            break
        dialogues.append(_read_one(conv_id, conv, file))
    dataset = Dataset(dialogues=dialogues)
    check_dataset(dataset, file=file)
    return dataset
