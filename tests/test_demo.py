"""The demo's own pieces: its run config, the summary it prints and what it says to try next."""

from __future__ import annotations

from ffr_assets.demo import (
    DEMO_F2RVLM_QUERIES,
    DEMO_SYSTEMS,
    NEXT_STEPS,
    STEPS,
    _parse,
    run_config,
    summary_tables,
)


def test_run_config_sizes_the_demo() -> None:
    ops = run_config(_parse([]))["ops"]
    assert ops["evaluation_report"]["config"]["limit"] > 0
    assert ops["fem_checkpoint"]["config"]["max_pairs"] > 0
    # The FEM trains on a small QMSum share (every turn of a meeting is embedded).
    fem = ops["fem_checkpoint"]["config"]
    assert 0 < fem["qmsum_train_meetings"] <= 10
    # The gate judges on every QMSum val meeting (the library default): 5 let a FEM that loses
    # on real data serve.
    assert "qmsum_val_meetings" not in fem
    evaluation = ops["evaluation_report"]["config"]
    # F2RVLM reads a few of the evaluated queries; every other system scores them all.
    assert 0 < evaluation["reader_limit"] < evaluation["limit"]
    assert run_config(_parse(["--eval-queries", "0"]))["ops"]["evaluation_report"]["config"] == {
        "limit": None,
        "reader_limit": DEMO_F2RVLM_QUERIES,
        "k": 5,
        "corpus_queries": "corpus-style",
        "systems": DEMO_SYSTEMS,
    }
    assert "ffrs" in DEMO_SYSTEMS and "f2rvlm" in DEMO_SYSTEMS and "f2rvlm-sft" not in DEMO_SYSTEMS
    assert _parse(["--skip-f2rvlm"]).skip_f2rvlm


def test_summary_keeps_heading_note_and_headline_table_only() -> None:
    report = "\n".join(
        [
            "# FFR evaluation: latest",
            "",
            "## mldr-val/single",
            "",
            "Single-dialogue mode: each query against its own dialogue.",
            "",
            "| system | n | F1 |",
            "|---|---|---|",
            "| fem | 24 | 0.400 |",
            "",
            "Micro precision / recall / F1 / MCC per modality and joint:",
            "",
            "| system | utt P |",
            "|---|---|",
            "| fem | 0.300 |",
            "",
            "## mldr-val/corpus",
            "",
            "| system | n | F1 |",
            "|---|---|---|",
            "| fem | 24 | 0.100 |",
            "",
            "Skipped:",
            "- `ffrs`: no adapter",
        ]
    )
    summary = summary_tables(report)
    assert summary.splitlines() == [
        "## mldr-val/single",
        "Single-dialogue mode: each query against its own dialogue.",
        "| system | n | F1 |",
        "|---|---|---|",
        "| fem | 24 | 0.400 |",
        "",
        "## mldr-val/corpus",
        "| system | n | F1 |",
        "|---|---|---|",
        "| fem | 24 | 0.100 |",
    ]


def test_next_steps_name_cli_sql_and_ui() -> None:
    for needle in ("ffr search", "ffr query", "ffr eval", "similar_fragments", "make ui", ":3000"):
        assert needle in NEXT_STEPS


def test_steps_are_assets_in_lineage_order() -> None:
    from dagster import AssetKey

    from ffr_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    order = [step for step, _ in STEPS]
    assert all(graph.has(AssetKey(step)) for step in order)
    # QMSum is read and validated (or skipped with its reason) before the stages that train on it.
    assert order.index("qmsum_dialogues") < order.index("fem_checkpoint")
    assert order.index("qmsum_dialogues") < order.index("reader_checkpoint")
