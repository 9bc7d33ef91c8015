"""The frozen text encoder: one sentence-transformers model per weights folder per process.

Used by the segmenter (TextTiling), the rewards and hints of F2RVLM, the FEM (its base model) and
the index (fragment and query vectors). The model
name goes through `resolve_model`, so `minilm`, `multilingual-e5-small`, a fine-tuned checkpoint
folder or a hub id all work the same way.

Speed knobs (bench/BENCHMARKS: embedding is ~98% of indexing time on 2 cores):
- ``quantize="int8"`` (or the name suffix ``#int8``, e.g. ``minilm#int8``): dynamic int8
  quantization of the Linear layers (torch, CPU, per-channel weight scales). About 2x faster; the vectors differ slightly
  from fp32, so the version string gets ``+int8`` and an index built with it is a separate FEM
  version (never mixed with fp32 vectors). Off by default; see BENCHMARKS.md for its recall.
- ``threads`` (or ``FFR_TORCH_THREADS``, see ``ffr_lib.settings``): torch intra-op threads while
  encoding. Unset, bulk encoding follows the machine's load (``ffr_lib.threads``): on a shared
  2-core machine 1 thread beat 2 (OpenMP threads spin when the cores are oversubscribed).
- Batches are sorted by length by sentence-transformers, so padding stays small.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ffr_lib.models.resolve import ResolvedModel, resolve_model
from ffr_lib.progress import Progress
from ffr_lib.settings import TORCH_THREADS
from ffr_lib.threads import torch_threads

DEFAULT_ENCODER = "minilm"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_CONFIG_NAMES = ("config.json", "modules.json", "tokenizer.json", "sentence_bert_config.json")
QUANTIZATIONS = ("none", "int8")
MEMO_MAX_ENTRIES = 400_000  # ~600 MB of 384-d vectors; the memo starts over beyond it
BULK_TEXTS = 256  # from this many texts the torch thread count follows the load (ffr_lib.threads)
PROGRESS_MIN_TEXTS = 2_000  # inputs this large are embedded in chunks with progress lines
PROGRESS_CHUNK = 1_024


def split_spec(spec: str) -> tuple[str, str]:
    """``"minilm#int8"`` -> ("minilm", "int8"); a name without a known suffix -> (name, "none")."""
    name, sep, variant = spec.rpartition("#")
    if sep and variant in QUANTIZATIONS:
        return name, variant
    return spec, "none"


def weights_fingerprint(folder: Path, length: int = 12) -> str:
    """Short sha256 of the weight and config files of a model folder (content, not mtimes)."""
    digest = hashlib.sha256()
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and (p.suffix in _WEIGHT_SUFFIXES or p.name in _CONFIG_NAMES)
    )
    for path in files:
        digest.update(str(path.relative_to(folder)).encode())
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                digest.update(chunk)
    return digest.hexdigest()[:length]


class TextEncoder:
    """A frozen sentence encoder. Prefer `TextEncoder.get(name)`, which loads each model once."""

    _cache: dict[tuple[str, str, str], TextEncoder] = {}
    _lock = threading.Lock()

    def __init__(
        self,
        name: str = DEFAULT_ENCODER,
        device: str = "cpu",
        quantize: str | None = None,
        threads: int | None = None,
    ) -> None:
        from sentence_transformers import SentenceTransformer

        base, variant = split_spec(name)
        quantize = quantize or variant
        if quantize not in QUANTIZATIONS:
            raise ValueError(f"quantize must be one of {QUANTIZATIONS}, got {quantize!r}")
        if quantize != "none" and device != "cpu":
            raise ValueError("int8 dynamic quantization runs on CPU only")
        self.resolved: ResolvedModel = resolve_model(base)
        self.name = base
        self.device = device
        self.quantize = quantize
        self.threads = threads if threads is not None else TORCH_THREADS.get()
        self.model: Any = SentenceTransformer(self.resolved.path, device=device)
        self.model.eval()
        if quantize == "int8":
            import torch
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

            # Per-channel weight scales: per-tensor int8 moved MiniLM's neighbours far more.
            self.model = quantize_dynamic(
                self.model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8
            )
        self._version: str | None = None
        # Vectors already computed by this encoder, keyed by (normalize, prompt, text): each
        # distinct text is embedded once per process, however many steps ask for it (the demo
        # materializes segmentation, FEM evaluation, index and evaluation in one process).
        self._memo: dict[tuple[bool, str | None, str], np.ndarray] = {}
        self.memo_hits = 0
        self.memo_misses = 0

    @classmethod
    def get(
        cls, name: str = DEFAULT_ENCODER, device: str = "cpu", quantize: str | None = None
    ) -> TextEncoder:
        """The process-wide encoder for `name` (same weights folder and quantization -> same
        object). `name` may end in ``#int8``."""
        base, variant = split_spec(name)
        quantize = quantize or variant
        path = resolve_model(base).path
        key = (path, device, quantize)
        with cls._lock:
            encoder = cls._cache.get(key)
            if encoder is None:
                encoder = cls(base, device=device, quantize=quantize)
                cls._cache[key] = encoder
        return encoder

    @property
    def spec(self) -> str:
        """What `TextEncoder.get` needs to load this encoder again (alias or folder, plus the
        quantization suffix)."""
        base = self.resolved.alias or self.resolved.path
        return base if self.quantize == "none" else f"{base}#{self.quantize}"

    @classmethod
    def forget(cls, name: str) -> None:
        """Drop the loaded encoder of ``name`` (its folder was overwritten, e.g. retrained)."""
        path = resolve_model(name).path
        with cls._lock:
            for key in [k for k in cls._cache if k[0] == path]:
                del cls._cache[key]

    @property
    def dimension(self) -> int:
        """Length of the embedding vectors."""
        get_dim = getattr(self.model, "get_embedding_dimension", None) or (
            self.model.get_sentence_embedding_dimension
        )
        return int(get_dim())

    @property
    def prompts(self) -> dict[str, str]:
        """Named prompts of the model (e5: {"query": "query: ", "passage": "passage: "})."""
        return dict(getattr(self.model, "prompts", None) or {})

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer (counts the tokens a text costs against ``max_seq_length``)."""
        return self.model.tokenizer

    @property
    def max_seq_length(self) -> int:
        """The window: tokens per text, special tokens included; the model cuts the rest."""
        return int(self.model.max_seq_length)

    @property
    def model_version(self) -> str:
        """`<alias or folder name>@<12 hex of the weights>`: stable for a given weights folder."""
        if self._version is None:
            label = self.resolved.alias or Path(self.resolved.path).name
            folder = self.resolved.local_path
            fingerprint = weights_fingerprint(folder) if folder else "hub"
            suffix = "" if self.quantize == "none" else f"+{self.quantize}"
            self._version = f"{label}@{fingerprint}{suffix}"
        return self._version

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        normalize: bool = True,
        prompt_name: str | None = None,
        desc: str | None = None,
        memo: bool | None = None,
    ) -> np.ndarray:
        """Embed `texts` -> float32 array [len(texts), dimension] (unit length when `normalize`;
        otherwise what the model outputs, which may already be normalised, as MiniLM is).

        `prompt_name` picks a model prompt ("query"/"passage" for e5); models without prompts
        ignore None. With `memo` (default: for more than one text) each distinct text is
        embedded once per encoder: repeats and texts seen in earlier calls come from memory. A
        single text (a query) is embedded anew by default, so query latency measures real work.
        Large inputs are embedded in chunks and report progress
        (:class:`ffr_lib.progress.Progress`, titled `desc`).
        """
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if memo is None:
            memo = len(texts) > 1
        if not memo:
            return self._encode_new(texts, batch_size, normalize, prompt_name, desc)
        cache = self._memo
        todo: list[str] = []
        pending: set[str] = set()
        for text in texts:
            if (normalize, prompt_name, text) not in cache and text not in pending:
                pending.add(text)
                todo.append(text)
        self.memo_misses += len(todo)
        self.memo_hits += len(texts) - len(todo)
        if todo:
            if len(cache) + len(todo) > MEMO_MAX_ENTRIES:
                cache.clear()
            for text, vector in zip(
                todo,
                self._encode_new(todo, batch_size, normalize, prompt_name, desc),
                strict=True,
            ):
                cache[(normalize, prompt_name, text)] = vector
        return np.stack([cache[(normalize, prompt_name, text)] for text in texts])

    def _encode_new(
        self,
        texts: list[str],
        batch_size: int,
        normalize: bool,
        prompt_name: str | None,
        desc: str | None,
    ) -> np.ndarray:
        kwargs: dict[str, Any] = {}
        if prompt_name is not None:
            kwargs["prompt_name"] = prompt_name

        def run(chunk: list[str]) -> np.ndarray:
            vectors = self.model.encode(
                chunk,
                batch_size=batch_size,
                normalize_embeddings=normalize,
                # FFR's own progress lines (below) report bulk work; a second, per-chunk bar
                # from sentence-transformers would only interleave with them.
                show_progress_bar=False,
                convert_to_numpy=True,
                **kwargs,
            )
            return np.asarray(vectors, dtype=np.float32)

        if len(texts) < BULK_TEXTS:
            if not self.threads:
                return run(texts)  # queries and small batches: no thread switching, no progress
            with torch_threads(self.threads):
                return run(texts)
        if len(texts) < PROGRESS_MIN_TEXTS:
            with torch_threads(self.threads):
                return run(texts)
        parts = []
        label = desc or f"embed with {self.resolved.alias or Path(self.resolved.path).name}"
        with Progress(len(texts), label, unit="texts") as bar:
            for start in range(0, len(texts), PROGRESS_CHUNK):
                chunk = texts[start : start + PROGRESS_CHUNK]
                with torch_threads(self.threads):  # re-read the load per chunk: it changes
                    parts.append(run(chunk))
                bar.update(len(chunk))
        return np.concatenate(parts)


def get_text_encoder(
    name: str = DEFAULT_ENCODER, device: str = "cpu", quantize: str | None = None
) -> TextEncoder:
    """Shortcut for `TextEncoder.get(name, device, quantize)`."""
    return TextEncoder.get(name, device=device, quantize=quantize)
