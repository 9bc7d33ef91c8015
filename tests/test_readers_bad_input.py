"""The bad-input corpus: every reader rejects each kind of bad input with an InputError whose
message names the file, the record (line, list index or id) and the field.

JSON syntax errors are the one kind without a field: the parser stops before any field exists,
so the error names the line (and column) instead.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from ffr_lib.data.errors import InputError
from ffr_lib.data.readers import read_dataset

BAD = Path(__file__).parent / "fixtures" / "bad"

# (case under tests/fixtures/bad, format, file named in the error (relative to the case folder,
#  or "" for the case file itself), record, field)
CASES = [
    ("canonical_malformed_json", "canonical", "dialogues.jsonl", 2, None),
    ("canonical_wrong_type", "canonical", "dialogues.jsonl", 1, "utterances[1].text"),
    ("canonical_missing_field", "canonical", "dialogues.jsonl", 1, "source"),
    ("canonical_unknown_field", "canonical", "dialogues.jsonl", 1, "utterances[0].colour"),
    ("canonical_bad_utterance_ids", "canonical", "dialogues.jsonl", 1, "utterances[1].index"),
    ("canonical_duplicate_dialogue", "canonical", "dialogues.jsonl", 2, "id"),
    ("canonical_duplicate_query", "canonical", "queries.jsonl", 2, "id"),
    ("canonical_gold_out_of_range", "canonical", "queries.jsonl", 1, "gold_utterance_ids"),
    ("canonical_missing_image", "canonical", "dialogues.jsonl", 1, "images[0].path"),
    ("canonical_truncated_image", "canonical", "dialogues.jsonl", 1, "images[0].path"),
    ("canonical_not_an_image", "canonical", "dialogues.jsonl", 1, "images[0].path"),
    ("canonical_path_escape", "canonical", "dialogues.jsonl", 1, "images[0].path"),
    ("canonical_non_utf8", "canonical", "dialogues.jsonl", 1, "utterances[0].text"),
    ("canonical_surrogate_escape", "canonical", "dialogues.jsonl", 1, "utterances[1].text"),
    ("canonical_nul_character", "canonical", "dialogues.jsonl", 1, "utterances[1].text"),
    ("canonical_empty_dialogue", "canonical", "dialogues.jsonl", 1, "utterances"),
    ("photochat_malformed.json", "photochat", "", "line 22", None),
    ("photochat_wrong_type.json", "photochat", "", 0, "dialogue[1].user_id"),
    ("photochat_missing_field.json", "photochat", "", 1, "dialogue[0].message"),
    ("photochat_duplicate_id.json", "photochat", "", 1, "dialogue_id"),
    ("photochat_non_utf8.json", "photochat", "", 0, "dialogue[2].message"),
    ("photochat_nul_character.json", "photochat", "", 0, "photo_description"),
    ("photochat_empty_dialogue.json", "photochat", "", 0, "dialogue"),
    ("chitchat_wrong_type.json", "chitchat", "", "c-1", "messages[0][1].text"),
    ("chitchat_missing_field.json", "chitchat", "", "c-1", "messages[1][0].sender"),
    ("chitchat_bad_timestamp.json", "chitchat", "", "c-1", "messages[1][0].timestamp"),
    ("chitchat_duplicate_id.json", "chitchat", "", "c-1", "id"),
    ("wechat_malformed.jsonl", "wechat-raw", "", 2, None),
    ("wechat_wrong_type.json", "wechat-raw", "", 0, "dialogue[0].utterance"),
    ("wechat_duplicate_dialogue.jsonl", "wechat-raw", "", 2, "dialogue_id"),
    ("wechat_duplicate_utterance_idx.json", "wechat-raw", "", 0, "dialogue[2].utterance_idx"),
    ("wechat_unknown_gold_turn.json", "wechat-raw", "", 0, "gt_turns[0][1]"),
    ("wechat_mismatched_queries.json", "wechat-raw", "", 0, "gt_turns"),
    ("wechat_missing_image.json", "wechat-raw", "", 0, "dialogue[1].utterance[0].image_url"),
    ("wechat_empty_dialogue.json", "wechat-raw", "", 0, "dialogue"),
    ("locomo_missing_speaker.json", "locomo", "", 0, "conversation.session_1[1].speaker"),
    ("locomo_wrong_type.json", "locomo", "", 0, "qa[0].question"),
    ("locomo_bad_category.json", "locomo", "", 0, "qa[0].category"),
    ("locomo_duplicate_sample.json", "locomo", "", 1, "sample_id"),
    ("locomo_non_utf8.json", "locomo", "", 0, "conversation.session_1[1].text"),
    ("locomo_empty_dialogue.json", "locomo", "", 0, "conversation"),
    ("qmsum_malformed.json", "qmsum", "", "line 7", None),
    ("qmsum_not_an_object.json", "qmsum", "", "qmsum_not_an_object", None),
    (
        "qmsum_missing_transcripts.json",
        "qmsum",
        "",
        "qmsum_missing_transcripts",
        "meeting_transcripts",
    ),
    (
        "qmsum_missing_speaker.json",
        "qmsum",
        "",
        "qmsum_missing_speaker",
        "meeting_transcripts[0].speaker",
    ),
    ("qmsum_wrong_type.json", "qmsum", "", "qmsum_wrong_type", "meeting_transcripts[1].content"),
    ("qmsum_non_utf8.json", "qmsum", "", "qmsum_non_utf8", "meeting_transcripts[1].content"),
    ("qmsum_empty_meeting.json", "qmsum", "", "qmsum_empty_meeting", "meeting_transcripts"),
]


def assert_names_location(
    err: InputError, file: Path, record: str | int, field: str | None
) -> None:
    assert Path(err.file) == file
    assert err.record == record
    assert err.field == field
    message = str(err)
    assert f"file {file}" in message
    assert f"record {record}" in message
    if field is not None:
        assert f"field '{field}'" in message
    assert err.reason and err.reason in message


def test_corpus_is_fully_covered() -> None:
    """Every file in the corpus has a case, so a new bad file cannot go untested."""
    on_disk = {p.name for p in BAD.iterdir()}
    assert on_disk == {case[0] for case in CASES}


@pytest.mark.parametrize(
    ("case", "fmt", "file", "record", "field"), CASES, ids=[c[0] for c in CASES]
)
def test_bad_input_is_rejected(
    case: str, fmt: str, file: str, record: str | int, field: str | None
) -> None:
    path = BAD / case
    with pytest.raises(InputError) as caught:
        read_dataset(path, fmt)
    assert_names_location(caught.value, path / file if file else path, record, field)


def _bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge image (a decompression bomb's shape)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 32))
        + chunk(b"IEND", b"")
    )


def test_decompression_bomb_in_canonical_folder(tmp_path: Path) -> None:
    folder = tmp_path / "bomb_case"
    (folder / "images").mkdir(parents=True)
    (folder / "images" / "bomb.png").write_bytes(_bomb_png(50_000, 50_000))
    template = (BAD / "canonical_missing_image" / "dialogues.jsonl").read_text()
    (folder / "dialogues.jsonl").write_text(template.replace("images/nope.png", "images/bomb.png"))
    with pytest.raises(InputError) as caught:
        read_dataset(folder, "canonical")
    assert_names_location(caught.value, folder / "dialogues.jsonl", 1, "images[0].path")
    assert "decompression bomb" in str(caught.value)


def test_missing_paths_are_input_errors(tmp_path: Path) -> None:
    for fmt in ("canonical", "photochat", "chitchat", "wechat-raw", "locomo", "qmsum"):
        with pytest.raises(InputError) as caught:
            read_dataset(tmp_path / "does-not-exist", fmt)
        assert "does-not-exist" in str(caught.value)


def test_pathological_json_is_an_input_error(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InputError, match="nested too deeply"):
        read_dataset(deep, "locomo")
    nan = tmp_path / "c" / "dialogues.jsonl"
    nan.parent.mkdir()
    nan.write_text('{"id": "d", "source": "s", "metadata": {"score": NaN}}\n')
    with pytest.raises(InputError, match="NaN is not valid JSON") as caught:
        read_dataset(nan.parent, "canonical")
    assert caught.value.record == 1
