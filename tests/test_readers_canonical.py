"""The canonical format: reading the committed fixture, round trips, atomic writes, image handling
and the committed JSON Schema being up to date."""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image as PILImage

from ffr_lib.data.canonical import (
    DIALOGUES_FILE,
    MANIFEST_FILE,
    QUERIES_FILE,
    SCHEMA_PATH,
    read_canonical,
    schema_text,
    write_canonical,
)
from ffr_lib.data.dataset import Dataset
from ffr_lib.data.errors import InputError
from ffr_lib.data.model import Dialogue, Image, Query, QueryType, Utterance

FIXTURE = Path(__file__).parent / "fixtures" / "readers" / "canonical"
RED_SHA = hashlib.sha256((FIXTURE / "images" / "red.png").read_bytes()).hexdigest()


def test_reads_fixture() -> None:
    ds = read_canonical(FIXTURE)
    assert [d.id for d in ds.dialogues] == ["demo:trip", "demo:cake"]
    trip = ds.dialogues[0]
    assert len(trip.utterances) == 5 and trip.speakers == ["Ann", "Bo"]
    assert trip.utterances[0].timestamp == datetime(2024, 6, 1, 10, 0, tzinfo=UTC)
    first, second = trip.images
    # The file-backed image got its hash and size filled in; the URL image has no file.
    assert (first.path, first.sha256, first.width, first.height) == (
        "images/red.png",
        RED_SHA,
        8,
        6,
    )
    assert first.utterance_index == 2
    assert second.url == "https://example.org/carpark.jpg" and second.sha256 is None
    assert [q.type for q in ds.queries] == [
        QueryType.MULTIMODAL,
        QueryType.UTTERANCE_ONLY,
        QueryType.NEGATIVE,
    ]
    assert ds.queries[0].gold_utterance_ids == [2, 3] and ds.queries[0].gold_image_ids == [0]


def test_jsonl_path_and_limit() -> None:
    via_file = read_canonical(FIXTURE / DIALOGUES_FILE)
    assert len(via_file.dialogues) == 2 and len(via_file.queries) == 3
    limited = read_canonical(FIXTURE, limit=1)
    assert [d.id for d in limited.dialogues] == ["demo:trip"]
    # Only the queries whose dialogue was read come along.
    assert {q.dialogue_id for q in limited.queries} == {"demo:trip"}
    assert len(limited.queries) == 2


def test_lone_jsonl_file_does_not_pick_up_sibling_queries(tmp_path: Path) -> None:
    shutil.copytree(FIXTURE, tmp_path / "copy")
    lone = tmp_path / "copy" / "other.jsonl"
    shutil.copy(tmp_path / "copy" / DIALOGUES_FILE, lone)
    ds = read_canonical(lone)
    assert len(ds.dialogues) == 2 and ds.queries == []


def test_round_trip_is_identical(tmp_path: Path) -> None:
    original = read_canonical(FIXTURE)
    out = write_canonical(original, tmp_path / "out", image_root=FIXTURE)
    again = read_canonical(out)
    assert again.model_dump() == original.model_dump()
    assert (out / "images" / "red.png").read_bytes() == (
        FIXTURE / "images" / "red.png"
    ).read_bytes()
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest == {
        "format": "ffr-canonical",
        "version": 1,
        "dialogues": 2,
        "queries": 3,
        "images": 2,
    }
    # Writing the same data again gives byte-identical files (stable for re-ingests and diffs).
    first_bytes = (out / DIALOGUES_FILE).read_bytes()
    write_canonical(again, out)
    assert (out / DIALOGUES_FILE).read_bytes() == first_bytes


def _dialogue_with_image(path: str, dialogue_id: str = "d") -> Dialogue:
    return Dialogue(
        id=dialogue_id,
        source="test",
        speakers=["A"],
        utterances=[Utterance(index=0, speaker="A", text="look")],
        images=[Image(index=0, utterance_index=0, path=path, caption="c")],
    )


def test_absolute_image_paths_are_copied_content_addressed(tmp_path: Path) -> None:
    src = tmp_path / "src" / "Photo.PNG"
    src.parent.mkdir()
    PILImage.new("RGB", (3, 2), (1, 2, 3)).save(src, "PNG")
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    ds = Dataset(
        dialogues=[_dialogue_with_image(str(src), "a"), _dialogue_with_image(str(src), "b")]
    )
    out = write_canonical(ds, tmp_path / "out")
    back = read_canonical(out)
    image = back.dialogues[0].images[0]
    assert image.path == f"images/{sha}.png"
    assert (image.width, image.height, image.sha256) == (3, 2, sha)
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"{sha}.png"]  # copied once
    # The input dataset was not modified.
    assert ds.dialogues[0].images[0].path == str(src)


