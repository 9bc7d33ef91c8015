"""One evaluation run: every chosen system on a dataset, scored and written as a report.

The one entry point behind `ffr eval` and the `evaluation_report` asset.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from ffr_lib.data.readers import read_dataset
from ffr_lib.db import database_url, migrate
from ffr_lib.evaluation.baselines import build_systems
from ffr_lib.evaluation.corpus_queries import SUFFIX, corpus_style
from ffr_lib.evaluation.harness import Corpus, HarnessConfig, default_groupers, evaluate
from ffr_lib.evaluation.locomo import evaluate_locomo, read_locomo_dataset
from ffr_lib.evaluation.report import ReportResult, write_report
from ffr_lib.ffrs.api import resolve_model
from ffr_lib.mldr.splits import build_splits, write_splits
from ffr_lib.segment.stage import segmentation_path
from ffr_lib.settings import get_settings

log = logging.getLogger(__name__)


class EvaluationConfig(BaseModel):
    dataset: Literal["mldr", "locomo"] = "mldr"
    split: str = Field("val", description="MLDR split: val | test")
    path: Path | None = Field(None, description="dataset file/folder (LoCoMo json; MLDR folder)")
    systems: list[str] | None = Field(None, description="systems to run (None = all)")
    k: int = Field(20, ge=1, description="fragments FEM/FFRS recall")
    limit: int | None = Field(
        None, ge=1, description="N queries only, spread evenly over the split (None = all)"
    )
    reader_limit: int | None = Field(
        None,
        ge=1,
        description="queries the F2RVLM systems (f2rvlm, f2rvlm-sft, ffrs) score, spread over "
        "the evaluated ones (None = all); every system is also scored on exactly those",
    )
    model: str | None = Field(None, description="trained F2RVLM adapter folder or profile name")
    modes: list[Literal["single", "corpus"]] = Field(default_factory=lambda: ["single", "corpus"])
    run_name: str | None = None
    reports_dir: Path | None = Field(None, description="default <repo>/reports")
    build: bool = Field(True, description="build missing MLDR splits from PhotoChat")
    mlflow: bool = True
    corpus_queries: Literal["both", "as-written", "corpus-style"] = Field(
        "both",
        description="MLDR corpus mode: score the queries as written (dataset <name>), their "
        "corpus-style variants that name their chat (dataset <name>-corpus-style, see "
        "ffr_lib.evaluation.corpus_queries), or both",
    )


def mldr_split(split: str, path: Path | None, build: bool) -> tuple[Any, Any]:
    """The MLDR split to evaluate and a DIFFERENT split to fit priors on (train when present).
    Builds the splits from PhotoChat when the files are missing and ``build`` is set."""
    folder = path or get_settings().home / "data" / "mldr" / split
    if not folder.exists():
        if path is not None or not build:
            raise FileNotFoundError(
                f"no MLDR split at {folder}: materialize the mldr_splits asset, or pass --build"
            )
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


def run_evaluation(config: EvaluationConfig, url: str | None = None) -> ReportResult:
    """Prepare the corpus (index what the serving FEM lacks), run the systems, write the report.
    Raises FileNotFoundError / ValueError for a missing dataset or an unknown system."""
    harness = HarnessConfig(
        modes=config.modes, limit=config.limit, reader_limit=config.reader_limit
    )
    spec = resolve_model(config.model)
    variant_counts: dict[str, int] | None = None
    if config.dataset == "mldr":
        data, prior = mldr_split(config.split, config.path, config.build)
        name = f"mldr-{config.split}"
    else:
        if config.path is None:
            raise ValueError("the locomo dataset needs a path (locomo10.json)")
        data, prior, name = read_locomo_dataset(config.path), None, "locomo"
    systems = build_systems(config.systems, model=spec, k=config.k, prior_data=prior)
    url = url or database_url()
    migrate(url)
    corpus = Corpus.prepare(data, url)
    if config.dataset == "locomo":
        output = evaluate_locomo(data, systems, corpus=corpus, config=harness)
    else:
        # The queries as written score in every chosen mode unless only the corpus-style
        # variants are wanted, in which case they keep the single mode only.
        as_written = harness
        if config.corpus_queries == "corpus-style":
            as_written = harness.model_copy(
                update={"modes": [m for m in harness.modes if m != "corpus"]}
            )
        output = evaluate(
            data,
            systems,
            corpus,
            name=name,
            config=as_written,
            groupers=default_groupers(harness.length_buckets),
        )
        if config.corpus_queries != "as-written" and "corpus" in config.modes:
            variants, variant_counts = corpus_style(data)
            log.info("corpus-style variants: %s", variant_counts)
            if variants.queries:
                extra = evaluate(
                    variants,
                    systems,
                    corpus,
                    name=f"{name}-{SUFFIX}",
                    config=harness.model_copy(update={"modes": ["corpus"]}),
                    groupers=default_groupers(harness.length_buckets),
                )
                output.metrics.update(extra.metrics)
                output.runs.update(extra.runs)
    result = write_report(
        output.metrics,
        run_name=config.run_name,
        reports_dir=config.reports_dir,
        runs=output.runs,
        mlflow=config.mlflow,
        params={
            "dataset": name,
            "k": config.k,
            "limit": config.limit,
            "reader_limit": config.reader_limit,
            "model": str(spec),
            "modes": ",".join(config.modes),
            "fem": corpus.embedding_model,
        },
    )
    if variant_counts is not None:
        c = variant_counts
        append_section(
            result,
            f"\nCorpus-style variants of {name}: {c['kept']} of {c['queries']} queries kept "
            f"({c['negative']} negative left out, {c['ambiguous']} whose chat could not be "
            "described uniquely).\n",
        )
    if config.dataset == "mldr":
        append_segmentation(result, f"mldr-{config.split}")
    return result


def append_section(result: ReportResult, section: str) -> None:
    """Add ``section`` to the report (returned markdown and both report.md files)."""
    result.markdown += section
    for folder in (result.run_dir, result.latest_dir):
        report = folder / "report.md"
        if report.is_file():
            report.write_text(report.read_text(encoding="utf-8") + section, encoding="utf-8")


def append_segmentation(result: ReportResult, batch: str) -> None:
    """Add the batch's segmentation figures (segmenter vs fixed windows) to the report."""
    import json

    path = segmentation_path(batch)
    if not path.is_file():
        return
    scores = json.loads(path.read_text(encoding="utf-8"))
    lines = [
        "",
        f"## Fragment segmentation on {batch} (lower is better)",
        "",
        "| segmenter | Pk | WindowDiff | segments / dialogue | reference segments |",
        "|---|---|---|---|---|",
    ]
    for name, s in scores.items():
        lines.append(
            f"| {name} | {s['pk']:.3f} | {s['window_diff']:.3f} | "
            f"{s['segments_predicted']:.2f} | {s['segments_reference']:.2f} |"
        )
    append_section(result, "\n".join(lines) + "\n")
