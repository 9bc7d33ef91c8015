"""Load an F2RVLM backbone (text LM or VLM) with its tokenizer/processor, add the id markers as
tokens of their own, and build the LoRA configuration (r=8, alpha=32, all linear layers).

Why markers become tokens: SmolLM2's vocabulary splits each marker (``<|utt_id_start|>``) into
~9 pieces, so the reference format costs ~20 tokens of markup per utterance line; as single
tokens they cost 1 each, which shortens prompts (training and prefill cost are linear in prompt
length) and gives the model one embedding per marker to learn. The new embedding rows start as
the mean of the existing rows and are trained through peft's ``trainable_token_indices`` (only
those rows, not the whole matrix).

They are added as ordinary *added* tokens (``special=False``): trl decodes completions with
``skip_special_tokens=True``, which would silently delete special tokens from a reference
answer and make every completion malformed.

Two paths:
- ``text``: ``AutoModelForCausalLM`` + tokenizer; images are written as caption/OCR text.
- ``vlm``: ``AutoModelForImageTextToText`` (Qwen2-VL / Qwen2.5-VL class) + a processor whose
  image processor turns pixels into vision tokens; the vision tower stays frozen (LoRA targets
  the language model's linear layers only).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ffr_lib.data.format.prompt import SPECIAL_TOKENS
from ffr_lib.models.resolve import resolve_model
from ffr_lib.models.tiny import load_vl_processor

BackboneKind = Literal["auto", "text", "vlm"]

#: File written beside every adapter: what it sits on (base model, earlier adapters, markers).
ADAPTER_META = "ffr_adapter.json"


class LoraSettings(BaseModel):
    """LoRA as in the paper: r=8, alpha=32 on all linear layers of the language model."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(8, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    train_marker_embeddings: bool = Field(
        True, description="train the embedding rows of the added marker tokens"
    )


@dataclass
class Backbone:
    """A loaded backbone. ``processor`` is the tokenizer (text path) or the VLM processor;
    ``tokenizer`` is always the text tokenizer."""

    model: Any
    processor: Any
    tokenizer: Any
    kind: Literal["text", "vlm"]
    source: str
    marker_token_ids: list[int]

    @property
    def is_vlm(self) -> bool:
        return self.kind == "vlm"


def resolve_path(name: str) -> Path:
    """A model name (alias, local path or hub id) as a local folder: a folder as it is, anything
    else through :func:`ffr_lib.models.resolve.resolve_model`."""
    path = Path(name)
    if path.is_dir():
        return path
    return Path(resolve_model(name).path)


def detect_kind(path: Path) -> Literal["text", "vlm"]:
    """``vlm`` when the config has a vision tower (Qwen2-VL style ``vision_config``)."""
    config = json.loads((path / "config.json").read_text())
    return "vlm" if "vision_config" in config else "text"


# Qwen2-VL's chat template (image parts become the vision placeholder tokens); used when an
# offline-assembled processor carries no template of its own.
QWEN2_VL_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}"
    "<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _load_processor(path: Path) -> Any:
    """The VLM processor. ``AutoProcessor`` needs torchvision (its video processor), which does
    not import beside torch 2.13 here, so it is the offline assembly of
    :func:`ffr_lib.models.tiny.load_vl_processor` (PIL image processor + tokenizer)."""
    processor = load_vl_processor(path)
    if not getattr(processor, "chat_template", None):
        processor.chat_template = QWEN2_VL_CHAT_TEMPLATE
    return processor


def _untie_output_embeddings(model: Any) -> None:
    """Give the LM head its own weight. trl computes the loss from ``lm_head.weight`` directly
    (fused head); with tied embeddings peft wraps the head for the trainable marker rows and
    that path breaks. Untied, only the input rows of the markers train; the output rows keep
    their deterministic initialisation (the compact answer form never emits a marker)."""
    import torch

    head = model.get_output_embeddings()
    embeddings = model.get_input_embeddings()
    if head is None or head.weight.data_ptr() != embeddings.weight.data_ptr():
        return
    head.weight = torch.nn.Parameter(embeddings.weight.detach().clone())
    for config in (model.config, getattr(model.config, "text_config", None)):
        if config is not None and hasattr(config, "tie_word_embeddings"):
            config.tie_word_embeddings = False


def add_marker_tokens(
    tokenizer: Any, model: Any, markers: tuple[str, ...] = SPECIAL_TOKENS
) -> list[int]:
    """Add the markers as single (non-special) tokens and resize the embeddings. Each new row
    (input and output) starts as the mean of the rows of the pieces the marker was split into
    before: distinct per marker, meaningful, and deterministic (a reloaded base gets the same
    rows, so saved adapters apply exactly). Returns the marker token ids."""
    import torch
    from tokenizers import AddedToken

    pieces = {m: tokenizer.encode(m, add_special_tokens=False) for m in markers}
    before = len(tokenizer)
    tokenizer.add_tokens([AddedToken(m, special=False, normalized=False) for m in markers])
    ids = [tokenizer.convert_tokens_to_ids(m) for m in markers]
    if len(tokenizer) == before:
        return ids
    _untie_output_embeddings(model)
    old_rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > old_rows:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    with torch.no_grad():
        matrices = [model.get_input_embeddings().weight]
        head = model.get_output_embeddings()
        if head is not None and head.weight.data_ptr() != matrices[0].data_ptr():
            matrices.append(head.weight)
        for weight in matrices:
            for marker, token_id in zip(markers, ids, strict=True):
                source = [i for i in pieces[marker] if i < old_rows] or list(range(old_rows))
                weight[token_id] = weight[source].mean(dim=0)
    return ids


