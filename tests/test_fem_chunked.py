"""Long fragments are embedded in chunks that cover every token (issue 14, "the index sees every
word"), with the real offline MiniLM: a text that fits the window is unchanged, a longer one is
read to its end, and the chunked FEM is a version of its own that `ffr search` still serves."""

from __future__ import annotations

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from ffr_lib.cli.search import search as search_command
from ffr_lib.data.dataset import Dataset
from ffr_lib.data.model import Dialogue, Utterance
from ffr_lib.fem.fragment_text import (
    CHUNKS_SUFFIX,
    LEGACY_CHUNKS_SUFFIX,
    ChunkedEmbedder,
    FragmentTextConfig,
    build_embedder,
    embedder_for_version,
    fragment_rows,
)
from ffr_lib.index import index_rows, search, serving_encoder
from ffr_lib.models.encoder import TextEncoder
from ffr_lib.segment import FixedWindowSegmenter, WindowConfig
from ffr_lib.store import write_dataset

FILLER = [
    "Project Manager: so the next item is the shape of the remote control and its buttons",
    "Industrial Designer: I think a curved case fits the hand better than a flat one",
    "Marketing: our survey says young people want something fancy rather than functional",
    "User Interface: we could put the volume and channel buttons on the front with big labels",
    "Project Manager: and what about the colours, do we stick to the company colours",
    "Industrial Designer: rubber on the sides, plastic in the middle, that keeps the cost down",
    "Marketing: people also lose their remotes a lot, maybe a finder function would sell",
    "User Interface: a scroll wheel might be nicer than the usual up and down buttons",
]
LAST = "Marketing: one more thing, the catering company will deliver sushi for the party on Friday"
QUERY = "Who is bringing sushi to the Friday party?"
PARTY = [
    LAST,
    "Project Manager: sushi for the Friday party, lovely, who is bringing it?",
    "Marketing: the caterer is bringing the sushi to the party on Friday",
]


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder.get("minilm")


@pytest.fixture(scope="module")
def chunked(encoder: TextEncoder) -> ChunkedEmbedder:
    return ChunkedEmbedder(encoder)


def _long_text() -> str:
    return "\n".join([*(FILLER * 3), LAST])


