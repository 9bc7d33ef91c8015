"""`ffr search "TEXT" [--k N] [--dialogue ID ...] [--speaker S] [--since T] [--until T]
[--hybrid | --vector]`: embed the query with the serving FEM and call ``ffr.hybrid_search``
(without filters, by default) or ``ffr.search_fragments``; print the fragments found."""

from __future__ import annotations

from datetime import datetime

import typer


def search(
    text: str = typer.Argument(..., help="what to look for"),
    k: int = typer.Option(10, "--k", "-k", min=1, max=1000, help="fragments to return"),
    dialogue: list[str] | None = typer.Option(
        None, "--dialogue", "-d", help="only these dialogue ids (repeatable)"
    ),
    hybrid: bool | None = typer.Option(
        None,
        "--hybrid/--vector",
        help="fuse full-text and vector search (reciprocal rank fusion; the default without "
        "filters: it recalls more on real and built chats, BENCHMARKS.md), or vector search "
        "only (the default with filters)",
    ),
    speaker: str | None = typer.Option(None, "--speaker", help="only fragments where S speaks"),
    since: datetime | None = typer.Option(None, "--since", help="fragments ending at/after T"),
    until: datetime | None = typer.Option(None, "--until", help="fragments starting at/before T"),
) -> None:
    """Find the fragments of the indexed chats closest to TEXT."""
    import psycopg
    from rich.console import Console
    from rich.table import Table

    from ffr_lib.db import EmbeddedError, database_url
    from ffr_lib.index import search as run_search

    console = Console()
    filtered = bool(dialogue or speaker or since or until)
    if hybrid and filtered:
        console.print("[red]--hybrid takes no filters (--dialogue/--speaker/--since/--until)")
        raise typer.Exit(code=2)
    if hybrid is None:
        hybrid = not filtered
    try:
        hits = run_search(
            text,
            k,
            dialogue_ids=dialogue or None,
            speaker=speaker,
            since=since,
            until=until,
            hybrid=hybrid,
            url=database_url(),
        )
    except (LookupError, ValueError, psycopg.Error, EmbeddedError) as exc:
        console.print(f"[red]search failed:[/red] {str(exc).strip()}")
        raise typer.Exit(code=1) from exc
    if not hits:
        console.print("no fragment matches")
        return
    table = Table(title=f"{len(hits)} fragments ({hits[0].embedding_model})", show_lines=True)
    for column in ("#", "dialogue", "fragment", "utterances", "images", "score", "text"):
        table.add_column(column, overflow="fold")
    for rank, hit in enumerate(hits, start=1):
        table.add_row(
            str(rank),
            hit.dialogue_id,
            hit.fragment_id,
            _ids(hit.utterance_ids),
            _ids(hit.image_ids),
            f"{hit.score:.4f}",
            hit.text,
        )
    console.print(table)


def _ids(ids: list[int]) -> str:
    """Compact ids: [3, 4, 5, 9] -> '3-5, 9'."""
    if not ids:
        return "-"
    runs: list[list[int]] = [[ids[0], ids[0]]]
    for i in ids[1:]:
        if i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
