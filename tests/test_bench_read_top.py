"""bench/ffrs_read_top.py: FFRS forced onto the F2RVLM fine stage reads only the best N recalled
fragments, through the harness, on a real Postgres index and the tiny model."""

from __future__ import annotations

import sys
from collections.abc import Callable

from ffr_lib.data.dataset import Dataset
from ffr_lib.evaluation.harness import Corpus, evaluation_queries, run_system, score_run
from ffr_lib.ffrs import load_retriever
from ffr_lib.settings import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT))

from bench.ffrs_read_top import FFRSWithF2RVLM, read_top_values  # noqa: E402


def test_read_top_values_put_reading_everything_first() -> None:
    assert read_top_values("all,4,2") == [None, 4, 2]
    assert read_top_values("4") == [None, 4]
    assert read_top_values(" all , ") == [None]


def test_reading_the_best_fragment_only_reads_less(
    db_url: str, synthetic_dataset: Callable[..., Dataset]
) -> None:
    dataset = synthetic_dataset(6, n_utterances=30)
    corpus = Corpus.prepare(dataset, db_url)
    queries = evaluation_queries(dataset, 3)
    retriever = load_retriever("tiny")
    runs = {}
    for read_top in (None, 1):
        system = FFRSWithF2RVLM(retriever, k=4, read_top=read_top, batch_size=4)
        runs[read_top] = run_system(system, queries, corpus, "corpus")
        assert runs[read_top].skipped is None and len(runs[read_top].records) == 3
        assert score_run(runs[read_top], corpus, resamples=50)["n"] == 3
    # Unread fragments contribute nothing, so the prompt tokens read tell what was read.
    every = [r.prediction.tokens_read for r in runs[None].records]
    best = [r.prediction.tokens_read for r in runs[1].records]
    assert all(0 < b <= e for b, e in zip(best, every, strict=True))
    assert sum(best) < sum(every)  # several fragments recalled: reading one read less
