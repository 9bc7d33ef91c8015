"""`ffr eval` (every system on a dataset, report to reports/<run>/ and reports/latest/, MLflow)
and `ffr query` (FFRS over the indexed corpus, or F2RVLM over one dialogue).

    ffr eval --dataset mldr --split val [--systems bm25-utt,fem] [--k 20] [--limit N]
             [--model ADAPTER] [--modes single,corpus]
    ffr eval --dataset locomo --path locomo10.json
    ffr query "the photo of the lake" [--k 20] [--dialogue ID] [--model ADAPTER]

Registered by the lead in ``ffr_lib/cli/__init__.py``::

    app.command("eval")(evaluate.eval_command)
    app.command("query")(evaluate.query_command)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import typer

log = logging.getLogger(__name__)


def _split_list(values: list[str] | None) -> list[str] | None:
    """Accept both repeated options and comma lists."""
    if not values:
        return None
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def mldr_split(split: str, path: Path | None, build: bool) -> tuple[Any, Any]:
    """The MLDR split to evaluate and a DIFFERENT split to fit priors on (train when present).
    Builds the splits from PhotoChat when the files are missing and ``build`` is set."""
    from ffr_lib.data.readers import read_dataset
    from ffr_lib.settings import get_settings

    folder = path or get_settings().home / "data" / "mldr" / split
    if not folder.exists():
        if path is not None or not build:
            raise FileNotFoundError(
                f"no MLDR split at {folder}: materialize the mldr_splits asset, or pass --build"
            )
        from ffr_lib.mldr.splits import build_splits, write_splits

        sources = read_dataset("-", "photochat")
        write_splits(build_splits(sources.dialogues), folder.parent, swift=False)
    dataset = read_dataset(folder, "canonical")
    prior = None
    for other in ("train", "test" if split != "test" else "val"):
        candidate = folder.parent / other
        if other != split and candidate.exists():
            prior = read_dataset(candidate, "canonical")
            break
    return dataset, prior


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
    limit: int | None = typer.Option(None, "--limit", min=1, help="first N queries only"),
    model: str | None = typer.Option(
        None, "--model", "-m", help="trained F2RVLM adapter folder or profile name"
    ),
    modes: str = typer.Option("single,corpus", "--modes", help="single and/or corpus"),
    run_name: str | None = typer.Option(None, "--run-name", help="report folder name"),
    reports_dir: Path | None = typer.Option(None, "--reports-dir", help="default <repo>/reports"),
    build: bool = typer.Option(True, "--build/--no-build", help="build missing MLDR splits"),
    mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help="log to MLflow"),
) -> None:
    """Run every system (baselines, FEM, FFRS, F2RVLM) on a dataset and write the report."""
    from rich.console import Console

    from ffr_lib.db import database_url, migrate
    from ffr_lib.evaluation.baselines import build_systems
    from ffr_lib.evaluation.harness import Corpus, HarnessConfig, default_groupers, evaluate
    from ffr_lib.evaluation.locomo import evaluate_locomo, read_locomo_dataset
    from ffr_lib.evaluation.report import write_report
    from ffr_lib.ffrs.api import resolve_model

    console = Console()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("bm25s", "httpx", "sentence_transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    chosen_modes = [m.strip() for m in modes.split(",") if m.strip()]
    if not set(chosen_modes) <= {"single", "corpus"} or not chosen_modes:
        console.print(f"[red]--modes must name single and/or corpus, got {modes!r}")
        raise typer.Exit(code=2)
    config = HarnessConfig(modes=chosen_modes, limit=limit)  # type: ignore[arg-type]
    spec = resolve_model(model)
    try:
        if dataset == "mldr":
            data, prior = mldr_split(split, path, build)
            name = f"mldr-{split}"
        elif dataset == "locomo":
            if path is None:
                console.print("[red]--dataset locomo needs --path FILE")
                raise typer.Exit(code=2)
            data, prior, name = read_locomo_dataset(path), None, "locomo"
        else:
            console.print(f"[red]unknown dataset {dataset!r} (mldr | locomo)")
            raise typer.Exit(code=2)
        chosen = build_systems(_split_list(systems), model=spec, k=k, prior_data=prior)
    except (FileNotFoundError, ValueError) as error:
        console.print(f"[red]{error}")
        raise typer.Exit(code=1) from error
    url = database_url()
    migrate(url)
    corpus = Corpus.prepare(data, url)
    if dataset == "locomo":
        output = evaluate_locomo(data, chosen, corpus=corpus, config=config)
    else:
        output = evaluate(
            data,
            chosen,
            corpus,
            name=name,
            config=config,
            groupers=default_groupers(config.length_buckets),
        )
    result = write_report(
        output.metrics,
        run_name=run_name,
        reports_dir=reports_dir,
        runs=output.runs,
        mlflow=mlflow,
        params={
            "dataset": name,
            "k": k,
            "limit": limit,
            "model": str(spec),
            "modes": modes,
            "fem": corpus.embedding_model,
        },
    )
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
