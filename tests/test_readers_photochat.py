"""PhotoChat reader on a small fixture and on the real files in Settings.photochat_dir."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from ffr_lib.data.readers import read_dataset
from ffr_lib.data.readers.photochat import photochat_files, read_photochat
from ffr_lib.settings import get_settings

FIXTURE = Path(__file__).parent / "fixtures" / "readers" / "photochat"


def test_fixture_mapping() -> None:
    ds = read_photochat(FIXTURE)
    # Split folders are read train, dev, test; files sorted inside.
    assert [d.id for d in ds.dialogues] == [
        "photochat:train_00:0",
        "photochat:train_00:1",
        "photochat:train_00:2",
        "photochat:dev_01:0",
    ]
    first = ds.dialogues[0]
    assert first.source == "photochat" and first.speakers == ["user0", "user1"]
    assert [u.speaker for u in first.utterances] == ["user0", "user1", "user0", "user0", "user1"]
    # The share turn stays an utterance (empty text) and owns the image: ids == turn indices.
    assert first.utterances[2].text == ""
    (image,) = first.images
    assert image.utterance_index == 2
    assert image.caption == "Objects in the photo: Dog, Mammal, Animal"
    assert image.url == "https://farm4.staticflickr.com/1/dog.jpg" and image.path is None
    assert first.metadata["split"] == "train" and first.metadata["share_turns"] == [2]
    assert first.metadata["source_dialogue_id"] == 0


def test_repeated_share_turns_give_one_image_each() -> None:
    cake = read_photochat(FIXTURE).dialogue_by_id()["photochat:train_00:1"]
    assert [(i.index, i.utterance_index) for i in cake.images] == [(0, 1), (1, 2)]
    assert {i.url for i in cake.images} == {"https://farm4.staticflickr.com/2/cake.jpg"}
    assert cake.metadata["share_turns"] == [1, 2]


def test_no_share_turn_keeps_caption_in_metadata() -> None:
    tree = read_photochat(FIXTURE).dialogue_by_id()["photochat:train_00:2"]
    assert tree.images == []
    assert tree.metadata["photo_description"] == "Objects in the photo: Tree"
    assert tree.metadata["photo_url"] == "https://farm4.staticflickr.com/3/tree.jpg"


def test_photo_id_and_split_from_folder() -> None:
    bike = read_photochat(FIXTURE / "dev" / "dev_01.json").dialogues[0]
    assert bike.metadata["photo_id"] == "000a1b2c3d4e5f60"
    assert bike.metadata["split"] == "dev"


def test_limit_stops_across_files() -> None:
    assert [d.id for d in read_photochat(FIXTURE, limit=2).dialogues] == [
        "photochat:train_00:0",
        "photochat:train_00:1",
    ]


# --- the real data (read in place from Settings.photochat_dir) ---


@pytest.fixture(scope="module")
def real() -> tuple[object, float]:
    start = time.perf_counter()
    ds = read_dataset("-", "photochat")
    return ds, time.perf_counter() - start


def test_real_files_and_counts(real) -> None:
    ds, seconds = real
    root = get_settings().photochat_dir
    assert [f.name for f in photochat_files(root)] == [
        "train_00.json",
        "train_01.json",
        "train_02.json",
        "dev_00.json",
        "dev_01.json",
        "test_00.json",
        "test_01.json",
    ]
    # README table: 500 dialogues per file, 7 files.
    assert len(ds.dialogues) == 3500
    per_file = Counter(d.metadata["file"] for d in ds.dialogues)
    assert set(per_file.values()) == {500}
    assert len({d.id for d in ds.dialogues}) == 3500
    assert Counter(d.metadata["split"] for d in ds.dialogues) == {
        "train": 1500,
        "dev": 1000,
        "test": 1000,
    }
    # One image per share turn: 3,511 over the 3,500 dialogues (measured from the files).
    assert sum(len(d.images) for d in ds.dialogues) == 3511
    turns = [len(d.utterances) for d in ds.dialogues]
    assert min(turns) >= 4 and max(turns) <= 67
    assert seconds < 30


def test_real_share_turn_variants(real) -> None:
    ds, _ = real
    by_count = Counter(len(d.images) for d in ds.dialogues)
    assert by_count == {1: 3486, 2: 11, 0: 2, 3: 1}
    three = next(d for d in ds.dialogues if len(d.images) == 3)
    assert three.id.startswith("photochat:test_00:")
    # All occurrences show the same photo, each on its own (empty) share turn.
    assert len({i.url for i in three.images}) == 1
    assert all(three.utterances[i.utterance_index].text == "" for i in three.images)
    none = [d for d in ds.dialogues if not d.images]
    assert sorted(d.id for d in none) == ["photochat:test_00:161", "photochat:test_00:179"]
    assert all(d.metadata["photo_description"] for d in none)
    # Every photo was shared by user0, as the README says.
    assert {d.utterances[i.utterance_index].speaker for d in ds.dialogues for i in d.images} == {
        "user0"
    }
    assert sum("photo_id" in d.metadata for d in ds.dialogues) == 500  # dev_01 only


def test_default_path_comes_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FFR_PHOTOCHAT_DIR", str(FIXTURE / "dev"))
    ds = read_dataset("-", "photochat")
    assert [d.id for d in ds.dialogues] == ["photochat:dev_01:0"]
