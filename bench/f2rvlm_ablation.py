"""F2RVLM ablation (issue 16): what SFT, GRPO, the curriculum and R_Fragment each add, for the
windowed prompt shape and the whole-dialogue shape, on the same MLDR val queries in one run.

Arms, per shape (``--shapes``; ``windowed`` = profile ``cpu-small-windowed``, ``whole`` =
``cpu-small``, the demo's, or ``--windowed-profile`` / ``--whole-profile``):

- ``zero-shot``: the untrained backbone with the shape's prompt;
- ``sft``: cold-start SFT (``stage.build_records`` + ``sft.train_sft``, as the `f2rvlm_sft` asset);
- ``grpo``: SFT + GRPO with the curriculum (``difficulty.score_records`` + ``grpo.train_grpo``, as
  the `f2rvlm_curriculum` / `f2rvlm_grpo` assets) and the rewards R_F1 + R_Fragment + R_Format,
  R_Fragment at ``--fragment-weight`` (paper 1.0; the cpu-small demo runs it at 0);
- ``grpo-no-curriculum``: the same GRPO on the records in their built (shuffled) order;
- ``grpo-no-fragment``: the same GRPO with R_Fragment at weight 0 (the demo's recipe).

Every GRPO arm starts from the shape's SFT adapter; the curriculum arms share one scoring pass.
Each model answers the same ``--queries`` val queries (single-dialogue mode, spread over the
split as the evaluation harness spreads them) beside the position prior and ``whole-dialogue``
(every utterance and image: what answering with everything scores), and is scored by the
harness (micro joint F1 with its 95% bootstrap interval, malformed and recovered answer rates);
the table adds paired bootstrap differences (GRPO arms vs SFT, whole vs windowed per arm, every
arm vs the position prior), GRPO's mean reward and KL from the trainer logs, and wall / CPU
seconds per step. Nothing is reimplemented: training and scoring are the library's functions.

    FFR_HOME=... .venv/bin/python bench/f2rvlm_ablation.py                 # 200 queries: hours
    .venv/bin/python bench/f2rvlm_ablation.py --queries 8 --sft-examples 8 \\
        --curriculum-examples 8 --grpo-steps 1 --out /tmp/f2r/ablation-tiny  # proves the path

Results: ``<out>/results.json`` (every figure, rewritten after each arm), ``<out>/table.md`` and
each arm's per-query predictions (``<out>/samples/<shape>__<arm>.json``, for the paired intervals).
On this 2-core machine the 200-query run takes about two hours; ``--resume`` continues a run that
was stopped: arms already evaluated are read back, a trained SFT adapter is reused, and the
settings must match the stopped run's (same queries, same profiles and sizes).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ffr_lib.evaluation.bootstrap import RESAMPLES, paired_f1_difference  # noqa: E402
from ffr_lib.evaluation.harness import (  # noqa: E402
    Corpus,
    SystemRun,
    evaluation_queries,
    run_samples,
    run_system,
    score_run,
)
from ffr_lib.evaluation.metrics import SetSample  # noqa: E402
from ffr_lib.evaluation.systems import build_systems  # noqa: E402
from ffr_lib.f2rvlm.difficulty import score_records  # noqa: E402
from ffr_lib.f2rvlm.grpo import train_grpo  # noqa: E402
from ffr_lib.f2rvlm.profiles import F2RVLMProfile, get_profile  # noqa: E402
from ffr_lib.f2rvlm.retriever import F2RVLMRetriever  # noqa: E402
from ffr_lib.f2rvlm.sft import train_sft  # noqa: E402
from ffr_lib.f2rvlm.stage import build_records, embed_for  # noqa: E402
from ffr_lib.mldr.stage import load_split  # noqa: E402
from ffr_lib.reporting import markdown_table  # noqa: E402

ARMS = ("zero-shot", "sft", "grpo", "grpo-no-curriculum", "grpo-no-fragment")
GRPO_ARMS = ARMS[2:]
SHAPE_PROFILES = {"windowed": "cpu-small-windowed", "whole": "cpu-small"}
PRIOR = "position-prior"
#: The reference every arm must clear: answering with every utterance and image.
EVERYTHING = "whole-dialogue"


def shape_profile(name: str, args: argparse.Namespace) -> F2RVLMProfile:
    """The shape's profile with the run's sizes; validated again (get_profile validates the
    top-level overrides, the nested sizes are set here and checked by a round trip)."""
    overrides: dict[str, Any] = {"backbone": args.backbone} if args.backbone else {}
    profile = get_profile(name, **overrides)
    if args.sft_examples is not None:
        profile.sft.max_examples = args.sft_examples
    if args.curriculum_examples is not None:
        profile.curriculum.max_examples = args.curriculum_examples
    if args.grpo_steps is not None:
        profile.grpo.max_steps = args.grpo_steps
    if args.sft_learning_rate is not None:
        profile.sft.learning_rate = args.sft_learning_rate
    if args.sft_epochs is not None:
        profile.sft.epochs = args.sft_epochs
    if args.no_dynamic_sampling:
        profile.grpo.dynamic_sampling = False
    return F2RVLMProfile.model_validate(profile.model_dump())


def arm_profile(profile: F2RVLMProfile, arm: str, fragment_weight: float) -> F2RVLMProfile:
    """The GRPO settings of one arm on top of the shape's profile."""
    out = profile.model_copy(deep=True)
    weight = 0.0 if arm == "grpo-no-fragment" else fragment_weight
    out.grpo.reward_weights = out.grpo.reward_weights.model_copy(update={"fragment": weight})
    out.curriculum.enabled = arm != "grpo-no-curriculum"
    return out


