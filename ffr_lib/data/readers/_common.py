"""Helpers every reader shares: strict JSON/JSONL loading, typed field access and the dataset-wide
checks (duplicate ids, empty dialogues, gold ids in range), all reporting :class:`InputError` with
file, record and field."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ffr_lib.data.dataset import Dataset
from ffr_lib.data.errors import InputError
from ffr_lib.data.model import MAX_UTTERANCE_CHARS

# Bytes that are not UTF-8 survive decoding as lone surrogates (errors="surrogateescape"); JSON
# "\udXXX" escapes produce them too. Neither can be stored or encoded, so both are bad text.
# NUL ("\u0000") decodes fine but PostgreSQL text and jsonb cannot hold it: bad text too.
_SURROGATE = re.compile("[\ud800-\udfff\x00]")
_MESSAGE_FIELD = re.compile(
    r"\b(?:utterances|images)\[\d+\]\.\w+|\bgold_(?:utterance|image)_ids\b|\bimages\b"
)
_SURROGATE_ESCAPE = re.compile(r"\\u(?:[dD][89a-fA-F]|0000)")


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def field_path(parts: tuple[Any, ...] | list[Any], prefix: str = "") -> str:
    """Render a location like ``('utterances', 3, 'text')`` as ``utterances[3].text``."""
    out = prefix
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def find_bad_text(value: Any, path: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
    """Location of the first string (or key) holding a lone surrogate, i.e. invalid text."""
    if isinstance(value, str):
        return path if _SURROGATE.search(value) else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and _SURROGATE.search(key):
                return (*path, key)
            found = find_bad_text(item, (*path, key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = find_bad_text(item, (*path, index))
            if found is not None:
                return found
    return None


def _bad_text_reason(data: Any, path: tuple[Any, ...], bad_utf8: bool) -> str:
    """Why the string at ``path`` (found by :func:`find_bad_text`) is bad."""
    value = data
    try:
        for part in path:
            value = value[part]
    except (KeyError, IndexError, TypeError):
        value = path[-1] if path else ""  # the bad string is a key
    if isinstance(value, str) and "\x00" in value:
        return "text holds a NUL character (\\u0000), which PostgreSQL text cannot store"
    if bad_utf8:
        return "text is not valid UTF-8"
    return "text holds an unpaired surrogate escape"


def _loads(text: str) -> Any:
    return json.loads(text, parse_constant=_reject_constant)


def load_json(path: Path) -> Any:
    """Parse a whole JSON file; a top-level list reports bad text by item index."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read file: {exc}", file=path) from exc
    try:
        text = raw.decode("utf-8")
        bad_utf8: UnicodeDecodeError | None = None
    except UnicodeDecodeError as exc:
        text, bad_utf8 = raw.decode("utf-8", errors="surrogateescape"), exc
    if text.startswith("\ufeff"):
        text = text[1:]  # a UTF-8 byte-order mark is harmless
    try:
        data = _loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"malformed JSON: {exc.msg} (column {exc.colno})",
            file=path,
            record=f"line {exc.lineno}",
        ) from exc
    except ValueError as exc:
        raise InputError(f"malformed JSON: {exc}", file=path) from exc
    except RecursionError as exc:
        raise InputError("malformed JSON: nested too deeply", file=path) from exc
    # Walking every string is slow on big files: only do it when the bytes were not UTF-8 or the
    # text holds an escape that json could have turned into a lone surrogate or a NUL.
    bad = find_bad_text(data) if bad_utf8 is not None or _SURROGATE_ESCAPE.search(text) else None
    if bad is not None:
        reason = _bad_text_reason(data, bad, bad_utf8 is not None)
        if bad_utf8 is not None and reason.endswith("UTF-8"):
            reason += f" (byte offset {bad_utf8.start})"
        if isinstance(data, list) and bad:
            raise InputError(reason, file=path, record=bad[0], field=field_path(bad[1:]) or None)
        raise InputError(reason, file=path, field=field_path(bad) or None)
    return data


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield ``(line number, parsed object)`` for every non-blank line of a JSONL file."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise InputError(f"cannot read file: {exc}", file=path) from exc
    with handle:
        for line_no, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
                bad_utf8 = False
            except UnicodeDecodeError:
                text, bad_utf8 = raw.decode("utf-8", errors="surrogateescape"), True
            text = text.rstrip("\r\n")
            if line_no == 1 and text.startswith("\ufeff"):
                text = text[1:]
            try:
                obj = _loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(
                    f"malformed JSON: {exc.msg} (column {exc.colno})", file=path, record=line_no
                ) from exc
            except ValueError as exc:
                raise InputError(f"malformed JSON: {exc}", file=path, record=line_no) from exc
            except RecursionError as exc:
                raise InputError(
                    "malformed JSON: nested too deeply", file=path, record=line_no
                ) from exc
            bad = find_bad_text(obj) if bad_utf8 or _SURROGATE_ESCAPE.search(text) else None
            if bad is not None:
                reason = _bad_text_reason(obj, bad, bad_utf8)
                raise InputError(reason, file=path, record=line_no, field=field_path(bad) or None)
            yield line_no, obj


