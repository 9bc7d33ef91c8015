"""QMSum reader: one dialogue per meeting, span gold, topic reference, artefacts cleaned, and
malformed spans skipped per query (never for the whole file)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ffr_lib.cli import app
from ffr_lib.data.errors import InputError
from ffr_lib.data.model import QueryType
from ffr_lib.data.readers import read_dataset
from ffr_lib.data.readers.qmsum import clean_text, read_qmsum, topic_boundaries
from ffr_lib.segment import evaluate_segmentation, reference_boundaries
from ffr_lib.store import count_rows, load_dialogues

FIXTURES = Path(__file__).parent / "fixtures" / "readers"
QMSUM = FIXTURES / "qmsum"
REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "qmsum"


@pytest.fixture(scope="module")
def fixture_data():
    return read_dataset(QMSUM, "qmsum")


def test_one_dialogue_per_meeting_with_split_in_the_id(fixture_data) -> None:
    ds = fixture_data
    assert [d.id for d in ds.dialogues] == [
        "qmsum:train:Demo001",
        "qmsum:val:Demo002",
        "qmsum:val:Demo003",
    ]
    meeting = ds.dialogues[1]
    assert meeting.source == "qmsum"
    assert len(meeting.utterances) == 18
    assert [u.index for u in meeting.utterances] == list(range(18))
    assert meeting.speakers[:2] == ["Project Manager", "Industrial Designer"]
    assert meeting.metadata["split"] == "val" and meeting.metadata["meeting"] == "Demo002"
    assert meeting.utterances[3].speaker == "Industrial Designer"
    assert "rechargeable battery" in meeting.utterances[3].text


def test_artefacts_are_cleaned_and_raw_text_kept(fixture_data) -> None:
    meeting = fixture_data.dialogues[1]
    assert meeting.utterances[0].text == "Right , is everybody here ?"
    assert meeting.utterances[1].text == ""  # the turn held only "{vocalsound}": id kept
    assert meeting.utterances[4].text == "Rechargeable you mean with a charging cradle ?"
    raw = meeting.metadata["raw_text"]
    assert raw["1"] == "{vocalsound}"
    assert raw["4"] == "Rechargeable {disfmarker} you mean with a charging cradle ?"
    assert "3" not in raw  # unchanged turns are not repeated
    assert not any("{" in u.text for d in fixture_data.dialogues for u in d.utterances)
    assert clean_text("a {gap} b  {pause}{comment} c") == "a b c"
    assert clean_text("keep [Laughter.] and {not an artefact}") == (
        "keep [Laughter.] and {not an artefact}"
    )


def test_specific_queries_gold_is_the_union_of_spans(fixture_data) -> None:
    queries = {q.id: q for q in fixture_data.queries}
    assert len(queries) == 7
    battery = queries["qmsum:val:Demo002:q0"]
    assert battery.dialogue_id == "qmsum:val:Demo002"
    assert battery.type is QueryType.UTTERANCE_ONLY
    assert battery.gold_utterance_ids == [3, 4, 5, 6, 7, 8, 16, 17]  # inclusive ends, two spans
    assert battery.gold_image_ids == []
    assert battery.metadata["spans"] == [[3, 8], [16, 17]]
    assert battery.metadata["answer"].startswith("A rechargeable battery")
    assert queries["qmsum:val:Demo003:q2"].gold_utterance_ids == [4, 5]


def test_general_queries_are_skipped_and_counted(fixture_data) -> None:
    ds = fixture_data
    assert ds.metadata["general_queries_skipped"] == 4
    assert [d.metadata["general_queries_skipped"] for d in ds.dialogues] == [1, 2, 1]
    assert not any("whole meeting" in q.text for q in ds.queries)
    assert ds.metadata["meetings"] == 3 and ds.metadata["specific_queries"] == 7
    assert ds.metadata["skipped_queries"] == []


def test_topic_spans_are_the_reference_segmentation(fixture_data) -> None:
    meeting = fixture_data.dialogues[1]
    # Spans 0-2, 3-8, 9-13, 16-17 (a repeated topic, and a gap 14-15 that is its own segment).
    assert meeting.metadata["topic_boundaries"] == [3, 9, 14, 16]
    assert reference_boundaries(meeting) == [3, 9, 14, 16]
    assert [t["topic"] for t in meeting.metadata["topics"]][1] == "Battery of the remote control"
    perfect = evaluate_segmentation([meeting], [[3, 9, 14, 16]])
    assert perfect["pk"] == 0.0 and perfect["window_diff"] == 0.0
    assert topic_boundaries([(0, 4), (7, 9)], 12) == [5, 7, 10]


def test_malformed_spans_skip_only_their_query() -> None:
    ds = read_dataset(FIXTURES / "qmsum_spans", "qmsum")
    assert [q.id for q in ds.queries] == ["qmsum:val:Odd001:q0", "qmsum:val:Odd001:q7"]
    assert ds.queries[1].gold_utterance_ids == [1, 2]
    file = str(FIXTURES / "qmsum_spans" / "val" / "Odd001.json")
    skipped = {s["record"]: s for s in ds.metadata["skipped_queries"]}
    expected = {
        "specific_query_list[1]": ("relevant_text_span[0]", "outside the meeting"),
        "specific_query_list[2]": ("relevant_text_span[0]", "start 5 > end 3"),
        "specific_query_list[3]": ("relevant_text_span[0][1]", "'five' is not a turn index"),
        "specific_query_list[4]": ("relevant_text_span[0]", "expected a [start, end] pair"),
        "specific_query_list[5]": ("relevant_text_span", "required field is missing"),
        "specific_query_list[6]": ("query", "non-empty string"),
    }
    assert set(skipped) == set(expected)
    for record, (field, reason) in expected.items():
        problem = skipped[record]
        assert problem["file"] == file and problem["field"] == field
        assert reason in problem["reason"]
        assert f"file {file}" in problem["message"] and record in problem["message"]
        assert f"field '{field}'" in problem["message"]
    assert len(ds.metadata["warnings"]) == 6
    # A bad topic span drops that topic only; the rest still gives the reference.
    meeting = ds.dialogues[0]
    assert [t["topic"] for t in meeting.metadata["topics"]] == ["Weather", "Trains"]
    assert meeting.metadata["topic_boundaries"] == [3]
    assert "topic_list[1]" in meeting.metadata["reader_warnings"][0]


def test_malformed_spans_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"):
        read_dataset(FIXTURES / "qmsum_spans" / "val" / "Odd001.json", "qmsum")
    assert "start 5 > end 3" in caplog.text and "specific_query_list[2]" in caplog.text


def test_paths_one_file_a_split_folder_or_the_root(tmp_path: Path) -> None:
    one = read_dataset(QMSUM / "val" / "Demo003.json", "qmsum")
    assert [d.id for d in one.dialogues] == ["qmsum:val:Demo003"] and len(one.queries) == 3
    val = read_dataset(QMSUM / "val", "qmsum")
    assert [d.id for d in val.dialogues] == ["qmsum:val:Demo002", "qmsum:val:Demo003"]
    assert [d.id for d in read_qmsum(QMSUM, split="train").dialogues] == ["qmsum:train:Demo001"]
    assert len(read_dataset(QMSUM, "qmsum", limit=2).dialogues) == 2
    with pytest.raises(InputError, match="split folder 'test'"):
        read_qmsum(QMSUM, split="test")
    # A file outside a split folder takes its folder's name as the split.
    other = tmp_path / "meetings"
    other.mkdir()
    shutil.copy(QMSUM / "val" / "Demo002.json", other / "Team7.json")
    assert read_dataset(other, "qmsum").dialogues[0].id == "qmsum:meetings:Team7"


def test_default_source_is_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "qmsum"
    shutil.copytree(QMSUM, root)
    (root / "test").mkdir()  # held out: never read by default
    (root / "test" / "Secret.json").write_text(json.dumps({"meeting_transcripts": []}))
    monkeypatch.setenv("FFR_QMSUM_DIR", str(root))
    assert len(read_dataset("-", "qmsum").dialogues) == 3
    assert [d.id for d in read_qmsum(None, split="val").dialogues] == [
        "qmsum:val:Demo002",
        "qmsum:val:Demo003",
    ]


@pytest.mark.skipif(not (REAL / "val").is_dir(), reason="QMSum data not present")
def test_real_val_split() -> None:
    """The real QMSum val folder (read in place): 35 meetings, 237 specific queries (README)."""
    ds = read_qmsum(REAL, split="val")
    assert len(ds.dialogues) == 35
    assert len(ds.queries) == 237
    assert ds.metadata["general_queries_skipped"] == 35
    assert ds.metadata["skipped_queries"] == []
    assert sum(len(q.metadata["spans"]) > 1 for q in ds.queries) == 11
    lengths = sorted(len(d.utterances) for d in ds.dialogues)
    assert lengths[len(lengths) // 2] == 541
    assert all(d.metadata.get("topic_boundaries") for d in ds.dialogues)
    assert not any("{vocalsound}" in u.text for d in ds.dialogues for u in d.utterances)


@pytest.mark.db
def test_ffr_ingest_qmsum_reports_skipped_queries(db_url: str) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", str(FIXTURES / "qmsum_spans"), "--format", "qmsum"])
    assert result.exit_code == 0, result.output
    assert "start 5 > end 3" in result.output and "specific_query_list[2]" in result.output
    assert "1 general queries skipped" in result.output
    counts = count_rows(db_url)
    assert counts["dialogues"] == 1 and counts["queries"] == 2
    result = runner.invoke(app, ["ingest", str(QMSUM), "--format", "qmsum"])
    assert result.exit_code == 0, result.output
    stored = load_dialogues(["qmsum:val:Demo002"], url=db_url)[0]
    assert stored.metadata["topic_boundaries"] == [3, 9, 14, 16]
    assert stored.metadata["raw_text"]["1"] == "{vocalsound}" and stored.utterances[1].text == ""
