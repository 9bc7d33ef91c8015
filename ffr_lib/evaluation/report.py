"""Evaluation reports: a markdown table, PNG plots and ``metrics.json``, on disk and in MLflow.

Layout (``reports_dir`` defaults to ``<repo>/reports``)::

    reports/<run>/report.md, metrics.json, recall_at_k.png, f1_by_length.png, latency.png,
                  predictions/<dataset>__<mode>__<system>.jsonl
    reports/latest/  the same files, for ALL datasets evaluated so far: ``metrics.json`` there is
                     merged (a new run replaces the datasets it evaluated and keeps the others),
                     so `ffr eval --dataset mldr` and `ffr eval --dataset locomo` add up.

``metrics.json`` is ``{dataset: {system: {metric: value}}}`` with dataset keys ``<name>/<mode>``;
a skipped system is ``{"skipped": "<reason>"}``. Everything is rendered from that dictionary,
so the latest report can be rebuilt from the file alone.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ffr_lib.evaluation.bootstrap import RESAMPLES
from ffr_lib.evaluation.systems import SYSTEMS
from ffr_lib.reporting import markdown_table
from ffr_lib.settings import REPORTS_DIR
from ffr_lib.tracking import start_run

Metrics = dict[str, dict[str, dict[str, Any]]]

#: (metric key, column title) of the main table.
HEADLINE: tuple[tuple[str, str], ...] = (
    ("n", "n"),
    ("f1", "F1"),
    ("macro_f1", "macro F1"),
    ("exact_match", "EM"),
    ("mcc", "MCC"),
    ("recall@1", "R@1"),
    ("recall@5", "R@5"),
    ("recall@10", "R@10"),
    ("recall@20", "R@20"),
    ("mrr", "MRR"),
    ("ndcg@10", "nDCG@10"),
    ("frag_recall@1", "fR@1"),
    ("frag_recall@5", "fR@5"),
    ("dialogue_acc@1", "dlg@1"),
    ("abstain_rate", "abstain"),
    ("latency_p50_ms/total", "p50 ms"),
    ("latency_p95_ms/total", "p95 ms"),
    ("tokens_read_mean", "tokens"),
    ("malformed_rate", "malformed"),
)
#: (metric key, column title) of the per-modality table: the reference micro figures.
MODALITY: tuple[tuple[str, str], ...] = tuple(
    (f"{prefix}{m}", f"{title} {m_title}")
    for prefix, title in (("utt_", "utt"), ("img_", "img"), ("", "joint"))
    for m, m_title in (("precision", "P"), ("recall", "R"), ("f1", "F1"), ("mcc", "MCC"))
)
KS: tuple[int, ...] = (1, 5, 10, 20)
BUCKETS: tuple[str, ...] = ("<35", "35-65", ">65")  # dialogue length in turns, as in the paper
#: Every bucket set a dataset uses (``HarnessConfig.length_buckets``): the paper's, and meetings'
#: (QMSum, ``ffr_lib.evaluation.qmsum.BUCKETS``).
BUCKET_SETS: tuple[tuple[str, ...], ...] = (BUCKETS, ("<300", "300-600", ">600"))
#: (metric key, column title) of the ranking table (utterance level).
RANKING: tuple[tuple[str, str], ...] = (
    *((f"recall@{k}", f"R@{k}") for k in KS),
    *((f"hit@{k}", f"hit@{k}") for k in KS),
    ("mrr", "MRR"),
    ("ndcg@10", "nDCG@10"),
    ("frag_mrr", "frag MRR"),
    ("dialogue_mrr", "dlg MRR"),
)
PLOTS = ("recall_at_k.png", "f1_by_length.png", "latency.png")


def default_reports_dir() -> Path:
    """FFR_REPORTS_DIR, else <repo>/reports."""
    return Path(REPORTS_DIR.get())


def _fmt(value: Any, key: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isnan(value):
        return "-"
    if key in ("n", "answers_n") or key.startswith("tokens"):
        return f"{value:.0f}"
    if key.startswith("latency"):
        return f"{value:.1f}"
    return f"{value:.3f}"


def _interval(m: Mapping[str, Any], prefix: str) -> str | None:
    """``[low, high]`` of ``<prefix>_ci_low`` / ``_ci_high``; None when the run has none (a
    metrics.json written before the intervals existed)."""
    low, high = m.get(f"{prefix}_ci_low"), m.get(f"{prefix}_ci_high")
    if not isinstance(low, int | float) or not isinstance(high, int | float):
        return None
    if math.isnan(low) or math.isnan(high):
        return None
    return f"[{low:.3f}, {high:.3f}]"


def _headline(m: Mapping[str, Any], key: str) -> str:
    """A headline cell; F1 carries its bootstrap interval when the run has one."""
    cell = _fmt(m.get(key), key)
    interval = _interval(m, "f1") if key == "f1" and "f1" in m else None
    return f"{cell} {interval}" if interval else cell


def baseline_differences(ran: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The table of F1 differences against the best baseline (paired bootstrap), or [] when no
    system of the table has one."""
    rows = []
    for s, m in ran.items():
        diff = m.get("f1_vs_best_baseline")
        if not isinstance(diff, int | float) or math.isnan(diff):
            continue
        interval = _interval(m, "f1_vs_best_baseline")
        low, high = m.get("f1_vs_best_baseline_ci_low"), m.get("f1_vs_best_baseline_ci_high")
        # The interval, not the point difference, says whether the gap is more than noise.
        verdict = "-"
        if interval:
            verdict = "above 0" if low > 0 else "below 0" if high < 0 else "contains 0"
        rows.append(
            [
                s,
                str(m.get("best_baseline", "-")),
                f"{diff:+.3f}",
                interval or "-",
                _fmt(m.get("f1_vs_best_baseline_n"), "n"),
                verdict,
            ]
        )
    if not rows:
        return []
    return [
        "F1 difference against the best baseline (paired bootstrap over the queries both "
        "scored, 95% CI):",
        "",
        *markdown_table(["system", "best baseline", "ΔF1", "95% CI", "n paired", "CI vs 0"], rows),
        "",
    ]


