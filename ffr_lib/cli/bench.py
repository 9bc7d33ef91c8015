"""`ffr bench [--quick] [--sections ...] [--sizes ...] [--large-sizes ...] [--out DIR]`: the
benchmark suite of issue 9 (``bench/suite.py`` in the repository; ``make bench`` runs it).

Each run builds its own throw-away embedded Postgres (port ``FFR_PG_PORT`` when set, else a free
one), measures every figure beside its baseline and writes ``results.json``, ``results.md``,
``cost_curve.json`` and ``cost_curves.png`` to ``--out`` (default ``bench/results/latest``).
Default suite (every fragment embedded, the HNSW grid at 100k): about 1.5 hours on 2 quiet cores
the first time, less once the vectors are cached; ``--quick``: a few minutes. Benchmarks never
assert timings.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

SECTIONS = ("encoder", "index", "search", "ffrs", "training")


def _ints(value: str | None) -> list[int] | None:
    if value is None:
        return None
    return [
        int(v.replace("_", "").replace("k", "000").replace("M", "000000"))
        for v in value.split(",")
        if v
    ]


def bench(
    quick: bool = typer.Option(False, "--quick", help="small sizes, a few minutes"),
    sections: str | None = typer.Option(
        None, "--sections", help=f"comma-separated subset of {','.join(SECTIONS)} (default all)"
    ),
    sizes: str | None = typer.Option(
        None, "--sizes", help="fragments indexed end to end, e.g. 10k,100k (default 10k,100k)"
    ),
    large_sizes: str | None = typer.Option(
        None, "--large-sizes", help="search-only sizes with derived vectors (default 1M; '' = none)"
    ),
    embed_limit: int | None = typer.Option(
        None,
        "--embed-limit",
        help="fragments embedded per build (default all); the rest get derived vectors",
    ),
    reembed: bool = typer.Option(
        False, "--reembed", help="embed at every size even when cached (times each size)"
    ),
    encoder_sample: int | None = typer.Option(
        None, "--encoder-sample", help="fragments embedded per encoder variant (default 1000)"
    ),
    ffrs_queries: int | None = typer.Option(None, "--ffrs-queries", help="queries per K"),
    ffrs_adapter: Path | None = typer.Option(
        None,
        "--ffrs-adapter",
        help="a trained F2RVLM adapter for the FFRS section (default: the untrained backbone)",
    ),
    ffrs_read_top: int | None = typer.Option(
        None,
        "--ffrs-read-top",
        help="F2RVLM reads the best N of the K fragments (default: FFRS's, 4; 0 = all K)",
    ),
    training_steps: int | None = typer.Option(None, "--training-steps", help="SFT/GRPO steps"),
    torch_threads: int | None = typer.Option(
        None, "--torch-threads", help="torch threads for FFRS and training (default torch's)"
    ),
    no_tune: bool = typer.Option(False, "--no-tune", help="skip the HNSW settings grid"),
    tune_size: str | None = typer.Option(
        None,
        "--tune-size",
        help="index size the HNSW grid runs on, one of --sizes (default the largest)",
    ),
    hnsw_large: bool = typer.Option(
        False, "--hnsw-large", help="also build HNSW at the large sizes (slow: tens of minutes)"
    ),
    out: Path | None = typer.Option(None, "--out", help="results folder"),
) -> None:
    """Run the benchmark suite and write results (JSON + markdown + plot)."""
    from ffr_lib.settings import REPO_ROOT

    if not (REPO_ROOT / "bench" / "suite.py").is_file():
        typer.secho("bench/suite.py is not here: run from a repository checkout", err=True)
        raise typer.Exit(code=2)
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from bench.suite import SuiteConfig, run_suite

    overrides = {
        "index_sizes": _ints(sizes),
        "large_sizes": _ints(large_sizes),
        "embed_limit": embed_limit,
        "tune_size": (_ints(tune_size) or [None])[0],
        "encoder_sample": encoder_sample,
        "ffrs_queries": ffrs_queries,
        "ffrs_adapter": ffrs_adapter,
        "ffrs_read_top": ffrs_read_top,
        "training_steps": training_steps,
        "torch_threads": torch_threads,
        "out_dir": out,
    }
    if sections:
        unknown = set(sections.split(",")) - set(SECTIONS)
        if unknown:
            typer.secho(f"unknown sections {sorted(unknown)}; known: {SECTIONS}", err=True)
            raise typer.Exit(code=2)
        overrides["sections"] = sections.split(",")
    if tune_size:
        overrides["tune"] = True  # asked for by size, also with --quick
    if no_tune:
        overrides["tune"] = False
    if hnsw_large:
        overrides["hnsw_large"] = True
    if reembed:
        overrides["reembed"] = True
    overrides = {k: v for k, v in overrides.items() if v is not None}
    config = SuiteConfig.quick(**overrides) if quick else SuiteConfig(**overrides)
    results = run_suite(config, log=lambda line: typer.echo(line, err=True))
    typer.echo(f"results in {config.out_dir} ({results['wall_s']} s)")
