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
- ``runtime`` (or ``FFR_ENCODER_RUNTIME``, see ``ffr_lib.settings``): ``"onnx"`` runs the fp32
  forward pass on ONNX Runtime (``ffr_lib.models.onnx_runtime``: exported once per weights
  digest, checked against torch at export with cosine >= 0.999, texts bucketed by token length),
  ``"torch"`` on sentence-transformers. The vectors are the same model's, so the version string
  does not change with the runtime. ``#int8`` and non-CPU devices always run on torch; training
  (``ffr_lib.fem.train``) never goes through this class.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ffr_lib.models.onnx_runtime import OnnxTextModel, OnnxUnsupported, ensure_export, export_info
from ffr_lib.models.resolve import ResolvedModel, resolve_model
from ffr_lib.progress import Progress
from ffr_lib.settings import ENCODER_RUNTIME, ENCODER_RUNTIMES, TORCH_THREADS
from ffr_lib.threads import torch_threads, wanted_threads

log = logging.getLogger(__name__)

DEFAULT_ENCODER = "minilm"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_CONFIG_NAMES = ("config.json", "modules.json", "tokenizer.json", "sentence_bert_config.json")
QUANTIZATIONS = ("none", "int8")
EncoderRuntime = Literal["torch", "onnx"]  # the values of ffr_lib.settings.ENCODER_RUNTIMES
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


def resolve_runtime(
    runtime: str | None, quantize: str = "none", device: str = "cpu"
) -> EncoderRuntime:
    """The runtime an encoder uses: ``runtime`` when given, else ``FFR_ENCODER_RUNTIME``. ONNX
    Runtime serves fp32 on CPU only: with ``int8`` or another device the configured default falls
    back to torch, and an explicit ``runtime="onnx"`` raises."""
    asked = runtime or ENCODER_RUNTIME.get()
    if asked not in ENCODER_RUNTIMES:
        raise ValueError(f"runtime must be one of {ENCODER_RUNTIMES}, got {asked!r}")
    if asked == "onnx" and (quantize != "none" or device != "cpu"):
        if runtime == "onnx":
            raise ValueError(
                f"runtime 'onnx' runs fp32 on CPU only (asked quantize={quantize!r}, "
                f"device={device!r})"
            )
        return "torch"
    return "onnx" if asked == "onnx" else "torch"


