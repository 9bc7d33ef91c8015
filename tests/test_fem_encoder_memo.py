"""The encoder embeds each distinct text once (memo), embeds single queries anew (honest
latency), reports progress on large inputs, and forgets a retrained folder."""

from __future__ import annotations

import numpy as np
import pytest

from ffr_lib.models import encoder as encoder_module
from ffr_lib.models.encoder import TextEncoder


class _FakeModel:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, texts, batch_size=64, normalize_embeddings=True, **kwargs):  # noqa: ANN001
        self.calls.append(list(texts))
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)


def _encoder() -> TextEncoder:
    enc = object.__new__(TextEncoder)
    enc.model = _FakeModel()
    enc._memo = {}
    enc.memo_hits = enc.memo_misses = 0
    enc._version = "fake@0"
    enc.threads = None  # follow the load, as a real encoder without FFR_TORCH_THREADS
    return enc


def test_each_distinct_text_is_embedded_once() -> None:
    enc = _encoder()
    first = enc.encode(["ab", "abc", "ab", "a"])
    assert enc.model.calls == [["ab", "abc", "a"]]  # the repeat is not embedded twice
    assert first[:, 0].tolist() == [2, 3, 2, 1]
    second = enc.encode(["a", "abcd", "abc"])
    assert enc.model.calls[-1] == ["abcd"]  # only the new text
    assert second[:, 0].tolist() == [1, 4, 3]
    assert (enc.memo_hits, enc.memo_misses) == (3, 4)
    second[0, 0] = 99.0  # callers may scale results in place: the memo keeps its own copy
    assert enc.encode(["a", "ab"])[0, 0] == 1.0


def test_single_query_is_embedded_anew_and_prompts_are_separate() -> None:
    enc = _encoder()
    enc.encode(["q"])
    enc.encode(["q"])
    assert enc.model.calls == [["q"], ["q"]]
    enc.encode(["x", "y"], prompt_name="query")
    enc.encode(["x", "y"])  # same texts, no prompt: another vector
    assert enc.model.calls[-1] == ["x", "y"]
    enc.encode(["q", "q"], memo=False)
    assert enc.model.calls[-1] == ["q", "q"]


def test_large_inputs_are_chunked_with_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encoder_module, "BULK_TEXTS", 2)
    monkeypatch.setattr(encoder_module, "PROGRESS_MIN_TEXTS", 4)
    monkeypatch.setattr(encoder_module, "PROGRESS_CHUNK", 3)
    enc = _encoder()
    enc.resolved = type("R", (), {"alias": "fake", "path": "/x"})()
    out = enc.encode([f"t{i}" for i in range(7)], desc="embed test")
    assert [len(c) for c in enc.model.calls] == [3, 3, 1]
    assert out.shape == (7, 2)


def test_forget_drops_the_loaded_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    class _Resolved:
        def __init__(self, path: str) -> None:
            self.path = path

    monkeypatch.setattr(encoder_module, "resolve_model", lambda name: _Resolved(f"/m/{name}"))
    monkeypatch.setattr(TextEncoder, "_cache", {})
    TextEncoder._cache[("/m/tuned", "cpu")] = _encoder()
    TextEncoder._cache[("/m/base", "cpu")] = _encoder()
    TextEncoder.forget("tuned")
    assert list(TextEncoder._cache) == [("/m/base", "cpu")]
