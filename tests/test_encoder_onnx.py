"""The ONNX Runtime path of the text encoder (issue 18): a tiny BERT sentence-transformers model,
built from a config with MiniLM's packaged tokenizer (nothing downloaded), exported through
``ffr_lib.models.onnx_runtime`` into a temp models cache, must give torch's vectors in input order,
reuse its export while the weights are unchanged and export again when they change, fail with the
file's name when the export is damaged or cannot be written, and be picked by configuration."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ffr_lib.cli import app
from ffr_lib.models.encoder import TextEncoder, resolve_runtime
from ffr_lib.models.onnx_runtime import (
    MODEL_FILE,
    OnnxModelError,
    ensure_export,
    export_folder,
    optimized_path,
)
from ffr_lib.models.resolve import resolve_model
from ffr_lib.settings import ENCODER_RUNTIME, REPO_ROOT

PROMPTS = {"query": "query: ", "passage": "passage: "}
# Varied lengths: one token, sentences, a fragment with newlines, non-Latin text, and one past the
# window (max_seq_length 48) so that truncation happens inside a bucket.
TEXTS = [
    "ok",
    "Where did we put the photos from the lake trip?",
    "user0: back from the market\nuser1: peaches?\nuser0: far too many of them",
    "我们明天下午三点在图书馆见面",
    " ".join(["a fragment that runs well past the window of the tiny encoder"] * 12),
    "see you",
    "The meeting moved to Thursday because the projector was broken again.",
]


def _build(folder: Path, seed: int = 0) -> Path:
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("minilm").path)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    hf = folder.parent / f"{folder.name}-hf"
    BertModel(config).save_pretrained(hf)
    tokenizer.save_pretrained(hf)
    modules = [Transformer(str(hf), max_seq_length=48), Pooling(32, "mean"), Normalize()]
    SentenceTransformer(modules=modules, prompts=PROMPTS, device="cpu").save(str(folder))
    shutil.rmtree(hf)
    return folder


@pytest.fixture(scope="module")
def tiny_st(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT sentence-transformers folder (random weights, mean pooling, normalised)."""
    return _build(tmp_path_factory.mktemp("tiny-st") / "model")


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh models cache, and no loaded encoder carried over from another test."""
    folder = tmp_path / "models"
    monkeypatch.setenv("FFR_MODELS_DIR", str(folder))
    monkeypatch.delenv("FFR_ENCODER_RUNTIME", raising=False)
    TextEncoder._cache.clear()
    yield folder
    TextEncoder._cache.clear()


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_onnx_vectors_match_torch_in_input_order(tiny_st: Path, models_dir: Path) -> None:
    onnx = TextEncoder(str(tiny_st), runtime="onnx")
    torch_ = TextEncoder(str(tiny_st), runtime="torch")
    assert (onnx.runtime, torch_.runtime) == ("onnx", "torch")
    assert onnx.onnx is not None and onnx.onnx.path.is_relative_to(models_dir)
    # The vectors are the same model's: one version string for both runtimes.
    assert onnx.model_version == torch_.model_version
    for prompt_name in (None, "query", "passage"):
        for normalize in (True, False):
            got = onnx.encode(TEXTS, prompt_name=prompt_name, normalize=normalize, memo=False)
            want = torch_.encode(TEXTS, prompt_name=prompt_name, normalize=normalize, memo=False)
            assert got.shape == want.shape == (len(TEXTS), 32)
            assert _cosines(got, want).min() >= 0.999
            if normalize:
                np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    # Bucketing sorts by token length; each row still belongs to its own text, in input order,
    # whatever the batch size and however the input is ordered.
    alone = np.stack([onnx.encode([t], memo=False)[0] for t in TEXTS])
    for batch_size in (1, 2, 3, 64):
        batched = onnx.encode(TEXTS, batch_size=batch_size, memo=False)
        assert _cosines(batched, alone).min() >= 0.9999
    reversed_ = onnx.encode(TEXTS[::-1], memo=False)
    assert _cosines(reversed_[::-1], alone).min() >= 0.9999
    # The ORT_ENABLE_ALL graph was saved next to the export, and a new session loads it.
    assert optimized_path(onnx.onnx.path).is_file()
    again = TextEncoder(str(tiny_st), runtime="onnx")
    assert _cosines(again.encode(TEXTS, memo=False), alone).min() >= 0.9999


def test_export_is_reused_while_weights_are_unchanged_and_redone_when_they_change(
    tiny_st: Path, models_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "fem" / "model"  # a fine-tuned checkpoint: a local folder, retrained
    shutil.copytree(tiny_st, folder)
    caplog.set_level(logging.INFO, logger="ffr_lib.models.onnx_runtime")
    first = TextEncoder(str(folder), runtime="onnx")
    assert first.onnx is not None
    path = first.onnx.path
    assert path == export_folder("model", first.fingerprint) / MODEL_FILE
    assert "exporting it once" in caplog.text  # the lazy export says so...
    exports = [r for r in caplog.records if "export" in r.getMessage()]
    assert exports and all(r.levelno == logging.INFO for r in exports)  # ...as expected: INFO
    stamp = path.stat().st_mtime_ns
    before = first.encode(TEXTS, memo=False)
    caplog.clear()
    second = TextEncoder(str(folder), runtime="onnx")
    assert second.onnx is not None and second.onnx.path == path
    assert path.stat().st_mtime_ns == stamp and "exporting" not in caplog.text

    deleted = tmp_path / "deleted"  # a checkpoint removed after it was exported
    shutil.copytree(tiny_st, deleted)
    orphan = TextEncoder(str(deleted), runtime="onnx").onnx.path.parent  # type: ignore[union-attr]
    shutil.rmtree(deleted)

    _build(folder, seed=1)  # retrained in place: other weights, same folder
    retrained = TextEncoder(str(folder), runtime="onnx")
    assert retrained.fingerprint != first.fingerprint
    assert retrained.onnx is not None and retrained.onnx.path != path
    assert "exporting it once" in caplog.text
    assert not path.parent.exists()  # the stale export of this folder is gone...
    assert not orphan.exists()  # ...and so is the one of the deleted folder
    want = TextEncoder(str(folder), runtime="torch").encode(TEXTS, memo=False)
    assert _cosines(retrained.encode(TEXTS, memo=False), want).min() >= 0.999
    assert _cosines(before, want).min() < 0.99  # really other weights


def test_damaged_export_fails_naming_the_file(tiny_st: Path, models_dir: Path) -> None:
    path = TextEncoder(str(tiny_st), runtime="onnx").onnx.path  # type: ignore[union-attr]
    optimized_path(path).write_bytes(b"not a model")  # a damaged derived file is rebuilt...
    healed = TextEncoder(str(tiny_st), runtime="onnx")
    assert healed.runtime == "onnx" and healed.encode(["hi"]).shape == (1, 32)
    optimized_path(path).unlink()
    path.write_bytes(b"\x08\x07 truncated protobuf")  # ...the export itself is not guessed at
    with pytest.raises(OnnxModelError, match="cannot load") as err:
        TextEncoder(str(tiny_st), runtime="onnx")
    assert str(path) in str(err.value) and "ffr models prepare" in str(err.value)


def test_missing_export_where_nothing_may_be_written_fails_naming_the_file(
    tiny_st: Path, models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch_ = TextEncoder(str(tiny_st), runtime="torch")
    want = export_folder("model", torch_.fingerprint) / MODEL_FILE
    with pytest.raises(OnnxModelError, match="may not write") as err:
        ensure_export(torch_.model, "model", torch_.fingerprint, str(tiny_st), export=False)
    assert str(want) in str(err.value)
    # A models cache that cannot be created (a read-only volume; here a file is in the way).
    blocker = tmp_path / "read-only"
    blocker.write_text("")
    monkeypatch.setenv("FFR_MODELS_DIR", str(blocker / "models"))
    unwritable = export_folder("model", torch_.fingerprint) / MODEL_FILE
    with pytest.raises(OnnxModelError, match="cannot be written") as err:
        TextEncoder(str(tiny_st), runtime="onnx")
    assert str(unwritable) in str(err.value)


def test_configuration_selects_the_runtime(
    tiny_st: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert ENCODER_RUNTIME.default == "onnx"  # the default for inference (BENCHMARKS.md)
    monkeypatch.setenv("FFR_ENCODER_RUNTIME", "torch")
    assert TextEncoder.get(str(tiny_st)).runtime == "torch"
    monkeypatch.setenv("FFR_ENCODER_RUNTIME", "onnx")
    served = TextEncoder.get(str(tiny_st))  # as the index writer and query serving load it
    assert served.runtime == "onnx" and served is TextEncoder.get(str(tiny_st))
    assert TextEncoder.get(str(tiny_st), runtime="torch").runtime == "torch"
    # int8 is torch's dynamic quantization: the configured default falls back, an explicit
    # request is refused.
    assert TextEncoder.get(f"{tiny_st}#int8").runtime == "torch"
    assert resolve_runtime(None, "none", "cuda") == "torch"
    with pytest.raises(ValueError, match="CPU only"):
        resolve_runtime("onnx", "int8")
    monkeypatch.setenv("FFR_ENCODER_RUNTIME", "tensorrt")
    with pytest.raises(ValueError, match="FFR_ENCODER_RUNTIME"):
        TextEncoder.get(str(tiny_st))


def test_unsupported_pooling_stays_on_torch(models_dir: Path, tmp_path: Path) -> None:
    folder = _build(tmp_path / "model")
    pooling = folder / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    config["include_prompt"] = False  # prompt tokens left out of the mean: not in the graph
    pooling.write_text(json.dumps(config))
    encoder = TextEncoder(str(folder), runtime="onnx")
    assert encoder.runtime == "torch" and encoder.onnx is None
    assert "prompt" in (encoder.onnx_reason or "")
    assert encoder.encode(TEXTS[:2]).shape == (2, 32)


def test_models_prepare_exports_a_checkpoint_folder(tiny_st: Path, models_dir: Path) -> None:
    result = CliRunner().invoke(app, ["models", "prepare", str(tiny_st)])
    assert result.exit_code == 0, result.output
    assert "ONNX export ready" in result.output
    fingerprint = TextEncoder(str(tiny_st), runtime="torch").fingerprint
    assert (export_folder("model", fingerprint) / MODEL_FILE).is_file()


def test_runtime_benchmark_reports_every_variant(tmp_path: Path) -> None:
    """``bench/encoder_runtime.py`` on a few real fragments (the shared models cache: MiniLM's
    export is made once by ``make setup``): consistent figures, no timing asserted."""
    sys.path.insert(0, str(REPO_ROOT))
    from bench.encoder_runtime import main

    args = ["--models", "minilm", "--texts", "40", "--queries", "8", "--latency-queries", "3"]
    results = main([*args, "--no-int8", "--out", str(tmp_path)])
    minilm = results["models"]["minilm"]
    assert [r["variant"] for r in minilm["runs"]] == [
        "torch",
        "onnx",
        "onnx batch 64",
        "torch (again)",
        "onnx (again)",
    ]
    assert minilm["quality"]["torch"]["cosine_min"] == pytest.approx(1.0)
    assert minilm["quality"]["onnx"]["passes_gate"]
    assert set(minilm["query_latency"]) == {"torch", "onnx"}
    assert "| minilm | onnx |" in (tmp_path / "results.md").read_text()
