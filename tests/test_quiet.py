"""Library noise stays off the terminal unless asked (`ffr --verbose`): bm25s's per-index debug
line and transformers' "Loading weights" bar, each in a fresh interpreter (both libraries read
their switches at import), and the same code with verbose on shows them (the check can fail)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ffr_lib.cli import app
from ffr_lib.quiet import QUIET_ENVIRONMENT

SCRIPT = """
import logging, sys
from ffr_lib.quiet import quiet_libraries
logging.basicConfig(level=logging.DEBUG)
quiet_libraries(verbose=sys.argv[2] == "verbose")
import bm25s
for _ in range(3):
    bm25s.BM25().index([["lake"], ["hike"]], show_progress=False)
from transformers import BertConfig, BertModel
BertModel.from_pretrained(sys.argv[1])
print("loaded")
"""


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    config = BertConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        vocab_size=99,
    )
    BertModel(config).save_pretrained(folder)
    return folder


def _run(model: Path, mode: str) -> str:
    # A fresh environment without the switches: an `ffr` command run in this test process
    # (CliRunner) sets them in os.environ, and a child would inherit them.
    env = {k: v for k, v in os.environ.items() if k not in QUIET_ENVIRONMENT}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(model), mode],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "loaded" in done.stdout
    return done.stdout + done.stderr


def test_library_noise_is_off_by_default(tiny_bert: Path) -> None:
    out = _run(tiny_bert, "quiet")
    assert "Building index from tokens" not in out
    assert "Loading weights" not in out


def test_verbose_lets_library_output_through(tiny_bert: Path) -> None:
    out = _run(tiny_bert, "verbose")
    assert out.count("Building index from tokens") == 3
    assert "Loading weights" in out


def test_cli_has_a_verbose_switch() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "--verbose" in result.output
