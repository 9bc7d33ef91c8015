"""`ffr eval` (every system on a dataset, report to reports/<run>/ and reports/latest/, MLflow)
and `ffr query` (FFRS over the indexed corpus, or F2RVLM over one dialogue).

    ffr eval --dataset mldr --split val [--systems bm25-utt,fem] [--k 20] [--limit N]
             [--reader-limit N] [--model ADAPTER] [--modes single,corpus]
    ffr eval --dataset locomo --path locomo10.json
    ffr eval --dataset qmsum --split val          (or --path DIR: any folder of QMSum meetings)
    ffr query "the photo of the lake" [--k 20] [--dialogue ID] [--model ADAPTER]

Registered by the lead in ``ffr_lib/cli/__init__.py``::

    app.command("eval")(evaluate.eval_command)
    app.command("query")(evaluate.query_command)
"""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from ffr_lib.evaluation.systems import systems_help

log = logging.getLogger(__name__)


def _split_list(values: list[str] | None) -> list[str] | None:
    """Accept both repeated options and comma lists."""
    if not values:
        return None
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def eval_command(
    dataset: str = typer.Option("mldr", "--dataset", "-d", help="mldr | locomo | qmsum"),
    split: str = typer.Option(
        "val", "--split", help="MLDR split (val | test); QMSum split under FFR_QMSUM_DIR (val)"
    ),
    path: Path | None = typer.Option(
        None,
        "--path",
        help="dataset file/folder (LoCoMo json; MLDR canonical folder; QMSum meeting folder)",
    ),
    systems: list[str] | None = typer.Option(None, "--systems", "-s", help=systems_help()),
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
    reader: Path | None = typer.Option(
        None, "--reader", help="trained reader checkpoint (default: the champion reader)"
    ),
    modes: str = typer.Option("single,corpus", "--modes", help="single and/or corpus"),
    run_name: str | None = typer.Option(None, "--run-name", help="report folder name"),
    reports_dir: Path | None = typer.Option(None, "--reports-dir", help="default <repo>/reports"),
    build: bool = typer.Option(True, "--build/--no-build", help="build missing MLDR splits"),
    mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help="log to MLflow"),
    keep: str | None = typer.Option(
        None,
        "--keep",
        help="keep the evaluation's own database under this name (on the same server) to "
        "inspect it afterwards, e.g. FFR_DATABASE_URL=<url with /NAME> ffr search ...; default: "
        "a throw-away database. The database users serve from is never written",
    ),
    corpus_queries: str = typer.Option(
        "both",
        "--corpus-queries",
        help="MLDR corpus mode: both | as-written | corpus-style (the query variants that "
        "name their chat)",
    ),
) -> None:
    """Run every system (baselines, FEM, FFRS, F2RVLM) on a dataset and write the report."""
    from rich.console import Console

    from ffr_lib.db.scratch import ScratchDatabaseError
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
    if dataset not in ("mldr", "locomo", "qmsum"):
        console.print(f"[red]unknown dataset {dataset!r} (mldr | locomo | qmsum)")
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
        reader=reader,
        modes=chosen_modes,  # type: ignore[arg-type]
        run_name=run_name,
        reports_dir=reports_dir,
        build=build,
        mlflow=mlflow,
        corpus_queries=corpus_queries,  # type: ignore[arg-type]
        keep_database=keep,
    )
    try:
        result = run_evaluation(config)
    except (FileNotFoundError, ValueError, ScratchDatabaseError) as error:
        console.print(f"[red]{error}")
        raise typer.Exit(code=1) from error
    console.print(result.markdown, highlight=False, markup=False)
    console.print(f"report: {result.run_dir} (latest: {result.latest_dir})")