class Clock:
    """Wall and CPU seconds of a block (CPU: this process, all threads; on a shared machine
    the CPU figure moves less with the load than the wall figure)."""

    def __enter__(self) -> Clock:
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = round(time.perf_counter() - self.wall0, 1)
        self.cpu = round(time.process_time() - self.cpu0, 1)


def evaluate_arm(
    retriever: F2RVLMRetriever, label: str, queries: list[Any], corpus: Corpus
) -> SystemRun:
    """The harness's F2RVLM system (the whole dialogue, union of its prompts) on ``queries``."""
    (system,) = build_systems(["f2rvlm"], model=retriever)
    system.name = label
    run = run_system(system, queries, corpus, "single")
    # The harness caches loaded models for the systems of one report; one arm at a time here.
    system._loaded.clear()  # type: ignore[attr-defined]
    return run


def samples_path(out: Path, key: str) -> Path:
    return out / "samples" / (key.replace("/", "__") + ".json")


def write_samples(out: Path, key: str, samples: list[SetSample]) -> None:
    path = samples_path(out, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [dataclasses.asdict(s) for s in samples]  # sequences become JSON lists
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows))
    tmp.replace(path)  # a stop mid-write leaves the previous file, never half of one


def read_samples(out: Path, key: str) -> list[SetSample] | None:
    path = samples_path(out, key)
    if not path.exists():
        return None
    return [SetSample(**row) for row in json.loads(path.read_text())]


#: Arguments that must match for --resume to continue a run (the rest only steer the process).
RUN_IDENTITY = (
    "queries",
    "windowed_profile",
    "whole_profile",
    "backbone",
    "sft_examples",
    "sft_learning_rate",
    "sft_epochs",
    "curriculum_examples",
    "grpo_steps",
    "fragment_weight",
    "no_dynamic_sampling",
    "resamples",
)


KEEP = (
    "f1",
    "f1_ci_low",
    "f1_ci_high",
    "utt_f1",
    "img_f1",
    "malformed_rate",
    "recovered_rate",
    "answers_n",
    "abstain_rate",
    "answer_rate",
    "latency_p50_ms/total",
    "tokens_read_mean",
)


def figures(run: SystemRun, corpus: Corpus, resamples: int) -> dict[str, Any]:
    scored = score_run(run, corpus, resamples=resamples)
    return {k: round(float(scored[k]), 4) for k in KEEP if k in scored}


