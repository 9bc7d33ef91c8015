"""OCR (rapidocr, real ONNX weights) and its use: an image with no caption but legible text is
findable by that text through the index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont

from ffr_lib.data.dataset import Dataset
from ffr_lib.data.model import Dialogue, Image, Utterance
from ffr_lib.fem.fragment_text import FragmentTextConfig, fragment_rows, with_ocr
from ffr_lib.ocr import OcrReader, get_reader, ocr_text
from ffr_lib.segment import FixedWindowSegmenter, WindowConfig


def _render(path: Path, lines: list[str]) -> Path:
    img = PILImage.new("RGB", (760, 90 * len(lines) + 40), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=56)
    for i, line in enumerate(lines):
        draw.text((30, 25 + 90 * i), line, fill="black", font=font)
    img.save(path)
    return path


def _squash(text: str) -> str:
    return "".join(text.split()).upper()


@pytest.fixture(scope="module")
def sign(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _render(tmp_path_factory.mktemp("ocr") / "sign.png", ["LIGHTHOUSE", "TICKETS 12 EURO"])


def test_reads_rendered_text(sign: Path) -> None:
    text = ocr_text(sign)
    lines = text.splitlines()
    assert len(lines) == 2
    assert _squash(lines[0]) == "LIGHTHOUSE"
    assert _squash(lines[1]) == "TICKETS12EURO"


def test_blank_image_has_no_text(tmp_path: Path) -> None:
    blank = tmp_path / "blank.png"
    PILImage.new("RGB", (300, 200), "white").save(blank)
    assert ocr_text(blank) == ""


def test_results_are_cached_by_content(sign: Path, tmp_path: Path) -> None:
    reader = OcrReader()
    first = reader.read(sign)
    calls = []
    engine = reader._get_engine()
    reader._engine = lambda pixels: calls.append(1) or engine(pixels)
    copy = tmp_path / "copy.png"
    copy.write_bytes(sign.read_bytes())
    assert reader.read(copy) == first and calls == []  # same bytes, other path: cached
    other = _render(tmp_path / "other.png", ["HARBOUR"])
    assert _squash(reader.read(other)) == "HARBOUR" and calls == [1]
    assert get_reader() is get_reader()  # one shared engine per config


def _dialogue(sign: Path) -> Dialogue:
    t0 = datetime(2024, 6, 1, 10, tzinfo=UTC)
    texts = [
        "we should plan the weekend",
        "yes, the coast sounds good",
        "look what I found",  # the sign is sent here, without a caption
        "nice, let's go there",
        "I will bring the camera",
        "and I bring sandwiches",
        "my sister baked a cake yesterday",
        "chocolate or lemon?",
    ]
    return Dialogue(
        id="ocr-1",
        source="test",
        speakers=["ann", "ben"],
        utterances=[
            Utterance(
                index=i, speaker=["ann", "ben"][i % 2], text=t, timestamp=t0 + timedelta(minutes=i)
            )
            for i, t in enumerate(texts)
        ],
        images=[
            Image(index=0, utterance_index=2, path=str(sign)),
            Image(index=1, utterance_index=6, path=str(sign), caption="a chocolate cake"),
        ],
    )


def test_with_ocr_fills_only_undescribed_images(sign: Path) -> None:
    dialogue = _dialogue(sign)
    enriched = with_ocr(dialogue)
    assert "LIGHTHOUSE" in _squash(enriched.images[0].ocr_text or "")
    assert enriched.images[1].ocr_text is None  # captioned: the caption describes it
    assert dialogue.images[0].ocr_text is None  # input not modified
    assert with_ocr(dialogue, FragmentTextConfig(ocr=False)) is dialogue
    missing = dialogue.model_copy(
        update={"images": [dialogue.images[0].model_copy(update={"path": "nope.png"})]}
    )
    assert with_ocr(missing).images[0].ocr_text is None  # no pixels, nothing to read


@pytest.mark.db
def test_uncaptioned_image_is_findable_by_its_text(db_url: str, sign: Path) -> None:
    from ffr_lib.index import hybrid_by_vector, index_rows, search
    from ffr_lib.models.encoder import TextEncoder
    from ffr_lib.store import write_dataset

    dialogue = _dialogue(sign)
    other = Dialogue(
        id="ocr-2",
        source="test",
        utterances=[
            Utterance(index=i, speaker="cy", text=t)
            for i, t in enumerate(["the train was late", "we missed the concert", "so annoying"])
        ],
    )
    write_dataset(Dataset(dialogues=[dialogue, other]), url=db_url)
    segmenter = FixedWindowSegmenter(WindowConfig(size=3))
    rows = [r for d in (dialogue, other) for r in fragment_rows(d, segmenter.segment(d))]
    assert "LIGHTHOUSE" in _squash(rows[0].text) and rows[0].image_paths == [str(sign)]
    encoder = TextEncoder.get("minilm")
    index_rows(rows, encoder, url=db_url)

    hits = search("lighthouse tickets", 3, encoder=encoder, url=db_url)
    assert hits[0].dialogue_id == "ocr-1" and hits[0].utterance_ids == [0, 1, 2]
    assert hits[0].image_ids == [0]
    text_hits = hybrid_by_vector(None, "lighthouse", 3, url=db_url)
    assert [h.fragment_id for h in text_hits] == [hits[0].fragment_id]
