"""The evaluation harness: every system on the same dataset, the same corpus and the same metrics.

Two modes:

- ``single``: each query against its own dialogue (the paper's single-dialogue setting);
- ``corpus``: each query against all dialogues of the dataset, indexed in the fragment index
  (FFRS's setting). The query's own dialogue is the gold dialogue: ids predicted in any other
  dialogue are wrong (false positives; see :func:`set_sample`).

A system is a small object with ``setup(corpus)`` and ``predict(query, dialogue | corpus)``
returning a :class:`~ffr_lib.ffrs.types.Prediction`, so the harness treats all systems alike.
A system that cannot run (no trained model, a mode it does not support) is reported as skipped
with its reason, never silently dropped.

Metrics per (dataset, mode, system), flat ``name -> value`` (all from
:mod:`ffr_lib.evaluation.metrics`):

- set metrics of the final pick (the top dialogue's ids): micro P/R/F1/MCC per modality and
  joint, macro F1, exact match (``SetMetrics.flat``);
- ranking over utterances (``recall@K``, ``hit@K``, ``mrr``, ``ndcg@10``): the ranked list is the
  units' utterances in rank order (an image counts through the utterance it was sent with), so K
  counts utterances and every system gets the same reading budget; gold = the gold utterances
  plus the owners of the gold images; negative queries are skipped;
- ranking over units (``frag_recall@K``, ``frag_hit@K``, ``frag_mrr``): K counts returned units
  (fragments, windows, or single utterances for utterance-level systems): the paper's view;
- ``dialogue_acc@1`` and ``dialogue_mrr`` of the gold dialogue (corpus mode);
- ``abstain_rate`` (negative queries answered with nothing) and ``answer_rate`` (positive
  queries answered with something);
- latency p50/p95 per stage in milliseconds (``latency_p50_ms/<stage>``, stage ``total`` is the
  wall time of ``predict``) and ``tokens_read_mean`` (prompt tokens read by a generator);
- ``malformed_rate`` / ``recovered_rate`` and ``answers_n``, only for a system that generates
  answers (``Prediction.answers``): the share of its generated answers (one per window prompt)
  with no answer in them, and with an answer found only inside other text
  (:mod:`ffr_lib.data.format.answer`), over ``answers_n`` answers;
- the same headline figures per group (``group/<grouper>=<value>/<metric>``): dialogue length
  bucket (<35, 35-65, >65 turns), query family, query type, and whatever the dataset adds;
- ``f1_ci_low`` / ``f1_ci_high``: the 95% bootstrap interval of ``f1`` over the queries
  (:mod:`ffr_lib.evaluation.bootstrap`);
- for every system that is not a baseline (``System.baseline``), against the best baseline of
  the same table (the baseline with the highest ``f1``): ``best_baseline`` (its name),
  ``f1_vs_best_baseline`` (F1 difference over the queries both scored, paired by query id),
  ``f1_vs_best_baseline_ci_low`` / ``_ci_high`` (paired bootstrap, 95%) and
  ``f1_vs_best_baseline_n`` (the queries paired).
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ffr_lib.data.dataset import Dataset
from ffr_lib.data.gold import gold_items
from ffr_lib.data.model import Dialogue, Query, QueryType
from ffr_lib.data.sampling import spread
from ffr_lib.db import connect
from ffr_lib.evaluation.bootstrap import RESAMPLES, SEED, f1_interval, paired_f1_difference
from ffr_lib.evaluation.metrics import (
    SetSample,
    hit_at_k,
    ranking_metrics,
    recall_at_k,
    reciprocal_rank,
    set_metrics,
)
from ffr_lib.ffrs.types import Prediction, RankedFragment
from ffr_lib.index.stage import IndexStageConfig, index_fragments
from ffr_lib.models.encoder import TextEncoder
from ffr_lib.progress import Progress
from ffr_lib.reporting import percentile
from ffr_lib.segment.stage import FragmentStageConfig, cut_dialogues
from ffr_lib.store import normalized, write_dataset

log = logging.getLogger(__name__)

Mode = Literal["single", "corpus"]
MODES: tuple[Mode, ...] = ("single", "corpus")
KS: tuple[int, ...] = (1, 5, 10, 20)
GROUP_METRICS: tuple[str, ...] = (
    "n",
    "f1",
    "macro_f1",
    "exact_match",
    "recall@10",
    "frag_recall@5",
    "dialogue_acc@1",
    "abstain_rate",
)


# ----------------------------------------------------------------------------- corpus


class CorpusConfig(BaseModel):
    """How the dialogues of an evaluation are put into its own fragment index."""

    model_config = ConfigDict(extra="forbid")

    encoder: str = Field("minilm", description="FEM used when no FEM version serves yet")
    segmenter: Literal["texttiling", "windows"] = "texttiling"
    index: IndexStageConfig = Field(
        default_factory=IndexStageConfig,
        description="fragment text, image encoder and index settings (as the fragment_index "
        "asset uses them)",
    )


@dataclass
class Corpus:
    """The dialogues of an evaluation and their fragments in the evaluation's own index.

    ``restrict``: dialogue ids to pass as the search filter when the index also holds dialogues
    outside the evaluation (None when it holds exactly these)."""

    dialogues: dict[str, Dialogue]
    fragments: list[RankedFragment] = field(default_factory=list)
    url: str | None = None
    encoder: Any = None
    restrict: list[str] | None = None
    embedding_model: str | None = None
    index_report: dict[str, Any] = field(default_factory=dict)

    def owners(self, dialogue_id: str, image_ids: Sequence[int]) -> set[int]:
        """Utterance ids that own ``image_ids`` (unknown dialogue: none)."""
        dialogue = self.dialogues.get(dialogue_id)
        if dialogue is None:
            return set()
        n = len(dialogue.images)
        return {dialogue.images[j].utterance_index for j in image_ids if 0 <= j < n}

    @classmethod
    def in_memory(cls, dataset: Dataset) -> Corpus:
        """A corpus without an index (systems that need one are skipped)."""
        return cls(dialogues=dataset.dialogue_by_id())

    @classmethod
    def prepare(
        cls,
        dataset: Dataset,
        url: str | None = None,
        config: CorpusConfig | None = None,
        encoder: Any = None,
    ) -> Corpus:
        """Store the dialogues in the database at ``url`` (idempotent), cut them and index them
        through the index stage (embedder config, checks, serving flip), and read the fragments
        back. ``url`` is the evaluation's own database (:func:`ffr_lib.db.scratch.scratch_database`),
        never the one users serve from. ``encoder``: the FEM to index with (the caller passes the
        serving FEM of the user's database); default ``config.encoder``."""
        config = config or CorpusConfig()
        dialogues = dataset.dialogue_by_id()
        ids = sorted(dialogues)
        # Cut from the dialogues as stored (timestamps UTC: the binary COPY refuses naive ones).
        stored = [normalized(dialogues[d]) for d in ids]
        write_dataset(Dataset(dialogues=stored), url=url)
        encoder = encoder or TextEncoder.get(config.encoder)
        fragments = cut_dialogues(stored, FragmentStageConfig(segmenter=config.segmenter))
        queries = [q.text for q in dataset.queries if q.text]
        report = index_fragments(url, stored, fragments, encoder, config.index, queries)
        model = report["embedding_model"]
        log.info(
            "evaluation index: %d dialogues, %s fragments under %s",
            report["dialogues"],
            report["stats"]["fragments"],
            model,
        )
        with connect(url) as db:
            rows = db.execute(
                "SELECT id, dialogue_id, utterance_ids, image_ids, text FROM ffr.fragments "
                "WHERE embedding_model = %s AND dialogue_id = ANY(%s) "
                "ORDER BY dialogue_id, utterance_ids[1]",
                (model, ids),
            ).fetchall()
            outside = db.execute(
                "SELECT EXISTS (SELECT 1 FROM ffr.fragments WHERE embedding_model = %s "
                "AND NOT (dialogue_id = ANY(%s)))",
                (model, ids),
            ).fetchone()[0]
        fragments_read = [
            RankedFragment(
                dialogue_id=d,
                utterance_ids=list(u),
                image_ids=list(i),
                score=0.0,
                fragment_id=f,
                text=t,
            )
            for f, d, u, i, t in rows
        ]
        return cls(
            dialogues=dialogues,
            fragments=fragments_read,
            url=url,
            encoder=encoder,
            restrict=ids if outside else None,
            embedding_model=model,
            index_report=report,
        )


# ----------------------------------------------------------------------------- systems


class SystemSkipped(Exception):
    """Raised by ``System.setup`` when the system cannot run here (the message says why)."""


class System:
    """A retrieval system under evaluation. Subclasses set ``modes`` and implement
    :meth:`predict_dialogue` and/or :meth:`predict_corpus`; ``name`` and ``description`` come
    from the registry that builds them (:mod:`ffr_lib.evaluation.systems`)."""

    name: str = "system"
    modes: tuple[Mode, ...] = MODES
    description: str = ""
    #: Reads with the generator (seconds per query on a CPU): scores only the
    #: ``HarnessConfig.reader_limit`` queries when that is set.
    reads_with_generator: bool = False
    #: A reference system (set from the registry's ``SystemEntry.baseline``): FFR's own systems
    #: are compared with the best of these in each table.
    baseline: bool = False

    def setup(self, corpus: Corpus) -> None:
        """Build what the system needs over ``corpus`` (indexes, vectors); may raise
        :class:`SystemSkipped`."""

    def skip_reason(self, mode: Mode) -> str | None:
        if mode not in self.modes:
            return f"{mode} mode not supported ({'/'.join(self.modes)} only)"
        return None

    def predict(self, query: str, target: Dialogue | Corpus) -> Prediction:
        """Answer ``query`` inside one dialogue or over the whole corpus."""
        if isinstance(target, Dialogue):
            return self.predict_dialogue(query, target)
        return self.predict_corpus(query, target)

    def predict_dialogue(self, query: str, dialogue: Dialogue) -> Prediction:
        raise NotImplementedError(f"{self.name} has no single-dialogue mode")

    def predict_corpus(self, query: str, corpus: Corpus) -> Prediction:
        raise NotImplementedError(f"{self.name} has no corpus mode")


# ----------------------------------------------------------------------------- running


class HarnessConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    modes: list[Mode] = Field(default_factory=lambda: list(MODES))
    limit: int | None = Field(
        None, ge=1, description="N queries only, spread evenly over the dataset (None = all)"
    )
    reader_limit: int | None = Field(
        None,
        ge=1,
        description="queries the generator systems (F2RVLM, FFRS) score, spread evenly over the "
        "evaluated ones (None = all); every system is then also scored on exactly those "
        "queries, as dataset <name>-reader-subset",
    )
    ks: list[int] = Field(default_factory=lambda: list(KS))
    length_buckets: tuple[int, int] = Field(
        (35, 65), description="dialogue length bucket edges in turns: <35, 35-65, >65"
    )
    bootstrap_resamples: int = Field(
        RESAMPLES,
        ge=1,
        description="query resamples behind the 95% intervals of F1 and of the difference "
        "against the best baseline",
    )
    bootstrap_seed: int = Field(SEED, description="seed of the bootstrap draws (reproducible)")


@dataclass
class Record:
    query: Query
    prediction: Prediction
    seconds: float


@dataclass
class SystemRun:
    system: str
    mode: Mode
    records: list[Record] = field(default_factory=list)
    skipped: str | None = None
    setup_seconds: float = 0.0
    note: str | None = None  # what the system chose to run with (e.g. FFRS's fine stage)


@dataclass
class EvalOutput:
    """Metrics keyed ``dataset -> system -> metric`` (dataset keys are ``<name>/<mode>``) plus
    the raw runs (predictions and timings)."""

    metrics: dict[str, dict[str, dict[str, Any]]]
    runs: dict[str, list[SystemRun]]


def evaluation_queries(dataset: Dataset, limit: int | None = None) -> list[Query]:
    """Queries that name their dialogue; with ``limit``, that many spread evenly over the
    dataset (every n-th), so a small sample still covers many dialogues, query types and
    families instead of the first few dialogues only. Deterministic."""
    by_id = dataset.dialogue_by_id()
    return spread([q for q in dataset.queries if q.dialogue_id in by_id], limit)


def run_system(system: System, queries: Sequence[Query], corpus: Corpus, mode: Mode) -> SystemRun:
    """Predict every query with ``system`` (after its setup) in ``mode``."""
    run = SystemRun(system.name, mode)
    reason = system.skip_reason(mode)
    if reason:
        run.skipped = reason
        return run
    start = time.perf_counter()
    try:
        system.setup(corpus)
    except SystemSkipped as skipped:
        run.skipped = str(skipped)
        return run
    run.setup_seconds = time.perf_counter() - start
    run.note = getattr(system, "note", None)
    with Progress(len(queries), f"{mode}: {system.name}", unit="queries") as bar:
        for query in queries:
            target: Dialogue | Corpus = (
                corpus.dialogues[query.dialogue_id or ""] if mode == "single" else corpus
            )
            t0 = time.perf_counter()
            prediction = system.predict(query.text, target)
            run.records.append(Record(query, prediction, time.perf_counter() - t0))
            bar.update(1)
    return run


# ----------------------------------------------------------------------------- scoring


def length_bucket(n_turns: int, edges: tuple[int, int] = (35, 65)) -> str:
    """``<35``, ``35-65`` or ``>65`` (the paper's buckets)."""
    low, high = edges
    if n_turns < low:
        return f"<{low}"
    if n_turns <= high:
        return f"{low}-{high}"
    return f">{high}"


Grouper = Callable[[Query, Dialogue], str | None]


def default_groupers(edges: tuple[int, int] = (35, 65)) -> dict[str, Grouper]:
    return {
        "bucket": lambda q, d: length_bucket(len(d.utterances), edges),
        "family": lambda q, d: q.family,
        "type": lambda q, d: q.type.value,
    }


def set_sample(query: Query, gold: Dialogue, prediction: Prediction) -> SetSample:
    """The final pick of ``prediction`` scored against the query's gold dialogue. Ids picked in
    another dialogue are encoded as negative ids: outside the gold dialogue's id range, so they
    count as false positives and never as true negatives."""
    utt, img = prediction.utterance_ids, prediction.image_ids
    if prediction.dialogue_id is not None and prediction.dialogue_id != gold.id:
        utt = [-1 - i for i in range(len(utt))]
        img = [-1 - i for i in range(len(img))]
    return SetSample.for_query(query, gold, utt, img)


def unit_items(unit: RankedFragment, corpus: Corpus) -> list[tuple[str, int]]:
    utt, img = unit.effective()
    ids = set(utt) | corpus.owners(unit.dialogue_id, img)
    return [(unit.dialogue_id, u) for u in sorted(ids)]


@dataclass
class _View:
    query: Query
    dialogue: Dialogue
    sample: SetSample
    ranked: list[Hashable]
    units: list[list[Hashable]]
    gold: set[tuple[str, int]]
    dialogue_rank: int | None
    empty: bool
    timings: dict[str, float]
    tokens: int
    answers: dict[str, int]


def _view(record: Record, corpus: Corpus) -> _View:
    query, prediction = record.query, record.prediction
    dialogue = corpus.dialogues[query.dialogue_id or ""]
    units = [unit_items(u, corpus) for u in prediction.units]
    ranked: list[Hashable] = [item for items in units for item in items]
    order = [d.dialogue_id for d in prediction.dialogues]
    rank = order.index(dialogue.id) + 1 if dialogue.id in order else None
    timings = dict(prediction.timings)
    timings["total"] = record.seconds
    return _View(
        query,
        dialogue,
        set_sample(query, dialogue, prediction),
        ranked,
        units,  # type: ignore[arg-type]
        {(dialogue.id, u) for u in gold_items(query, dialogue)},
        rank,
        prediction.is_empty,
        timings,
        prediction.tokens_read,
        prediction.answers,
    )


def answer_rates(per_query: Iterable[Mapping[str, int]]) -> dict[str, float]:
    """``malformed_rate``, ``recovered_rate`` and ``answers_n`` over the generated answers of
    all queries; {} when nothing was generated (a system that does not generate)."""
    totals: dict[str, int] = defaultdict(int)
    for counts in per_query:
        for status, n in counts.items():
            totals[status] += n
    n = sum(totals.values())
    if not n:
        return {}
    return {
        "malformed_rate": totals["malformed"] / n,
        "recovered_rate": totals["recovered"] / n,
        "answers_n": float(n),
    }


def _aggregate(views: Sequence[_View], ks: Sequence[int]) -> dict[str, float]:
    out: dict[str, float] = {"n": float(len(views))}
    out.update(set_metrics([v.sample for v in views]).flat())
    out["n"] = float(len(views))
    positives = [v for v in views if v.gold]
    out.update(ranking_metrics([v.ranked for v in views], [v.gold for v in views], ks))
    for k in ks:
        recall, hit = [], []
        for v in positives:
            flat = [item for items in v.units[:k] for item in items]
            recall.append(recall_at_k(flat, v.gold, max(1, len(flat))))
            hit.append(hit_at_k(flat, v.gold, max(1, len(flat))))
        out[f"frag_recall@{k}"] = float(np.mean(recall)) if recall else math.nan
        out[f"frag_hit@{k}"] = float(np.mean(hit)) if hit else math.nan
    rr = [
        reciprocal_rank(
            range(len(v.units)), {i for i, items in enumerate(v.units) if set(items) & v.gold}
        )
        for v in positives
    ]
    out["frag_mrr"] = float(np.mean(rr)) if rr else math.nan
    if positives:
        out["dialogue_acc@1"] = float(np.mean([v.dialogue_rank == 1 for v in positives]))
        out["dialogue_mrr"] = float(
            np.mean([1.0 / v.dialogue_rank if v.dialogue_rank else 0.0 for v in positives])
        )
        out["answer_rate"] = float(np.mean([not v.empty for v in positives]))
    negatives = [v for v in views if v.query.type is QueryType.NEGATIVE]
    out["n_negative"] = float(len(negatives))
    out["abstain_rate"] = float(np.mean([v.empty for v in negatives])) if negatives else math.nan
    stages = sorted({s for v in views for s in v.timings})
    for stage in stages:
        values = [1000 * v.timings.get(stage, 0.0) for v in views]
        out[f"latency_p50_ms/{stage}"] = percentile(values, 50)
        out[f"latency_p95_ms/{stage}"] = percentile(values, 95)
    out["tokens_read_mean"] = float(np.mean([v.tokens for v in views])) if views else 0.0
    out.update(answer_rates(v.answers for v in views))
    return out


def score_run(
    run: SystemRun,
    corpus: Corpus,
    groupers: Mapping[str, Grouper] | None = None,
    ks: Sequence[int] = KS,
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> dict[str, Any]:
    """Flat metrics of one run (see the module docstring); ``{"skipped": reason}`` when it did
    not run. ``resamples`` / ``seed``: the bootstrap behind ``f1_ci_low`` / ``f1_ci_high``."""
    if run.skipped is not None:
        return {"skipped": run.skipped}
    if not run.records:
        return {"n": 0.0}
    views = [_view(r, corpus) for r in run.records]
    out: dict[str, Any] = _aggregate(views, ks)
    interval = f1_interval([v.sample for v in views], resamples, seed)
    out["f1_ci_low"], out["f1_ci_high"] = interval.low, interval.high
    out["setup_seconds"] = run.setup_seconds
    if run.note:
        out["note"] = run.note
    for name, grouper in (groupers or {}).items():
        groups: dict[str, list[_View]] = defaultdict(list)
        for v in views:
            value = grouper(v.query, v.dialogue)
            if value is not None:
                groups[str(value)].append(v)
        for value, members in sorted(groups.items()):
            figures = _aggregate(members, ks)
            for metric in GROUP_METRICS:
                if metric in figures:
                    out[f"group/{name}={value}/{metric}"] = figures[metric]
    return out


def run_samples(run: SystemRun, corpus: Corpus) -> list[SetSample]:
    """The run's (prediction, gold) samples over each query's own dialogue, in query order: what
    a paired bootstrap between two runs on the same queries takes."""
    return [
        set_sample(r.query, corpus.dialogues[r.query.dialogue_id or ""], r.prediction)
        for r in run.records
    ]


def _keyed_samples(run: SystemRun, corpus: Corpus) -> dict[tuple[str, int], SetSample]:
    """The run's samples keyed by (query id, occurrence): pairs runs query by query, and a
    repeated query id still pairs its n-th occurrence with the other run's n-th."""
    seen: dict[str, int] = defaultdict(int)
    out: dict[tuple[str, int], SetSample] = {}
    for record in run.records:
        query = record.query
        out[(query.id, seen[query.id])] = set_sample(
            query, corpus.dialogues[query.dialogue_id or ""], record.prediction
        )
        seen[query.id] += 1
    return out


def compare_with_best_baseline(
    metrics: dict[str, dict[str, Any]],
    runs: Sequence[SystemRun],
    corpus: Corpus,
    baselines: Collection[str],
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> str | None:
    """Add to the metrics of every non-baseline run of one table (``metrics``: system -> flat
    figures, as :func:`score_run` made them) its F1 difference against the best baseline of the
    table (highest ``f1`` among ``baselines`` that ran) with a paired bootstrap interval over
    the queries both scored. Returns the best baseline's name, None when no baseline ran."""
    scored = {r.system: r for r in runs if r.records and "f1" in metrics.get(r.system, {})}
    candidates = [name for name in scored if name in baselines]
    if not candidates:
        return None
    best = max(candidates, key=lambda name: metrics[name]["f1"])  # ties: the first listed
    reference = _keyed_samples(scored[best], corpus)
    for name, run in scored.items():
        if name in baselines:
            continue
        mine = _keyed_samples(run, corpus)
        # Only the queries both scored: a generator system may have read a subset.
        common = [key for key in mine if key in reference]
        figures = metrics[name]
        figures["best_baseline"] = best
        figures["f1_vs_best_baseline_n"] = float(len(common))
        if not common:
            continue
        diff = paired_f1_difference(
            [mine[k] for k in common], [reference[k] for k in common], resamples, seed
        )
        figures["f1_vs_best_baseline"] = diff.estimate
        figures["f1_vs_best_baseline_ci_low"] = diff.low
        figures["f1_vs_best_baseline_ci_high"] = diff.high
    return best


def evaluate(
    dataset: Dataset,
    systems: Sequence[System],
    corpus: Corpus,
    *,
    name: str,
    config: HarnessConfig | None = None,
    groupers: Mapping[str, Grouper] | None = None,
    skipped: Mapping[str, str] | None = None,
) -> EvalOutput:
    """Run every system in every mode of ``config`` and score it. ``skipped`` names systems
    that were not even built (e.g. no trained model) with the reason: they are reported too."""
    config = config or HarnessConfig()
    groupers = dict(groupers if groupers is not None else default_groupers(config.length_buckets))
    queries = evaluation_queries(dataset, config.limit)
    reader_queries = spread(queries, config.reader_limit)
    subset = len(reader_queries) < len(queries)
    reader_names = {s.name for s in systems if s.reads_with_generator}
    baselines = {s.name for s in systems if s.baseline}
    bootstrap = {"resamples": config.bootstrap_resamples, "seed": config.bootstrap_seed}
    metrics: dict[str, dict[str, dict[str, Any]]] = {}
    runs: dict[str, list[SystemRun]] = {}
    for mode in config.modes:
        key = f"{name}/{mode}"
        metrics[key], runs[key] = {}, []
        for system in systems:
            log.info("%s: %s", key, system.name)
            chosen = reader_queries if system.reads_with_generator else queries
            run = run_system(system, chosen, corpus, mode)
            runs[key].append(run)
            metrics[key][system.name] = score_run(run, corpus, groupers, config.ks, **bootstrap)
        compare_with_best_baseline(metrics[key], runs[key], corpus, baselines, **bootstrap)
        for system_name, reason in (skipped or {}).items():
            metrics[key][system_name] = {"skipped": reason}
        if subset and any(r.records for r in runs[key] if r.system in reader_names):
            # Every system on exactly the queries the generator systems read: the fair
            # comparison with them (the full table compares the others on all queries).
            ids = {q.id for q in reader_queries}
            sub_key = f"{name}-{READER_SUBSET}/{mode}"
            runs[sub_key] = [_only(run, ids) for run in runs[key]]
            metrics[sub_key] = {
                run.system: score_run(run, corpus, groupers, config.ks, **bootstrap)
                for run in runs[sub_key]
            }
            compare_with_best_baseline(
                metrics[sub_key], runs[sub_key], corpus, baselines, **bootstrap
            )
    return EvalOutput(metrics, runs)


#: Dataset-name suffix of the tables restricted to the generator systems' queries.
READER_SUBSET = "reader-subset"


def _only(run: SystemRun, ids: set[str]) -> SystemRun:
    """``run`` restricted to the queries ``ids``."""
    records = [r for r in run.records if r.query.id in ids]
    return SystemRun(run.system, run.mode, records, run.skipped, run.setup_seconds)
