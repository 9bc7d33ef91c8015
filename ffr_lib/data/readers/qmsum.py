"""QMSum reader (Zhong et al., NAACL 2021): real multi-party meetings, one JSON object per file,
with human-marked answer spans per query and a human topic segmentation.

Mapping (also in docs/canonical-format.md, "QMSum"):

- One Dialogue per meeting file, id ``qmsum:<split>:<file stem>`` (e.g. ``qmsum:val:Bed002``);
  split = the name of the file's folder (``train``, ``val``). One utterance per entry of
  ``meeting_transcripts``, in order, so utterance id == QMSum turn index.
- Transcription artefacts (any ``{word}``: ``{vocalsound}``, ``{disfmarker}``, ``{gap}``,
  ``{pause}``, ...) are removed from the utterance text, which is what retrieval sees; a turn
  that held nothing else keeps an empty text (ids stay turn indices). The raw text of every
  changed turn is kept in ``metadata['raw_text']`` (``{"<turn index>": raw}``).
- Each ``specific_query_list`` item is Query ``<dialogue id>:q<index in the list>``, type
  utterance-only, gold utterances = the union of its ``relevant_text_span`` spans (turn indices
  as strings, inclusive at both ends). ``answer`` and the spans go to the query's metadata
  (the answer is a summary of the span: training signal, never a retrieval input).
- ``general_query_list`` items ask about the whole meeting and have no span: they are skipped and
  counted (``Dialogue.metadata['general_queries_skipped']``, ``Dataset.metadata``).
- ``topic_list`` is the reference segmentation: ``metadata['topics']`` keeps each topic with its
  spans, ``metadata['topic_boundaries']`` the turn ids that start a segment (every span start
  and the turn after every span end), the key the segmentation metrics
  (:func:`ffr_lib.segment.reference_boundaries`) read. A gap between topic spans is a segment
  of its own.
- A malformed span (not a pair, non-numeric, start > end, outside the meeting) never fails the
  file: that query is skipped and the reason, naming file, query and field, is logged and kept
  in ``Dataset.metadata['skipped_queries']`` (and ``['warnings']``). A malformed topic span is
  dropped the same way (``Dialogue.metadata['reader_warnings']``). A broken meeting (not an
  object, no turns, a turn without speaker or text) is an :class:`InputError` for the file.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ffr_lib.data.dataset import Dataset
from ffr_lib.data.errors import InputError
from ffr_lib.data.model import Dialogue, Query, QueryType, Utterance
from ffr_lib.data.readers._common import Where, check_dataset, load_json
from ffr_lib.settings import get_settings

SOURCE = "qmsum"
#: Split folders in reading order; ``-`` (the default source) reads the first two.
SPLITS = ("train", "val", "test")
DEFAULT_SPLITS = ("train", "val")
log = logging.getLogger(__name__)

# A transcription artefact: one word in braces ("{vocalsound}", "{disfmarker}", "{gap}").
_ARTEFACT = re.compile(r"\{\s*[A-Za-z_]+\s*\}")
_SPACES = re.compile(r"\s+")
_INDEX = re.compile(r"^\s*\d+\s*$")


def clean_text(raw: str) -> str:
    """``raw`` without transcription artefacts, whitespace collapsed."""
    return _SPACES.sub(" ", _ARTEFACT.sub(" ", raw)).strip()


def qmsum_files(path: Path) -> list[Path]:
    """The meeting files under ``path`` (one file, a split folder or the root holding split
    folders), in a stable order: train, val, test first, each sorted by name."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError("QMSum path does not exist", file=path)
    files = sorted(path.rglob("*.json"))
    if not files:
        raise InputError("no QMSum .json files found", file=path)

    def order(file: Path) -> tuple[int, str]:
        split = file.parent.name
        rank = SPLITS.index(split) if split in SPLITS else len(SPLITS)
        return rank, file.relative_to(path).as_posix()

    return sorted(files, key=order)