@functools.lru_cache(maxsize=8)
def load_tokenizer(name: str, add_markers: bool = True) -> Any:
    """The backbone's text tokenizer alone, without weights, with the markers added as
    :func:`add_marker_tokens` adds them: prompt planning counts tokens with it (whole-dialogue
    prompt or windows, ``F2RVLMProfile.max_prompt_tokens``) before, or without, loading a model,
    and counts what the model will read. Cached per (name, markers)."""
    from tokenizers import AddedToken
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(resolve_path(name)))
    if add_markers:
        tokenizer.add_tokens(
            [AddedToken(m, special=False, normalized=False) for m in SPECIAL_TOKENS]
        )
    return tokenizer


def load_backbone(
    name: str, kind: BackboneKind = "auto", add_markers: bool = True, dtype: str = "float32"
) -> Backbone:
    """Load model + tokenizer/processor by name (alias, folder, hub id when cached)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer

    path = resolve_path(name)
    resolved_kind = detect_kind(path) if kind == "auto" else kind
    torch_dtype = getattr(torch, dtype)
    if resolved_kind == "vlm":
        model = AutoModelForImageTextToText.from_pretrained(str(path), dtype=torch_dtype)
        processor = _load_processor(path)
        tokenizer = processor.tokenizer
    else:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch_dtype)
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        processor = tokenizer
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    marker_ids = add_marker_tokens(tokenizer, model) if add_markers else []
    return Backbone(model, processor, tokenizer, resolved_kind, str(path), marker_ids)


def lora_config(backbone: Backbone, settings: LoraSettings | None = None) -> Any:
    """peft ``LoraConfig`` for ``backbone``: all linear layers of the language model (the
    vision tower is excluded, it stays frozen), marker embedding rows trainable."""
    from peft import LoraConfig

    settings = settings or LoraSettings()
    target: Any = "all-linear"
    if backbone.is_vlm:
        # "all-linear" would also adapt the vision tower and the merger; the paper freezes it.
        target = r"^(?!.*visual).*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"
    kwargs: dict[str, Any] = {}
    if settings.train_marker_embeddings and backbone.marker_token_ids:
        kwargs["trainable_token_indices"] = {"embed_tokens": list(backbone.marker_token_ids)}
    return LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=target,
        task_type="CAUSAL_LM",
        **kwargs,
    )


def write_adapter_meta(folder: Path, meta: dict[str, Any]) -> None:
    (Path(folder) / ADAPTER_META).write_text(json.dumps(meta, indent=2))


def read_adapter_meta(folder: Path) -> dict[str, Any]:
    path = Path(folder) / ADAPTER_META
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no {ADAPTER_META}: not an F2RVLM adapter folder")
    return json.loads(path.read_text())


def load_trained(adapter_dir: str | Path) -> Backbone:
    """Load base + the chain of adapters recorded in ``ffr_adapter.json`` (SFT, then GRPO on
    top of the merged SFT model), merged into a plain model (fast inference)."""
    from peft import PeftModel

    folder = Path(adapter_dir)
    meta = read_adapter_meta(folder)
    backbone = load_backbone(meta["base"], kind=meta.get("kind", "auto"))
    chain = [Path(p) for p in meta.get("parents", [])] + [folder]
    model = backbone.model
    for step in chain:
        model = PeftModel.from_pretrained(model, str(step))
        model = model.merge_and_unload()
    model.eval()
    backbone.model = model
    return backbone


def adapter_weight_stats(adapter_dir: str | Path) -> dict[str, Any]:
    """Health of a saved adapter: every tensor finite, and the LoRA update not all zero (a
    LoRA ``B`` matrix starts at zero, so all-zero means training changed nothing)."""
    import torch
    from safetensors.torch import load_file

    files = sorted(Path(adapter_dir).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{adapter_dir} holds no .safetensors adapter weights")
    tensors: dict[str, torch.Tensor] = {}
    for file in files:
        tensors.update(load_file(str(file)))
    finite = all(bool(torch.isfinite(t).all()) for t in tensors.values())
    lora_b = [t for name, t in tensors.items() if "lora_B" in name]
    b_norm = float(sum(float(t.float().norm()) for t in lora_b))
    return {
        "tensors": len(tensors),
        "parameters": int(sum(t.numel() for t in tensors.values())),
        "finite": finite,
        "lora_b_norm": b_norm,
        "nonzero": b_norm > 0,
    }
