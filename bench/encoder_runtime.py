"""Encoder runtime (issue 18): torch vs ONNX Runtime for the text encoders, same run, same texts.

    .venv/bin/python bench/encoder_runtime.py                        # MiniLM + e5, 3,000 texts
    .venv/bin/python bench/encoder_runtime.py --models minilm --texts 500 --queries 50

Texts: the first ``--texts`` fragments of PhotoChat then chitchat through the project's own
fragment text builder (``bench/corpus.py``: windows of 3 utterances, as the index embeds them);
queries: held-out utterances of dialogues not in those texts. Per model, in this order (one
process, the same texts, ``--threads`` threads for every runtime): torch, ONNX Runtime (the export
``TextEncoder`` uses: fused fp32 graph, ``ORT_ENABLE_ALL``, length-bucketed batches of
``MAX_BATCH``), ONNX at batch 64, ONNX int8 (dynamic quantisation of that export, per-channel
weights; measured, kept only if it passes the gate), then torch and ONNX again (drift check).

Reported per variant: fragments/s; useful fp32 GFLOP/s, counted from the real token count of every
text (the linear layers, 2 x (4h^2 + 2hf) per token per layer, plus attention 4 L^2 h per
sequence per layer; padding is not useful work) and its share of the 2-core fp32 peak of
150-190 GFLOP/s (DESIGN.md); min / mean cosine of every fragment vector to torch's; recall@10 of
each query's 10 nearest fragments against fp32 torch's (the query embedded by the same variant,
with the model's query prompt); and the latency of single short queries (``embed_query``, the
search path) p50 / p95. The gate of the issue: cosine >= 0.999 and recall@10 >= 0.99.

Writes ``--out`` (JSON + markdown, default ``bench/results/encoder_runtime/``) and prints the
markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.corpus import load_corpus  # noqa: E402
from bench.suite import lat, load, numpy_search, recall_at  # noqa: E402
from ffr_lib.index.search import embed_query  # noqa: E402
from ffr_lib.models.encoder import TextEncoder  # noqa: E402
from ffr_lib.models.onnx_runtime import OnnxTextModel  # noqa: E402
from ffr_lib.reporting import markdown_table  # noqa: E402
from ffr_lib.threads import cpu_count  # noqa: E402

PEAK_GFLOPS = (150.0, 190.0)  # fp32, 2 AVX2 cores (../shared/docs/DESIGN.md)
MIN_COSINE = 0.999
MIN_RECALL = 0.99
K = 10


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def useful_gflop(encoder: TextEncoder, texts: Sequence[str], prompt: str | None = None) -> float:
    """fp32 GFLOP of the transformer on the real token counts (no padding)."""
    config = encoder.model[0].auto_model.config
    h, f, n = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    full = [prompt + t for t in texts] if prompt else list(texts)
    ids = encoder.tokenizer(full, add_special_tokens=True, verbose=False)["input_ids"]
    lengths = np.minimum([len(i) for i in ids], encoder.max_seq_length).astype(np.float64)
    linear = 2.0 * (4 * h * h + 2 * h * f) * lengths.sum()
    attention = 4.0 * h * (lengths**2).sum()
    return float(n * (linear + attention) / 1e9)


def int8_model(encoder: TextEncoder, folder: Path) -> OnnxTextModel:
    """Dynamic int8 quantisation (per-channel weights) of the encoder's own ONNX export."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    assert encoder.onnx is not None
    path = folder / "model.int8.onnx"
    quantize_dynamic(
        str(encoder.onnx.path),
        str(path),
        per_channel=True,
        weight_type=QuantType.QInt8,
        # The fused operators (com.microsoft domain) have no inferred output types.
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return OnnxTextModel(encoder.model, path, export_dir_writable=False)


class Variant:
    """One way to embed: a name, a text encoder (torch or ONNX) and, for the bench-only
    variants, the ONNX model and batch size it runs with instead of the encoder's own."""

    def __init__(
        self,
        name: str,
        encoder: TextEncoder,
        onnx: OnnxTextModel | None = None,
        batch_size: int | None = None,
    ) -> None:
        self.name, self.encoder, self.onnx, self.batch_size = name, encoder, onnx, batch_size

    def encode(self, texts: Sequence[str], threads: int, prompt_name: str | None = None):
        if self.onnx is None:
            self.encoder.threads = threads
            return self.encoder.encode(list(texts), prompt_name=prompt_name, memo=False)
        prompt = self.encoder._prompt(prompt_name)
        return self.onnx.encode(
            list(texts),
            batch_size=self.batch_size or 64,
            normalize=True,
            prompt=prompt,
            threads=threads,
        )

    def query(self, text: str, threads: int) -> np.ndarray:
        if self.onnx is None:
            self.encoder.threads = threads
            return embed_query(self.encoder, text)  # the search path
        name = "query" if "query" in self.encoder.prompts else None
        return self.encode([text], threads, prompt_name=name)[0]


def bench_model(
    name: str, texts: list[str], queries: list[str], args: argparse.Namespace, log: Any
) -> dict[str, Any]:
    torch_enc = TextEncoder(name, runtime="torch")
    onnx_enc = TextEncoder(name, runtime="onnx")
    if onnx_enc.onnx is None:
        raise SystemExit(f"{name}: no ONNX export ({onnx_enc.onnx_reason})")
    assert torch_enc.model_version == onnx_enc.model_version
    threads = args.threads
    query_prompt = "query" if "query" in torch_enc.prompts else None
    passage_prompt = "passage" if "passage" in torch_enc.prompts else None
    gflop = useful_gflop(torch_enc, texts, torch_enc._prompt(passage_prompt))
    ids = torch_enc.tokenizer(texts, verbose=False)["input_ids"]
    tmp = Path(tempfile.mkdtemp(prefix="ffr-int8-"))
    batch64 = OnnxTextModel(onnx_enc.model, onnx_enc.onnx.path, export_dir_writable=False)
    batch64.max_batch = 64
    variants = {
        "torch": Variant("torch", torch_enc),
        "onnx": Variant("onnx", onnx_enc),
        "onnx batch 64": Variant("onnx batch 64", onnx_enc, batch64, 64),
    }
    if args.int8:
        variants["onnx int8"] = Variant("onnx int8", onnx_enc, int8_model(onnx_enc, tmp))
    order = [*variants, "torch", "onnx"]  # the last two: the same runtimes again (drift)
    for variant in variants.values():  # warm: sessions, allocator, caches
        variant.encode(texts[:32], threads, passage_prompt)
    vectors: dict[str, np.ndarray] = {}
    runs: list[dict[str, Any]] = []
    for i, key in enumerate(order):
        variant = variants[key]
        l0 = load()
        t0 = time.perf_counter()
        v = np.asarray(variant.encode(texts, threads, passage_prompt), dtype=np.float32)
        dt = time.perf_counter() - t0
        vectors.setdefault(key, v)
        again = i >= len(variants)
        runs.append(
            {
                "variant": key + (" (again)" if again else ""),
                "fragments_per_s": round(len(texts) / dt, 1),
                "gflops": round(gflop / dt, 1),
                "seconds": round(dt, 2),
                "load": [l0, load()],
            }
        )
        log(f"  {name} {runs[-1]['variant']}: {len(texts) / dt:.1f} fragments/s (load {l0})")
    reference = vectors["torch"]
    truth, _ = numpy_search(reference, torch_enc.encode(queries, prompt_name=query_prompt), K)
    quality: dict[str, dict[str, Any]] = {}
    for key, variant in variants.items():
        cos = (vectors[key] * reference).sum(1)
        q = np.asarray(variant.encode(queries, threads, query_prompt), dtype=np.float32)
        found, _ = numpy_search(vectors[key], q, K)
        recall = float(np.mean([recall_at(a, b) for a, b in zip(found, truth, strict=True)]))
        quality[key] = {
            "cosine_min": round(float(cos.min()), 6),
            "cosine_mean": round(float(cos.mean()), 6),
            "recall_at_10": round(recall, 4),
            "passes_gate": bool(cos.min() >= MIN_COSINE and recall >= MIN_RECALL),
        }
    latency: dict[str, dict[str, float]] = {}
    short = [q for q in queries if len(q.split()) <= 20][: args.latency_queries]
    for key in ("torch", "onnx"):
        variant = variants[key]
        for text in short[:5]:
            variant.query(text, threads)
        times = []
        for text in short:
            t0 = time.perf_counter()
            variant.query(text, threads)
            times.append(time.perf_counter() - t0)
        latency[key] = {**lat(times), "queries": len(times), "load": load()}
    for path in tmp.glob("*"):
        path.unlink()
    tmp.rmdir()
    return {
        "model_version": onnx_enc.model_version,
        "onnx_export": str(onnx_enc.onnx.path),
        "texts": len(texts),
        "queries": len(queries),
        "tokens_mean": round(float(np.mean([len(i) for i in ids])), 1),
        "tokens_max": int(max(len(i) for i in ids)),
        "gflop_total": round(gflop, 1),
        "threads": threads,
        "runs": runs,
        "quality": quality,
        "query_latency": latency,
    }


def summary_rows(name: str, r: dict[str, Any]) -> list[list[Any]]:
    """One row per variant: the mean of its runs (torch and onnx ran twice)."""
    rows = []
    for key, quality in r["quality"].items():
        runs = [x for x in r["runs"] if x["variant"].removesuffix(" (again)") == key]
        rate = float(np.mean([x["fragments_per_s"] for x in runs]))
        gflops = float(np.mean([x["gflops"] for x in runs]))
        each = " / ".join(str(x["fragments_per_s"]) for x in runs)
        latency = r["query_latency"].get(key)
        rows.append(
            [
                name,
                key,
                f"{rate:.1f} ({each})",
                f"{gflops:.0f}",
                f"{100 * gflops / PEAK_GFLOPS[1]:.0f}-{100 * gflops / PEAK_GFLOPS[0]:.0f}%",
                f"{quality['cosine_min']:.6f} / {quality['cosine_mean']:.6f}",
                f"{quality['recall_at_10']:.4f}",
                f"{latency['p50_ms']:.1f} / {latency['p95_ms']:.1f}" if latency else "",
                "yes" if quality["passes_gate"] else "no",
            ]
        )
    return rows


def render(results: dict[str, Any]) -> str:
    header = [
        "model",
        "variant",
        "fragments/s (each run)",
        "useful GFLOP/s",
        "share of fp32 peak (190-150)",
        "cosine to torch min / mean",
        "recall@10 vs torch",
        "query p50 / p95 ms",
        "gate",
    ]
    rows = [row for name, r in results["models"].items() for row in summary_rows(name, r)]
    m = results["machine"]
    lines = [
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), load {m['load_start']} at the start, "
        f"{m['load_end']} at the end; threads {results['threads']}; {results['texts']} texts.",
        "",
        *markdown_table(header, rows),
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="minilm,multilingual-e5-small")
    parser.add_argument("--texts", type=int, default=3000, help="fragment texts embedded")
    parser.add_argument("--queries", type=int, default=200, help="held-out queries (recall)")
    parser.add_argument("--latency-queries", type=int, default=100, help="single queries timed")
    parser.add_argument("--threads", type=int, default=cpu_count(), help="for every runtime")
    parser.add_argument("--no-int8", dest="int8", action="store_false")
    parser.add_argument("--out", type=Path, default=Path("bench/results/encoder_runtime"))
    args = parser.parse_args(argv)
    corpus = load_corpus(args.texts, n_queries=args.queries)
    texts, queries = corpus.texts[: args.texts], corpus.queries
    results: dict[str, Any] = {
        "command": " ".join(["bench/encoder_runtime.py", *(argv or sys.argv[1:])]),
        "machine": {
            "nproc": os.cpu_count(),
            "cpu_model": cpu_model(),
            "load_start": load(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        },
        "texts": len(texts),
        "threads": args.threads,
        "models": {},
    }
    for name in [m for m in args.models.split(",") if m]:
        print(f"[{time.strftime('%H:%M:%S')}] {name} (load {load()})", flush=True)
        results["models"][name] = bench_model(
            name, texts, queries, args, lambda s: print(s, flush=True)
        )
    results["machine"]["load_end"] = load()
    markdown = render(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "results.md").write_text(markdown)
    print(markdown)
    return results


if __name__ == "__main__":
    main()
