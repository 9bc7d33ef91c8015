"""Bad input end to end (issue 8), on a real embedded Postgres: a rejected batch leaves the
database byte-for-byte unchanged, the limits (a 50 MB utterance, an over-long fragment) give
clear errors, the inbox sensor sets every kind of bad file aside and keeps going, queries full of
SQL metacharacters and control characters are searched as text, and a 10,000-turn dialogue goes
through ingest, segmentation, indexing, search and the F2RVLM windows.

The per-reader bad-input corpus itself is tests/test_readers_bad_input.py."""

from __future__ import annotations

import json
import os
import time
import tracemalloc
from pathlib import Path

import pytest
from dagster import DagsterInstance, SensorResult, build_sensor_context
from reliability_helpers import HashEmbedder, fingerprint, utterance_rows
from test_readers_bad_input import BAD, CASES, _bomb_png
from typer.testing import CliRunner

from ffr_assets.sensors import inbox_sensor
from ffr_lib.cli import app
from ffr_lib.data.canonical import write_canonical
from ffr_lib.data.errors import InputError
from ffr_lib.data.model import MAX_UTTERANCE_CHARS, Dialogue, Utterance
from ffr_lib.data.readers import read_dataset
from ffr_lib.fem.fragment_text import FragmentRow, fragment_rows
from ffr_lib.inbox import accept, ingest_batch
from ffr_lib.index import (
    check_coverage,
    check_no_duplicates,
    hybrid_by_vector,
    index_rows,
    search_by_vector,
)
from ffr_lib.index.writer import MAX_FRAGMENT_TEXT_BYTES
from ffr_lib.store import load_dialogues, write_dataset

pytestmark = pytest.mark.db
runner = CliRunner()


@pytest.fixture
def populated(db_url: str, synthetic_dataset) -> str:
    """A database with dialogues, queries and an index, so 'unchanged' means something."""
    write_dataset(synthetic_dataset(12), url=db_url)
    index_rows(utterance_rows(db_url), HashEmbedder(), url=db_url)
    return db_url


def _settled(path: Path) -> Path:
    old = time.time() - 7200
    os.utime(path, (old, old))
    return path


