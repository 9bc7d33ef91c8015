"""The end-to-end demo (`make demo` / `ffr demo`): materialize the whole asset graph on the bundled
data with the `cpu-small` profile against the embedded Postgres, in the Dagster instance under
DAGSTER_HOME (so `make ui` shows every run afterwards), then print the evaluation table and what
to try next.

    python -m ffr_assets.demo [--profile cpu-small] [--sources 1500] [--skip-f2rvlm]
"""

import argparse
import os
import sys
import time
from pathlib import Path

STEPS = (
    ("raw_dialogues", "read PhotoChat + chitchat, validate, upsert into Postgres"),
    ("mldr_splits", "build MLDR-style long dialogues with queries; train/val/test"),
    ("fragments", "cut every dialogue batch into fragments"),
    ("fem_checkpoint", "fine-tune the Fragment Embedding Model; MLflow registry"),
    ("fragment_index", "embed fragments, COPY into pgvector, HNSW"),
    ("f2rvlm_sft", "F2RVLM cold-start SFT (LoRA)"),
    ("f2rvlm_curriculum", "difficulty-aware curriculum"),
    ("f2rvlm_grpo", "GRPO with multi-objective rewards"),
    ("evaluation_report", "FFRS + baselines on the val split; report"),
)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ffr demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="cpu-small", help="F2RVLM training profile")
    parser.add_argument(
        "--sources",
        type=int,
        default=None,
        help="PhotoChat dialogues to build from (default: all 3,500)",
    )
    parser.add_argument(
        "--eval-queries", type=int, default=40, help="val queries scored in the report"
    )
    parser.add_argument(
        "--k", type=int, default=5, help="fragments FFRS recalls per query (F2RVLM reads each)"
    )
    parser.add_argument("--skip-f2rvlm", action="store_true", help="skip the F2RVLM training steps")
    return parser.parse_args(argv)


def run_config(args: argparse.Namespace) -> dict:
    f2rvlm = {"config": {"profile": args.profile}}
    ops: dict = {
        "raw_dialogues": {
            "config": {
                "sources": [
                    {"format": "photochat"},
                    {"format": "chitchat", "limit": 1000},
                ]
            }
        },
        "mldr_splits": {"config": {"max_sources": args.sources}},
        "f2rvlm_sft": f2rvlm,
        "f2rvlm_curriculum": f2rvlm,
        "f2rvlm_grpo": f2rvlm,
        "evaluation_report": {"config": {"limit": args.eval_queries, "k": args.k}},
    }
    return {"ops": ops}


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path.cwd() / "dagster_home")))
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from dagster import AssetKey, DagsterInstance, materialize
    from rich.console import Console

    from ffr_assets.definitions import defs
    from ffr_assets.partitions import dialogue_batches

    console = Console()
    instance = DagsterInstance.get()
    graph = defs.resolve_asset_graph()
    assets = list(defs.assets or [])
    checks = list(defs.asset_checks or [])
    resources = dict(defs.resources or {})
    config = run_config(args)
    timings: dict[str, float] = {}
    steps = [s for s in STEPS if not (args.skip_f2rvlm and s[0].startswith("f2rvlm"))]
    started = time.perf_counter()

    def run(step: str, partition: str | None = None) -> None:
        key = AssetKey(step)
        if not graph.has(key):
            console.print(f"[yellow]skip {step}: not in this build of the graph[/]")
            return
        label = f"{step}[{partition}]" if partition else step
        t0 = time.perf_counter()
        ops = {k: v for k, v in config["ops"].items() if k == step}
        result = materialize(
            assets + checks,
            selection=[key],
            instance=instance,
            resources=resources,
            partition_key=partition,
            run_config={"ops": ops},
            raise_on_error=True,
        )
        timings[label] = time.perf_counter() - t0
        console.print(
            f"[green]done[/] {label} in {timings[label]:.0f}s "
            f"(run {result.run_id[:8]}, total {time.perf_counter() - started:.0f}s)"
        )

    for index, (step, what) in enumerate(steps, 1):
        console.rule(f"[bold]{index}/{len(steps)} {step}[/]: {what}")
        partitioned = (
            graph.get(AssetKey(step)).partitions_def if graph.has(AssetKey(step)) else None
        )
        if partitioned is not None:
            keys = sorted(
                k
                for k in instance.get_dynamic_partitions(dialogue_batches.name)
                if k.startswith("mldr-")
            )
            for key in keys:
                run(step, key)
        else:
            run(step)

    console.rule("[bold]FFR demo finished")
    console.print(f"total {time.perf_counter() - started:.0f}s; per step:")
    for label, seconds in timings.items():
        console.print(f"  {label:<32} {seconds:7.0f}s")
    report = Path(os.environ.get("FFR_REPORTS_DIR", "reports")) / "latest" / "report.md"
    if report.is_file():
        console.rule("[bold]evaluation (reports/latest/report.md)")
        console.print(report.read_text(encoding="utf-8"))
    console.print(NEXT_STEPS)
    return 0


NEXT_STEPS = """
Try next:
  .venv/bin/ffr search "the photo of the dog at the beach" --k 5      # SQL vector search (pgvector)
  .venv/bin/ffr query "when did they talk about the concert?" --k 10  # FFRS: FEM recall + F2RVLM pick
  .venv/bin/ffr db status                                             # server, pgvector, row counts
  psql "$(.venv/bin/ffr db url --show-password)" -c "select * from ffr.search_fragments(...)"
  make ui                                                             # Dagster + MLflow UIs
"""


if __name__ == "__main__":
    raise SystemExit(main())
