"""Tiny models built from configs (random weights, no download) for tests and CI smoke runs.

- `tiny-qwen2`: a 2-layer Qwen2 causal LM with the real SmolLM2 tokenizer (ChatML template), so
  prompts tokenize exactly as with the real text backbone.
- `tiny-qwen2-vl`: a 2-layer Qwen2-VL (`AutoModelForImageTextToText`) with a small vision tower and
  an offline-assembled processor: the PIL image processor (`Qwen2VLImageProcessorPil`) plus that
  tokenizer extended with the Qwen vision tokens. `AutoProcessor` cannot be used here because it
  wants the video processor, which needs torchvision (not importable beside torch 2.13); use
  `load_vl_processor(folder)` instead, which also works for real Qwen2-VL / Qwen2.5-VL folders.

Both are saved as ordinary model folders, so they resolve by path like a real model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ffr_lib.models.smollm2 import load_gguf_tokenizer

VISION_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"
"""Put this in the text once per image; the processor expands it to the image's patch tokens."""
PROCESSOR_FILE = "ffr_vl_processor.json"
# Small images keep the number of vision tokens tiny: at most 112x112 px = 16 merged tokens.
TINY_IMAGE_SIZE = {"shortest_edge": 56 * 56, "longest_edge": 112 * 112}


def _tokenizer(tokenizer_source: Path | None) -> Any:
    """SmolLM2 tokenizer from a converted folder when given (fast), else straight from the GGUF."""
    if tokenizer_source is not None:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(tokenizer_source))
    return load_gguf_tokenizer()


def build_tiny_qwen2(
    dest: Path, tokenizer_source: Path | None = None, seed: int = 0
) -> dict[str, Any]:
    """Write a tiny random Qwen2ForCausalLM + tokenizer into `dest`."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = _tokenizer(tokenizer_source)
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.pad_token_id = config.pad_token_id
    model.save_pretrained(str(dest))
    tok.save_pretrained(str(dest))
    return {"kind": "causal-lm", "params": sum(p.numel() for p in model.parameters())}


def build_tiny_qwen2_vl(
    dest: Path, tokenizer_source: Path | None = None, seed: int = 0
) -> dict[str, Any]:
    """Write a tiny random Qwen2-VL model, its tokenizer and image-processor config into `dest`."""
    import torch
    from transformers import AutoModelForImageTextToText, Qwen2VLConfig

    tok = _tokenizer(tokenizer_source)
    tok.add_special_tokens({"additional_special_tokens": VISION_TOKENS})
    ids = {t: tok.convert_tokens_to_ids(t) for t in VISION_TOKENS}
    hidden, heads = 64, 4
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(tok),
            "hidden_size": hidden,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": heads,
            "num_key_value_heads": 2,
            "max_position_embeddings": 8192,
            # multimodal rotary sections (t, h, w) must add up to head_dim / 2 = 8
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [2, 3, 3],
            },
            "bos_token_id": tok.bos_token_id,
            "eos_token_id": tok.eos_token_id,
            "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
        },
        vision_config={
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": hidden,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "in_channels": 3,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config)
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    model.save_pretrained(str(dest))
    tok.save_pretrained(str(dest))
    _image_processor(TINY_IMAGE_SIZE).save_pretrained(str(dest))
    (dest / PROCESSOR_FILE).write_text(json.dumps({"image_placeholder": IMAGE_PLACEHOLDER}))
    return {"kind": "vision-lm", "params": sum(p.numel() for p in model.parameters())}


def _image_processor(size: dict[str, int] | None = None) -> Any:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(size=size) if size else Qwen2VLImageProcessorPil()


def _processor_class() -> type:
    from transformers import Qwen2VLProcessor

    class OfflineQwen2VLProcessor(Qwen2VLProcessor):
        """Qwen2VLProcessor without a video processor (that one needs torchvision)."""

        def check_argument_for_proper_class(self, argument_name: str, argument: Any) -> Any:
            if argument is None and argument_name == "video_processor":
                return None
            return super().check_argument_for_proper_class(argument_name, argument)

    return OfflineQwen2VLProcessor


def load_vl_processor(folder: str | Path) -> Any:
    """Processor for a Qwen2-VL / Qwen2.5-VL folder: `processor(text=[...], images=[...])`.

    Text marks each image with `IMAGE_PLACEHOLDER`; images are PIL images in order of appearance.
    Returns input_ids, attention_mask, pixel_values and image_grid_thw for the model.
    """
    from transformers import AutoTokenizer
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    folder = Path(folder)
    tok = AutoTokenizer.from_pretrained(str(folder))
    missing = [t for t in VISION_TOKENS if t not in tok.get_vocab()]
    if missing:
        raise ValueError(
            f"{folder}: tokenizer lacks the vision tokens {missing}; not a Qwen2-VL folder"
        )
    image_processor = Qwen2VLImageProcessorPil.from_pretrained(str(folder))
    return _processor_class()(image_processor=image_processor, tokenizer=tok, video_processor=None)