def test_failed_write_leaves_old_folder_untouched(tmp_path: Path) -> None:
    out = write_canonical(read_canonical(FIXTURE), tmp_path / "out", image_root=FIXTURE)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    broken = Dataset(dialogues=[_dialogue_with_image(str(tmp_path / "missing.png"))])
    with pytest.raises(InputError) as caught:
        write_canonical(broken, out)
    assert caught.value.field == "images[0].path"
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    # No temporary folder is left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_replaces_existing_canonical_folder_atomically(tmp_path: Path) -> None:
    out = write_canonical(read_canonical(FIXTURE), tmp_path / "out", image_root=FIXTURE)
    small = Dataset(
        dialogues=[
            Dialogue(id="x", source="t", utterances=[Utterance(index=0, speaker="A", text="hi")])
        ]
    )
    write_canonical(small, out)
    assert [d.id for d in read_canonical(out).dialogues] == ["x"]
    assert not (out / QUERIES_FILE).exists()  # nothing stale from the previous write
    assert not (out / "images").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_refuses_to_replace_a_foreign_folder(tmp_path: Path) -> None:
    foreign = tmp_path / "docs"
    foreign.mkdir()
    (foreign / "thesis.txt").write_text("precious")
    with pytest.raises(FileExistsError):
        write_canonical(read_canonical(FIXTURE), foreign, image_root=FIXTURE)
    assert (foreign / "thesis.txt").read_text() == "precious"


def test_writer_rejects_invalid_dataset(tmp_path: Path) -> None:
    dialogue = Dialogue(id="d", source="t", utterances=[Utterance(index=0, speaker="A")])
    query = Query(
        id="q", dialogue_id="d", text="x", type=QueryType.UTTERANCE_ONLY, gold_utterance_ids=[3]
    )
    with pytest.raises(InputError) as caught:
        write_canonical(Dataset(dialogues=[dialogue], queries=[query]), tmp_path / "o")
    assert (caught.value.record, caught.value.field) == ("q", "gold_utterance_ids")
    assert not (tmp_path / "o").exists()


def test_manifest_count_mismatch_is_reported(tmp_path: Path) -> None:
    copy = shutil.copytree(FIXTURE, tmp_path / "copy")
    lines = (copy / DIALOGUES_FILE).read_text().splitlines(keepends=True)
    (copy / DIALOGUES_FILE).write_text(lines[0])  # a truncated copy
    (copy / QUERIES_FILE).write_text("")
    with pytest.raises(InputError) as caught:
        read_canonical(copy)
    assert caught.value.field == "dialogues" and "manifest says 2" in str(caught.value)


def test_declared_sha256_must_match_file(tmp_path: Path) -> None:
    copy = shutil.copytree(FIXTURE, tmp_path / "copy")
    text = (copy / DIALOGUES_FILE).read_text()
    (copy / DIALOGUES_FILE).write_text(
        text.replace(
            '"path": "images/red.png"', '"path": "images/red.png", "sha256": "' + "0" * 64 + '"'
        )
    )
    with pytest.raises(InputError) as caught:
        read_canonical(copy)
    assert (caught.value.record, caught.value.field) == (1, "images[0].sha256")


def test_committed_schema_is_up_to_date() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == schema_text(), (
        "regenerate with: .venv/bin/python -m ffr_lib.data.canonical --write-schema"
    )


def test_schema_describes_the_models() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    defs = schema["$defs"]
    assert set(defs["Dialogue"]["required"]) == {"id", "source"}
    assert defs["Dialogue"]["additionalProperties"] is False
    assert set(defs["Query"]["required"]) == {"id", "text", "type"}
    assert defs["QueryType"]["enum"] == ["multimodal", "utterance-only", "image-only", "negative"]
    # Every fixture line uses only properties the schema declares.
    for line in (FIXTURE / DIALOGUES_FILE).read_text().splitlines():
        record = json.loads(line)
        assert set(record) <= set(defs["Dialogue"]["properties"])
        for image in record["images"]:
            assert set(image) <= set(defs["Image"]["properties"])