def query_command(
    text: str = typer.Argument(..., help="what to find"),
    k: int = typer.Option(20, "--k", "-k", min=1, max=1000, help="fragments to recall"),
    dialogue: str | None = typer.Option(
        None, "--dialogue", "-d", help="read this one dialogue instead of searching the corpus"
    ),
    fine_stage: str = typer.Option(
        "auto",
        "--fine-stage",
        help="auto (the champion reader, else the trained F2RVLM, else none) | reader | f2rvlm "
        "| fragment (whole recalled fragments)",
    ),
    model: str | None = typer.Option(
        None, "--model", "-m", help="trained F2RVLM adapter folder (default: the GRPO asset's)"
    ),
    reader: Path | None = typer.Option(
        None, "--reader", help="trained reader checkpoint (default: the champion reader)"
    ),
    top: int = typer.Option(5, "--top", help="dialogues to print"),
    context: int = typer.Option(1, "--context", min=0, help="utterances shown around each run"),
) -> None:
    """Print the dialogues that answer TEXT, ranked: each answer run with its score and context,
    the images sent in it, which fine stage answered, and the time to load vs to answer."""
    import time

    import psycopg
    from rich.console import Console

    from ffr_lib.db import EmbeddedError, database_url
    from ffr_lib.ffrs import FFRSConfig, open_ffrs
    from ffr_lib.reader.reader import consecutive_runs

    console = Console()
    if fine_stage not in ("auto", "reader", "f2rvlm", "fragment"):
        console.print(
            f"[red]--fine-stage must be auto, reader, f2rvlm or fragment, got {fine_stage!r}"
        )
        raise typer.Exit(code=2)
    try:
        started = time.perf_counter()
        ffrs = open_ffrs(
            model,
            config=FFRSConfig(k=k),
            url=database_url(),
            fine_stage=fine_stage,  # type: ignore[arg-type]
            reader=reader,
        )
        ffrs.encoder  # noqa: B018 - load the query encoder now, so its time counts as loading
        loaded = time.perf_counter()
        if dialogue is not None:
            prediction = ffrs.query_dialogue(text, dialogue)
        else:
            prediction = ffrs.query(text, k)
        answered = time.perf_counter()
    except (LookupError, ValueError, FileNotFoundError, psycopg.Error, EmbeddedError) as error:
        console.print(f"[red]query failed:[/red] {str(error).strip()}")
        raise typer.Exit(code=1) from error
    stage = ffrs.config.stage2
    console.print(
        {
            "reader": "fine stage: the trained reader",
            "f2rvlm": "fine stage: F2RVLM",
            "fragment": "[yellow]no fine stage: whole recalled fragments[/yellow]",
        }[stage]
    )
    if not prediction.dialogues:
        console.print("nothing matches (the fine stage found no answer in the recalled chats)")
    found = ffrs.dialogues([d.dialogue_id for d in prediction.dialogues[:top]])
    for rank, result in enumerate(prediction.dialogues[:top], start=1):
        console.print(
            f"{rank}. {result.dialogue_id}  recall score {result.score:.3f}  "
            f"utterances {result.utterance_ids}  images {result.image_ids}",
            highlight=False,
            markup=False,
        )
        d = found.get(result.dialogue_id)
        if d is None:
            continue
        # The reader's runs (with their scores; a run whose lines are only the context of the
        # photo the query asked for is shown unmarked), else the runs of the picked ids.
        runs = [
            (sorted(f.utterance_ids), f.confidence, list(f.picked_image_ids or []))
            for f in result.fragments
            if f.confidence is not None and f.utterance_ids
        ] or [(run, None, []) for run in consecutive_runs(result.utterance_ids)]
        answered_lines = set(result.utterance_ids)
        for run, score, run_images in runs:
            head = f"   run {run[0]}-{run[-1]}" + (
                f"  score {score:.2f}" if score is not None else ""
            )
            if not answered_lines & set(run):
                head += "  (context of the photo asked for)"
            console.print(head, highlight=False, markup=False)
            first, last = max(0, run[0] - context), min(len(d.utterances) - 1, run[-1] + context)
            printed: set[int] = set()
            for i in range(first, last + 1):
                u = d.utterances[i]
                mark = ">" if i in answered_lines and run[0] <= i <= run[-1] else " "
                line = f"   {mark} [{i}] {u.speaker}: {u.text}"
                console.print(line if mark == ">" else f"[dim]{line}[/dim]", highlight=False)
                for image in d.images_of(i):
                    if image.index in result.image_ids:
                        printed.add(image.index)
                        console.print(
                            f"     > <image {image.index}> {image.content_text()}",
                            highlight=False,
                            markup=False,
                        )
            for image in d.images:  # a photo the run's context does not reach
                if image.index in run_images and image.index not in printed:
                    index = image.index
                    console.print(
                        f"     > <image {index}> (sent with [{image.utterance_index}]) "
                        f"{image.content_text()}",
                        highlight=False,
                        markup=False,
                    )
    timings = ", ".join(f"{s} {1000 * t:.0f} ms" for s, t in prediction.timings.items())
    console.print(
        f"(loading {loaded - started:.1f} s; answering {answered - loaded:.2f} s: {timings}"
        + (f"; {prediction.tokens_read} prompt tokens read" if prediction.tokens_read else "")
        + ")",
        highlight=False,
    )
