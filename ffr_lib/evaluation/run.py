"""One evaluation run: every chosen system on a dataset, scored and written as a report.

The one entry point behind `ffr eval` and the `evaluation_report` asset. The corpus is stored
and indexed in a database of its own on the same server (throw-away unless
``keep_database`` names it): the database users serve from is only read, for its serving FEM.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from ffr_lib.data.dataset import Dataset
from ffr_lib.data.readers import read_dataset
from ffr_lib.db import database_url
from ffr_lib.db.scratch import scratch_database
from ffr_lib.evaluation.baselines import build_systems
from ffr_lib.evaluation.corpus_queries import SUFFIX, corpus_style
from ffr_lib.evaluation.harness import (
    Corpus,
    CorpusConfig,
    HarnessConfig,
    default_groupers,
    evaluate,
)
from ffr_lib.evaluation.locomo import evaluate_locomo, read_locomo_dataset
from ffr_lib.evaluation.qmsum import BUCKETS, qmsum_groupers, qmsum_split, segmentation_scores
from ffr_lib.evaluation.report import ReportResult, write_report
from ffr_lib.ffrs.api import resolve_model
from ffr_lib.index.search import serving_encoder
from ffr_lib.mldr.splits import build_splits, split_dir, write_splits
from ffr_lib.segment.stage import segmentation_path

log = logging.getLogger(__name__)


class EvaluationConfig(BaseModel):
    dataset: Literal["mldr", "locomo", "qmsum"] = "mldr"
    split: str = Field("val", description="MLDR split (val | test) or QMSum split (val | train)")
    path: Path | None = Field(
        None, description="dataset file/folder (LoCoMo json; MLDR folder; QMSum meeting folder)"
    )
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
    reader: Path | None = Field(
        None, description="trained reader checkpoint (reader.json or its folder); None = champion"
    )
    modes: list[Literal["single", "corpus"]] = Field(default_factory=lambda: ["single", "corpus"])
    run_name: str | None = None
    reports_dir: Path | None = Field(None, description="default <repo>/reports")
    build: bool = Field(True, description="build missing MLDR splits from PhotoChat")
    mlflow: bool = True
    keep_database: str | None = Field(
        None,
        description="name of the evaluation's own database, kept after the run for inspection "
        "(None = a throw-away database, dropped at the end)",
    )
    corpus_queries: Literal["both", "as-written", "corpus-style"] = Field(
        "both",
        description="MLDR corpus mode: score the queries as written (dataset <name>), their "
        "corpus-style variants that name their chat (dataset <name>-corpus-style, see "
        "ffr_lib.evaluation.corpus_queries), or both",
    )


def mldr_split(split: str, path: Path | None, build: bool) -> tuple[Any, Any]:
    """The MLDR split to evaluate and a DIFFERENT split to fit priors on (train when present).
    Builds the splits from PhotoChat when the files are missing and ``build`` is set."""
    folder = path or split_dir(split)
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


def serving_fem(url: str) -> Any:
    """The FEM the user's database serves, to index the evaluation corpus with; None when the
    database has no index yet (or no FFR schema). Only reads ``url``."""
    import psycopg

    try:
        return serving_encoder(url)
    except (LookupError, psycopg.errors.UndefinedTable) as exc:
        log.info("evaluation index uses the default FEM: %s", exc)
        return None


def run_evaluation(config: EvaluationConfig, url: str | None = None) -> ReportResult:
    """Index the corpus in the evaluation's own database with the serving FEM of ``url`` (the
    user's database, only read), run the systems, write the report.
    Raises FileNotFoundError / ValueError for a missing dataset or an unknown system."""
    harness = HarnessConfig(
        modes=config.modes, limit=config.limit, reader_limit=config.reader_limit
    )
    spec = resolve_model(config.model)
    variant_counts: dict[str, int] | None = None
    groupers = default_groupers(harness.length_buckets)
    if config.dataset == "mldr":
        data, prior = mldr_split(config.split, config.path, config.build)
        name = f"mldr-{config.split}"
    elif config.dataset == "qmsum":
        data, prior, name = qmsum_split(config.split, config.path)
        harness = harness.model_copy(update={"length_buckets": BUCKETS})
        groupers = qmsum_groupers(BUCKETS)
    else:
        if config.path is None:
            raise ValueError("the locomo dataset needs a path (locomo10.json)")
        data, prior, name = read_locomo_dataset(config.path), None, "locomo"
    systems = build_systems(
        config.systems, model=spec, k=config.k, prior_data=prior, reader=config.reader
    )
    url = url or database_url()
    fem = serving_fem(url)
    keep = config.keep_database is not None
    with scratch_database(url, config.keep_database, keep=keep) as eval_url:
        corpus = Corpus.prepare(data, eval_url, CorpusConfig(), encoder=fem)
        if config.dataset == "locomo":
            output = evaluate_locomo(data, systems, corpus=corpus, config=harness)
        elif config.dataset == "qmsum":
            # Real queries as written only: corpus-style variants need MLDR's topic metadata.
            output = evaluate(data, systems, corpus, name=name, config=harness, groupers=groupers)
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
                groupers=groupers,
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
                        groupers=groupers,
                    )
                    output.metrics.update(extra.metrics)
                    output.runs.update(extra.runs)
    sections = []
    if variant_counts is not None:
        c = variant_counts
        sections.append(
            f"\nCorpus-style variants of {name}: {c['kept']} of {c['queries']} queries kept "
            f"({c['negative']} negative left out, {c['ambiguous']} whose chat could not be "
            "described uniquely).\n"
        )
    if config.dataset == "mldr":
        sections.append(segmentation_section(f"mldr-{config.split}"))
    elif config.dataset == "qmsum":
        scores = segmentation_scores(list(data.dialogues))
        sections.append(
            segmentation_table(f"{name}, against the human topic spans", scores)
            + qmsum_section(name, data)
        )
    sections.append(index_section(corpus, keep=config.keep_database))
    return write_report(
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
        sections=[section for section in sections if section],
    )


def index_section(corpus: Corpus, keep: str | None) -> str:
    """How the evaluation's own index was built (and where it is, when kept)."""
    report = corpus.index_report
    if not report:
        return ""
    checks = ", ".join(
        f"{name} {'passed' if c['passed'] else 'FAILED'}" for name, c in report["checks"].items()
    )
    where = f"kept as database `{keep}`" if keep else "a throw-away database, dropped after the run"
    return (
        f"\nEvaluation index: {report['stats']['fragments']} fragments of {report['dialogues']} "
        f"dialogues under `{report['embedding_model']}`, in {where}; checks: {checks}.\n"
    )


