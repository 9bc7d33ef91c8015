"""The canonical on-disk format: a folder of JSONL files plus the image files they reference.

    my_dataset/
      manifest.json       {"format": "ffr-canonical", "version": 1, counts}  (optional on read)
      dialogues.jsonl     one Dialogue per line (the pydantic model's JSON)
      queries.jsonl       one Query per line (optional)
      images/...          image files, referenced by Image.path relative to the folder

See docs/canonical-format.md; ffr_lib/data/schema/canonical.schema.json is generated from the
models by :func:`canonical_json_schema` (``python -m ffr_lib.data.canonical --write-schema``).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError
from pydantic.json_schema import models_json_schema

from ffr_lib.data.dataset import Dataset
from ffr_lib.data.errors import InputError
from ffr_lib.data.images import ImageInfo, inspect_image
from ffr_lib.data.model import Dialogue, Image, Query
from ffr_lib.data.readers._common import (
    check_dataset,
    check_first,
    from_validation_error,
    iter_jsonl,
)

FORMAT_NAME = "ffr-canonical"
FORMAT_VERSION = 1
DIALOGUES_FILE = "dialogues.jsonl"
QUERIES_FILE = "queries.jsonl"
MANIFEST_FILE = "manifest.json"
IMAGES_DIR = "images"
SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / "canonical.schema.json"

R = TypeVar("R", Dialogue, Query)


class Manifest(BaseModel):
    """``manifest.json``: what the folder is and how much it holds (checked on read)."""

    format: Literal["ffr-canonical"] = FORMAT_NAME
    version: int = Field(FORMAT_VERSION, ge=1)
    dialogues: int = Field(ge=0)
    queries: int = Field(ge=0)
    images: int = Field(ge=0)


def _safe_relative(path_text: str) -> PurePosixPath | None:
    """The path as a relative POSIX path inside the folder, or None if it could escape it."""
    if "\\" in path_text or "\x00" in path_text:
        return None
    pure = PurePosixPath(path_text)
    if pure.is_absolute() or not pure.parts or any(p in ("..", "") for p in pure.parts):
        return None
    return pure


def _locate(path: str | Path) -> tuple[Path, Path, Path | None]:
    """(root folder, dialogues file, queries file or None) for a folder or a .jsonl path."""
    path = Path(path)
    if path.is_dir():
        dialogues = path / DIALOGUES_FILE
        if not dialogues.is_file():
            raise InputError(f"canonical folder has no {DIALOGUES_FILE}", file=path)
        queries = path / QUERIES_FILE
        return path, dialogues, queries if queries.is_file() else None
    if path.suffix == ".jsonl":
        if not path.is_file():
            raise InputError("file does not exist", file=path)
        queries = path.parent / QUERIES_FILE
        # Only a file named dialogues.jsonl brings its sibling queries.jsonl along: a lone
        # some_name.jsonl is a dialogues-only file and must not pick up unrelated queries.
        has_queries = path.name == DIALOGUES_FILE and queries.is_file()
        return path.parent, path, queries if has_queries else None
    raise InputError(
        f"expected a canonical folder or a .jsonl file, got {'a missing path' if not path.exists() else 'a ' + path.suffix + ' file'}",
        file=path,
    )


def _check_manifest(root: Path) -> Manifest | None:
    manifest_path = root / MANIFEST_FILE
    if not manifest_path.is_file():
        return None
    try:
        manifest = Manifest.model_validate_json(manifest_path.read_bytes())
    except ValidationError as exc:
        raise from_validation_error(exc, file=manifest_path, record="manifest") from exc
    if manifest.version > FORMAT_VERSION:
        raise InputError(
            f"format version {manifest.version} is newer than this reader ({FORMAT_VERSION})",
            file=manifest_path,
            record="manifest",
            field="version",
        )
    return manifest


def _map_image_files(dialogue: Dialogue, fix: Callable[[int, Image], Image]) -> Dialogue:
    """``dialogue`` with ``fix(j, image)`` in place of every image ``j`` that names a file."""
    if not any(image.path for image in dialogue.images):
        return dialogue
    images = [fix(j, image) if image.path else image for j, image in enumerate(dialogue.images)]
    return dialogue.model_copy(update={"images": images})


def _inspected(
    path: Path, cache: dict[Path, ImageInfo], *, file: Path, record: int | str, field: str
) -> ImageInfo:
    """What the image file at ``path`` is; each file decoded once (builders reuse a few photos
    many times)."""
    info = cache.get(path)
    if info is None:
        info = inspect_image(path, file=file, record=record, field=field)
        cache[path] = info
    return info


def _measured(image: Image, info: ImageInfo, **update: Any) -> Image:
    return image.model_copy(
        update={"sha256": info.sha256, "width": info.width, "height": info.height, **update}
    )


def _validated_images(
    dialogue: Dialogue, root: Path, *, file: Path, record: int | str, cache: dict[Path, ImageInfo]
) -> Dialogue:
    """Check every image file of ``dialogue`` and fill in sha256/width/height."""

    def check(j: int, image: Image) -> Image:
        relative = _safe_relative(image.path)
        if relative is None:
            raise InputError(
                f"image path {image.path!r} must be relative and stay inside {root}",
                file=file,
                record=record,
                field=f"images[{j}].path",
            )
        info = _inspected(
            root / relative, cache, file=file, record=record, field=f"images[{j}].path"
        )
        for name in ("sha256", "width", "height"):
            declared = getattr(image, name)
            if declared is not None and declared != getattr(info, name):
                raise InputError(
                    f"declared {name} {declared} does not match the file ({getattr(info, name)})",
                    file=file,
                    record=record,
                    field=f"images[{j}].{name}",
                )
        return _measured(image, info)

    return _map_image_files(dialogue, check)


def _record(model: type[R], obj: Any, file: Path, line_no: int, seen: dict[str, str]) -> R:
    """Line ``line_no`` of ``file`` as a ``model``; InputError when it is invalid or repeats an
    id (``seen``: where the ids read so far stand, this one added)."""
    try:
        record = model.model_validate(obj)
    except ValidationError as exc:
        raise from_validation_error(exc, file=file, record=line_no) from exc
    what = f"{model.__name__.lower()} id"
    check_first(seen, record.id, f"on line {line_no}", what, file=file, record=line_no, field="id")
    return record


def read_canonical(
    path: str | Path, limit: int | None = None, *, check_images: bool = True
) -> Dataset:
    """Read a canonical folder (or a ``.jsonl`` dialogues file) into a :class:`Dataset`.

    ``limit`` keeps the first N dialogues and the queries about them. With ``check_images``
    every referenced image file is decoded, hashed and measured (see ffr_lib.data.images).
    Raises :class:`InputError` naming file, line and field for anything malformed.
    """
    root, dialogues_file, queries_file = _locate(path)
    manifest = _check_manifest(root) if dialogues_file.name == DIALOGUES_FILE else None

    dialogues: list[Dialogue] = []
    first_line: dict[str, str] = {}
    image_cache: dict[Path, ImageInfo] = {}
    for line_no, obj in iter_jsonl(dialogues_file):
        if limit is not None and len(dialogues) >= limit:
            break
        dialogue = _record(Dialogue, obj, dialogues_file, line_no, first_line)
        if not dialogue.utterances:
            raise InputError(
                "dialogue has no utterances",
                file=dialogues_file,
                record=line_no,
                field="utterances",
            )
        if check_images:
            dialogue = _validated_images(
                dialogue, root, file=dialogues_file, record=line_no, cache=image_cache
            )
        dialogues.append(dialogue)

    queries: list[Query] = []
    if queries_file is not None:
        by_id = {d.id: d for d in dialogues}
        query_line: dict[str, str] = {}
        for line_no, obj in iter_jsonl(queries_file):
            query = _record(Query, obj, queries_file, line_no, query_line)
            if query.dialogue_id is not None:
                dialogue = by_id.get(query.dialogue_id)
                if dialogue is None:
                    if limit is not None:
                        continue  # its dialogue lies beyond the limit
                    raise InputError(
                        f"query refers to unknown dialogue {query.dialogue_id!r}",
                        file=queries_file,
                        record=line_no,
                        field="dialogue_id",
                    )
                try:
                    query.check_against(dialogue)
                except ValueError as exc:
                    field = "gold_utterance_ids" if "utterance" in str(exc) else "gold_image_ids"
                    raise InputError(
                        str(exc), file=queries_file, record=line_no, field=field
                    ) from exc
            elif limit is not None and not _corpus_query_within(query, by_id):
                continue
            queries.append(query)

    if manifest is not None and limit is None:
        # A count mismatch means a truncated copy or files from two different writes.
        for name, actual in (("dialogues", len(dialogues)), ("queries", len(queries))):
            if getattr(manifest, name) != actual:
                raise InputError(
                    f"manifest says {getattr(manifest, name)} {name}, the files hold {actual}",
                    file=root / MANIFEST_FILE,
                    record="manifest",
                    field=name,
                )
    dataset = Dataset(dialogues=dialogues, queries=queries)
    check_dataset(dataset, file=dialogues_file)
    return dataset


def _corpus_query_within(query: Query, by_id: dict[str, Dialogue]) -> bool:
    gold = query.metadata.get("gold_by_dialogue")
    return isinstance(gold, dict) and all(key in by_id for key in gold)


def _write_lines(path: Path, models: list[BaseModel]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for model in models:
            handle.write(model.model_dump_json())
            handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())


def _is_canonical_folder(folder: Path) -> bool:
    return (folder / DIALOGUES_FILE).is_file() or (folder / MANIFEST_FILE).is_file()


def write_canonical(
    dataset: Dataset, folder: str | Path, *, image_root: str | Path | None = None
) -> Path:
    """Write ``dataset`` as a canonical folder, atomically, and return the folder.

    Everything is written into a temporary sibling folder that is renamed into place at the end,
    so readers never see a half-written dataset and a failure leaves the old folder untouched.
    An existing canonical folder is replaced; any other non-empty folder is refused.

    Image files: a relative ``Image.path`` is resolved against ``image_root`` (default: the
    destination folder itself, i.e. files already in place) and kept at the same relative path;
    an absolute path is copied to ``images/<sha256><suffix>`` and the path rewritten. Every file
    is validated and its sha256/width/height recorded.
    """
    folder = Path(folder)
    check_dataset(dataset, file=folder)
    if folder.exists():
        if not folder.is_dir():
            raise FileExistsError(f"{folder} exists and is not a folder")
        if any(folder.iterdir()) and not _is_canonical_folder(folder):
            raise FileExistsError(
                f"{folder} is a non-empty folder that is not a canonical dataset; refusing to "
                "replace it"
            )
    source_root = Path(image_root) if image_root is not None else folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        cache: dict[Path, ImageInfo] = {}
        dialogues = [_copy_images(d, source_root, tmp, cache) for d in dataset.dialogues]
        _write_lines(tmp / DIALOGUES_FILE, dialogues)
        if dataset.queries:
            _write_lines(tmp / QUERIES_FILE, dataset.queries)
        manifest = Manifest(
            dialogues=len(dialogues),
            queries=len(dataset.queries),
            images=sum(len(d.images) for d in dialogues),
        )
        (tmp / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n", "utf-8")
        _swap_into_place(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _copy_images(
    dialogue: Dialogue, source_root: Path, dest: Path, cache: dict[Path, ImageInfo]
) -> Dialogue:
    def copy(j: int, image: Image) -> Image:
        where = {"record": dialogue.id, "field": f"images[{j}].path"}
        if Path(image.path).is_absolute():
            source = Path(image.path)
            relative = None
        else:
            relative = _safe_relative(image.path)
            if relative is None:
                raise InputError(
                    f"image path {image.path!r} escapes the dataset folder", file=dest, **where
                )
            source = source_root / relative
        info = _inspected(source, cache, file=source, **where)
        if image.sha256 is not None and image.sha256 != info.sha256:
            raise InputError(
                f"declared sha256 {image.sha256} does not match {source}",
                file=source,
                record=dialogue.id,
                field=f"images[{j}].sha256",
            )
        if relative is None:
            relative = PurePosixPath(IMAGES_DIR) / f"{info.sha256}{source.suffix.lower()}"
        target = dest / relative
        if not target.exists():  # identical content shared by several images is copied once
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        return _measured(image, info, path=relative.as_posix())

    return _map_image_files(dialogue, copy)


def _swap_into_place(tmp: Path, folder: Path) -> None:
    if not folder.exists():
        tmp.rename(folder)
        return
    backup = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
    backup.rmdir()  # only the unique name is wanted; rename needs it free
    folder.rename(backup)
    try:
        tmp.rename(folder)
    except BaseException:
        backup.rename(folder)  # put the old dataset back rather than leave nothing
        raise
    shutil.rmtree(backup, ignore_errors=True)


def canonical_json_schema() -> dict[str, Any]:
    """JSON Schema of the canonical files, generated from the pydantic models."""
    _, defs = models_json_schema(
        [(Dialogue, "validation"), (Query, "validation"), (Manifest, "validation")],
        ref_template="#/$defs/{model}",
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://ffr.invalid/schema/canonical.schema.json",
        "title": "FFR canonical dataset",
        "description": (
            f"Format '{FORMAT_NAME}' version {FORMAT_VERSION}. Each line of {DIALOGUES_FILE} is a "
            f"Dialogue, each line of {QUERIES_FILE} a Query, {MANIFEST_FILE} is a Manifest. "
            "Generated from ffr_lib.data.model by ffr_lib.data.canonical.canonical_json_schema; "
            "see docs/canonical-format.md for the rules a schema cannot state (dense ids, image "
            "paths relative to the folder, gold ids inside the dialogue)."
        ),
        "anyOf": [
            {"$ref": "#/$defs/Dialogue"},
            {"$ref": "#/$defs/Query"},
            {"$ref": "#/$defs/Manifest"},
        ],
        "$defs": defs["$defs"],
    }


def schema_text() -> str:
    """The schema file's exact content (stable key order, trailing newline)."""
    return json.dumps(canonical_json_schema(), indent=2, ensure_ascii=False) + "\n"


def write_schema(path: Path = SCHEMA_PATH) -> Path:
    """Regenerate the committed schema file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(schema_text(), encoding="utf-8")
    return path


if __name__ == "__main__":  # pragma: no cover - maintenance entry
    if sys.argv[1:] == ["--write-schema"]:
        print(write_schema())
    else:
        print(schema_text(), end="")
