"""FFRS with F2RVLM as its fine stage: what reading only the best N of the K recalled fragments
(``FFRSConfig.read_top``) costs in corpus F1 and saves in seconds per query (issue 16's latency
target), on the same queries in one run.

The MLDR val dialogues are indexed in a throw-away database on FFR's Postgres with the serving
FEM (as ``ffr eval`` indexes them; the serving database is only read), and the corpus-style val
queries (each names its chat; ``ffr_lib.evaluation.corpus_queries``) are answered by FFRS with
the given F2RVLM adapter at each ``--read-top`` setting. The harness scores each run (micro joint
F1 with its 95% bootstrap interval, the share of positives whose chat ranks first); each setting is compared with reading
every fragment by a paired bootstrap; latency is the median and 90th percentile of the harness's
per-query wall time (recall + read + merge).

    FFR_HOME=... .venv/bin/python bench/ffrs_read_top.py --adapter PATH [--queries 100] \\
        [--k 10] [--read-top all,4,2] [--threads 2] [--out /tmp/f2r/read-top]

Results: ``<out>/results.json`` and ``<out>/table.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ffr_lib.db import database_url  # noqa: E402
from ffr_lib.db.scratch import scratch_database  # noqa: E402
from ffr_lib.evaluation.bootstrap import RESAMPLES, paired_f1_difference  # noqa: E402
from ffr_lib.evaluation.corpus_queries import corpus_style  # noqa: E402
from ffr_lib.evaluation.harness import (  # noqa: E402
    Corpus,
    CorpusConfig,
    System,
    evaluation_queries,
    run_samples,
    run_system,
    score_run,
)
from ffr_lib.evaluation.run import mldr_split, serving_fem  # noqa: E402
from ffr_lib.ffrs import FFRSConfig, load_retriever, open_ffrs  # noqa: E402
from ffr_lib.ffrs.types import Prediction  # noqa: E402
from ffr_lib.reporting import markdown_table, percentile  # noqa: E402


class FFRSWithF2RVLM(System):
    """FFRS forced onto the F2RVLM fine stage with one ``read_top`` (the registry's ``ffrs``
    serves the champion reader when there is one)."""

    modes = ("corpus",)
    reads_with_generator = True

    def __init__(self, retriever: Any, k: int, read_top: int | None, batch_size: int) -> None:
        self.retriever, self.k = retriever, k
        self.config = FFRSConfig(k=k, read_top=read_top, batch_size=batch_size)
        self.name = f"ffrs-f2rvlm/read-{read_top or 'all'}"

    def setup(self, corpus: Corpus) -> None:
        self.pipeline = open_ffrs(
            self.retriever,
            config=self.config,
            encoder=corpus.encoder,
            url=corpus.url,
            dialogues=corpus.dialogues,
            fine_stage="f2rvlm",
        )

    def predict_corpus(self, query: str, corpus: Corpus) -> Prediction:
        return self.pipeline.query(query, self.k, corpus.restrict)


def read_top_values(text: str) -> list[int | None]:
    """``all,4,2`` -> [None, 4, 2]; reading every fragment always comes first (the reference)."""
    values: list[int | None] = [None]
    for item in text.split(","):
        item = item.strip()
        if item and item != "all":
            values.append(int(item))
    return values


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--adapter", required=True, help="F2RVLM adapter folder (or profile name)")
    ap.add_argument("--queries", type=int, default=100, help="corpus-style val queries")
    ap.add_argument("--k", type=int, default=10, help="fragments recalled")
    ap.add_argument("--read-top", default="all,4", help="settings; all = every fragment")
    ap.add_argument("--batch-size", type=int, default=10, help="prompts per generation batch")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = its default)")
    ap.add_argument("--resamples", type=int, default=RESAMPLES, help="bootstrap resamples")
    ap.add_argument("--out", default="/tmp/f2r/read-top")
    args = ap.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    data, _ = mldr_split("val", None, build=False)
    variants, counts = corpus_style(data)
    queries = evaluation_queries(variants, args.queries)
    retriever = load_retriever(args.adapter)
    url = database_url()
    results: dict[str, Any] = {"args": vars(args), "variants": counts, "queries": len(queries)}
    rows = []
    with scratch_database(url) as eval_url:
        corpus = Corpus.prepare(data, eval_url, CorpusConfig(), encoder=serving_fem(url))
        reference = None
        for read_top in read_top_values(args.read_top):
            system = FFRSWithF2RVLM(retriever, args.k, read_top, args.batch_size)
            run = run_system(system, queries, corpus, "corpus")
            scores = score_run(run, corpus, resamples=args.resamples)
            seconds = [r.seconds for r in run.records]
            samples = run_samples(run, corpus)
            figures = {
                "f1": scores["f1"],
                "f1_ci": [scores["f1_ci_low"], scores["f1_ci_high"]],
                "dialogue_acc@1": scores["dialogue_acc@1"],
                "p50_s": percentile(seconds, 50),
                "p90_s": percentile(seconds, 90),
            }
            if reference is None:
                reference = samples
            else:
                d = paired_f1_difference(samples, reference, args.resamples)
                figures["vs_all"] = [d.estimate, d.low, d.high]
            results[system.name] = figures
            print(f"== {system.name}: {json.dumps(figures)}", flush=True)
            vs = figures.get("vs_all")
            rows.append(
                [
                    system.name,
                    f"{figures['f1']:.3f} [{figures['f1_ci'][0]:.3f}, {figures['f1_ci'][1]:.3f}]",
                    "-" if vs is None else f"{vs[0]:+.3f} [{vs[1]:+.3f}, {vs[2]:+.3f}]",
                    f"{figures['dialogue_acc@1']:.3f}",
                    f"{figures['p50_s']:.2f}",
                    f"{figures['p90_s']:.2f}",
                ]
            )
            (out / "results.json").write_text(json.dumps(results, indent=2))
    table = markdown_table(
        ["system", "F1 [95% CI]", "vs reading all [95% CI]", "dlg@1", "p50 s", "p90 s"], rows
    )
    (out / "table.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
