"""`ffr eval` (every system on a dataset, report to reports/<run>/ and reports/latest/, MLflow)
and `ffr query` (FFRS over the indexed corpus, or F2RVLM over one dialogue).

    ffr eval --dataset mldr --split val [--systems bm25-utt,fem] [--k 20] [--limit N]
             [--reader-limit N] [--model ADAPTER] [--modes single,corpus]
    ffr eval --dataset locomo --path locomo10.json
    ffr query "the photo of the lake" [--k 20] [--dialogue ID] [--model ADAPTER]

Registered by the lead in ``ffr_lib/cli/__init__.py``::

    app.command("eval")(evaluate.eval_command)
    app.command("query")(evaluate.query_command)
"""

from __future__ import annotations

import logging
from pathlib import Path

import typer

log = logging.getLogger(__name__)


def _split_list(values: list[str] | None) -> list[str] | None:
    """Accept both repeated options and comma lists."""
    if not values:
        return None
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def eval_command(
    dataset: str = typer.Option("mldr", "--dataset", "-d", help="mldr | locomo"),
    split: str = typer.Option("val", "--split", help="MLDR split: val | test"),
    path: Path | None = typer.Option(
        None, "--path", help="dataset file/folder (LoCoMo json; MLDR canonical folder)"
    ),
    systems: list[str] | None = typer.Option(
        None, "--systems", "-s", help="systems to run (repeat or comma list; default all)"
    ),
    k: int = typer.Option(20, "--k", "-k", min=1, max=1000, help="fragments FFRS/FEM recall"),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="N queries only, spread evenly over the split"
    ),
    reader_limit: int | None = typer.Option(
        None,
        "--reader-limit",
        min=1,
        help="queries the F2RVLM systems (f2rvlm, f2rvlm-sft, ffrs; seconds each on a CPU) "
        "score, spread over the evaluated ones; every system is also scored on exactly those",
    ),
    model: str | None = typer.Option(
        None, "--model", "-m", help="trained F2RVLM adapter folder or profile name"
    ),
    modes: str = typer.Option("single,corpus", "--modes", help="single and/or corpus"),
    run_name: str | None = typer.Option(None, "--run-name", help="report folder name"),
    reports_dir: Path | None = typer.Option(None, "--reports-dir", help="default <repo>/reports"),
    build: bool = typer.Option(True, "--build/--no-build", help="build missing MLDR splits"),
    mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help="log to MLflow"),
    corpus_queries: str = typer.Option(
        "both",
        "--corpus-queries",
        help="MLDR corpus mode: both | as-written | corpus-style (the query variants that "
        "name their chat)",
    ),
) -> None:
    """Run every system (baselines, FEM, FFRS, F2RVLM) on a dataset and write the report."""
    from rich.console import Console

    from ffr_lib.evaluation.run import EvaluationConfig, run_evaluation

    console = Console()
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # library noise: ffr --verbose
    chosen_modes = [m.strip() for m in modes.split(",") if m.strip()]
    if not set(chosen_modes) <= {"single", "corpus"} or not chosen_modes:
        console.print(f"[red]--modes must name single and/or corpus, got {modes!r}")
        raise typer.Exit(code=2)
    if corpus_queries not in ("both", "as-written", "corpus-style"):
        console.print(
            f"[red]--corpus-queries must be both, as-written or corpus-style, got {corpus_queries!r}"
        )
        raise typer.Exit(code=2)
    if dataset not in ("mldr", "locomo"):
        console.print(f"[red]unknown dataset {dataset!r} (mldr | locomo)")
        raise typer.Exit(code=2)
    if dataset == "locomo" and path is None:
        console.print("[red]--dataset locomo needs --path FILE")
        raise typer.Exit(code=2)
    config = EvaluationConfig(
        dataset=dataset,  # type: ignore[arg-type]
        split=split,
        path=path,
        systems=_split_list(systems),
        k=k,
        limit=limit,
        reader_limit=reader_limit,
        model=model,
        modes=chosen_modes,  # type: ignore[arg-type]
        run_name=run_name,
        reports_dir=reports_dir,
        build=build,
        mlflow=mlflow,
        corpus_queries=corpus_queries,  # type: ignore[arg-type]
    )
    try:
        result = run_evaluation(config)
    except (FileNotFoundError, ValueError) as error:
        console.print(f"[red]{error}")
        raise typer.Exit(code=1) from error
    console.print(result.markdown, highlight=False, markup=False)
    console.print(f"report: {result.run_dir} (latest: {result.latest_dir})")


def query_command(
    text: str = typer.Argument(..., help="what to find"),
    k: int = typer.Option(20, "--k", "-k", min=1, max=1000, help="fragments to recall"),
    dialogue: str | None = typer.Option(
        None, "--dialogue", "-d", help="search this one dialogue with F2RVLM instead"
    ),
    model: str | None = typer.Option(
        None, "--model", "-m", help="trained F2RVLM adapter folder (default: the GRPO asset's)"
    ),
    top: int = typer.Option(5, "--top", help="dialogues to print"),
) -> None:
    """Print the dialogues that answer TEXT, ranked, with their exact utterance and image ids."""
    import psycopg
    from rich.console import Console

    from ffr_lib.db import EmbeddedError, database_url
    from ffr_lib.ffrs import FFRSConfig, open_ffrs

    console = Console()
    try:
        ffrs = open_ffrs(model, config=FFRSConfig(k=k), url=database_url())
        if dialogue is not None:
            prediction = ffrs.query_dialogue(text, dialogue)
        else:
            prediction = ffrs.query(text, k)
    except (LookupError, ValueError, FileNotFoundError, psycopg.Error, EmbeddedError) as error:
        console.print(f"[red]query failed:[/red] {str(error).strip()}")
        raise typer.Exit(code=1) from error
    if ffrs.config.stage2 == "fragment" and dialogue is None:
        console.print("[yellow]no trained F2RVLM: showing whole recalled fragments[/yellow]")
    if not prediction.dialogues:
        console.print("nothing matches")
        return
    found = ffrs.dialogues([d.dialogue_id for d in prediction.dialogues[:top]])
    for rank, result in enumerate(prediction.dialogues[:top], start=1):
        console.print(
            f"{rank}. {result.dialogue_id}  score {result.score:.4f}  "
            f"utterances {result.utterance_ids}  images {result.image_ids}",
            highlight=False,
            markup=False,
        )
        d = found.get(result.dialogue_id)
        if d is None:
            continue
        for i in result.utterance_ids:
            u = d.utterances[i]
            console.print(f"    [{i}] {u.speaker}: {u.text}", highlight=False, markup=False)
        for j in result.image_ids:
            image = d.images[j]
            console.print(
                f"    <image {j}> (utterance {image.utterance_index}) {image.content_text()}",
                highlight=False,
                markup=False,
            )
    timings = ", ".join(f"{s} {1000 * t:.0f} ms" for s, t in prediction.timings.items())
    console.print(f"({timings}; {prediction.tokens_read} prompt tokens read)", highlight=False)
