"""The reader registry: names, dispatch, clear errors for unknown or unavailable formats."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import ffr_lib.data.readers as readers
from ffr_lib.data.errors import InputError
from ffr_lib.data.readers import FORMATS, get_reader, read_dataset

FIXTURES = Path(__file__).parent / "fixtures" / "readers"


def test_known_formats() -> None:
    assert set(FORMATS) == {
        "canonical",
        "photochat",
        "chitchat",
        "msswift",
        "wechat-raw",
        "locomo",
        "qmsum",
    }
    assert all(isinstance(text, str) and text for text in FORMATS.values())


def test_unknown_format_lists_known_ones() -> None:
    with pytest.raises(InputError) as caught:
        read_dataset(FIXTURES, "csv")
    message = str(caught.value)
    assert "unknown format 'csv'" in message
    for name in FORMATS:
        assert name in message


@pytest.mark.parametrize(
    ("path", "fmt", "n_dialogues"),
    [
        (FIXTURES / "canonical", "canonical", 2),
        (FIXTURES / "photochat", "photochat", 4),
        (FIXTURES / "chitchat" / "conversations.json", "chitchat", 2),
        (FIXTURES / "wechat_raw", "wechat-raw", 2),
        (FIXTURES / "locomo" / "locomo10.json", "locomo", 2),
        (FIXTURES / "qmsum", "qmsum", 3),
    ],
)
def test_dispatch(path: Path, fmt: str, n_dialogues: int) -> None:
    assert len(read_dataset(path, fmt).dialogues) == n_dialogues
    assert len(read_dataset(str(path), fmt, limit=1).dialogues) == 1


def test_missing_reader_module_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        readers._READERS, "ghost", ("not written yet", "ffr_lib.data.readers.ghost", "read_ghost")
    )
    monkeypatch.delitem(sys.modules, "ffr_lib.data.readers.ghost", raising=False)
    with pytest.raises(InputError, match="format 'ghost' is not available.*readers.ghost"):
        get_reader("ghost")


def test_negative_limit_is_rejected() -> None:
    with pytest.raises(InputError, match="limit"):
        read_dataset(FIXTURES / "canonical", "canonical", limit=-1)
