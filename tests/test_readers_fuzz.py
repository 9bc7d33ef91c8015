"""Readers raise only InputError: random structural mutations of every fixture either read
cleanly or fail with an InputError naming the file, never with another exception."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest

from ffr_lib.data.errors import InputError
from ffr_lib.data.readers import read_dataset

FIXTURES = Path(__file__).parent / "fixtures" / "readers"
ODD_VALUES: list[Any] = [None, 0, -1, 2**40, 1.5, True, "", "x", "D:1", [], [1], {}, {"a": 1}]


def _nodes(value: Any, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _nodes(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += _nodes(item, (*path, index))
    return out


def _mutate(data: Any, rng: random.Random) -> Any:
    data = json.loads(json.dumps(data))
    path = rng.choice(_nodes(data)[1:])
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    if isinstance(parent, dict) and rng.random() < 0.3:
        del parent[path[-1]]
    else:
        parent[path[-1]] = rng.choice(ODD_VALUES)
    return data


CASES = [
    ("photochat", FIXTURES / "photochat" / "train" / "train_00.json", "train_00.json"),
    ("chitchat", FIXTURES / "chitchat" / "conversations.json", "conversations.json"),
    ("locomo", FIXTURES / "locomo" / "locomo10.json", "locomo10.json"),
    ("wechat-raw", FIXTURES / "wechat_raw" / "dialogues.json", "dialogues.json"),
    ("qmsum", FIXTURES / "qmsum" / "val" / "Demo002.json", "Demo002.json"),
]


@pytest.mark.parametrize(("fmt", "source", "name"), CASES, ids=[c[0] for c in CASES])
def test_mutations_raise_only_input_error(
    fmt: str, source: Path, name: str, tmp_path: Path
) -> None:
    original = json.loads(source.read_text())
    rng = random.Random(f"ffr-{fmt}")
    target = tmp_path / name
    if (source.parent / "images").is_dir():  # local image files the fixture refers to
        shutil.copytree(source.parent / "images", tmp_path / "images")
    failures = successes = 0
    for _ in range(150):
        target.write_text(json.dumps(_mutate(original, rng)))
        try:
            read_dataset(target, fmt)
            successes += 1
        except InputError as exc:
            failures += 1
            assert exc.file is not None and name in exc.file, str(exc)
    # The mutations hit the checks, and harmless ones (a caption emptied, say) still read.
    assert failures > 30 and successes > 3


def test_canonical_line_mutations_raise_only_input_error(tmp_path: Path) -> None:
    lines = (FIXTURES / "canonical" / "dialogues.jsonl").read_text().splitlines()
    rng = random.Random("ffr-canonical")
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "images").mkdir()
    (folder / "images" / "red.png").write_bytes(
        (FIXTURES / "canonical" / "images" / "red.png").read_bytes()
    )
    failures = 0
    for _ in range(150):
        mutated = [json.dumps(_mutate(json.loads(line), rng)) for line in lines]
        (folder / "dialogues.jsonl").write_text("\n".join(mutated) + "\n")
        try:
            read_dataset(folder, "canonical")
        except InputError as exc:
            failures += 1
            assert exc.file is not None and exc.record in (1, 2), str(exc)
    assert failures > 30
