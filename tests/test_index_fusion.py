"""The image-vector fusion hook (no image encoder ships offline: a fake one stands in) and the
fragment rows the index stores (text with captions, speakers, time span)."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from ffr_lib.data.model import Dialogue, Image, Utterance
from ffr_lib.fem.fragment_text import (
    FragmentTextConfig,
    FusedEmbedder,
    build_embedder,
    fragment_content_hash,
    fragment_rows,
    load_image_encoder,
)
from ffr_lib.segment import FixedWindowSegmenter, WindowConfig


class TextEmb:
    dimension, model_version = 8, "text8@1"

    def encode(self, texts, batch_size: int = 64, normalize: bool = True, **_kw) -> np.ndarray:
        out = np.stack(
            [np.random.default_rng(zlib.crc32(t.encode())).standard_normal(8) for t in texts]
        )
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


class FakeImageEncoder:
    """Mean pixel colour -> a fixed direction per channel (a stand-in for CLIP)."""

    dimension, model_version = 8, "fakeimg@1"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode_images(self, paths) -> np.ndarray:
        self.seen += list(paths)
        out = np.zeros((len(paths), 8), np.float32)
        for i, p in enumerate(paths):
            out[i, :3] = np.asarray(PILImage.open(p).convert("RGB")).reshape(-1, 3).mean(0)
        return out


def _dialogue(tmp_path: Path) -> Dialogue:
    red = tmp_path / "red.png"
    PILImage.new("RGB", (8, 8), (255, 0, 0)).save(red)
    t0 = datetime(2024, 3, 1, 12, tzinfo=UTC)
    return Dialogue(
        id="fus-1",
        source="test",
        utterances=[
            Utterance(index=i, speaker=s, text=f"line {i}", timestamp=t0 + timedelta(minutes=i))
            for i, s in enumerate(["ann", "ben", "ann", "cy", "ann", "ann"])
        ],
        images=[
            Image(index=0, utterance_index=1, path="red.png", caption="a red square"),
            Image(index=1, utterance_index=4, url="https://example.org/x.jpg", caption="a cat"),
        ],
    )


def test_fragment_rows_carry_text_speakers_and_time(tmp_path: Path) -> None:
    dialogue = _dialogue(tmp_path)
    fragments = FixedWindowSegmenter(WindowConfig(size=3)).segment(dialogue)
    rows = fragment_rows(dialogue, fragments, FragmentTextConfig(image_root=tmp_path))
    assert [r.utterance_ids for r in rows] == [[0, 1, 2], [3, 4, 5]]
    assert rows[0].text == "ann: line 0\nben: line 1 [image: a red square]\nann: line 2"
    assert rows[0].text == fragments[0].text  # same rendering as the segmenter
    assert rows[0].speakers == ["ann", "ben"] and rows[1].speakers == ["ann", "cy"]
    assert rows[0].started_at == datetime(2024, 3, 1, 12, tzinfo=UTC)
    assert rows[1].ended_at == datetime(2024, 3, 1, 12, 5, tzinfo=UTC)
    assert rows[0].image_paths == [str(tmp_path / "red.png")] and rows[1].image_paths == []
    assert rows[0].content_hash == fragment_content_hash("fus-1", [0, 1, 2], [0], rows[0].text)
    assert rows[0].content_hash != fragment_content_hash("fus-2", [0, 1, 2], [0], rows[0].text)
    # without the image root the relative path is not found: no pixels, caption only
    assert fragment_rows(dialogue, fragments)[0].image_paths == []


def test_fused_embedder_mixes_image_vectors(tmp_path: Path) -> None:
    dialogue = _dialogue(tmp_path)
    config = FragmentTextConfig(image_root=tmp_path, image_weight=0.5)
    rows = fragment_rows(
        dialogue, FixedWindowSegmenter(WindowConfig(size=3)).segment(dialogue), config
    )
    images = FakeImageEncoder()
    fused = build_embedder(TextEmb(), config, image_encoder=images)
    assert isinstance(fused, FusedEmbedder)
    assert fused.model_version == "text8@1+img:fakeimg@1@w0.5" and fused.dimension == 8
    vectors = fused.encode_rows(rows)
    text_only = TextEmb().encode([r.text for r in rows])
    assert images.seen == [str(tmp_path / "red.png")]
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(vectors[1], text_only[1], rtol=1e-5)  # no image file: text only
    expected = 0.5 * text_only[0] + 0.5 * np.eye(8, dtype=np.float32)[0]
    np.testing.assert_allclose(vectors[0], expected / np.linalg.norm(expected), rtol=1e-5)
    # queries are text only, in the shared space
    np.testing.assert_allclose(fused.encode(["q"]), TextEmb().encode(["q"]))
    assert build_embedder(TextEmb(), FragmentTextConfig()).__class__ is TextEmb


def test_fusion_needs_one_space_and_a_valid_spec() -> None:
    class Wide(FakeImageEncoder):
        dimension = 16

    with pytest.raises(ValueError, match="shared embedding space"):
        FusedEmbedder(TextEmb(), Wide())
    with pytest.raises(ValueError, match="package.module:factory"):
        load_image_encoder("no-colon")
    with pytest.raises(TypeError, match="ImageEncoder"):
        load_image_encoder("collections:OrderedDict")


@pytest.mark.db
def test_index_uses_fused_vectors(db_url: str, tmp_path: Path) -> None:
    from ffr_lib.data.dataset import Dataset
    from ffr_lib.db import connect
    from ffr_lib.index import index_rows
    from ffr_lib.store import write_dataset

    dialogue = _dialogue(tmp_path)
    write_dataset(Dataset(dialogues=[dialogue]), url=db_url)
    config = FragmentTextConfig(image_root=tmp_path, image_weight=0.5)
    rows = fragment_rows(
        dialogue, FixedWindowSegmenter(WindowConfig(size=3)).segment(dialogue), config
    )
    fused = build_embedder(TextEmb(), config, image_encoder=FakeImageEncoder())
    stats = index_rows(rows, fused, url=db_url)
    assert stats.embedding_model == fused.model_version and stats.inserted == 2
    with connect(db_url) as db:
        stored = db.execute(
            "SELECT embedding FROM ffr.fragments WHERE utterance_ids = '{0,1,2}'"
        ).fetchone()[0]
    np.testing.assert_allclose(stored.to_numpy(), fused.encode_rows(rows[:1])[0], rtol=1e-5)
