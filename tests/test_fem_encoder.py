"""The frozen text encoder (packaged MiniLM)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from ffr_lib.models import resolve_model
from ffr_lib.models.encoder import TextEncoder, weights_fingerprint


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder.get("minilm")


def test_encode_shape_dtype_and_unit_length(encoder: TextEncoder) -> None:
    vectors = encoder.encode(["a cat on a mat", "the lake at dawn", "hello"], batch_size=2)
    assert vectors.shape == (3, encoder.dimension) and encoder.dimension == 384
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # normalize=False returns the model's own output (MiniLM ends in a Normalize layer anyway)
    raw = encoder.encode(["a cat on a mat"], normalize=False)[0]
    np.testing.assert_allclose(raw / np.linalg.norm(raw), vectors[0], atol=1e-5)
    assert encoder.encode([]).shape == (0, 384)


def test_similar_sentences_score_higher_than_unrelated(encoder: TextEncoder) -> None:
    a, b, c, d = encoder.encode(
        [
            "We went hiking to the lake last weekend.",
            "Last Saturday we hiked up to a mountain lake.",
            "The quarterly tax report is due on Monday.",
            "My accountant filed the company's taxes.",
        ]
    )
    assert a @ b > a @ c + 0.2
    assert c @ d > c @ a + 0.2


def test_model_loads_once_per_weights_folder(encoder: TextEncoder) -> None:
    assert TextEncoder.get("minilm") is encoder
    assert TextEncoder.get("sentence-transformers/all-MiniLM-L6-v2") is encoder


def test_model_version_is_stable_and_tracks_the_weights(
    encoder: TextEncoder, tmp_path: Path
) -> None:
    version = encoder.model_version
    assert version.startswith("minilm@") and len(version.split("@")[1]) == 12
    folder = Path(resolve_model("minilm").path)
    assert weights_fingerprint(folder) == version.split("@")[1]
    copy = tmp_path / "my-fem"
    shutil.copytree(folder, copy)
    assert weights_fingerprint(copy) == weights_fingerprint(folder)  # content, not location
    local = TextEncoder(str(copy))
    assert local.model_version == f"my-fem@{version.split('@')[1]}"
    # a changed checkpoint (e.g. after fine-tuning) gets another version
    with (copy / "model.safetensors").open("r+b") as fh:
        fh.seek(-4, 2)
        fh.write(b"\x00\x00\x80\x3f")
    assert weights_fingerprint(copy) != weights_fingerprint(folder)


def test_int8_encoder_is_close_to_fp32_and_versioned_apart(encoder: TextEncoder) -> None:
    from ffr_lib.models.encoder import split_spec

    assert split_spec("minilm#int8") == ("minilm", "int8")
    assert split_spec("some#folder") == ("some#folder", "none")
    int8 = TextEncoder.get("minilm#int8")
    assert int8 is TextEncoder.get("minilm", quantize="int8") and int8 is not encoder
    assert int8.model_version == encoder.model_version + "+int8"
    assert int8.spec == "minilm#int8" and encoder.spec == "minilm"
    texts = [
        "user0: we hiked to the glacier lake\nuser1: was the water cold?",
        "user1: my dog loves the beach\nuser0: look at this photo [image: a dog]",
        "user0: the quarterly tax report is due on Monday",
        "user1: let's get pizza tonight\nuser0: sure, 8 pm?",
    ]
    a, b = encoder.encode(texts), int8.encode(texts)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    cos = (a * b).sum(axis=1)
    assert cos.min() > 0.9, cos
    # The ranking of the texts for a query is the fp32 one.
    q32 = encoder.encode(["a swim in a cold mountain lake"])[0]
    q8 = int8.encode(["a swim in a cold mountain lake"])[0]
    assert np.argmax(a @ q32) == np.argmax(b @ q8) == 0


def test_encoder_threads_setting_restores_torch_threads(encoder: TextEncoder) -> None:
    import torch

    before = torch.get_num_threads()
    old = encoder.threads
    try:
        encoder.threads = 1
        encoder.encode(["hello there"])
    finally:
        encoder.threads = old
    assert torch.get_num_threads() == before