def difference(a: list[SetSample], b: list[SetSample], resamples: int) -> dict[str, float] | None:
    if not a or len(a) != len(b):
        return None
    d = paired_f1_difference(a, b, resamples)
    return {"diff": round(d.estimate, 4), "low": round(d.low, 4), "high": round(d.high, 4)}


def run_shape(
    shape: str,
    args: argparse.Namespace,
    data: tuple[Any, Any, list[Any], Corpus],
    save: Callable[[str, dict[str, Any]], None],
    results: dict[str, Any],
) -> dict[str, list[SetSample]]:
    """Train and evaluate every requested arm of one shape; returns each arm's samples. With
    ``--resume``, an arm whose figures and samples are on disk is read back, not run again."""
    train, _val, queries, corpus = data
    out = Path(args.out)
    profile = shape_profile(
        args.windowed_profile if shape == "windowed" else args.whole_profile, args
    )
    embed = embed_for(profile)
    folder = Path(args.out) / shape
    arms = [a for a in ARMS if a in args.arms]
    samples: dict[str, list[SetSample]] = {}

    def done(arm: str) -> bool:
        key = f"{shape}/{arm}"
        kept = read_samples(out, key) if args.resume and "f1" in results.get(key, {}) else None
        if kept is not None and len(kept) == len(queries):
            samples[arm] = kept
            print(f"== {key}: resumed (F1 {results[key]['f1']})", flush=True)
            return True
        return False

    def evaluated(arm: str, retriever: F2RVLMRetriever, extra: dict[str, Any]) -> None:
        with Clock() as clock:
            run = evaluate_arm(retriever, f"{shape}/{arm}", queries, corpus)
        samples[arm] = run_samples(run, corpus)
        write_samples(out, f"{shape}/{arm}", samples[arm])
        result = figures(run, corpus, args.resamples)
        result.update(extra)
        result["eval_seconds"], result["eval_cpu_seconds"] = clock.wall, clock.cpu
        result["eval_seconds_per_query"] = round(clock.wall / max(1, len(queries)), 2)
        save(f"{shape}/{arm}", result)

    if "zero-shot" in arms and not done("zero-shot"):
        evaluated("zero-shot", F2RVLMRetriever.from_base(profile, embed=embed), {})
        gc.collect()
    trained = [a for a in arms if a != "zero-shot" and not done(a)]
    if not trained:
        return samples
    sft_key, sft_dir = f"{shape}/sft-train", folder / "sft" / "adapter"
    if args.resume and sft_key in results and (sft_dir / "adapter_config.json").exists():
        sft_info = results[sft_key]
        print(f"== {sft_key}: resumed ({sft_dir})", flush=True)
    else:
        with Clock() as clock:
            records = build_records(train, profile, profile.sft.max_examples, profile.seed)
            sft = train_sft(profile, records, folder / "sft", track=False)
        sft_dir = sft.adapter_dir
        sft_info = {
            "profile": profile.name,
            "prompt_shape": profile.prompt_shape,
            "sft_records": len(records[: profile.sft.max_examples or len(records)]),
            "sft_queries": len({r["query_id"] for r in records[: profile.sft.max_examples]}),
            "sft_train_loss": round(sft.metrics["sft_train_loss"], 4),
            "sft_seconds": clock.wall,
            "sft_cpu_seconds": clock.cpu,
        }
        save(sft_key, sft_info)
    if "sft" in trained:
        evaluated("sft", F2RVLMRetriever.from_adapter(sft_dir, embed=embed), sft_info)
        gc.collect()
    grpo_arms = [a for a in trained if a in GRPO_ARMS]
    if not grpo_arms:
        return samples
    with Clock() as clock:
        pool = build_records(train, profile, profile.curriculum.max_examples, profile.seed + 1)
        scores = (
            score_records(sft_dir, pool, profile)
            if any(a != "grpo-no-curriculum" for a in grpo_arms)
            else None
        )
    curriculum = {
        "curriculum_records": len(pool),
        "curriculum_seconds": clock.wall if scores else 0.0,
        "curriculum_cpu_seconds": clock.cpu if scores else 0.0,
    }
    for arm in grpo_arms:
        arm_settings = arm_profile(profile, arm, args.fragment_weight)
        with Clock() as clock:
            try:
                grpo = train_grpo(
                    arm_settings,
                    pool,
                    sft_dir,
                    folder / arm,
                    scores=scores if arm_settings.curriculum.enabled else None,
                    track=False,
                )
            except ValueError as error:  # e.g. every group had zero reward variance
                save(f"{shape}/{arm}", {"error": str(error)})
                continue
        info = {
            **curriculum,
            "reward_weights": arm_settings.grpo.reward_weights.model_dump(),
            "curriculum": arm_settings.curriculum.enabled,
            **{k: round(v, 6) for k, v in grpo.metrics.items()},
            # The whole step (model load, zero-variance pre-pass, training), not only train().
            "grpo_step_seconds": clock.wall,
            "grpo_step_cpu_seconds": clock.cpu,
        }
        evaluated(arm, F2RVLMRetriever.from_adapter(grpo.adapter_dir, embed=embed), info)
        gc.collect()
    return samples


