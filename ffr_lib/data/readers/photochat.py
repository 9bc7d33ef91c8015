"""PhotoChat reader (Zang et al., ACL 2021): human chats in which user 0 shares one photo.

Mapping (documented in docs/canonical-format.md, "Readers"):

- Dialogue id ``photochat:<file stem>:<dialogue_id>``, e.g. ``photochat:train_00:17``. The source
  ``dialogue_id`` is unique only within a split, and a split is spread over several files; the
  file stem keeps the id unique and says where the dialogue came from.
- One utterance per source turn, in order, so utterance id == PhotoChat turn index. Speakers are
  ``user0`` / ``user1`` after ``user_id`` (user0 always shares the photo).
- A ``share_photo: true`` turn (its message is empty) is where the photo was sent: it stays an
  utterance with empty text and owns the image. Attaching the photo to an earlier utterance
  would either shift every later id or put the photo on a line that was sent before it; keeping
  the turn keeps ids equal to turn indices and the image on the line it was sent with.
- Two or three share turns of the same photo give one Image per occurrence: each was a message
  sent in the chat, and an image belongs to the utterance it was sent with. They share
  url/caption; ``metadata['share_turns']`` lists the owning utterance ids.
- No share turn: no image; the caption and url stay in ``metadata`` (``photo_description``,
  ``photo_url``), so nothing is lost.
- Image caption = ``photo_description``, url = ``photo_url``; no pixels (no path).
  Metadata keeps ``split``, ``file``, ``source_dialogue_id`` and ``photo_id`` when present.
"""

from __future__ import annotations

from pathlib import Path

from ffr_lib.data.dataset import Dataset
from ffr_lib.data.errors import InputError
from ffr_lib.data.model import Dialogue, Image, Utterance
from ffr_lib.data.readers._common import Where, check_dataset, check_first, load_json
from ffr_lib.settings import get_settings

SOURCE = "photochat"
SPLITS = ("train", "dev", "test")


def photochat_files(path: Path) -> list[Path]:
    """The JSON files under ``path`` (a file, a split folder or the PhotoChat root), in a
    stable order: split folders train, dev, test first, then anything else, each sorted."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError("PhotoChat path does not exist", file=path)
    files = sorted(path.rglob("*.json"))
    if not files:
        raise InputError("no PhotoChat .json files found", file=path)

    def order(file: Path) -> tuple[int, str]:
        split = file.stem.split("_")[0]
        rank = SPLITS.index(split) if split in SPLITS else len(SPLITS)
        return rank, file.relative_to(path).as_posix()

    return sorted(files, key=order)


def _split_of(file: Path) -> str:
    stem_split = file.stem.split("_")[0]
    if stem_split in SPLITS:
        return stem_split
    return file.parent.name if file.parent.name in SPLITS else stem_split


def _read_one(obj: object, where: Where, file: Path) -> Dialogue:
    source_id = where.require(obj, "dialogue_id", (int, str))
    turns = where.require(obj, "dialogue", list)
    description = where.require(obj, "photo_description", str, optional=True)
    url = where.require(obj, "photo_url", str, optional=True)
    photo_id = where.require(obj, "photo_id", (str, int), optional=True)
    if not turns:
        raise where.error("dialogue has no turns", "dialogue")

    dialogue_id = f"{SOURCE}:{file.stem}:{source_id}"
    utterances: list[Utterance] = []
    images: list[Image] = []
    share_turns: list[int] = []
    for i, turn in enumerate(turns):
        at = where.child("dialogue").child(i)
        message = at.require(turn, "message", str)
        user = at.require(turn, "user_id", int)
        share = at.require(turn, "share_photo", bool, optional=True) or False
        if user not in (0, 1):
            raise at.error(f"user_id must be 0 or 1, got {user}", "user_id")
        utterances.append(Utterance(index=i, speaker=f"user{user}", text=message))
        if share:
            share_turns.append(i)
            images.append(
                Image(index=len(images), utterance_index=i, url=url or None, caption=description)
            )

    metadata: dict[str, object] = {
        "split": _split_of(file),
        "file": file.name,
        "source_dialogue_id": source_id,
        "share_turns": share_turns,
    }
    if photo_id is not None:
        metadata["photo_id"] = photo_id
    if not share_turns:
        # The photo was never sent in this chat: keep what the source says about it.
        metadata["photo_description"] = description
        metadata["photo_url"] = url
    return Dialogue(
        id=dialogue_id,
        source=SOURCE,
        speakers=["user0", "user1"],
        utterances=utterances,
        images=images,
        metadata=metadata,
    )


def read_photochat(path: str | Path | None = None, limit: int | None = None) -> Dataset:
    """Read PhotoChat from a file, a split folder or the root (default
    ``Settings.photochat_dir``). PhotoChat has no queries; the Dataset holds dialogues only."""
    if path is None or str(path) in ("", "-"):
        path = get_settings().photochat_dir
    root = Path(path)
    dialogues: list[Dialogue] = []
    seen: dict[str, str] = {}
    for file in photochat_files(root):
        data = load_json(file)
        if not isinstance(data, list):
            raise InputError(
                f"expected a JSON list of dialogues, got {type(data).__name__}", file=file
            )
        for index, obj in enumerate(data):
            if limit is not None and len(dialogues) >= limit:
                break
            dialogue = _read_one(obj, Where(file, index), file)
            here = f"in {file}"
            check_first(
                seen, dialogue.id, here, "dialogue id", file=file, record=index, field="dialogue_id"
            )
            dialogues.append(dialogue)
        if limit is not None and len(dialogues) >= limit:
            break
    dataset = Dataset(dialogues=dialogues)
    check_dataset(dataset, file=root)
    return dataset
