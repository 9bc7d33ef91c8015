"""ONNX Runtime for the frozen text encoders: export once per weights digest, check, run bucketed.

Why: embedding is ~96% of indexing time, and torch reaches ~40-50% of the fp32 peak of the
2-core development machine (BENCHMARKS.md, issue 18). The same graph on ONNX Runtime, with its
graph optimisation and the fused BERT operators (attention, skip + layer norm, bias + GELU,
embeddings + layer norm) runs the same arithmetic in fp32 with less overhead per operator.

What is exported: the whole sentence-transformers pipeline (transformer, pooling, normalisation,
any dense layer) as one graph from ``input_ids`` / ``attention_mask`` (/ ``token_type_ids``) to
``sentence_embedding``, so pooling and normalisation are the model's own modules, not a copy.
Tokenisation (prompts such as e5's ``query: ``, truncation at ``max_seq_length``) stays
sentence-transformers' own ``preprocess``. Texts are sorted by token length, batched, and the
vectors put back in input order, so padding stays small.

Where: ``$FFR_MODELS_DIR/onnx/<label>@<weights digest>-f<format>/model.onnx``, built under the
cache's file lock with a marker (``ffr_lib.models._cache``). The digest is the one of the model
version (weights and config files), so a retrained FEM checkpoint gets a new export and a stale one
is never used; exports of the same weights folder with an older digest are removed. Every export is
checked against torch on probe texts of varied lengths (cosine >= :data:`MIN_COSINE` each, else the
model is marked unusable and the encoder stays on torch). ONNX Runtime's ``ORT_ENABLE_ALL``
optimisation is saved next to it (``model.opt-ort<version>-<arch>.onnx``) on first load, so later
loads skip it.

A model that cannot be exported here (a pooling that excludes the prompt, no transformer module)
raises :class:`OnnxUnsupported`; a missing export where nothing may be written, or an export
ONNX Runtime cannot load, raises :class:`OnnxModelError` naming the file and the fix.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ffr_lib.models import _cache
from ffr_lib.settings import get_settings

log = logging.getLogger(__name__)

EXPORT_FORMAT = 1  # bump when the exported graph changes: older exports are then never used
MODEL_FILE = "model.onnx"
OPSET = 17
MIN_COSINE = 0.999  # the quality gate, applied to every export on the probe texts
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "sentence_embedding"
# Texts per ONNX Runtime call at most: with length-sorted batches there is little padding at any
# size; 32 and 64 were within noise of each other (bench/encoder_runtime.py, BENCHMARKS.md), and
# 32 keeps the activations of long texts (attention grows with the square of the length) smaller.
MAX_BATCH = 32
FUSABLE_MODEL_TYPES = ("bert",)  # onnxruntime.transformers fuses these (MiniLM, e5, FEM tunes)
PROBE_TEXTS = (
    "hi",
    "Where did we put the photos from the lake trip last summer?",
    "user0: I just got back from the farmers market.\nuser1: Nice! Did they have peaches?\n"
    "user0: Yes, and I bought way too many of them.",
    "我们明天下午三点在图书馆见面，好吗？",
    "Le rendez-vous est demain à quinze heures, devant la bibliothèque municipale.",
    " ".join(["a long fragment that runs past the encoder's window"] * 80),
)


class OnnxModelError(RuntimeError):
    """An exported model that is missing where nothing may be written, or that ONNX Runtime
    cannot load (the message names the file and how to rebuild it)."""


class OnnxUnsupported(ValueError):
    """A model this exporter cannot turn into one equivalent graph (the encoder stays on torch)."""


def onnx_root() -> Path:
    """Folder of every export (under the models cache the converted weights use)."""
    return get_settings().models_dir / "onnx"


def export_folder(label: str, fingerprint: str) -> Path:
    """Where the export of the weights with digest ``fingerprint`` lives (``label`` is for
    people: the alias or the weights folder's name)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label) or "model"
    return onnx_root() / f"{safe}@{fingerprint}-f{EXPORT_FORMAT}"


def _input_names(model: Any) -> list[str]:
    features = model.preprocess(["probe"])
    return [name for name in INPUT_NAMES if name in features]


def _check_supported(model: Any) -> None:
    from sentence_transformers.models import Pooling, Transformer

    if not len(model) or not isinstance(model[0], Transformer):
        raise OnnxUnsupported("the first module is not a transformer")
    for module in model:
        if isinstance(module, Pooling) and not getattr(module, "include_prompt", True):
            raise OnnxUnsupported("its pooling leaves out the prompt tokens (prompt_length)")


def _export_graph(model: Any, path: Path, names: list[str]) -> None:
    """Trace the sentence-transformers forward into ``path`` (eager attention: its pattern is the
    one onnxruntime's attention fusion recognises; torch's own path is restored afterwards)."""
    import torch

    class SentenceGraph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.model(dict(zip(names, tensors, strict=True)))[OUTPUT_NAME]

    auto = getattr(model[0], "auto_model", None)
    previous = getattr(getattr(auto, "config", None), "_attn_implementation", None)
    features = model.preprocess(["a short probe", "a somewhat longer probe text for the trace"])
    args = tuple(features[name] for name in names)
    axes = {name: {0: "batch", 1: "tokens"} for name in names}
    try:
        if previous is not None and previous != "eager":
            auto.set_attn_implementation("eager")
        # The tracer's notes (shape-dependent branches that are constant for BERT, advanced
        # indexing) are about this graph's generality, which the probe check below verifies.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                SentenceGraph().eval(),
                args,
                str(path),
                input_names=names,
                output_names=[OUTPUT_NAME],
                dynamic_axes={**axes, OUTPUT_NAME: {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
    finally:
        if previous is not None and previous != "eager":
            auto.set_attn_implementation(previous)


def _fuse(model: Any, source: Path, dest: Path) -> dict[str, int] | None:
    """The BERT operator fusions of ``onnxruntime.transformers`` (ONNX Runtime's own session
    optimiser does not fuse attention in a traced graph); None when the model is not BERT."""
    config = getattr(getattr(model[0], "auto_model", None), "config", None)
    if getattr(config, "model_type", None) not in FUSABLE_MODEL_TYPES:
        return None
    from onnxruntime.transformers import optimizer

    fused = optimizer.optimize_model(
        str(source),
        model_type="bert",
        num_heads=int(config.num_attention_heads),
        hidden_size=int(config.hidden_size),
        opt_level=0,
    )
    fused.save_model_to_file(str(dest))
    stats = fused.get_fused_operator_statistics()
    return {name: int(count) for name, count in stats.items() if count}


def _probe_cosine(model: Any, path: Path) -> float:
    """Smallest cosine between the torch vectors and the ONNX vectors of :data:`PROBE_TEXTS`
    (run through the bucketed path, so padding and order are checked too)."""
    probes = list(PROBE_TEXTS)
    reference = model.encode(probes, batch_size=4, convert_to_numpy=True, show_progress_bar=False)
    runner = OnnxTextModel(model, path, export_dir_writable=False)
    vectors = runner.encode(probes, batch_size=4, normalize=False, prompt=None, threads=1)
    reference = np.asarray(reference, dtype=np.float32)
    cos = (vectors * reference).sum(1) / (
        np.linalg.norm(vectors, axis=1) * np.linalg.norm(reference, axis=1) + 1e-12
    )
    return float(cos.min())


def export_sentence_transformer(model: Any, dest: Path) -> dict[str, Any]:
    """Write ``dest/model.onnx`` for the sentence-transformers ``model`` and check it; returns the
    marker metadata (``usable`` False, with the reason, when no graph matched torch)."""
    import onnxruntime
    import torch

    _check_supported(model)
    names = _input_names(model)
    plain = dest / "plain.onnx"
    try:
        _export_graph(model, plain, names)
    except OSError:
        raise
    except Exception as err:  # a module the tracer cannot follow: the encoder stays on torch
        raise OnnxUnsupported(f"torch.onnx.export failed ({type(err).__name__}: {err})") from err
    meta: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "opset": OPSET,
        "inputs": names,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    candidates: list[tuple[str, Path]] = []
    try:
        fusions = _fuse(model, plain, dest / "fused.onnx")
    except Exception as err:  # a pattern the optimiser trips on: the plain graph still works
        log.warning("ONNX fusion failed (%s); keeping the unfused graph", err)
        fusions = None
    if fusions is not None:
        candidates.append(("fused", dest / "fused.onnx"))
        meta["fusions"] = fusions
    candidates.append(("plain", plain))
    meta["checked"] = {}
    for kind, path in candidates:
        cosine = _probe_cosine(model, path)
        meta["checked"][kind] = round(cosine, 6)
        if cosine >= MIN_COSINE:
            path.rename(dest / MODEL_FILE)
            meta.update(usable=True, graph=kind, probe_cosine_min=round(cosine, 6))
            break
    else:
        meta.update(
            usable=False,
            reason=f"probe cosine to torch {meta['checked']} below {MIN_COSINE}",
        )
    for _, path in candidates:
        path.unlink(missing_ok=True)
    return meta


def _prune(folder: Path, source: str) -> None:
    """Remove the exports that can never be used again: those of the same weights folder with
    another digest (a retrained FEM checkpoint is written in place), and those whose weights
    folder is gone (a deleted checkpoint, a test's temp folder)."""
    for other in folder.parent.iterdir():
        if other == folder or not other.is_dir() or not _cache.is_built(other):
            continue
        origin = _cache.read_marker(other).get("source")
        if origin and (origin == source or not Path(origin).exists()):
            shutil.rmtree(other, ignore_errors=True)
            Path(str(other) + ".lock").unlink(missing_ok=True)


def ensure_export(
    model: Any, label: str, fingerprint: str, source: str, *, export: bool = True
) -> Path:
    """The checked export of ``model`` (weights digest ``fingerprint``, weights folder
    ``source``): reused when present, else exported now (``export``) or an error.

    Raises :class:`OnnxUnsupported` when the model cannot run on ONNX Runtime (also remembered
    in the marker, so later loads do not try again), :class:`OnnxModelError` when the export is
    missing and cannot be written here."""
    folder = export_folder(label, fingerprint)
    path = folder / MODEL_FILE
    if not _cache.is_built(folder) or not (path.is_file() or _unusable(folder)):
        if not export:
            raise OnnxModelError(
                f"the ONNX export {path} is missing and this process may not write it: "
                f"run `ffr models prepare {source}` where {onnx_root()} is writable"
            )
        # Expected on the first use of a new checkpoint (a freshly trained FEM): INFO, not WARNING.
        log.info(
            "no ONNX export of %s@%s yet: exporting it once to %s (a few seconds to a minute; "
            "`ffr models prepare` does it ahead of time)",
            label,
            fingerprint,
            folder,
        )
        started = time.perf_counter()
        try:
            if _cache.is_built(folder):  # marker without its model file: build again
                shutil.rmtree(folder)

            def build(tmp: Path) -> dict[str, Any]:
                return {**export_sentence_transformer(model, tmp), "source": source}

            _cache.build_once(folder, build)
            _prune(folder, source)
        except OSError as err:
            raise OnnxModelError(
                f"the ONNX export {path} is missing and cannot be written ({err}): run "
                f"`ffr models prepare {source}` where {onnx_root()} is writable"
            ) from err
        log.info("ONNX export of %s done in %.1f s", label, time.perf_counter() - started)
    reason = _unusable(folder)
    if reason:
        raise OnnxUnsupported(reason)
    return path


def _unusable(folder: Path) -> str | None:
    marker = _cache.read_marker(folder)
    if marker and marker.get("usable") is False:
        return str(marker.get("reason") or "marked unusable at export")
    return None


def optimized_path(path: Path) -> Path:
    """Where ONNX Runtime's ``ORT_ENABLE_ALL`` result of ``path`` is saved (per ORT version and
    CPU architecture: ORT warns such a file may be specific to the machine that wrote it)."""
    import onnxruntime

    return path.with_name(f"model.opt-ort{onnxruntime.__version__}-{platform.machine()}.onnx")


class OnnxTextModel:
    """A sentence-transformers model whose forward pass runs on ONNX Runtime (CPU): one session
    per thread count, created on first use (ONNX Runtime fixes its threads per session)."""

    def __init__(self, model: Any, path: Path, *, export_dir_writable: bool = True) -> None:
        self.model = model
        self.path = Path(path)
        self.save_optimized = export_dir_writable
        self.max_batch = MAX_BATCH
        self.sessions: dict[int, Any] = {}
        self._lock = threading.Lock()
        self.input_names: list[str] = []

    def session(self, threads: int) -> Any:
        """The session with ``threads`` intra-op threads (created once)."""
        with self._lock:
            found = self.sessions.get(threads)
            if found is None:
                found = self.sessions[threads] = self._create(threads)
                self.input_names = [i.name for i in found.get_inputs()]
        return found

    def _create(self, threads: int) -> Any:
        import onnxruntime as ort

        def options(level: Any, save_to: Path | None = None) -> Any:
            so = ort.SessionOptions()
            so.graph_optimization_level = level
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            so.log_severity_level = 3  # the "optimized model may be hardware specific" notice
            if save_to is not None:
                so.optimized_model_filepath = str(save_to)
            return so

        def load(path: Path, so: Any) -> Any:
            return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

        if not self.path.is_file():
            raise OnnxModelError(
                f"the ONNX export {self.path} is missing: run `ffr models prepare` (or delete "
                f"{self.path.parent} so that it is exported again)"
            )
        optimized = optimized_path(self.path)
        if optimized.is_file():
            try:  # already optimised with ORT_ENABLE_ALL: do not optimise again
                return load(optimized, options(ort.GraphOptimizationLevel.ORT_DISABLE_ALL))
            except Exception as err:  # a damaged derived file: rebuilt from model.onnx below
                log.warning(
                    "could not load %s (%s); optimising %s again", optimized, err, self.path
                )
                optimized.unlink(missing_ok=True)
        level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.save_optimized and os.access(self.path.parent, os.W_OK):
            tmp = optimized.with_name(f".{optimized.name}.{os.getpid()}.tmp")
            try:
                session = load(self.path, options(level, tmp))
            except Exception:  # cannot save here, or a damaged model: tried again below
                tmp.unlink(missing_ok=True)
            else:
                try:
                    os.replace(tmp, optimized)
                except OSError:
                    tmp.unlink(missing_ok=True)
                return session
        try:
            return load(self.path, options(level))
        except Exception as err:
            raise self._corrupt(err) from err

    def _corrupt(self, err: Exception) -> OnnxModelError:
        return OnnxModelError(
            f"ONNX Runtime cannot load {self.path} ({type(err).__name__}: {err}); delete "
            f"{self.path.parent} and run `ffr models prepare` to export it again"
        )

    def token_lengths(self, texts: Sequence[str], prompt: str | None) -> np.ndarray:
        """Tokens per text as the model will see them (prompt and special tokens included,
        capped at ``max_seq_length``): the sort key of the buckets."""
        tokenizer = self.model.tokenizer
        full = [prompt + t for t in texts] if prompt else list(texts)
        ids = tokenizer(full, add_special_tokens=True, verbose=False)["input_ids"]
        limit = int(self.model.max_seq_length or 10**9)
        return np.minimum(np.fromiter((len(i) for i in ids), dtype=np.int64, count=len(ids)), limit)

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int,
        normalize: bool,
        prompt: str | None,
        threads: int,
    ) -> np.ndarray:
        """Vectors of ``texts`` in input order: longest first in batches of ``batch_size``
        (at most ``max_batch``, :data:`MAX_BATCH`; sequence bucketing), each batch tokenised by the model's own
        ``preprocess``."""
        session = self.session(threads)
        batch_size = max(1, min(batch_size, self.max_batch))
        texts = list(texts)
        order = np.argsort(-self.token_lengths(texts, prompt), kind="stable")
        out: np.ndarray | None = None
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            features = self.model.preprocess([texts[i] for i in idx], prompt=prompt)
            feed = {
                name: np.asarray(features[name].numpy(), dtype=np.int64)
                for name in self.input_names
            }
            vectors = np.asarray(session.run([OUTPUT_NAME], feed)[0], dtype=np.float32)
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            out[idx] = vectors
        assert out is not None
        if normalize:  # as torch.nn.functional.normalize (eps 1e-12) in sentence-transformers
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out


def export_info(path: Path) -> dict[str, Any]:
    """The marker of the export holding ``path`` (what ``ffr models prepare`` prints)."""
    return _cache.read_marker(path.parent)