def _ran(per_system: Mapping[str, Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {s: m for s, m in per_system.items() if "skipped" not in m}


def bucket_columns(found: Sequence[str]) -> list[str]:
    """The length buckets to show, in order: the whole set the found ones belong to (an empty
    bucket shows too), then any other found bucket."""
    for labels in BUCKET_SETS:
        if set(found) & set(labels):
            return list(labels) + [v for v in found if v not in labels]
    return list(found)


def _groups(per_system: Mapping[str, Mapping[str, Any]], grouper: str, metric: str) -> list[str]:
    values: dict[str, None] = {}
    prefix = f"group/{grouper}="
    for m in per_system.values():
        for key in m:
            if key.startswith(prefix) and key.endswith(f"/{metric}"):
                values[key[len(prefix) : -len(metric) - 1]] = None
    return sorted(values)


#: What each kind of dataset key means, by suffix (printed under its heading).
DATASET_NOTES: tuple[tuple[str, str], ...] = (
    (
        "-reader-subset/single",
        "Every system on exactly the queries the F2RVLM systems read (a spread subset, "
        "`--reader-limit`): the fair comparison with F2RVLM. Single-dialogue mode.",
    ),
    (
        "-reader-subset/corpus",
        "Every system on exactly the queries FFRS read (a spread subset, `--reader-limit`): "
        "the fair comparison with FFRS. Corpus mode.",
    ),
    (
        "-corpus-style/corpus",
        "Corpus mode on the corpus-style variants of the positive queries: each names its chat "
        "(speakers and other topics) and only variants that fit exactly one dialogue are kept "
        "(`ffr_lib/evaluation/corpus_queries.py`). The fair corpus-mode comparison.",
    ),
    (
        "/corpus",
        "Corpus mode with the queries as written for one dialogue: every dialogue of the split "
        "is searched, ids in any other dialogue count as wrong. Many queries fit several chats "
        '("What did Maya say about food?"), so all systems score low here; see the '
        "corpus-style table.",
    ),
    ("/single", "Single-dialogue mode: each query against its own dialogue (the paper's setting)."),
)


#: Notes for the QMSum tables (real meetings, human-marked spans), by suffix.
QMSUM_NOTES: tuple[tuple[str, str], ...] = (
    (
        "/single",
        "QMSum: each human-written query against its own meeting (real multi-party meetings, "
        "hundreds of turns); gold = the turns people marked as the answer (median 25).",
    ),
    (
        "/corpus",
        "QMSum: each query against all meetings of the split; ids in another meeting count as "
        "wrong. Recall@K counts utterances.",
    ),
)


def dataset_note(dataset: str) -> str | None:
    if dataset.startswith("qmsum") and "-reader-subset/" not in dataset:
        for suffix, note in QMSUM_NOTES:
            if dataset.endswith(suffix):
                return note
    for suffix, note in DATASET_NOTES:
        if dataset.endswith(suffix):
            return note
    return None


def render_markdown(metrics: Metrics, title: str = "FFR evaluation") -> str:
    """The report: per dataset a headline table, per-group F1 tables, latency per stage, and
    the systems skipped with their reasons; then what each system is (from the registry)."""
    out = [f"# {title}", ""]
    for dataset, per_system in metrics.items():
        ran = _ran(per_system)
        out += [f"## {dataset}", ""]
        note = dataset_note(dataset)
        if note:
            out += [note, ""]
        keys = [(k, t) for k, t in HEADLINE if any(k in m for m in ran.values())]
        if ran:
            out += markdown_table(
                ["system", *(t for _, t in keys)],
                [[s, *(_headline(m, k) for k, _ in keys)] for s, m in ran.items()],
            )
            out.append("")
            out += baseline_differences(ran)
            for caption, columns in (
                ("Micro precision / recall / F1 / MCC per modality and joint:", MODALITY),
                ("Ranking (utterances; negative queries left out):", RANKING),
            ):
                present = [(k, t) for k, t in columns if any(k in m for m in ran.values())]
                if present:
                    out += [caption, ""]
                    out += markdown_table(
                        ["system", *(t for _, t in present)],
                        [[s, *(_fmt(m.get(k), k) for k, _ in present)] for s, m in ran.items()],
                    )
                    out.append("")
        for grouper in sorted(
            {k.split("=")[0].removeprefix("group/") for m in ran.values() for k in m if "=" in k}
        ):
            values = _groups(ran, grouper, "f1")
            if not values:
                continue
            if grouper == "bucket":
                # The dataset's three buckets always, in order; an empty one shows "- (-)".
                values = bucket_columns(values)
            out += [f"F1 by {grouper} (n per group in brackets):", ""]
            rows = []
            for s, m in ran.items():
                rows.append(
                    [s]
                    + [
                        f"{_fmt(m.get(f'group/{grouper}={v}/f1'), 'f1')} "
                        f"({_fmt(m.get(f'group/{grouper}={v}/n'), 'n')})"
                        for v in values
                    ]
                )
            out += markdown_table(["system", *values], rows)
            out.append("")
        stages = sorted(
            {k.split("/", 1)[1] for m in ran.values() for k in m if k.startswith("latency_p50")}
        )
        if stages:
            out += ["Latency per stage, p50 / p95 ms:", ""]
            rows = [
                [s]
                + [
                    f"{_fmt(m.get(f'latency_p50_ms/{st}'), 'latency')} / "
                    f"{_fmt(m.get(f'latency_p95_ms/{st}'), 'latency')}"
                    for st in stages
                ]
                for s, m in ran.items()
            ]
            out += markdown_table(["system", *stages], rows)
            out.append("")
        notes = {s: m["note"] for s, m in per_system.items() if m.get("note")}
        if notes:
            out += ["Ran with:", ""]
            out += [f"- `{s}`: {note}" for s, note in notes.items()]
            out.append("")
        skipped = {s: m["skipped"] for s, m in per_system.items() if "skipped" in m}
        if skipped:
            out += ["Skipped:", ""]
            out += [f"- `{s}`: {reason}" for s, reason in skipped.items()]
            out.append("")
    described = SYSTEMS.descriptions()
    shown = [s for s in dict.fromkeys(s for per in metrics.values() for s in per) if s in described]
    if shown:
        out += ["Systems:", ""]
        out += [f"- `{s}`: {described[s]}" for s in shown]
        out.append("")
    out += [
        "Metrics: F1/MCC are the reference micro figures of the final pick (joint = mean of "
        "utterance and image), F1's brackets its 95% bootstrap interval (queries resampled "
        f"with replacement, {RESAMPLES} times by default), macro F1 and EM per query; R@K "
        "counts gold utterances in the first K utterances returned, fR@K in the first K units "
        "(fragments); dlg@1 = gold dialogue ranked first; abstain = negative queries answered "
        "with nothing.",
        "",
    ]
    return "\n".join(out)


# ----------------------------------------------------------------------------- plots


def _figure(n_panels: int) -> tuple[Any, list[Any]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, max(1, n_panels), figsize=(5.5 * max(1, n_panels), 4.2))
    return fig, list(getattr(axes, "flat", [axes]))


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_recall_curves(metrics: Metrics, path: Path) -> None:
    """Recall@K (utterances) per system, one panel per dataset."""
    datasets = [d for d, s in metrics.items() if any("recall@1" in m for m in _ran(s).values())]
    fig, axes = _figure(len(datasets))
    for ax, dataset in zip(axes, datasets or [""], strict=False):
        for system, m in _ran(metrics.get(dataset, {})).items():
            ys = [m.get(f"recall@{k}", math.nan) for k in KS]
            if not all(isinstance(y, float) and math.isnan(y) for y in ys):
                ax.plot(KS, ys, marker="o", label=system)
        ax.set_title(dataset or "no ranking metrics")
        ax.set_xlabel("K (utterances)")
        ax.set_ylabel("Recall@K")
        ax.set_xticks(KS)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    _save(fig, path)


def plot_f1_by_bucket(metrics: Metrics, path: Path) -> None:
    """F1 of the final pick per dialogue length bucket, grouped bars per dataset."""
    import numpy as np

    datasets = list(metrics) or [""]
    fig, axes = _figure(len(datasets))
    for ax, dataset in zip(axes, datasets, strict=False):
        ran = _ran(metrics.get(dataset, {}))
        found = _groups(ran, "bucket", "f1")
        buckets = [b for b in bucket_columns(found) if b in found]
        width = 0.8 / max(1, len(ran))
        for i, (system, m) in enumerate(ran.items()):
            ys = [m.get(f"group/bucket={b}/f1", 0.0) for b in buckets]
            ax.bar(np.arange(len(buckets)) + i * width, ys, width, label=system)
        ax.set_xticks(np.arange(len(buckets)) + 0.4 - width / 2, [f"{b} turns" for b in buckets])
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("F1")
        ax.set_title(dataset or "no data")
        if ran:
            ax.legend(fontsize=7)
    _save(fig, path)


def plot_latency(metrics: Metrics, path: Path) -> None:
    """p50 latency per stage (stacked) per system, one panel per dataset."""
    import numpy as np

    datasets = list(metrics) or [""]
    fig, axes = _figure(len(datasets))
    for ax, dataset in zip(axes, datasets, strict=False):
        ran = _ran(metrics.get(dataset, {}))
        stages = sorted(
            {
                k.split("/", 1)[1]
                for m in ran.values()
                for k in m
                if k.startswith("latency_p50_ms/") and not k.endswith("/total")
            }
        )
        systems = list(ran)
        bottom = np.zeros(len(systems))
        for stage in stages:
            ys = np.array([ran[s].get(f"latency_p50_ms/{stage}", 0.0) for s in systems])
            ys = np.nan_to_num(ys)
            ax.bar(systems, ys, bottom=bottom, label=stage)
            bottom += ys
        ax.set_ylabel("p50 ms per query")
        ax.set_title(dataset or "no data")
        ax.tick_params(axis="x", rotation=45, labelsize=7)
        if stages:
            ax.legend(fontsize=7)
    _save(fig, path)


# ----------------------------------------------------------------------------- writing


@dataclass
class ReportResult:
    run_dir: Path
    latest_dir: Path
    files: list[Path] = field(default_factory=list)
    markdown: str = ""
    mlflow_run_id: str | None = None
    metrics: Metrics = field(default_factory=dict)  # this run's figures (not the merged latest)


def _render_folder(metrics: Metrics, folder: Path, title: str) -> tuple[str, list[Path]]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(
        json.dumps(metrics, indent=2, sort_keys=True, allow_nan=True), encoding="utf-8"
    )
    markdown = render_markdown(metrics, title)
    (folder / "report.md").write_text(markdown, encoding="utf-8")
    plot_recall_curves(metrics, folder / PLOTS[0])
    plot_f1_by_bucket(metrics, folder / PLOTS[1])
    plot_latency(metrics, folder / PLOTS[2])
    return markdown, [folder / "report.md", folder / "metrics.json", *(folder / p for p in PLOTS)]


def _write_predictions(runs: Mapping[str, Sequence[Any]], folder: Path, top: int = 20) -> None:
    """One JSONL per (dataset, system): query, gold, prediction (top units only)."""
    folder.mkdir(parents=True, exist_ok=True)
    for dataset, system_runs in runs.items():
        for run in system_runs:
            if run.skipped is not None:
                continue
            name = f"{dataset.replace('/', '__')}__{run.system}.jsonl"
            with (folder / name).open("w", encoding="utf-8") as out:
                for record in run.records:
                    q = record.query
                    p = record.prediction.as_dict()
                    p["units"] = p["units"][:top]
                    row = {
                        "query_id": q.id,
                        "query": q.text,
                        "dialogue_id": q.dialogue_id,
                        "gold_utterance_ids": q.gold_utterance_ids,
                        "gold_image_ids": q.gold_image_ids,
                        "seconds": record.seconds,
                        "prediction": p,
                    }
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")


def mlflow_key(key: str) -> str:
    """A metric name MLflow accepts (alphanumerics, _ - . space : /)."""
    key = key.replace("@", "_at_").replace("<", "lt").replace(">", "gt").replace("=", "-")
    return re.sub(r"[^A-Za-z0-9_\-. :/]", "_", key)


def log_to_mlflow(
    metrics: Metrics, run_dir: Path, run_name: str, params: Mapping[str, Any] | None = None
) -> str:
    """Headline and latency figures as MLflow metrics (``<dataset>/<system>/<metric>``) and
    the report folder as artifacts. Returns the run id."""
    import mlflow

    flat: dict[str, float] = {}
    for dataset, per_system in metrics.items():
        for system, m in _ran(per_system).items():
            for key, value in m.items():
                if key.startswith("group/") or not isinstance(value, int | float):
                    continue
                if isinstance(value, float) and math.isnan(value):
                    continue
                flat[mlflow_key(f"{dataset}/{system}/{key}")] = float(value)
    with start_run("evaluation", run_name=run_name, params=dict(params or {})) as run:
        items = list(flat.items())
        for start in range(0, len(items), 900):  # MLflow batches hold at most 1000 metrics
            mlflow.log_metrics(dict(items[start : start + 900]))
        mlflow.log_artifacts(str(run_dir), artifact_path="report")
        return run.info.run_id


def write_report(
    metrics: Metrics,
    *,
    run_name: str | None = None,
    reports_dir: Path | None = None,
    runs: Mapping[str, Sequence[Any]] | None = None,
    mlflow: bool = True,
    params: Mapping[str, Any] | None = None,
    sections: Sequence[str] = (),
) -> ReportResult:
    """Write ``reports/<run>/`` and refresh ``reports/latest/`` (merged metrics); log to MLflow
    unless ``mlflow`` is False. ``sections``: markdown added at the end of both report.md files
    before anything is logged, so the MLflow copy is the whole report."""
    reports_dir = Path(reports_dir or default_reports_dir())
    run_name = run_name or datetime.now(UTC).strftime("eval-%Y%m%d-%H%M%S")
    run_dir = reports_dir / run_name
    markdown, files = _render_folder(metrics, run_dir, f"FFR evaluation: {run_name}")
    if runs:
        _write_predictions(runs, run_dir / "predictions")
    latest = reports_dir / "latest"
    merged: Metrics = {}
    if (latest / "metrics.json").is_file():
        try:
            merged = json.loads((latest / "metrics.json").read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            merged = {}
    merged.update(metrics)
    if latest.exists():
        shutil.rmtree(latest)
    _, latest_files = _render_folder(merged, latest, "FFR evaluation: latest")
    (latest / "RUN").write_text(run_name + "\n", encoding="utf-8")
    extra = "".join(sections)
    if extra:
        markdown += extra
        for folder in (run_dir, latest):
            report = folder / "report.md"
            report.write_text(report.read_text(encoding="utf-8") + extra, encoding="utf-8")
    result = ReportResult(run_dir, latest, files + latest_files, markdown, metrics=metrics)
    if mlflow:
        result.mlflow_run_id = log_to_mlflow(metrics, run_dir, run_name, params)
    return result
