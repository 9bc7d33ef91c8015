"""Tiny config-built models: a Qwen2 LM and a Qwen2-VL with an offline-assembled processor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ffr_lib.models import resolve_model
from ffr_lib.models.tiny import IMAGE_PLACEHOLDER, load_vl_processor


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut()).resize((96, 80))


def test_tiny_qwen2_forward_and_generate() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    resolved = resolve_model("tiny-qwen2")
    assert resolved.kind == "causal-lm"
    assert resolve_model(resolved.path).kind == "causal-lm"  # resolvable by path like a real model
    model = AutoModelForCausalLM.from_pretrained(resolved.path)
    tok = AutoTokenizer.from_pretrained(resolved.path)
    assert sum(p.numel() for p in model.parameters()) < 10_000_000
    batch = tok(["<|utt_id_start|>0<|utt_id_end|> A: hi"], return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (1, batch["input_ids"].shape[1], len(tok))
    assert torch.isfinite(logits).all()
    out = model.generate(**batch, max_new_tokens=4, do_sample=False)
    assert out.shape == (1, batch["input_ids"].shape[1] + 4)
    # the tokenizer carries the ChatML template of the real backbone
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert "<|im_start|>user" in text


def test_tiny_qwen2_vl_forward_with_an_image(photo: Image.Image) -> None:
    from transformers import AutoModelForImageTextToText

    resolved = resolve_model("tiny-qwen2-vl")
    assert resolved.kind == "vision-lm"
    model = AutoModelForImageTextToText.from_pretrained(resolved.path)
    processor = load_vl_processor(Path(resolved.path))
    batch = processor(
        text=[f"0 A: look {IMAGE_PLACEHOLDER} at this"], images=[photo], return_tensors="pt"
    )
    grid = batch["image_grid_thw"]
    assert grid.shape == (1, 3)
    # every merged 2x2 patch group becomes one image token in the text
    n_image_tokens = int((batch["input_ids"] == model.config.image_token_id).sum())
    assert n_image_tokens == int(grid.prod()) // processor.image_processor.merge_size**2 > 0
    with torch.no_grad():
        out = model(**batch)
    assert out.logits.shape[:2] == batch["input_ids"].shape
    assert torch.isfinite(out.logits).all()
    # the image changes the output: pixels really flow through the vision tower
    dark = Image.fromarray(np.zeros_like(np.asarray(photo)))
    batch_dark = processor(
        text=[f"0 A: look {IMAGE_PLACEHOLDER} at this"], images=[dark], return_tensors="pt"
    )
    with torch.no_grad():
        out_dark = model(**batch_dark)
    assert not torch.allclose(out.logits, out_dark.logits)
    generated = model.generate(**batch, max_new_tokens=3, do_sample=False)
    assert generated.shape[1] == batch["input_ids"].shape[1] + 3
    assert isinstance(processor.batch_decode(generated)[0], str)


def test_vl_processor_refuses_a_folder_without_vision_tokens() -> None:
    with pytest.raises(ValueError, match="vision tokens"):
        load_vl_processor(resolve_model("tiny-qwen2").path)
