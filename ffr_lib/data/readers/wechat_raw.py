"""Reader for the raw WeChat-MDR annotation format (METHOD.md, "Data"):

    {"dialogue_id": str | int,
     "dialogue": [{"speaker": str, "utterance_idx": int,
                   "utterance": str | [{"image_url": str, "caption": str}]}],
     "query_text": [str], "gt_turns": [[int]]}

Files: a ``.json`` file holding one such object or a list of them, a ``.jsonl`` file with one
per line, or a folder of those (sorted). Mapping:

- Dialogue id ``wechat:<dialogue_id>``; one Utterance per turn, in file order, so utterance id ==
  turn position. ``utterance_idx`` values must be unique; ``metadata['utterance_idx']`` keeps them.
- A turn whose ``utterance`` is an image list is an image message: an Utterance with empty text
  that owns one Image per list item (caption = ``caption``). An ``image_url`` with a URL scheme
  becomes ``Image.url``; anything else is a local file relative to the data file's folder, which
  must exist and decode (it becomes an absolute ``Image.path``, sha256/size filled in).
- ``query_text[k]`` with ``gt_turns[k]`` is Query ``wechat:<dialogue_id>:q<k>``. ``gt_turns``
  name turns by ``utterance_idx``. A gold text turn adds its utterance id; a gold image turn adds
  its images' ids (not its empty utterance: the answer is the image). Type follows the gold
  (empty = negative).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from ffr_lib.data.dataset import Dataset
from ffr_lib.data.errors import InputError
from ffr_lib.data.images import inspect_image
from ffr_lib.data.model import Dialogue, Image, Query, QueryType, Utterance
from ffr_lib.data.readers._common import (
    Where,
    check_dataset,
    check_first,
    iter_jsonl,
    load_json,
)

SOURCE = "wechat-raw"
ID_PREFIX = "wechat"


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".json", ".jsonl") and p.is_file())
        if not files:
            raise InputError("no .json or .jsonl files found", file=path)
        return files
    raise InputError("path does not exist", file=path)


def _records(file: Path) -> list[tuple[int, object]]:
    """(record, object): line number for JSONL, list index for a JSON list, 0 for one object."""
    if file.suffix == ".jsonl":
        return list(iter_jsonl(file))
    data = load_json(file)
    if isinstance(data, list):
        return list(enumerate(data))
    if isinstance(data, dict):
        return [(0, data)]
    raise InputError(f"expected a dialogue object or a list, got {type(data).__name__}", file=file)


def _is_url(text: str) -> bool:
    return urlparse(text).scheme in ("http", "https", "data", "ftp", "s3", "gs")


def _read_one(obj: object, where: Where, file: Path) -> tuple[Dialogue, list[Query]]:
    raw_id = where.require(obj, "dialogue_id", (str, int))
    turns = where.require(obj, "dialogue", list)
    query_texts = where.require(obj, "query_text", list, optional=True) or []
    gt_turns = where.require(obj, "gt_turns", list, optional=True) or []
    if not turns:
        raise where.error("dialogue has no turns", "dialogue")
    if len(query_texts) != len(gt_turns):
        raise where.error(
            f"query_text has {len(query_texts)} items but gt_turns has {len(gt_turns)}", "gt_turns"
        )
    dialogue_id = f"{ID_PREFIX}:{raw_id}"

    utterances: list[Utterance] = []
    images: list[Image] = []
    position_of: dict[int, int] = {}
    images_of_turn: dict[int, list[int]] = {}
    speakers: list[str] = []
    for i, turn in enumerate(turns):
        at = where.child("dialogue").child(i)
        speaker = at.require(turn, "speaker", str)
        idx = at.require(turn, "utterance_idx", int)
        content = at.require(turn, "utterance", (str, list))
        if idx in position_of:
            raise at.error(
                f"duplicate utterance_idx {idx} (also turn {position_of[idx]})", "utterance_idx"
            )
        position_of[idx] = i
        if speaker not in speakers:
            speakers.append(speaker)
        if isinstance(content, str):
            utterances.append(Utterance(index=i, speaker=speaker, text=content))
            continue
        if not content:
            raise at.error("image list is empty", "utterance")
        utterances.append(Utterance(index=i, speaker=speaker, text=""))
        owned: list[int] = []
        for k, item in enumerate(content):
            at_item = at.child("utterance").child(k)
            ref = at_item.require(item, "image_url", str)
            caption = at_item.require(item, "caption", str, optional=True)
            if not ref.strip():
                raise at_item.error("image_url is empty", "image_url")
            image = Image(index=len(images), utterance_index=i, caption=caption or None)
            if _is_url(ref):
                image = image.model_copy(update={"url": ref})
            else:
                local = (file.parent / ref).resolve()
                info = inspect_image(
                    local, file=file, record=where.record, field=at_item.field("image_url")
                )
                image = image.model_copy(
                    update={
                        "path": str(local),
                        "sha256": info.sha256,
                        "width": info.width,
                        "height": info.height,
                    }
                )
            owned.append(image.index)
            images.append(image)
        images_of_turn[i] = owned

    dialogue = Dialogue(
        id=dialogue_id,
        source=SOURCE,
        speakers=speakers,
        utterances=utterances,
        images=images,
        metadata={"source_dialogue_id": raw_id, "utterance_idx": list(position_of)},
    )

    queries: list[Query] = []
    for k, (text, gold_turns) in enumerate(zip(query_texts, gt_turns, strict=True)):
        where.child("query_text").child(k).expect(text, str, "the query text")
        at = where.child("gt_turns").child(k)
        at.expect(gold_turns, list, "the gold turns")
        if not text.strip():
            raise where.child("query_text").error("query text is empty", k)
        utt_ids: set[int] = set()
        img_ids: set[int] = set()
        for n, turn_idx in enumerate(gold_turns):
            at.child(n).expect(turn_idx, int, "a turn index")
            if turn_idx not in position_of:
                raise at.error(f"turn {turn_idx} is not an utterance_idx of this dialogue", n)
            position = position_of[turn_idx]
            if position in images_of_turn:
                img_ids.update(images_of_turn[position])
            else:
                utt_ids.add(position)
        queries.append(
            Query(
                id=f"{dialogue_id}:q{k}",
                dialogue_id=dialogue_id,
                text=text,
                type=QueryType.from_gold(sorted(utt_ids), sorted(img_ids)),
                gold_utterance_ids=sorted(utt_ids),
                gold_image_ids=sorted(img_ids),
                metadata={"gt_turns": list(gold_turns)},
            )
        )
    return dialogue, queries


def read_wechat_raw(path: str | Path, limit: int | None = None) -> Dataset:
    """Read raw WeChat-MDR annotation files (see the module docstring for the mapping)."""
    root = Path(path)
    dialogues: list[Dialogue] = []
    queries: list[Query] = []
    seen: dict[str, str] = {}
    for file in _files(root):
        for record, obj in _records(file):
            if limit is not None and len(dialogues) >= limit:
                break
            dialogue, dialogue_queries = _read_one(obj, Where(file, record), file)
            here = f"in {file}, record {record}"
            check_first(
                seen,
                dialogue.id,
                here,
                "dialogue id",
                file=file,
                record=record,
                field="dialogue_id",
            )
            dialogues.append(dialogue)
            queries.extend(dialogue_queries)
    dataset = Dataset(dialogues=dialogues, queries=queries)
    check_dataset(dataset, file=root)
    return dataset
