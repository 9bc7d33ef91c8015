"""`ffr search` end to end: index a few dialogues with the real MiniLM FEM, then search from the
command line (the command embeds the query with the serving FEM, found through the index)."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from ffr_lib.cli.search import _ids, search
from ffr_lib.data.dataset import Dataset
from ffr_lib.data.model import Dialogue, Utterance
from ffr_lib.fem.fragment_text import fragment_rows
from ffr_lib.segment import FixedWindowSegmenter, WindowConfig

pytestmark = pytest.mark.db


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("search")(search)
    app.command("noop")(lambda: None)  # two commands: typer then dispatches by name
    return app


def _dialogue(did: str, lines: list[str]) -> Dialogue:
    return Dialogue(
        id=did,
        source="test",
        utterances=[Utterance(index=i, speaker="ab"[i % 2], text=t) for i, t in enumerate(lines)],
    )


def test_ids_are_compact() -> None:
    assert _ids([3, 4, 5, 9]) == "3-5, 9" and _ids([]) == "-" and _ids([7]) == "7"


def test_search_command(db_url: str) -> None:
    from ffr_lib.index import index_rows
    from ffr_lib.models.encoder import TextEncoder
    from ffr_lib.store import write_dataset

    runner = CliRunner(env={"COLUMNS": "200"})
    result = runner.invoke(_app(), ["search", "anything"])
    assert result.exit_code == 1 and "no FEM version is serving" in result.output

    dialogues = [
        _dialogue(
            "pets",
            [
                "my dog chewed the sofa",
                "bad dog!",
                "we need a dog trainer",
                "the weather is nice",
                "let's go out",
                "sure",
            ],
        ),
        _dialogue(
            "food",
            [
                "I cooked pasta tonight",
                "with tomato sauce?",
                "yes and basil",
                "my train was late",
                "again?",
                "yes",
            ],
        ),
    ]
    write_dataset(Dataset(dialogues=dialogues), url=db_url)
    segmenter = FixedWindowSegmenter(WindowConfig(size=3))
    rows = [r for d in dialogues for r in fragment_rows(d, segmenter.segment(d))]
    index_rows(rows, TextEncoder.get("minilm"), url=db_url)

    result = runner.invoke(_app(), ["search", "puppy destroyed furniture", "--k", "2"])
    assert result.exit_code == 0, result.output
    assert "2 fragments (minilm@" in result.output
    first_row = result.output.split("│ 1 ")[1]
    assert first_row.split("│")[1].strip() == "pets" and "0-2" in first_row

    result = runner.invoke(_app(), ["search", "spaghetti", "-d", "food", "-k", "5"])
    assert result.exit_code == 0 and "pets" not in result.output and "food" in result.output

    result = runner.invoke(_app(), ["search", "tomato sauce", "--hybrid", "--k", "1"])
    assert result.exit_code == 0 and "tomato sauce" in result.output

    result = runner.invoke(_app(), ["search", "x", "--hybrid", "-d", "food"])
    assert result.exit_code == 2