def _index(value: object) -> int | None:
    """A span end as an int: QMSum writes ``"12"``; a JSON integer is accepted too."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INDEX.match(value):
        return int(value)
    return None


def parse_spans(spans: object, n_turns: int) -> tuple[list[tuple[int, int]], tuple[str, str]]:
    """``relevant_text_span`` as inclusive ``(start, end)`` pairs, or the first problem as
    ``(field, reason)`` (field relative to the span list's owner); never raises."""
    if spans is None:
        return [], ("relevant_text_span", "required field is missing")
    if not isinstance(spans, list):
        return [], ("relevant_text_span", f"expected a list of spans, got {type(spans).__name__}")
    if not spans:
        return [], ("relevant_text_span", "no span")
    out: list[tuple[int, int]] = []
    for s, span in enumerate(spans):
        field = f"relevant_text_span[{s}]"
        if not isinstance(span, list) or len(span) != 2:
            return [], (field, f"expected a [start, end] pair, got {span!r}")
        start, end = _index(span[0]), _index(span[1])
        if start is None or end is None:
            position = 0 if start is None else 1
            return [], (f"{field}[{position}]", f"{span[position]!r} is not a turn index")
        if start > end:
            return [], (field, f"start {start} > end {end}")
        if end >= n_turns:
            return [], (
                field,
                f"span {start}-{end} is outside the meeting (turns 0..{n_turns - 1})",
            )
        out.append((start, end))
    return out, ("", "")


def topic_boundaries(spans: Sequence[tuple[int, int]], n_turns: int) -> list[int]:
    """Turn ids that start a segment: every span start and the turn after every span end."""
    cuts = {s for s, _ in spans} | {e + 1 for _, e in spans}
    return sorted(c for c in cuts if 0 < c < n_turns)


def _skip(
    problems: list[dict[str, Any]], file: Path, record: str, field: str | None, reason: str
) -> None:
    message = str(InputError(reason, file=file, record=record, field=field))
    problems.append(
        {"file": str(file), "record": record, "field": field, "reason": reason, "message": message}
    )


def read_meeting(
    data: object, file: Path, split: str | None = None
) -> tuple[Dialogue, list[Query], list[dict[str, Any]]]:
    """One meeting (the parsed JSON of ``file``): its Dialogue, its specific queries and the
    queries skipped (``file``, ``record``, ``field``, ``reason``, ``message``). Raises
    :class:`InputError` only when the meeting itself is broken."""
    split = split or file.parent.name
    where = Where(file, file.stem)
    turns = where.require(data, "meeting_transcripts", list)
    specific = where.require(data, "specific_query_list", list, optional=True) or []
    general = where.require(data, "general_query_list", list, optional=True) or []
    topics = where.require(data, "topic_list", list, optional=True) or []
    if not turns:
        raise where.error("meeting has no turns", "meeting_transcripts")
    dialogue_id = f"{SOURCE}:{split}:{file.stem}"

    utterances: list[Utterance] = []
    speakers: list[str] = []
    raw_text: dict[str, str] = {}
    for i, turn in enumerate(turns):
        at = where.child("meeting_transcripts").child(i)
        speaker = at.require(turn, "speaker", str)
        content = at.require(turn, "content", str)
        text = clean_text(content)
        if text != content:
            raw_text[str(i)] = content
        utterances.append(Utterance(index=i, speaker=speaker, text=text))
        if speaker not in speakers:
            speakers.append(speaker)
    n = len(utterances)

    skipped: list[dict[str, Any]] = []
    queries: list[Query] = []
    for q, item in enumerate(specific):
        record = f"specific_query_list[{q}]"
        if not isinstance(item, dict):
            _skip(skipped, file, record, None, f"expected an object, got {type(item).__name__}")
            continue
        text = item.get("query")
        if not isinstance(text, str) or not text.strip():
            _skip(skipped, file, record, "query", f"expected a non-empty string, got {text!r}")
            continue
        spans, (field, reason) = parse_spans(item.get("relevant_text_span"), n)
        if not spans:
            _skip(skipped, file, record, field, reason)
            continue
        gold = sorted({u for start, end in spans for u in range(start, end + 1)})
        metadata: dict[str, Any] = {"spans": [list(span) for span in spans], "split": split}
        answer = item.get("answer")
        if isinstance(answer, str):
            metadata["answer"] = answer
        queries.append(
            Query(
                id=f"{dialogue_id}:q{q}",
                dialogue_id=dialogue_id,
                text=text.strip(),
                type=QueryType.UTTERANCE_ONLY,
                gold_utterance_ids=gold,
                metadata=metadata,
            )
        )

    warnings: list[str] = []
    topic_meta: list[dict[str, Any]] = []
    reference: list[tuple[int, int]] = []
    for t, item in enumerate(topics):
        record = f"topic_list[{t}]"
        if not isinstance(item, dict):
            warnings.append(
                str(InputError("not an object; topic dropped", file=file, record=record))
            )
            continue
        spans, (field, reason) = parse_spans(item.get("relevant_text_span"), n)
        if not spans:
            warnings.append(
                str(InputError(f"{reason}; topic dropped", file=file, record=record, field=field))
            )
            continue
        name = item.get("topic")
        topic_meta.append(
            {"topic": name if isinstance(name, str) else None, "spans": [list(s) for s in spans]}
        )
        reference.extend(spans)

    metadata = {
        "split": split,
        "file": file.name,
        "meeting": file.stem,
        "topics": topic_meta,
        "general_queries_skipped": len(general),
        "raw_text": raw_text,
    }
    if reference:
        metadata["topic_boundaries"] = topic_boundaries(reference, n)
    if warnings:
        metadata["reader_warnings"] = warnings
    dialogue = Dialogue(
        id=dialogue_id,
        source=SOURCE,
        speakers=speakers,
        utterances=utterances,
        metadata=metadata,
    )
    return dialogue, queries, skipped


def _load(file: Path) -> object:
    try:
        return load_json(file)
    except InputError as exc:
        if exc.record is not None:
            raise
        # A meeting file holds one object: name the meeting as the record.
        raise InputError(exc.reason, file=file, record=file.stem, field=exc.field) from exc


def read_qmsum(
    path: str | Path | None = None, limit: int | None = None, split: str | None = None
) -> Dataset:
    """Read QMSum meetings from one file, a split folder or the root holding split folders.

    ``path`` None / ``-``: ``Settings.qmsum_dir`` (``FFR_QMSUM_DIR``), its ``train`` and ``val``
    folders, or only ``split`` when given (``split`` also picks that folder under a root
    ``path``). ``Dataset.metadata`` counts what was read and skipped (see the module docstring).
    """
    default = path is None or str(path) in ("", "-")
    root = get_settings().qmsum_dir if path is None or default else Path(path)
    if split is not None and (root / split).is_dir():
        roots = [root / split]
    elif split is not None and not root.is_file() and root.name != split:
        raise InputError(f"QMSum split folder {split!r} does not exist", file=root / split)
    elif default:
        roots = [root / s for s in DEFAULT_SPLITS if (root / s).is_dir()] or [root]
    else:
        roots = [root]
    files = [file for folder in roots for file in qmsum_files(folder)]

    dialogues: list[Dialogue] = []
    queries: list[Query] = []
    skipped: list[dict[str, Any]] = []
    general = 0
    seen: dict[str, Path] = {}
    for file in files:
        if limit is not None and len(dialogues) >= limit:
            break
        dialogue, meeting_queries, meeting_skipped = read_meeting(_load(file), file)
        if dialogue.id in seen:
            raise InputError(
                f"duplicate meeting id {dialogue.id!r} (also {seen[dialogue.id]})",
                file=file,
                record=file.stem,
            )
        seen[dialogue.id] = file
        dialogues.append(dialogue)
        queries.extend(meeting_queries)
        skipped.extend(meeting_skipped)
        general += dialogue.metadata["general_queries_skipped"]
    dataset = Dataset(
        dialogues=dialogues,
        queries=queries,
        metadata={
            "format": SOURCE,
            "path": str(root),
            "meetings": len(dialogues),
            "specific_queries": len(queries),
            "general_queries_skipped": general,
            "skipped_queries": skipped,
            "warnings": [s["message"] for s in skipped],
        },
    )
    check_dataset(dataset, file=root)
    log.info(
        "QMSum %s: %d meetings, %d specific queries; skipped %d general queries (no span) and "
        "%d malformed ones",
        root,
        len(dialogues),
        len(queries),
        general,
        len(skipped),
    )
    for problem in skipped:
        log.warning("QMSum query skipped: %s", problem["message"])
    return dataset


def read_qmsum_split(split: str, limit: int | None = None) -> tuple[Dataset | None, str]:
    """The first ``limit`` meetings (None = all) of QMSum ``split`` under ``FFR_QMSUM_DIR``, or
    None and why when that folder is absent (training and gating then go on without it)."""
    folder = get_settings().qmsum_dir / split
    if not folder.is_dir():
        return None, f"no QMSum {split} folder at {folder} (FFR_QMSUM_DIR)"
    return read_qmsum(folder, limit=limit), ""