def from_validation_error(
    exc: ValidationError, *, file: str | Path, record: str | int, prefix: str = ""
) -> InputError:
    """Turn pydantic's first error into an InputError naming the offending field."""
    first = exc.errors()[0]
    loc = tuple(first.get("loc", ()))
    message = first.get("msg", str(exc))
    if not loc:
        # A model-level check (dense ids, gold vs type) has no loc; its message starts with
        # the field it is about, e.g. "utterances[1].index is 3, expected 1".
        named = _MESSAGE_FIELD.search(message)
        if named:
            loc = (named.group(0),)
    field = field_path(loc, prefix) or prefix or None
    extra = len(exc.errors()) - 1
    if extra:
        message += f" (and {extra} more error{'s' if extra > 1 else ''})"
    return InputError(message, file=file, record=record, field=field)


_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    bool: "a boolean",
    list: "a list",
    dict: "an object",
}


def _describe(types: type | tuple[type, ...]) -> str:
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)


def _is(value: Any, types: type | tuple[type, ...]) -> bool:
    types = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool) and bool not in types:
        return False  # JSON true is not an integer id
    return isinstance(value, types)


class Where:
    """The location of one record, so type checks can name file, record and field. The field
    path is kept as parts and rendered only when an error is raised (readers create many)."""

    __slots__ = ("file", "parts", "record")

    def __init__(
        self, file: str | Path, record: str | int | None, parts: tuple[str | int, ...] = ()
    ) -> None:
        self.file = file
        self.record = record
        self.parts = parts

    @property
    def prefix(self) -> str:
        return field_path(self.parts)

    def field(self, name: str | int) -> str:
        return field_path((*self.parts, name))

    def error(self, message: str, field: str | int | None = None) -> InputError:
        name = self.field(field) if field is not None else (self.prefix or None)
        return InputError(message, file=self.file, record=self.record, field=name)

    def child(self, name: str | int) -> Where:
        return Where(self.file, self.record, (*self.parts, name))

    def require(
        self, obj: Any, key: str, types: type | tuple[type, ...], *, optional: bool = False
    ) -> Any:
        """``obj[key]`` checked to be of ``types``; a missing key is an error unless optional."""
        if not isinstance(obj, Mapping):
            raise self.error(f"expected an object, got {type(obj).__name__}")
        if key not in obj or (optional and obj[key] is None):
            if optional:
                return None
            raise self.error("required field is missing", key)
        value = obj[key]
        if not _is(value, types):
            raise self.error(
                f"expected {_describe(types)}, got {type(value).__name__} {_short(value)}", key
            )
        return value

    def expect(self, value: Any, types: type | tuple[type, ...], what: str = "value") -> Any:
        if not _is(value, types):
            raise self.error(
                f"expected {what} to be {_describe(types)}, got {type(value).__name__}"
            )
        return value


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def check_first(
    seen: dict[str, str],
    key: str,
    here: str,
    what: str,
    *,
    file: str | Path | None,
    record: Any,
    field: str | None,
) -> None:
    """Note that the ``what`` (e.g. "dialogue id") ``key`` stands ``here`` (e.g. "on line 3");
    InputError at ``file``/``record``/``field``, naming where it stood first, when ``seen``
    already has it."""
    if key in seen:
        raise InputError(
            f"duplicate {what} {key!r} (first {seen[key]})", file=file, record=record, field=field
        )
    seen[key] = here


def check_dataset(dataset: Dataset, *, file: str | Path) -> None:
    """Dataset-wide rules every reader enforces: unique dialogue and query ids, no empty
    dialogue, every query's dialogue exists and its gold ids are inside it."""
    seen: dict[str, str] = {}
    for position, dialogue in enumerate(dataset.dialogues):
        here = f"as dialogue #{position}"
        check_first(
            seen, dialogue.id, here, "dialogue id", file=file, record=dialogue.id, field="id"
        )
        if not dialogue.utterances:
            raise InputError(
                "dialogue has no utterances", file=file, record=dialogue.id, field="utterances"
            )
        for utterance in dialogue.utterances:
            if len(utterance.text) > MAX_UTTERANCE_CHARS:
                raise InputError(
                    f"utterance text is {len(utterance.text):,} characters, more than the limit "
                    f"{MAX_UTTERANCE_CHARS:,}",
                    file=file,
                    record=dialogue.id,
                    field=f"utterances[{utterance.index}].text",
                )
    by_id = dataset.dialogue_by_id()
    query_ids: dict[str, str] = {}
    for position, query in enumerate(dataset.queries):
        here = f"as query #{position}"
        check_first(query_ids, query.id, here, "query id", file=file, record=query.id, field="id")
        if query.dialogue_id is None:
            continue
        dialogue = by_id.get(query.dialogue_id)
        if dialogue is None:
            raise InputError(
                f"query refers to unknown dialogue {query.dialogue_id!r}",
                file=file,
                record=query.id,
                field="dialogue_id",
            )
        try:
            query.check_against(dialogue)
        except ValueError as exc:
            bad_field = "gold_utterance_ids" if "utterance" in str(exc) else "gold_image_ids"
            raise InputError(str(exc), file=file, record=query.id, field=bad_field) from exc
