"""Report files: markdown, metrics.json keyed dataset -> system -> metric, valid PNG plots, the
merged ``latest`` folder, and the MLflow run with its artifacts."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from ffr_lib.evaluation.report import PLOTS, mlflow_key, render_markdown, write_report


def _metrics(dataset: str, f1: float) -> dict:
    base = {
        "n": 10.0,
        "f1": f1,
        "macro_f1": f1 / 2,
        "exact_match": 0.1,
        "recall@1": 0.2,
        "recall@5": 0.5,
        "recall@10": 0.7,
        "recall@20": 0.9,
        "mrr": 0.4,
        "ndcg@10": 0.45,
        "latency_p50_ms/total": 12.0,
        "latency_p95_ms/total": 30.0,
        "latency_p50_ms/embed": 5.0,
        "latency_p95_ms/embed": 9.0,
        "latency_p50_ms/sql": 3.0,
        "latency_p95_ms/sql": 4.0,
        "group/bucket=<35/f1": f1,
        "group/bucket=<35/n": 6.0,
        "group/bucket=35-65/f1": f1 / 3,
        "group/bucket=35-65/n": 4.0,
    }
    return {dataset: {"fem": base, "ffrs": {"skipped": "no trained F2RVLM adapter"}}}


def test_report_files_and_merged_latest(tmp_path: Path, ffr_home: Path) -> None:
    first = write_report(_metrics("mldr-val/corpus", 0.6), run_name="r1", reports_dir=tmp_path)
    assert first.mlflow_run_id
    for folder in (tmp_path / "r1", tmp_path / "latest"):
        for name in ("report.md", "metrics.json", *PLOTS):
            assert (folder / name).is_file(), (folder, name)
        for plot in PLOTS:
            with Image.open(folder / plot) as image:
                image.verify()
                assert image.format == "PNG"
    data = json.loads((tmp_path / "r1" / "metrics.json").read_text())
    assert data["mldr-val/corpus"]["fem"]["f1"] == 0.6
    assert data["mldr-val/corpus"]["ffrs"] == {"skipped": "no trained F2RVLM adapter"}
    markdown = (tmp_path / "r1" / "report.md").read_text()
    assert "| fem | 10 | 0.600 |" in markdown and "`ffrs`: no trained F2RVLM adapter" in markdown
    assert "F1 by bucket" in markdown and "0.200 (4)" in markdown
    # All three length buckets of the paper, in order, the empty one marked as such.
    assert "| system | <35 | 35-65 | >65 |" in markdown and "| - (-) |" in markdown

    write_report(_metrics("locomo/single", 0.3), run_name="r2", reports_dir=tmp_path, mlflow=False)
    latest = json.loads((tmp_path / "latest" / "metrics.json").read_text())
    assert set(latest) == {"mldr-val/corpus", "locomo/single"}  # merged across runs
    assert set(json.loads((tmp_path / "r2" / "metrics.json").read_text())) == {"locomo/single"}
    assert (tmp_path / "latest" / "RUN").read_text().strip() == "r2"

    import mlflow

    run = mlflow.get_run(first.mlflow_run_id)
    assert run.data.metrics["mldr-val/corpus/fem/f1"] == 0.6
    assert run.data.metrics[mlflow_key("mldr-val/corpus/fem/recall@10")] == 0.7
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "report")}
    assert "report/metrics.json" in artifacts and "report/recall_at_k.png" in artifacts


def test_markdown_renders_without_ranking_metrics() -> None:
    text = render_markdown({"x/single": {"s": {"n": 2.0, "f1": 0.5}}})
    assert "| s | 2 | 0.500 |" in text


def test_markdown_has_modality_and_ranking_tables_and_dataset_notes() -> None:
    m = {
        "n": 4.0,
        "utt_precision": 0.5,
        "utt_recall": 0.25,
        "utt_f1": 1 / 3,
        "utt_mcc": 0.1,
        "img_precision": 1.0,
        "img_recall": 1.0,
        "img_f1": 1.0,
        "img_mcc": 1.0,
        "precision": 2 / 3,
        "recall": 0.4,
        "f1": 2 / 3,
        "mcc": 0.55,
        "recall@1": 0.1,
        "hit@1": 0.25,
        "hit@20": 1.0,
        "mrr": 0.5,
        "ndcg@10": 0.6,
    }
    text = render_markdown({"mldr-val/single": {"s": m}, "mldr-val-corpus-style/corpus": {"s": m}})
    assert "Micro precision / recall / F1 / MCC per modality and joint:" in text
    assert "| system | utt P | utt R | utt F1 | utt MCC | img P |" in text
    assert "| s | 0.500 | 0.250 | 0.333 | 0.100 | 1.000 | 1.000 | 1.000 | 1.000 | 0.667 |" in text
    assert "| system | R@1 | hit@1 | hit@20 | MRR | nDCG@10 |" in text
    assert "| s | 0.100 | 0.250 | 1.000 | 0.500 | 0.600 |" in text
    assert "Single-dialogue mode" in text
    assert "corpus-style variants" in text  # the corpus-style note, not the plain corpus one
    assert text.count("so all systems score low") == 0
    subset = render_markdown({"mldr-val-reader-subset/single": {"s": m}})
    assert "exactly the queries the F2RVLM systems read" in subset
    assert "Single-dialogue mode: each query" not in subset  # its own note, not the plain one


def test_f1_carries_its_interval_and_the_baseline_differences_render() -> None:
    base = {"n": 10.0, "f1": 0.4, "f1_ci_low": 0.31, "f1_ci_high": 0.52, "recall@1": 0.2}
    own = {
        "n": 10.0,
        "recall@1": 0.3,
        "f1": 0.477,
        "f1_ci_low": 0.45,
        "f1_ci_high": 0.5,
        "best_baseline": "bm25-utt",
        "f1_vs_best_baseline": 0.077,
        "f1_vs_best_baseline_ci_low": 0.012,
        "f1_vs_best_baseline_ci_high": 0.14,
        "f1_vs_best_baseline_n": 10.0,
    }
    tie = {**own, "f1_vs_best_baseline": 0.01, "f1_vs_best_baseline_ci_low": -0.05}
    metrics = {"mldr-val/single": {"bm25-utt": base, "ffrs": own, "reader": tie}}
    # Rendered from the stored file alone, as reports/latest is.
    text = render_markdown(json.loads(json.dumps(metrics)))
    assert "| bm25-utt | 10 | 0.400 [0.310, 0.520] |" in text
    assert "| ffrs | 10 | 0.477 [0.450, 0.500] |" in text
    assert "F1 difference against the best baseline (paired bootstrap" in text
    assert "| system | best baseline | ΔF1 | 95% CI | n paired | CI vs 0 |" in text
    assert "| ffrs | bm25-utt | +0.077 | [0.012, 0.140] | 10 | above 0 |" in text
    assert "| reader | bm25-utt | +0.010 | [-0.050, 0.140] | 10 | contains 0 |" in text
    assert "| bm25-utt | bm25-utt |" not in text  # the baseline has no row of its own
    # Right under the headline table, before the ranking table.
    assert text.index("| system | n | F1 |") < text.index("F1 difference against")
    assert text.index("F1 difference against") < text.index("Ranking (utterances")


def test_metrics_without_intervals_render_as_before() -> None:
    old = {"x/single": {"fem": {"n": 2.0, "f1": 0.5, "macro_f1": 0.4}}}
    text = render_markdown(old)
    assert "| fem | 2 | 0.500 | 0.400 |" in text
    assert "[" not in text.split("Systems:")[0] and "F1 difference against" not in text
    # A comparison without its interval (or with a NaN one) still shows the difference.
    partial = {"x/single": {"fem": {"n": 2.0, "f1": 0.5, "f1_ci_low": float("nan"),
                                    "f1_ci_high": 0.6, "best_baseline": "bm25-utt",
                                    "f1_vs_best_baseline": -0.1}}}  # fmt: skip
    text = render_markdown(partial)
    assert "| fem | 2 | 0.500 |" in text
    assert "| fem | bm25-utt | -0.100 | - | - | - |" in text


def test_malformed_column_shows_for_generators_and_a_dash_for_the_others() -> None:
    text = render_markdown(
        {"x/single": {"gen": {"n": 2.0, "f1": 0.5, "malformed_rate": 0.25}, "bm25": {"f1": 0.1}}}
    )
    header = next(line for line in text.splitlines() if line.startswith("| system"))
    assert "malformed" in header
    gen = next(line for line in text.splitlines() if line.startswith("| gen"))
    bm25 = next(line for line in text.splitlines() if line.startswith("| bm25"))
    assert gen.rstrip(" |").endswith("0.250") and bm25.rstrip(" |").endswith("-")
    # no generator in the table: no column
    assert "malformed" not in render_markdown({"x/single": {"s": {"f1": 0.1}}})
