"""`ffr db ...` and `ffr ingest` through typer's CliRunner, against real embedded servers."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ffr_lib.cli import app
from ffr_lib.cli import ingest as ingest_module
from ffr_lib.data.dataset import Dataset
from ffr_lib.data.errors import InputError
from ffr_lib.db import EmbeddedConfig, EmbeddedServer, free_port
from ffr_lib.db.migrate import discover
from ffr_lib.settings import get_settings
from ffr_lib.store import content_hashes, count_rows, write_dataset

pytestmark = pytest.mark.db

runner = CliRunner()
Make = Callable[..., Dataset]


def _rows(output: str, table: str) -> int:
    match = re.search(rf"{table}\s*│\s*([\d,]+)", output)
    assert match, f"no row for {table} in:\n{output}"
    return int(match.group(1).replace(",", ""))


def test_db_status_reports_versions_size_and_counts(db_url: str, synthetic_dataset: Make) -> None:
    write_dataset(synthetic_dataset(3, 7, images_every=7), url=db_url)
    result = runner.invoke(app, ["db", "status"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert re.search(r"server\s+PostgreSQL 1[5-9]", out)
    assert re.search(r"pgvector\s+0\.(8|9|\d\d)", out)
    assert re.search(r"database size\s+\d+ (kB|MB)", out)
    assert f"{len(discover())} applied, 0 pending" in out
    assert (_rows(out, "dialogues"), _rows(out, "utterances"), _rows(out, "images")) == (3, 21, 3)
    assert _rows(out, "queries") == 3 and _rows(out, "fragments") == 0
    password = db_url.split(":")[2].split("@")[0]
    assert password not in out


def test_db_url_redacts_unless_asked(db_url: str) -> None:
    password = db_url.split(":")[2].split("@")[0]
    plain = runner.invoke(app, ["db", "url"])
    assert plain.exit_code == 0
    assert password not in plain.output and "postgres:***@" in plain.output
    shown = runner.invoke(app, ["db", "url", "--show-password"])
    assert shown.output.strip() == db_url


def test_db_migrate_on_a_blank_database(blank_db_url: str) -> None:
    first = runner.invoke(app, ["db", "migrate"])
    assert first.exit_code == 0, first.output
    assert first.output.startswith("applied: 0001_core_schema")
    second = runner.invoke(app, ["db", "migrate"])
    assert second.exit_code == 0 and "up to date" in second.output


def test_db_status_fails_cleanly_when_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FFR_DATABASE_URL", f"postgresql://u:topsecret@127.0.0.1:{free_port()}/x")
    result = runner.invoke(app, ["db", "status"])
    assert result.exit_code == 1
    assert "topsecret" not in result.output and "error" in result.output


def test_db_up_status_reuse_down_on_a_fresh_data_folder(
    pgdata_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.delenv("FFR_DATABASE_URL", raising=False)
    monkeypatch.setenv("FFR_PGDATA", str(pgdata_dir))
    monkeypatch.setenv("FFR_PG_PORT", str(port))
    server = EmbeddedServer(EmbeddedConfig(pgdata=pgdata_dir, port=port))
    try:
        not_yet = runner.invoke(app, ["db", "status"])
        assert not_yet.exit_code == 1 and "ffr db up" in not_yet.output

        up = runner.invoke(app, ["db", "up"])
        assert up.exit_code == 0, up.output
        assert "embedded server started" in up.output
        assert "0001_core_schema" in up.output
        assert f"127.0.0.1:{port}/ffr" in up.output and server.password() not in up.output
        pid = (pgdata_dir / "postmaster.pid").read_text().split()[0]

        status = runner.invoke(app, ["db", "status"])
        assert status.exit_code == 0, status.output
        assert "pgvector" in status.output and _rows(status.output, "dialogues") == 0

        again = runner.invoke(app, ["db", "up"])
        assert again.exit_code == 0 and "already running" in again.output
        assert "none (up to date)" in again.output
        assert (pgdata_dir / "postmaster.pid").read_text().split()[0] == pid

        down = runner.invoke(app, ["db", "down"])
        assert down.exit_code == 0 and "stopped" in down.output
        assert not server.is_running()
        assert runner.invoke(app, ["db", "status"]).exit_code == 1
        assert "was not running" in runner.invoke(app, ["db", "down"]).output
    finally:
        server.stop()


def test_ingest_prints_counts_and_is_idempotent(
    db_url: str, synthetic_dataset: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[Path, str, int | None]] = []

    def fake_read(path: Path, fmt: str, limit: int | None) -> Dataset:
        seen.append((path, fmt, limit))
        return synthetic_dataset(limit or 50, 6)

    monkeypatch.setattr(ingest_module, "read", fake_read)
    first = runner.invoke(
        app, ["ingest", "some/file.jsonl", "--format", "canonical", "--limit", "7"]
    )
    assert first.exit_code == 0, first.output
    assert seen == [(Path("some/file.jsonl"), "canonical", 7)]
    assert re.search(r"dialogues\s*│\s*0\s*│\s*7", first.output)
    assert re.search(r"utterances\s*│\s*0\s*│\s*42", first.output)
    hashes = content_hashes(db_url)
    second = runner.invoke(
        app, ["ingest", "some/file.jsonl", "--format", "canonical", "--limit", "7"]
    )
    assert second.exit_code == 0
    assert "nothing changed" in second.output
    assert re.search(r"dialogues\s*│\s*7\s*│\s*7", second.output)
    assert content_hashes(db_url) == hashes


def test_ingest_bad_input_exits_1_and_writes_nothing(
    db_url: str, synthetic_dataset: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_dataset(synthetic_dataset(2), url=db_url)
    before = count_rows(db_url)

    def bad_read(path: Path, fmt: str, limit: int | None) -> Dataset:
        raise InputError("expected a string", file=path, record=3, field="text")

    monkeypatch.setattr(ingest_module, "read", bad_read)
    result = runner.invoke(app, ["ingest", "x.jsonl", "--format", "canonical"])
    assert result.exit_code == 1
    assert "x.jsonl" in result.output and "record 3" in result.output and "'text'" in result.output
    assert count_rows(db_url) == before


def test_ingest_unknown_format_exits_1(db_url: str) -> None:
    result = runner.invoke(app, ["ingest", "x", "--format", "no-such-format"])
    assert result.exit_code == 1
    assert "no-such-format" in result.output


def test_ingest_real_photochat_twice_gives_identical_counts(db_url: str) -> None:
    photochat = get_settings().photochat_dir
    args = ["ingest", str(photochat), "--format", "photochat", "--limit", "40"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    counts, hashes = count_rows(db_url), content_hashes(db_url)
    assert counts["dialogues"] == 40 and counts["utterances"] > 40 * 5
    assert counts["images"] >= 40  # one shared photo per dialogue
    second = runner.invoke(app, args)
    assert second.exit_code == 0 and "nothing changed" in second.output
    assert count_rows(db_url) == counts and content_hashes(db_url) == hashes


def test_ingest_real_chitchat_twice_gives_identical_counts(db_url: str) -> None:
    args = ["ingest", "-", "--format", "chitchat", "--limit", "60"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    counts, hashes = count_rows(db_url), content_hashes(db_url)
    assert counts["dialogues"] == 60 and counts["utterances"] > 60 * 3
    assert counts["images"] == 0  # chitchat is text only
    second = runner.invoke(app, args)
    assert second.exit_code == 0 and "nothing changed" in second.output
    assert count_rows(db_url) == counts and content_hashes(db_url) == hashes