class TextEncoder:
    """A frozen sentence encoder. Prefer `TextEncoder.get(name)`, which loads each model once."""

    _cache: dict[tuple[str, str, str, str], TextEncoder] = {}
    _lock = threading.Lock()
    # The runtime actually used: "torch" unless an ONNX export was loaded (onnx); why not, when
    # ONNX Runtime was asked for and the model cannot be exported (onnx_reason).
    runtime: EncoderRuntime = "torch"
    onnx: OnnxTextModel | None = None
    onnx_reason: str | None = None
    _fingerprint: str | None = None

    def __init__(
        self,
        name: str = DEFAULT_ENCODER,
        device: str = "cpu",
        quantize: str | None = None,
        threads: int | None = None,
        runtime: EncoderRuntime | None = None,
    ) -> None:
        from sentence_transformers import SentenceTransformer

        base, variant = split_spec(name)
        quantize = quantize or variant
        if quantize not in QUANTIZATIONS:
            raise ValueError(f"quantize must be one of {QUANTIZATIONS}, got {quantize!r}")
        if quantize != "none" and device != "cpu":
            raise ValueError("int8 dynamic quantization runs on CPU only")
        wanted_runtime = resolve_runtime(runtime, quantize, device)
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
        if wanted_runtime == "onnx":
            self._use_onnx()
        # Vectors already computed by this encoder, keyed by (normalize, prompt, text): each
        # distinct text is embedded once per process, however many steps ask for it (the demo
        # materializes segmentation, FEM evaluation, index and evaluation in one process).
        self._memo: dict[tuple[bool, str | None, str], np.ndarray] = {}
        self.memo_hits = 0
        self.memo_misses = 0

    def _use_onnx(self) -> None:
        """Run on the checked ONNX export of these weights (exported now when missing); stay on
        torch, saying why, when the model cannot be exported."""
        folder = self.resolved.local_path
        if folder is None:
            self.onnx_reason = "the weights are not on disk yet (hub id): no digest to key by"
        else:
            label = self.resolved.alias or folder.name
            try:
                path = ensure_export(self.model, label, self.fingerprint, str(folder))
            except OnnxUnsupported as err:
                self.onnx_reason = str(err)
            else:
                self.onnx = OnnxTextModel(self.model, path)
                self.onnx.session(self.threads or wanted_threads())  # a broken file fails here
                self.runtime = "onnx"
                return
        log.warning("%s runs on torch, not ONNX Runtime: %s", self.name, self.onnx_reason)

    @classmethod
    def get(
        cls,
        name: str = DEFAULT_ENCODER,
        device: str = "cpu",
        quantize: str | None = None,
        runtime: EncoderRuntime | None = None,
    ) -> TextEncoder:
        """The process-wide encoder for `name` (same weights folder, quantization and runtime ->
        same object). `name` may end in ``#int8``; `runtime` defaults to
        ``FFR_ENCODER_RUNTIME``."""
        base, variant = split_spec(name)
        quantize = quantize or variant
        path = resolve_model(base).path
        wanted = resolve_runtime(runtime, quantize, device)
        key = (path, device, quantize, wanted)
        with cls._lock:
            encoder = cls._cache.get(key)
            if encoder is None:
                encoder = cls(base, device=device, quantize=quantize, runtime=wanted)
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
    def fingerprint(self) -> str:
        """12 hex of the weight and config files (``"hub"`` before a hub id is downloaded)."""
        if self._fingerprint is None:
            folder = self.resolved.local_path
            self._fingerprint = weights_fingerprint(folder) if folder else "hub"
        return self._fingerprint

    @property
    def model_version(self) -> str:
        """`<alias or folder name>@<12 hex of the weights>`: stable for a given weights folder,
        whichever runtime computes the vectors (an ONNX export must match torch to be used)."""
        if self._version is None:
            label = self.resolved.alias or Path(self.resolved.path).name
            suffix = "" if self.quantize == "none" else f"+{self.quantize}"
            self._version = f"{label}@{self.fingerprint}{suffix}"
        return self._version

    def _prompt(self, prompt_name: str | None) -> str | None:
        """The prompt text sentence-transformers would prepend (its default prompt when None)."""
        prompts = self.prompts
        if prompt_name is None:
            default = getattr(self.model, "default_prompt_name", None)
            return prompts.get(default) if default else None
        if prompt_name not in prompts:
            raise ValueError(f"prompt {prompt_name!r} not in the model's prompts {list(prompts)}")
        return prompts[prompt_name]

    def _threads_context(self) -> AbstractContextManager[Any]:
        """Torch's thread count for bulk work; ONNX Runtime picks its session per call."""
        return nullcontext() if self.onnx is not None else torch_threads(self.threads)

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
        onnx = self.onnx
        prompt = self._prompt(prompt_name) if onnx is not None else None

        def run(chunk: list[str]) -> np.ndarray:
            if onnx is not None:
                return onnx.encode(
                    chunk,
                    batch_size=batch_size,
                    normalize=normalize,
                    prompt=prompt,
                    threads=self.threads or wanted_threads(),
                )
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
            with self._threads_context():
                return run(texts)
        if len(texts) < PROGRESS_MIN_TEXTS:
            with self._threads_context():
                return run(texts)
        parts = []
        label = desc or f"embed with {self.resolved.alias or Path(self.resolved.path).name}"
        with Progress(len(texts), label, unit="texts") as bar:
            for start in range(0, len(texts), PROGRESS_CHUNK):
                chunk = texts[start : start + PROGRESS_CHUNK]
                with self._threads_context():  # re-read the load per chunk: it changes
                    parts.append(run(chunk))
                bar.update(len(chunk))
        return np.concatenate(parts)


def get_text_encoder(
    name: str = DEFAULT_ENCODER,
    device: str = "cpu",
    quantize: str | None = None,
    runtime: EncoderRuntime | None = None,
) -> TextEncoder:
    """Shortcut for `TextEncoder.get(name, device, quantize, runtime)`."""
    return TextEncoder.get(name, device=device, quantize=quantize, runtime=runtime)


def prepare_onnx(name: str) -> dict[str, Any]:
    """Export (or find) the checked ONNX graph of text encoder ``name`` now, so that no indexing or
    serving process pays for it on first use (``ffr models prepare``). Returns what was found:
    ``runtime`` "onnx" with the file and its export record, or "torch" with the reason."""
    encoder = TextEncoder.get(name, runtime="onnx")
    if encoder.onnx is None:
        return {"runtime": "torch", "reason": encoder.onnx_reason}
    path = encoder.onnx.path
    return {"runtime": "onnx", "path": str(path), **export_info(path)}
