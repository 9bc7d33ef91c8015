"""`ffr retrieve --dialogue ID --query TEXT [--model ADAPTER]`: run F2RVLM over one stored
dialogue and print the fragment (utterance ids and lines, image ids and captions).

The dialogue comes from Postgres (what `ffr ingest` stored) or, with ``--dataset PATH``, from a
file read by one of the readers. The model is an adapter folder saved by training (default:
the one the training assets write under ``$FFR_HOME/f2rvlm/grpo/adapter``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from ffr_lib.data.model import Dialogue


def default_model_dir() -> Path:
    """Where the training assets leave the final (GRPO) adapter."""
    from ffr_lib.settings import get_settings

    return get_settings().home / "f2rvlm" / "grpo" / "adapter"


def load_dialogue(dialogue_id: str, dataset: Path | None, fmt: str) -> Dialogue:
    """The dialogue ``dialogue_id`` from a dataset file or from Postgres."""
    from ffr_lib.data.errors import InputError

    if dataset is not None:
        from ffr_lib.data import readers

        dialogues = readers.read_dataset(dataset, fmt).dialogue_by_id()
    else:
        from ffr_lib.store.dialogues import load_dialogues

        dialogues = {d.id: d for d in load_dialogues([dialogue_id])}
    if dialogue_id not in dialogues:
        raise InputError(f"no dialogue with id {dialogue_id!r}", file=dataset, field="--dialogue")
    return dialogues[dialogue_id]


def retrieve(
    dialogue_id: str = typer.Option(..., "--dialogue", "-d", help="dialogue id"),
    query: str = typer.Option(..., "--query", "-q", help="what to find"),
    model: Path | None = typer.Option(
        None, "--model", "-m", help="trained adapter folder (default: the GRPO asset's)"
    ),
    dataset: Path | None = typer.Option(
        None, "--dataset", help="read the dialogue from this file instead of Postgres"
    ),
    fmt: str = typer.Option("canonical", "--format", "-f", help="reader for --dataset"),
) -> None:
    """Print the fragment of one dialogue that answers QUERY (F2RVLM, single-dialogue)."""
    from rich.console import Console

    from ffr_lib.data.errors import InputError
    from ffr_lib.f2rvlm.retriever import retrieve as run_retrieve

    console = Console()
    folder = model or default_model_dir()
    if not (folder / "ffr_adapter.json").is_file():
        console.print(
            f"[red]no trained F2RVLM adapter at {folder}[/red]: materialize the f2rvlm assets "
            "or pass --model"
        )
        raise typer.Exit(code=1)
    try:
        dialogue = load_dialogue(dialogue_id, dataset, fmt)
    except InputError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(code=1) from error
    utterance_ids, image_ids = run_retrieve(dialogue, query, folder)
    console.print(f"utterances: {utterance_ids}")
    console.print(f"images: {image_ids}")
    for i in utterance_ids:
        u = dialogue.utterances[i]
        console.print(f"  [{i}] {u.speaker}: {u.text}", highlight=False)
    for j in image_ids:
        image = dialogue.images[j]
        console.print(
            f"  <image {j}> (utterance {image.utterance_index}) {image.content_text()}",
            highlight=False,
        )
    if not utterance_ids and not image_ids:
        console.print("nothing in this dialogue answers the query")