def segmentation_section(batch: str) -> str:
    """The batch's segmentation figures (segmenter vs fixed windows), or "" when not scored."""
    import json

    path = segmentation_path(batch)
    if not path.is_file():
        return ""
    return segmentation_table(batch, json.loads(path.read_text(encoding="utf-8")))


def qmsum_section(name: str, data: Dataset) -> str:
    """What the QMSum reader kept and skipped."""
    meta = data.metadata
    skipped = len(meta.get("skipped_queries", []))
    return (
        f"\nQMSum {name}: {len(data.dialogues)} meetings, {len(data.queries)} specific queries "
        f"scored; {meta.get('general_queries_skipped', 0)} general queries (whole meeting, no "
        f"span) and {skipped} with malformed spans left out.\n"
    )


def segmentation_table(title: str, scores: dict[str, dict[str, float]]) -> str:
    """Pk / WindowDiff per segmenter as a report section ("" when nothing was scored)."""
    if not scores:
        return ""
    lines = [
        "",
        f"## Fragment segmentation on {title} (lower is better)",
        "",
        "| segmenter | Pk | WindowDiff | segments / dialogue | reference segments |",
        "|---|---|---|---|---|",
    ]
    for name, s in scores.items():
        lines.append(
            f"| {name} | {s['pk']:.3f} | {s['window_diff']:.3f} | "
            f"{s['segments_predicted']:.2f} | {s['segments_reference']:.2f} |"
        )
    return "\n".join(lines) + "\n"