def _huge_utterance_file(folder: Path, chars: int) -> Path:
    """A canonical folder whose dialogue's second utterance is ``chars`` characters long."""
    folder.mkdir(parents=True, exist_ok=True)
    text = ("lorem ipsum dolor sit amet " * (chars // 27 + 1))[:chars]
    line = {
        "id": "huge",
        "source": "bad",
        "speakers": ["a", "b"],
        "utterances": [
            {"index": 0, "speaker": "a", "text": "here it comes"},
            {"index": 1, "speaker": "b", "text": text},
        ],
    }
    path = folder / "dialogues.jsonl"
    path.write_text(json.dumps(line) + "\n", encoding="utf-8")
    return path


def test_every_corpus_file_is_rejected_and_the_database_is_unchanged(populated: str) -> None:
    before = fingerprint(populated)
    for case, fmt, _file, _record, _field in CASES:
        result = runner.invoke(app, ["ingest", str(BAD / case), "--format", fmt])
        assert result.exit_code == 1, (case, result.output)
        assert case in result.output.replace("\n", ""), (case, result.output)
        assert "Traceback" not in result.output, case
    assert fingerprint(populated) == before


def test_50_mb_utterance_is_refused_without_a_memory_blowup(populated: str, tmp_path: Path) -> None:
    path = _huge_utterance_file(tmp_path / "huge", 50 * 1024 * 1024)
    before = fingerprint(populated)
    tracemalloc.start()
    try:
        with pytest.raises(InputError) as caught:
            read_dataset(path.parent, "canonical")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    err = caught.value
    assert (Path(err.file), err.record, err.field) == (path, "huge", "utterances[1].text")
    assert f"more than the limit {MAX_UTTERANCE_CHARS:,}" in str(err)
    assert peak < 300 * 1024 * 1024  # the file is 50 MB: a few copies at most, no blowup
    result = runner.invoke(app, ["ingest", str(path.parent), "--format", "canonical"])
    assert result.exit_code == 1 and "utterances[1].text" in result.output
    assert fingerprint(populated) == before


def test_utterance_at_the_limit_is_stored_and_an_over_long_fragment_is_refused(
    db_url: str, tmp_path: Path
) -> None:
    path = _huge_utterance_file(tmp_path / "limit", MAX_UTTERANCE_CHARS)
    dataset = read_dataset(path.parent, "canonical")
    write_dataset(dataset, url=db_url)
    index_rows(utterance_rows(db_url), HashEmbedder(), url=db_url)  # 100k chars: fine
    before = fingerprint(db_url)
    stored = load_dialogues(url=db_url)[0]
    big = FragmentRow(
        id="too-big",
        dialogue_id=stored.id,
        utterance_ids=[0, 1],
        image_ids=[],
        text="x " * (MAX_FRAGMENT_TEXT_BYTES // 2 + 1),
        speakers=["a", "b"],
        started_at=None,
        ended_at=None,
    )
    with pytest.raises(ValueError, match="more than the index limit") as caught:
        index_rows([big], HashEmbedder(), url=db_url)
    assert "too-big" in str(caught.value) and stored.id in str(caught.value)
    assert fingerprint(db_url) == before


def test_inbox_sensor_sets_every_bad_file_aside_and_keeps_going(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, synthetic_dataset, db_url: str
) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "images").mkdir(parents=True)
    monkeypatch.setenv("FFR_INBOX_DIR", str(inbox))
    monkeypatch.setenv("FFR_INBOX_SETTLE_SECONDS", "3600")

    def good(name: str, prefix: str) -> Path:
        folder = write_canonical(synthetic_dataset(3, prefix=prefix), tmp_path / f"src-{name}")
        target = inbox / f"{name}.jsonl"
        target.write_bytes((Path(folder) / "dialogues.jsonl").read_bytes())
        return target

    (inbox / "images" / "bomb.png").write_bytes(_bomb_png(50_000, 50_000))
    bomb_line = (BAD / "canonical_missing_image" / "dialogues.jsonl").read_text()
    bad = {
        "malformed.jsonl": (BAD / "canonical_malformed_json" / "dialogues.jsonl").read_bytes(),
        "not-utf8.jsonl": (BAD / "canonical_non_utf8" / "dialogues.jsonl").read_bytes(),
        "nul.jsonl": (BAD / "canonical_nul_character" / "dialogues.jsonl").read_bytes(),
        "empty-dialogue.jsonl": (BAD / "canonical_empty_dialogue" / "dialogues.jsonl").read_bytes(),
        "duplicate.jsonl": (BAD / "canonical_duplicate_dialogue" / "dialogues.jsonl").read_bytes(),
        "wrong-type.photochat.json": (BAD / "photochat_wrong_type.json").read_bytes(),
        "bomb.jsonl": bomb_line.replace("images/nope.png", "images/bomb.png").encode(),
        "missing-image.jsonl": bomb_line.encode(),
        "empty-file.jsonl": b"",
        "notes.txt": b"hello",
    }
    files = [good("first", "one")]
    for name, content in bad.items():
        (inbox / name).write_bytes(content)
        files.append(inbox / name)
    files.append(good("last", "two"))
    _huge_utterance_file(tmp_path / "h", MAX_UTTERANCE_CHARS + 1)
    (inbox / "huge.jsonl").write_bytes((tmp_path / "h" / "dialogues.jsonl").read_bytes())
    files.append(inbox / "huge.jsonl")
    for age, path in enumerate(reversed(files)):  # oldest first = the order listed
        stamp = time.time() - 7200 - age
        os.utime(path, (stamp, stamp))

    result = inbox_sensor(build_sensor_context(instance=DagsterInstance.ephemeral()))
    assert isinstance(result, SensorResult)
    keys = [r.partition_key for r in result.run_requests]
    assert (
        len(keys) == 2 and keys[0].startswith("inbox-first-") and keys[1].startswith("inbox-last")
    )
    rejected = inbox / "rejected"
    for name in [*bad, "huge.jsonl"]:
        assert (rejected / name).is_file(), name
        reason = (rejected / f"{name}.error.txt").read_text()
        assert name in reason, (name, reason)
    assert "decompression bomb" in (rejected / "bomb.jsonl.error.txt").read_text()
    assert "limit" in (rejected / "huge.jsonl.error.txt").read_text()
    assert not [p for p in inbox.iterdir() if p.is_file()]  # nothing left behind
    for key in keys:
        assert ingest_batch(db_url, key)["dialogues_inserted"] == 3


def test_inbox_file_that_vanished_after_listing_is_an_input_error(tmp_path: Path) -> None:
    """A file deleted between the sensor's listing and its read (someone took it back) is an
    InputError like any bad file, so the sensor goes on with the others instead of failing."""
    with pytest.raises(InputError, match="cannot read file") as caught:
        accept(tmp_path / "gone.jsonl", tmp_path)
    assert caught.value.file == str(tmp_path / "gone.jsonl")


NASTY_QUERIES = [
    "'; DROP TABLE ffr.fragments; --",
    "robert'); DELETE FROM ffr.dialogues WHERE ('1'='1",
    '" OR 1=1 --',
    "$$; SELECT pg_sleep(10); $$",
    "%s %(name)s {0} :param ? \\x \\\\",
    "lake\x00beach",
    "\x01\x02\x1b[31mred\x1b[0m\t\r\n\x7f",
    '"unclosed phrase & | ! <-> :* (',
    "-lake or or -",
    "\u202eevil\u200b\ufeff",
]


def test_queries_with_sql_metacharacters_and_control_characters(db_url: str) -> None:
    text = "robert'); DROP TABLE ffr.fragments;-- said the lake guide"
    dialogue = Dialogue(
        id="d'; DROP TABLE x;--",
        source="test",
        speakers=["o'brien", "bob"],
        utterances=[
            Utterance(index=0, speaker="o'brien", text=text),
            Utterance(index=1, speaker="bob", text="we swam at the beach"),
        ],
    )
    from ffr_lib.data.dataset import Dataset
    from ffr_lib.segment import FixedWindowSegmenter, WindowConfig

    write_dataset(Dataset(dialogues=[dialogue]), url=db_url)
    rows = fragment_rows(dialogue, FixedWindowSegmenter(WindowConfig(size=1)).segment(dialogue))
    index_rows(rows, HashEmbedder(), url=db_url)
    before = fingerprint(db_url)
    vector = HashEmbedder().encode(["lake"])[0]

    for query in NASTY_QUERIES:
        hits = hybrid_by_vector(None, query, 5, url=db_url)
        assert all(h.dialogue_id == dialogue.id for h in hits), query
        assert len(hybrid_by_vector(vector, query, 5, url=db_url)) == 2, query
    # The injection text is searched as words and finds the fragment that contains them.
    hits = hybrid_by_vector(None, "robert drop table", 5, url=db_url)
    assert [h.utterance_ids for h in hits] == [[0]]
    # Filters are bound values, never SQL: quotes match literally or not at all.
    assert len(search_by_vector(vector, 5, speaker="o'brien", url=db_url)) == 1
    assert search_by_vector(vector, 5, speaker="x' OR '1'='1", url=db_url) == []
    assert len(search_by_vector(vector, 5, dialogue_ids=[dialogue.id], url=db_url)) == 2
    assert search_by_vector(vector, 5, dialogue_ids=["' OR 1=1 --"], url=db_url) == []
    with pytest.raises(ValueError, match="NUL"):
        search_by_vector(vector, 5, speaker="bob\x00", url=db_url)
    result = runner.invoke(app, ["search", "x", "--speaker", "bob\x00"])
    assert result.exit_code == 1 and "NUL" in result.output
    assert fingerprint(db_url) == before


@pytest.mark.slow
def test_10000_turn_dialogue_is_ingested_cut_indexed_and_windowed(
    db_url: str, synthetic_dataset, tmp_path: Path
) -> None:
    from ffr_lib.f2rvlm.windows import plan_windows
    from ffr_lib.segment.texttiling import TextTilingSegmenter

    started = time.perf_counter()
    dataset = synthetic_dataset(1, 10_000, images_every=50, prefix="long")
    folder = write_canonical(dataset, tmp_path / "long")
    read = read_dataset(folder, "canonical")
    write_dataset(read, url=db_url)
    (dialogue,) = load_dialogues(url=db_url)
    assert len(dialogue.utterances) == 10_000 and len(dialogue.images) == 200
    assert dialogue.content_hash() == read.dialogues[0].content_hash()

    embedder = HashEmbedder(64, "hash64@long")
    fragments = TextTilingSegmenter(embedder.encode).segment(dialogue)
    covered = [u for f in fragments for u in f.utterance_ids]
    assert covered == list(range(10_000))  # every turn in exactly one fragment, in order
    assert sorted(i for f in fragments for i in f.image_ids) == list(range(200))
    rows = fragment_rows(dialogue, fragments)
    stats = index_rows(rows, embedder, url=db_url)
    assert stats.inserted == len(fragments)
    assert check_coverage(embedding_model="hash64@long", url=db_url)[0]
    assert check_no_duplicates(embedding_model="hash64@long", url=db_url)[0]
    hits = search_by_vector(embedder.encode(["lake hike"])[0], 10, url=db_url)
    assert len(hits) == min(10, len(fragments))

    windows = plan_windows(dialogue)
    assert windows[0].start == 0 and windows[-1].end == 10_000
    assert all(len(w.utterance_ids) <= 100 for w in windows)
    assert all(b.start < a.end for a, b in zip(windows, windows[1:], strict=False))
    assert time.perf_counter() - started < 120