def table(results: dict[str, Any], shapes: list[str]) -> list[str]:
    header = [
        "shape / arm",
        "F1 [95% CI]",
        "utt / img F1",
        "malformed",
        "vs SFT [95% CI]",
        "vs prior [95% CI]",
        "vs whole-dialogue [95% CI]",
        "GRPO reward / KL",
        "SFT or GRPO s (CPU s)",
        "eval s/query",
    ]

    def diff(d: dict[str, float] | None) -> str:
        return f"{d['diff']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]" if d else "–"

    rows = []
    for name in (PRIOR, EVERYTHING):
        ref = results.get(name, {})
        if ref:
            rows.append(
                [name, f"{ref['f1']:.3f} [{ref['f1_ci_low']:.3f}, {ref['f1_ci_high']:.3f}]"]
                + [f"{ref.get('utt_f1', 0):.3f} / {ref.get('img_f1', 0):.3f}"]
                + ["–"] * 7
            )
    for shape in shapes:
        for arm in ARMS:
            r = results.get(f"{shape}/{arm}")
            if not r:
                continue
            if "error" in r:
                rows.append([f"{shape} / {arm}", f"error: {r['error']}"] + [""] * 8)
                continue
            train_s = r.get("grpo_step_seconds", r.get("sft_seconds"))
            train_cpu = r.get("grpo_step_cpu_seconds", r.get("sft_cpu_seconds"))
            rows.append(
                [
                    f"{shape} / {arm}",
                    f"{r['f1']:.3f} [{r['f1_ci_low']:.3f}, {r['f1_ci_high']:.3f}]",
                    f"{r.get('utt_f1', 0):.3f} / {r.get('img_f1', 0):.3f}",
                    f"{r.get('malformed_rate', float('nan')):.3f}",
                    diff(r.get("vs_sft")),
                    diff(r.get("vs_prior")),
                    diff(r.get("vs_whole_dialogue")),
                    (
                        f"{r['grpo_reward_mean']:.3f} / {r.get('grpo_kl_mean', float('nan')):.1e}"
                        if "grpo_reward_mean" in r
                        else "–"
                    ),
                    f"{train_s} ({train_cpu})" if train_s is not None else "–",
                    f"{r['eval_seconds_per_query']}",
                ]
            )
    return markdown_table(header, rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--queries", type=int, default=200, help="val queries every arm answers")
    ap.add_argument("--shapes", default="windowed,whole", help="windowed,whole")
    ap.add_argument("--arms", default=",".join(ARMS), help=f"subset of {','.join(ARMS)}")
    ap.add_argument("--windowed-profile", default=SHAPE_PROFILES["windowed"])
    ap.add_argument("--whole-profile", default=SHAPE_PROFILES["whole"])
    ap.add_argument("--backbone", default=None, help="override the profiles' backbone")
    ap.add_argument("--sft-examples", type=int, default=None, help="default: the profile's")
    ap.add_argument("--curriculum-examples", type=int, default=None, help="default: profile's")
    ap.add_argument("--grpo-steps", type=int, default=None, help="default: the profile's")
    ap.add_argument("--sft-learning-rate", type=float, default=None, help="default: the profile's")
    ap.add_argument("--sft-epochs", type=float, default=None, help="default: the profile's")
    ap.add_argument(
        "--fragment-weight", type=float, default=1.0, help="R_Fragment weight of the GRPO arms"
    )
    ap.add_argument(
        "--no-dynamic-sampling",
        action="store_true",
        help="keep zero-variance groups (a tiny run may have no other prompt left)",
    )
    ap.add_argument("--resamples", type=int, default=RESAMPLES, help="bootstrap resamples")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = its default)")
    ap.add_argument("--out", default="/tmp/f2r/ablation")
    ap.add_argument(
        "--resume",
        action="store_true",
        help="continue the stopped run in --out: evaluated arms are read back, the SFT adapter "
        "reused (same settings required)",
    )
    args = ap.parse_args(argv)
    args.arms = [a for a in args.arms.split(",") if a]
    unknown = set(args.arms) - set(ARMS)
    if unknown:
        ap.error(f"unknown arms {sorted(unknown)}; known: {', '.join(ARMS)}")
    shapes = [s for s in args.shapes.split(",") if s]
    if set(shapes) - set(SHAPE_PROFILES):
        ap.error(f"shapes are {', '.join(SHAPE_PROFILES)}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"args": {k: v for k, v in vars(args).items()}}
    if args.resume and (out / "results.json").exists():
        stopped = json.loads((out / "results.json").read_text())
        changed = [k for k in RUN_IDENTITY if stopped.get("args", {}).get(k) != results["args"][k]]
        if changed:
            ap.error(f"--resume: {out}/results.json was run with other {', '.join(changed)}")
        results = {**stopped, "args": results["args"]}

    def save(key: str, value: dict[str, Any]) -> None:
        results[key] = value
        print(f"== {key}: {json.dumps(value)}", flush=True)
        (out / "results.json").write_text(json.dumps(results, indent=2))

    train, val = load_split("train"), load_split("val")
    queries = evaluation_queries(val, args.queries)
    corpus = Corpus.in_memory(val)
    (prior,) = build_systems([PRIOR], prior_data=train)
    prior_run = run_system(prior, queries, corpus, "single")
    prior_samples = run_samples(prior_run, corpus)
    save(PRIOR, figures(prior_run, corpus, args.resamples))
    (everything,) = build_systems([EVERYTHING])
    every_run = run_system(everything, queries, corpus, "single")
    every_samples = run_samples(every_run, corpus)
    save(EVERYTHING, figures(every_run, corpus, args.resamples))

    samples: dict[str, dict[str, list[SetSample]]] = {}
    for shape in shapes:
        samples[shape] = run_shape(shape, args, (train, val, queries, corpus), save, results)
        for arm, mine in samples[shape].items():
            key = f"{shape}/{arm}"
            results[key]["vs_prior"] = difference(mine, prior_samples, args.resamples)
            results[key]["vs_whole_dialogue"] = difference(mine, every_samples, args.resamples)
            if arm in GRPO_ARMS and "sft" in samples[shape]:
                results[key]["vs_sft"] = difference(mine, samples[shape]["sft"], args.resamples)
            save(key, results[key])
    if len(shapes) == 2:  # whole minus windowed, arm by arm, on the same queries
        for arm in ARMS:
            a, b = samples["whole"].get(arm), samples["windowed"].get(arm)
            if a and b:
                save(f"whole-vs-windowed/{arm}", difference(a, b, args.resamples) or {})
    lines = table(results, shapes)
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
