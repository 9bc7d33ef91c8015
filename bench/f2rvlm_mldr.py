"""F2RVLM experiments on the MLDR-style splits: variants of the cpu-small-windowed profile (the
demo's before issue 16), trained and evaluated side by side with the baselines on the same val
queries.

Each variant is the ``cpu-small-windowed`` profile plus overrides (``VARIANTS`` below). For each
one the script builds the SFT records from the train split exactly as the `f2rvlm_sft` asset does
(:func:`ffr_lib.f2rvlm.stage.build_records`), trains SFT, optionally runs the curriculum pass and
GRPO as the assets do, and evaluates every model with the evaluation harness (single-dialogue
mode, the first ``--val-n`` val queries: the queries of the demo report) beside the position
prior, the word-overlap window and the MiniLM window. Zero-shot is the untrained backbone with
the variant's prompt.

    FFR_HOME=/tmp/f2r-home .venv/bin/python bench/f2rvlm_mldr.py --variants base,neg0 \
        --stages baselines,sft,grpo --val-n 40 --out /tmp/f2r/exp

Results go to ``<out>/results.json`` (one entry per variant and stage) and are printed as a
markdown table; ``--mlflow`` also logs each evaluated model as an MLflow run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ffr_lib.reporting import markdown_table  # noqa: E402

# Overrides of the cpu-small-windowed profile (nested dicts merge into the profile's sub-settings).
OLD = {  # the windowed demo profile before this experiment series
    "negative_window_ratio": 0.5,
    "negative_query_windows": 0,
    "hints": {"method": "overlap", "preselect_top": None, "annotate": True},
}


def _variants() -> dict[str, dict[str, Any]]:
    win = {"negative_window_ratio": 0.2, "negative_query_windows": 1}
    pre = {"negative_query_windows": 1}
    return {
        "base": {},
        "old": OLD,
        "win-overlap": deep_update(win, {"hints": {"method": "overlap", "preselect_top": None}}),
        "win-combined": deep_update(win, {"hints": {"method": "combined", "preselect_top": None}}),
        "pre6-combined": deep_update(
            pre, {"hints": {"method": "combined", "preselect_top": 6, "preselect_context": 1}}
        ),
        "pre6-overlap": deep_update(
            pre, {"hints": {"method": "overlap", "preselect_top": 6, "preselect_context": 1}}
        ),
        "pre6-minilm": deep_update(
            pre, {"hints": {"method": "minilm", "preselect_top": 6, "preselect_context": 1}}
        ),
        "pre6-combined-noannot": deep_update(
            pre,
            {
                "hints": {
                    "method": "combined",
                    "preselect_top": 6,
                    "preselect_context": 1,
                    "annotate": False,
                }
            },
        ),
        "pre4-combined": deep_update(
            pre, {"hints": {"method": "combined", "preselect_top": 4, "preselect_context": 1}}
        ),
    }


def deep_update(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = value
    return out


def variant_profile(name: str, extra: dict[str, Any]) -> Any:
    """``name`` is a variant, optionally ``variant@N`` for N SFT examples (queries)."""
    from ffr_lib.f2rvlm.profiles import F2RVLMProfile, get_profile

    base, _, size = name.partition("@")
    data = deep_update(get_profile("cpu-small-windowed").model_dump(), _variants()[base])
    data = deep_update(data, extra)
    if size:
        data["sft"]["max_examples"] = int(size)
    data["name"] = f"cpu-small:{name}"
    return F2RVLMProfile.model_validate(data)


def record_stats(records: list[dict[str, Any]], profile: Any) -> dict[str, float]:
    from ffr_lib.data.format.answer import parse

    n = len(records)
    empty = sum(parse(r["solution"], profile.answer_form).is_empty for r in records)
    return {"records": float(n), "none_share": round(empty / max(1, n), 3)}


KEEP = ("f1", "utt_f1", "img_f1", "abstain_rate", "answer_rate", "exact_match", "macro_f1")


def _flat(metrics: dict[str, Any]) -> dict[str, float]:
    out = {k: round(float(metrics[k]), 4) for k in KEEP if k in metrics}
    if "latency_p50_ms/total" in metrics:
        out["p50_ms"] = round(float(metrics["latency_p50_ms/total"]), 1)
    return out


def evaluate_systems(
    systems: list[Any], val: Any, sizes: list[int]
) -> dict[str, dict[str, dict[str, float]]]:
    """Run the systems on the first max(sizes) val queries (single-dialogue mode) and score the
    first n of them for each n in ``sizes``: ``{system: {str(n): metrics}}``."""
    from dataclasses import replace

    from ffr_lib.evaluation.harness import Corpus, HarnessConfig, evaluate, score_run

    corpus = Corpus.in_memory(val)
    out = evaluate(
        val, systems, corpus, name="val", config=HarnessConfig(modes=["single"], limit=max(sizes))
    )
    result: dict[str, dict[str, dict[str, float]]] = {}
    for run in out.runs["val/single"]:
        result[run.system] = {}
        for n in sizes:
            scored = score_run(replace(run, records=run.records[:n]), corpus)
            if "skipped" in scored:
                raise RuntimeError(f"{run.system} skipped: {scored['skipped']}")
            result[run.system][str(n)] = _flat(scored)
    return result


def evaluate_model(retriever: Any, val: Any, sizes: list[int], label: str) -> dict[str, Any]:
    from ffr_lib.evaluation.baselines import F2RVLMOnly

    system = F2RVLMOnly(retriever)
    system.name = label
    started = time.perf_counter()
    metrics: dict[str, Any] = evaluate_systems([system], val, sizes)[label]
    metrics["eval_seconds"] = round(time.perf_counter() - started, 1)
    return metrics


def table_embedder(path: str) -> Any:
    """An embed function reading precomputed MiniLM vectors (int8, normalised) by text."""
    import numpy as np

    data = np.load(path, allow_pickle=True)
    index = {t: i for i, t in enumerate(data["texts"].tolist())}
    vectors = data["vectors"].astype(np.float32) / 127.0

    zero = np.zeros(vectors.shape[1], dtype=np.float32)
    misses = [0]

    def embed(texts: list[str]) -> Any:
        rows = []
        for t in texts:
            if t in index:
                rows.append(vectors[index[t]])
            else:  # not precomputed: scores 0 (counted, printed once per 100)
                misses[0] += 1
                if misses[0] % 100 == 1:
                    print(f"embed table: {misses[0]} texts missing", flush=True)
                rows.append(zero)
        return np.stack(rows)

    return embed


def patch_environment(args: argparse.Namespace) -> None:
    """GPU runs: models on CUDA; hint vectors from a precomputed table (no MiniLM there)."""
    import ffr_lib.f2rvlm.backbone as backbone_module
    import ffr_lib.f2rvlm.hints as hints_module
    import ffr_lib.f2rvlm.retriever as retriever_module
    import ffr_lib.f2rvlm.sft as sft_module

    if args.embed_table:
        embed = table_embedder(args.embed_table)

        def default_embedder(settings: Any) -> Any:
            return embed if hints_module.needs_embedder(settings) else None

        hints_module.default_embedder = default_embedder
        retriever_module.default_embedder = default_embedder
    if args.cuda:
        original = backbone_module.load_backbone

        def load_backbone(*a: Any, **k: Any) -> Any:
            loaded = original(*a, **k)
            loaded.model.to("cuda")
            return loaded

        for module in (backbone_module, sft_module, retriever_module):
            module.load_backbone = load_backbone


def log_results(path: Path) -> None:
    """One MLflow run per entry of a results file, in experiment ``f2rvlm-experiments``."""
    import mlflow

    from ffr_lib.tracking import start_run

    data = json.loads(path.read_text())
    entries = data.get("results", data)
    for key, value in entries.items():
        flat = {
            f"{metric}_n{n}": float(v)
            for n, metrics in value.items()
            if isinstance(metrics, dict)
            for metric, v in metrics.items()
            if isinstance(v, int | float) and v == v  # NaN (no negative query) left out
        }
        flat.update({k: float(v) for k, v in value.items() if isinstance(v, int | float)})
        params = {"run": key, "source": str(path), "device": str(data.get("device", ""))}
        with start_run("f2rvlm-experiments", run_name=key, params=params):
            mlflow.log_metrics(flat)
        print("logged", key, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default="base", help="names of VARIANTS, optionally @N")
    ap.add_argument("--stages", default="baselines,sft", help="baselines,zero-shot,sft,grpo")
    ap.add_argument("--val-n", default="40", help="comma list: score the first n val queries")
    ap.add_argument("--out", default="/tmp/f2r/exp")
    ap.add_argument("--set", default="{}", help="JSON overrides applied to every variant")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--embed-table", default=None, help="precomputed MiniLM vectors (.npz)")
    ap.add_argument("--cuda", action="store_true", help="train and generate on the GPU")
    ap.add_argument("--grpo-variants", default=None, help="variants that also get GRPO")
    ap.add_argument("--zero-shot-variants", default=None)
    ap.add_argument("--results", default=None, help="results file (default <out>/results.json)")
    ap.add_argument("--mlflow", action="store_true")
    ap.add_argument(
        "--log-results",
        default=None,
        help="only log a saved results file (e.g. bench/results/*.json) to MLflow and exit",
    )
    args = ap.parse_args()
    if args.log_results:
        log_results(Path(args.log_results))
        return

    import torch

    patch_environment(args)
    from ffr_lib.f2rvlm.retriever import F2RVLMRetriever
    from ffr_lib.f2rvlm.sft import train_sft
    from ffr_lib.f2rvlm.stage import build_records, embed_for
    from ffr_lib.mldr.stage import load_split

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = Path(args.results) if args.results else out / "results.json"
    results: dict[str, Any] = json.loads(results_path.read_text()) if results_path.exists() else {}
    sizes = [int(n) for n in args.val_n.split(",")]

    def save(key: str, value: Any) -> None:
        results[key] = value
        print(f"== {key}: {json.dumps(value)}", flush=True)
        results_path.write_text(json.dumps(results, indent=2))
        if args.mlflow:
            import mlflow

            from ffr_lib.tracking import start_run

            flat = {
                f"{metric}_n{n}": float(v)
                for n, metrics in value.items()
                if isinstance(metrics, dict)
                for metric, v in metrics.items()
            }
            flat.update({k: float(v) for k, v in value.items() if isinstance(v, int | float)})
            with start_run("f2rvlm-experiments", run_name=key, params={"run": key}):
                mlflow.log_metrics(flat)

    train, val = load_split("train"), load_split("val")
    stages = args.stages.split(",")
    extra = json.loads(args.set)
    if args.cuda:
        extra = deep_update(extra, {"device": "auto"})
    if "baselines" in stages:
        from ffr_lib.evaluation.systems import build_systems

        names = ["position-prior", "overlap-window", "minilm-window"]
        systems = build_systems(names, prior_data=train)
        for name, metrics in evaluate_systems(systems, val, sizes).items():
            save(f"baseline/{name}", metrics)

    grpo_variants = set((args.grpo_variants or "").split(",")) if args.grpo_variants else None
    zero_variants = (
        set((args.zero_shot_variants or "").split(",")) if args.zero_shot_variants else None
    )
    for variant in args.variants.split(","):
        profile = variant_profile(variant, extra)
        embed = embed_for(profile)
        folder = out / variant.replace("@", "_n")
        if "zero-shot" in stages and (zero_variants is None or variant in zero_variants):
            retriever = F2RVLMRetriever.from_base(profile, embed=embed)
            save(f"{variant}/zero-shot", evaluate_model(retriever, val, sizes, "zero-shot"))
            del retriever
        sft_adapter = folder / "sft" / "adapter"
        if "sft" in stages:
            started = time.perf_counter()
            records = build_records(train, profile, profile.sft.max_examples, profile.seed)
            stats = record_stats(records[: profile.sft.max_examples or len(records)], profile)
            stats["build_seconds"] = round(time.perf_counter() - started, 1)
            result = train_sft(profile, records, folder / "sft", track=False)
            retriever = F2RVLMRetriever.from_adapter(result.adapter_dir, embed=embed)
            metrics = evaluate_model(retriever, val, sizes, "sft")
            metrics.update(stats)
            metrics.update({k: round(v, 3) for k, v in result.metrics.items()})
            save(f"{variant}/sft", metrics)
            del retriever
        if "grpo" in stages and (grpo_variants is None or variant in grpo_variants):
            from ffr_lib.f2rvlm.difficulty import score_records
            from ffr_lib.f2rvlm.grpo import train_grpo

            started = time.perf_counter()
            records = build_records(
                train, profile, profile.curriculum.max_examples, profile.seed + 1
            )
            scores = score_records(sft_adapter, records, profile)
            curriculum_seconds = time.perf_counter() - started
            try:
                result = train_grpo(
                    profile, records, sft_adapter, folder / "grpo", scores=scores, track=False
                )
            except ValueError as error:  # e.g. every group had zero reward variance
                save(f"{variant}/grpo", {"error": str(error)})
                continue
            retriever = F2RVLMRetriever.from_adapter(result.adapter_dir, embed=embed)
            metrics = evaluate_model(retriever, val, sizes, "grpo")
            metrics["curriculum_seconds"] = round(curriculum_seconds, 1)
            metrics.update({k: round(v, 3) for k, v in result.metrics.items()})
            save(f"{variant}/grpo", metrics)
            del retriever

    n = str(sizes[0])
    header = ["run", f"F1 (n={n})", "utt F1", "img F1", "abstain", "answer", "train s"]
    rows = [
        [key]
        + [m.get(n, {}).get(k) for k in ("f1", "utt_f1", "img_f1", "abstain_rate", "answer_rate")]
        + [m.get("sft_seconds", m.get("grpo_seconds"))]
        for key, m in results.items()
    ]
    print("\n".join(markdown_table(header, rows)))


if __name__ == "__main__":
    main()