def _tokens(encoder: TextEncoder, text: str) -> int:
    return len(encoder.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def test_a_text_that_fits_the_window_keeps_its_exact_vector(encoder, chunked) -> None:
    short = "\n".join(FILLER[:3])
    assert _tokens(encoder, short) <= chunked.budget() == encoder.max_seq_length - 2
    np.testing.assert_array_equal(chunked.encode([short]), encoder.encode([short]))
    two = [short, FILLER[4]]
    np.testing.assert_array_equal(chunked.encode(two), encoder.encode(two))
    assert chunked.chunks(short) == [(short, _tokens(encoder, short))]
    assert chunked.encode([]).shape == (0, encoder.dimension)


def test_a_long_text_is_read_to_its_end(encoder, chunked) -> None:
    text = _long_text()
    assert _tokens(encoder, text) > encoder.max_seq_length  # the plain encoder cuts LAST off
    query = encoder.encode([QUERY])[0]
    truncated = encoder.encode([text])[0]
    # A short text beside the long one: one batched call, every vector in its place.
    vectors = chunked.encode([FILLER[0], text])
    np.testing.assert_allclose(vectors[0], encoder.encode([FILLER[0]])[0], atol=1e-5)
    whole = vectors[1]
    np.testing.assert_allclose(np.linalg.norm(whole), 1.0, atol=1e-5)
    assert float(whole @ query) > float(truncated @ query)
    # The chunks' token-weighted mean, at unit length, is the vector.
    pieces = chunked.chunks(text)
    parts = encoder.encode([p for p, _ in pieces])
    mean = np.array([n for _, n in pieces], np.float32) @ parts
    np.testing.assert_allclose(whole, mean / np.linalg.norm(mean), atol=1e-5)


def test_chunks_cover_every_token_at_line_boundaries_with_one_line_of_overlap(
    encoder, chunked
) -> None:
    text = _long_text()
    pieces = chunked.chunks(text)
    budget = chunked.budget()
    assert len(pieces) >= 2
    assert all(n <= budget and n == _tokens(encoder, p) for p, n in pieces)
    assert sum(n for _, n in pieces) >= _tokens(encoder, text)
    lines = text.split("\n")
    chunk_lines = [p.split("\n") for p, _ in pieces]
    assert sorted({line for c in chunk_lines for line in c}) == sorted(set(lines))
    for before, after in zip(chunk_lines, chunk_lines[1:], strict=False):
        assert before[-1] == after[0]  # one line of overlap
    assert chunk_lines[-1][-1] == LAST


def test_a_single_over_long_line_is_split_by_tokens(encoder, chunked) -> None:
    line = "speaker: " + " ".join(f"word{i}" for i in range(400))
    text = f"{FILLER[0]}\n{line}\n{FILLER[1]}"
    pieces = chunked.chunks(text)
    budget = chunked.budget()
    assert all(n <= budget for _, n in pieces)
    assert sum(n for _, n in pieces) >= _tokens(encoder, text)
    joined = " ".join(p for p, _ in pieces)
    assert all(f"word{i}" in joined.split() for i in range(400))


def test_the_prompt_counts_against_the_window(encoder) -> None:
    class Prompted:
        """MiniLM with an e5-style passage prompt."""

        tokenizer, max_seq_length = encoder.tokenizer, encoder.max_seq_length
        dimension, model_version = encoder.dimension, "prompted@1"
        prompts = {"passage": "passage: "}

    embedder = ChunkedEmbedder(Prompted())
    assert embedder.budget("passage") == embedder.budget() - _tokens(encoder, "passage: ")


def test_versions_differ_and_the_config_picks_the_embedder(encoder, chunked) -> None:
    assert chunked.model_version == encoder.model_version + CHUNKS_SUFFIX
    assert chunked.model_version != encoder.model_version
    assert chunked.dimension == encoder.dimension and chunked.spec == "minilm"
    default = build_embedder(encoder)
    assert isinstance(default, ChunkedEmbedder) and default.model_version == chunked.model_version
    assert build_embedder(encoder, FragmentTextConfig(long_text="truncate")) is encoder
    # An embedder passed in again (the evaluation indexes with the serving one) is not wrapped
    # twice, and the config still decides.
    assert build_embedder(chunked).model_version == chunked.model_version
    assert build_embedder(chunked, FragmentTextConfig(long_text="truncate")) is encoder
    # The query side of each version, rebuilt from the encoder.
    assert embedder_for_version(encoder, encoder.model_version) is encoder
    found = embedder_for_version(encoder, chunked.model_version)
    assert isinstance(found, ChunkedEmbedder) and found.text is encoder
    assert embedder_for_version(encoder, "minilm@000000000000+parts") is None
    # An index built before parts (0008) still serves its queries.
    legacy = embedder_for_version(encoder, encoder.model_version + LEGACY_CHUNKS_SUFFIX)
    assert isinstance(legacy, ChunkedEmbedder)
    assert legacy.model_version == encoder.model_version + LEGACY_CHUNKS_SUFFIX


def _meeting(did: str, topic: list[str], last: list[str]) -> Dialogue:
    lines = [*(topic * 3), *last]
    return Dialogue(
        id=did,
        source="test",
        utterances=[
            Utterance(index=i, speaker=line.split(":")[0], text=line.split(": ", 1)[1])
            for i, line in enumerate(lines)
        ],
    )


@pytest.mark.db
def test_search_serves_a_chunked_index(db_url: str, encoder) -> None:
    other = [
        "Chair: the committee will now hear about the school budget for next year",
        "Member: teachers' salaries take most of it, and the buildings need repairs",
    ]
    dialogues = [
        # The party comes up only at the end of a fragment longer than the window.
        _meeting("design", FILLER, PARTY),
        _meeting("budget", other * 4, ["Member: and the buses need new tyres before winter"]),
    ]
    write_dataset(Dataset(dialogues=dialogues), url=db_url)
    window = FixedWindowSegmenter(WindowConfig(size=100))
    rows = [r for d in dialogues for r in fragment_rows(d, window.segment(d))]
    assert any(_tokens(encoder, r.text) > encoder.max_seq_length for r in rows)
    stats = index_rows(rows, build_embedder(encoder), url=db_url)
    assert stats.embedding_model == encoder.model_version + CHUNKS_SUFFIX and stats.activated

    served = serving_encoder(db_url)
    assert isinstance(served, ChunkedEmbedder)
    assert served.model_version == stats.embedding_model
    hits = search(QUERY, k=2, url=db_url)
    assert hits[0].dialogue_id == "design"
    assert all(h.embedding_model == stats.embedding_model for h in hits)

    app = typer.Typer()
    app.command("search")(search_command)
    app.command("noop")(lambda: None)
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["search", QUERY, "--k", "1"])
    assert result.exit_code == 0, result.output
    assert CHUNKS_SUFFIX in result.output and "design" in result.output
