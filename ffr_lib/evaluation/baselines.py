"""The systems compared in the evaluation, each a small :class:`~ffr_lib.evaluation.harness.System`,
and the factories the registry (:data:`ffr_lib.evaluation.systems.SYSTEMS`, which names and
describes them) builds them with.

Utterances are seen as a text model sees them (``speaker: text [image: caption]``,
:func:`ffr_lib.mldr.text.utterance_render`); a pick of utterances includes the images sent with
them. The single-dialogue BM25 and overlap window are the helpers of
:mod:`ffr_lib.mldr.difficulty`; the corpus-wide BM25 indexes use bm25s with the same terms.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ffr_lib.data.dataset import Dataset
from ffr_lib.data.model import Dialogue
from ffr_lib.evaluation.harness import Corpus, Mode, System, SystemSkipped
from ffr_lib.evaluation.systems import (
    OPTIONAL_SYSTEM_NAMES,
    SYSTEM_NAMES,
    SystemOptions,
    build_systems,
)
from ffr_lib.f2rvlm.backbone import read_adapter_meta
from ffr_lib.f2rvlm.profiles import F2RVLMProfile
from ffr_lib.f2rvlm.retriever import F2RVLMRetriever
from ffr_lib.ffrs.api import load_retriever, open_ffrs
from ffr_lib.ffrs.pipeline import FFRSConfig, FFRSPipeline, FragmentReader, read_whole_dialogue
from ffr_lib.ffrs.serving import serving_fine_stage
from ffr_lib.ffrs.types import Prediction, RankedFragment, merge_per_dialogue, timed
from ffr_lib.mldr.difficulty import (
    _terms,  # the tokenisation of the BM25 helpers (stems, no stop words)
    bm25_predict,
    bm25_rank,
    overlap_window_predict,
)
from ffr_lib.mldr.text import utterance_render
from ffr_lib.models.encoder import TextEncoder
from ffr_lib.reader.reader import Reader
from ffr_lib.reader.stage import champion_path


def _owned(dialogue: Dialogue, utterance_ids: Sequence[int]) -> list[int]:
    keep = set(utterance_ids)
    return [im.index for im in dialogue.images if im.utterance_index in keep]


def utterance_unit(dialogue: Dialogue, index: int, score: float) -> RankedFragment:
    return RankedFragment(
        dialogue_id=dialogue.id,
        utterance_ids=[index],
        image_ids=_owned(dialogue, [index]),
        score=float(score),
        text=utterance_render(dialogue, index),
    )


def span_prediction(
    dialogue: Dialogue,
    utterance_ids: Sequence[int],
    units: list[RankedFragment],
    score: float = 1.0,
    image_ids: Sequence[int] | None = None,
) -> Prediction:
    """A single-dialogue prediction: the pick ``utterance_ids`` and ``image_ids`` (default: the
    images those utterances sent), empty when none; ``units`` ranked for the ranking metrics."""
    images = _owned(dialogue, utterance_ids) if image_ids is None else sorted(image_ids)
    pick = RankedFragment(dialogue.id, sorted(utterance_ids), images, score)
    return Prediction(dialogues=merge_per_dialogue([pick]), units=units)


def top_per_dialogue(units: Sequence[RankedFragment], per_dialogue: int) -> list[RankedFragment]:
    """The first ``per_dialogue`` units of each dialogue, in rank order."""
    seen: dict[str, int] = {}
    out = []
    for unit in units:
        if seen.get(unit.dialogue_id, 0) < per_dialogue:
            seen[unit.dialogue_id] = seen.get(unit.dialogue_id, 0) + 1
            out.append(unit)
    return out


def _bm25_index(docs: list[list[str]]) -> Any:
    import bm25s

    retriever = bm25s.BM25()
    retriever.index([d or ["<empty>"] for d in docs], show_progress=False)
    return retriever


def _bm25_scores(index: Any, n_docs: int, query: str) -> np.ndarray:
    terms = _terms(query)
    if not terms or index is None:
        return np.zeros(n_docs)
    return np.asarray(index.get_scores(terms), dtype=float)


# ----------------------------------------------------------------------------- utterance level


class _UtteranceRanker(System):
    """Scores every utterance of the corpus; corpus pick = the top ``k_pick`` utterances of the
    top dialogue. Subclasses implement :meth:`scores` (over ``self.rows``)."""

    k_pick = 3
    max_units = 200
    positive_only = False

    def setup(self, corpus: Corpus) -> None:
        self.dialogues = corpus.dialogues
        self.rows = [(d, i) for d in corpus.dialogues.values() for i in range(len(d.utterances))]
        self.texts = [utterance_render(d, i) for d, i in self.rows]

    def scores(self, query: str, timings: dict[str, float]) -> np.ndarray:
        raise NotImplementedError

    def predict_corpus(self, query: str, corpus: Corpus) -> Prediction:
        timings: dict[str, float] = {}
        scores = self.scores(query, timings)
        order = np.argsort(-scores, kind="stable")[: self.max_units]
        units = [
            utterance_unit(self.rows[i][0], self.rows[i][1], scores[i])
            for i in order
            if not self.positive_only or scores[i] > 0
        ]
        dialogues = merge_per_dialogue(top_per_dialogue(units, self.k_pick))
        return Prediction(dialogues=dialogues, units=units, timings=timings)


class BM25Utterances(_UtteranceRanker):
    positive_only = True

    def setup(self, corpus: Corpus) -> None:
        super().setup(corpus)
        self.index = _bm25_index([_terms(t) for t in self.texts]) if self.texts else None

    def scores(self, query: str, timings: dict[str, float]) -> np.ndarray:
        with timed(timings, "bm25"):
            return _bm25_scores(self.index, len(self.rows), query)

    def predict_dialogue(self, query: str, dialogue: Dialogue) -> Prediction:
        timings: dict[str, float] = {}
        with timed(timings, "bm25"):
            utts, _ = bm25_predict(query, dialogue, self.k_pick)
            ranked = bm25_rank(query, dialogue)
        units = [utterance_unit(dialogue, i, 0.0) for i in ranked]
        prediction = span_prediction(dialogue, utts, units)
        prediction.timings = timings
        return prediction


class DenseMiniLM(_UtteranceRanker):
    """Zero-shot dense retrieval with the base MiniLM (no FEM training, no fragments)."""

    encoder_name = "minilm"

    def setup(self, corpus: Corpus) -> None:
        super().setup(corpus)
        self.encoder = TextEncoder.get(self.encoder_name)
        self.vectors = self.encoder.encode(self.texts)
        self.offset: dict[str, int] = {}
        for row, (d, i) in enumerate(self.rows):
            if i == 0:
                self.offset[d.id] = row

    def embed(self, query: str, timings: dict[str, float]) -> np.ndarray:
        with timed(timings, "embed"):
            return self.encoder.encode([query])[0]

    def scores(self, query: str, timings: dict[str, float]) -> np.ndarray:
        q = self.embed(query, timings)
        with timed(timings, "score"):
            return self.vectors @ q

    def dialogue_scores(
        self, query: str, dialogue: Dialogue, timings: dict[str, float]
    ) -> np.ndarray:
        q = self.embed(query, timings)
        n = len(dialogue.utterances)
        with timed(timings, "score"):
            if dialogue.id in self.offset:
                start = self.offset[dialogue.id]
                vectors = self.vectors[start : start + n]
            else:
                vectors = self.encoder.encode([utterance_render(dialogue, i) for i in range(n)])
            return vectors @ q

    def predict_dialogue(self, query: str, dialogue: Dialogue) -> Prediction:
        timings: dict[str, float] = {}
        scores = self.dialogue_scores(query, dialogue, timings)
        order = [int(i) for i in np.argsort(-scores, kind="stable")]
        units = [utterance_unit(dialogue, i, scores[i]) for i in order]
        prediction = span_prediction(dialogue, order[: self.k_pick], units)
        prediction.timings = timings
        return prediction


# ----------------------------------------------------------------------------- fragment level


class BM25Fragments(System):
    """BM25 over the fragments of the index (the same fragments the FEM searches)."""

    def setup(self, corpus: Corpus) -> None:
        if not corpus.fragments:
            raise SystemSkipped("the corpus has no indexed fragments")
        self.fragments = corpus.fragments
        self.index = _bm25_index([_terms(f.text) for f in self.fragments])
        self.rows_of: dict[str, list[int]] = {}
        for row, f in enumerate(self.fragments):
            self.rows_of.setdefault(f.dialogue_id, []).append(row)

    def _ranked(self, query: str, rows: Sequence[int] | None) -> tuple[list[RankedFragment], dict]:
        timings: dict[str, float] = {}
        with timed(timings, "bm25"):
            scores = _bm25_scores(self.index, len(self.fragments), query)
            candidates = np.arange(len(scores)) if rows is None else np.asarray(rows, dtype=int)
            order = candidates[np.argsort(-scores[candidates], kind="stable")]
        units = []
        for i in order:
            if scores[i] > 0:
                f = self.fragments[int(i)]
                units.append(
                    RankedFragment(
                        f.dialogue_id,
                        f.utterance_ids,
                        f.image_ids,
                        float(scores[i]),
                        f.fragment_id,
                        f.text,
                    )
                )
        return units, timings

    def predict_corpus(self, query: str, corpus: Corpus) -> Prediction:
        units, timings = self._ranked(query, None)
        units = units[:200]
        return Prediction(merge_per_dialogue(top_per_dialogue(units, 1)), units, timings)

    def predict_dialogue(self, query: str, dialogue: Dialogue) -> Prediction:
        units, timings = self._ranked(query, self.rows_of.get(dialogue.id, []))
        return Prediction(merge_per_dialogue(units[:1]), units, timings)


def recall_pipeline(corpus: Corpus, k: int, hybrid: bool | None = None) -> FFRSPipeline | None:
    """FFRS's recall stage over the corpus's own index (no fine stage; ``hybrid``: through
    ``ffr.hybrid_search`` or not, None = as FFRS recalls by default); None without an index."""
    if corpus.encoder is None or not corpus.fragments:
        return None
    config = FFRSConfig(k=k, stage2="fragment")
    if hybrid is not None:
        config.hybrid = hybrid
    return FFRSPipeline(
        config,
        encoder=corpus.encoder,
        url=corpus.url,
        dialogues=corpus.dialogues,
    )


class FEMOnly(System):
    """FEM alone: the fragment index's top fragment, all of it (``hybrid``: ranked by
    ``ffr.hybrid_search``, full-text and FEM fused)."""

    def __init__(self, k: int = 20, hybrid: bool | None = False) -> None:
        self.k, self.hybrid = k, hybrid

    def setup(self, corpus: Corpus) -> None:
        self.pipeline = recall_pipeline(corpus, self.k, self.hybrid)
        if self.pipeline is None:
            raise SystemSkipped("no fragment index for this corpus (Corpus.prepare not run)")

    def predict_corpus(self, query: str, corpus: Corpus) -> Prediction:
        timings: dict[str, float] = {}
        units = self.pipeline.recall(query, self.k, corpus.restrict, timings)
        return Prediction(merge_per_dialogue(top_per_dialogue(units, 1)), units, timings)

    def predict_dialogue(self, query: str, dialogue: Dialogue) -> Prediction:
        timings: dict[str, float] = {}
        units = self.pipeline.recall(query, self.k, [dialogue.id], timings)
        return Prediction(merge_per_dialogue(units[:1]), units, timings)


class HybridRecall(FEMOnly):
    """FEM fused with full-text search (``ffr.hybrid_search``): the top fragment, all of it."""

    modes: tuple[Mode, ...] = ("corpus",)  # one dialogue is a filtered search: vector-only


class FFRSWholeFragment(FEMOnly):
    """FFRS without the second stage: every recalled fragment counts whole, merged per dialogue
    (the ablation of F2RVLM's pick)."""

    modes: tuple[Mode, ...] = ("corpus",)

    def predict_corpus(self, query: str, corpus: Corpus) -> Prediction:
        return self.pipeline.query(query, self.k, corpus.restrict)


# ----------------------------------------------------------------------------- F2RVLM


class _ModelSystem(System):
    """Shares one loaded F2RVLM between the systems built with the same ``model``."""

    _loaded: dict[str, Any] = {}
    reads_with_generator = True

    def __init__(self, model: str | Path | Any | None, k: int = 20, batch_size: int = 8) -> None:
        self.model, self.k, self.batch_size = model, k, batch_size

    def reader(self) -> Any:
        if self.model is None:
            raise SystemSkipped(
                "no trained F2RVLM adapter: pass --model ADAPTER_DIR (or a profile name)"
            )
        key = str(id(self.model)) if not isinstance(self.model, str | Path) else str(self.model)
        if key not in self._loaded:
            try:
                self._loaded[key] = load_retriever(self.model)
            except (FileNotFoundError, KeyError) as error:
                raise SystemSkipped(f"cannot load F2RVLM {self.model}: {error}") from error
        return FragmentReader(self._loaded[key], batch_size=self.batch_size)


class F2RVLMOnly(_ModelSystem):
    modes: tuple[Mode, ...] = ("single",)

    def setup(self, corpus: Corpus) -> None:
        self._reader = self.reader()

    def predict_dialogue(self, query: str, dialogue: Dialogue) -> Prediction:
        return read_whole_dialogue(self._reader, dialogue, query)


class F2RVLMStage(F2RVLMOnly):
    """F2RVLM alone at an earlier stage of the given adapter's chain, so the report shows what
    each stage adds: ``sft`` (the SFT adapter a GRPO adapter was trained from) or ``zero-shot``
    (the untrained backbone with the adapter's prompt settings)."""

    def __init__(self, model: str | Path | Any | None, stage: str, k: int = 20) -> None:
        super().__init__(model, k)
        self.stage = stage

    def setup(self, corpus: Corpus) -> None:
        if not isinstance(self.model, str | Path) or not Path(self.model).is_dir():
            raise SystemSkipped("needs a trained adapter folder: pass --model ADAPTER_DIR")
        try:
            meta = read_adapter_meta(Path(self.model))
        except FileNotFoundError as error:
            raise SystemSkipped(str(error)) from error
        if self.stage == "sft":
            if meta.get("stage") != "grpo" or not meta.get("parents"):
                raise SystemSkipped("the adapter is no GRPO adapter: `f2rvlm` is the SFT model")
            self.model = meta["parents"][-1]
        else:
            self.model = F2RVLMRetriever.from_base(F2RVLMProfile.model_validate(meta["profile"]))
        super().setup(corpus)


class FFRSSystem(_ModelSystem):
    """FFRS with the fine stage that serves: F2RVLM (``--model``) when the fine-stage verdict
    chose it (:mod:`ffr_lib.ffrs.serving`) and no ``--reader`` is named, else the trained reader
    when there is one (``--reader`` or the champion), else F2RVLM. The report names the one that
    ran (``note``)."""

    modes: tuple[Mode, ...] = ("corpus",)

    def __init__(
        self,
        model: str | Path | Any | None,
        k: int = 20,
        batch_size: int = 8,
        reader: str | Path | None = None,
    ) -> None:
        super().__init__(model, k, batch_size)
        # The same choice as `ffr query` (open_ffrs): the verdict's F2RVLM, else the reader when
        # there is one, else F2RVLM.
        serving, served = serving_fine_stage(reader)
        self.checkpoint = served if serving == "reader" else None
        # With a trained reader to serve, FFRS reads in milliseconds: it scores every query,
        # not only the --reader-limit ones F2RVLM reads.
        self.reads_with_generator = self.checkpoint is None

    def setup(self, corpus: Corpus) -> None:
        if corpus.encoder is None or not corpus.fragments:
            raise SystemSkipped("no fragment index for this corpus (Corpus.prepare not run)")
        checkpoint = self.checkpoint
        # F2RVLM is loaded once per model, shared with the other F2RVLM systems.
        model = None if checkpoint is not None else self.reader().retriever
        self.pipeline = open_ffrs(
            model,
            config=FFRSConfig(k=self.k, batch_size=self.batch_size),
            encoder=corpus.encoder,
            url=corpus.url,
            dialogues=corpus.dialogues,
            fine_stage="reader" if checkpoint is not None else "f2rvlm",
            reader=checkpoint,
        )
        fine = f"the trained reader ({checkpoint})" if model is None else f"F2RVLM ({self.model})"
        self.note = f"fine stage: {fine}"

    def predict_corpus(self, query: str, corpus: Corpus) -> Prediction:
        return self.pipeline.query(query, self.k, corpus.restrict)


# ----------------------------------------------------------------------------- window priors


class PositionPrior(System):
    """Where gold usually sits: a window of the median gold length around the median relative
    position of the gold, both fitted on OTHER queries (:meth:`fit`); 0.5 and 3 unfitted."""

    modes: tuple[Mode, ...] = ("single",)

    def __init__(self, center: float = 0.5, width: int = 3) -> None:
        self.center, self.width = center, width
        self.fitted_on = 0

    def fit(self, dataset: Dataset) -> PositionPrior:
        by_id = dataset.dialogue_by_id()
        centers, widths = [], []
        for q in dataset.queries:
            d = by_id.get(q.dialogue_id or "")
            if d is None or not q.gold_utterance_ids or not d.utterances:
                continue
            centers.append(float(np.mean(q.gold_utterance_ids)) / max(1, len(d.utterances) - 1))
            widths.append(len(q.gold_utterance_ids))
        if centers:
            self.center = float(np.median(centers))
            self.width = max(1, int(round(float(np.median(widths)))))
            self.fitted_on = len(centers)
        return self

    def predict_dialogue(self, query: str, dialogue: Dialogue) -> Prediction:
        n = len(dialogue.utterances)
        mid = int(round(self.center * max(0, n - 1)))
        start = min(max(0, mid - self.width // 2), max(0, n - self.width))
        span = list(range(start, min(n, start + self.width)))
        unit = RankedFragment(dialogue.id, span, _owned(dialogue, span), 1.0)
        return span_prediction(dialogue, span, [unit])


class WholeDialogue(System):
    """Every utterance and image of the dialogue: what answering with everything scores. Micro F1
    rewards recall, so this is the floor a picker must clear (MLDR's gold is ~3 of ~26 turns:
    F1 ~0.26 on MLDR val, above the position prior)."""

    modes: tuple[Mode, ...] = ("single",)

    def predict_dialogue(self, query: str, dialogue: Dialogue) -> Prediction:
        span = list(range(len(dialogue.utterances)))
        images = [im.index for im in dialogue.images]
        unit = RankedFragment(dialogue.id, span, images, 1.0)
        return span_prediction(dialogue, span, [unit], image_ids=images)


class OverlapWindow(System):
    modes: tuple[Mode, ...] = ("single",)

    def __init__(self, max_window: int = 10) -> None:
        self.max_window = max_window

    def predict_dialogue(self, query: str, dialogue: Dialogue) -> Prediction:
        timings: dict[str, float] = {}
        with timed(timings, "overlap"):
            utts, imgs = overlap_window_predict(query, dialogue, self.max_window)
        units = [RankedFragment(dialogue.id, utts, imgs, 1.0)] if utts else []
        prediction = span_prediction(dialogue, utts, units)
        prediction.timings = timings
        return prediction


def best_run(scores: np.ndarray, threshold: float, max_len: int) -> tuple[int, int]:
    """[start, end) of the contiguous run (at most ``max_len``) maximising the sum of
    ``score - threshold``; the shortest, then earliest, on ties. Never empty."""
    gains = np.asarray(scores, dtype=float) - threshold
    best, span = -np.inf, (0, 1)
    for start in range(len(gains)):
        total = 0.0
        for end in range(start, min(len(gains), start + max_len)):
            total += gains[end]
            if total > best + 1e-12:
                best, span = total, (start, end + 1)
    return span


class MiniLMWindow(System):
    """The run of consecutive utterances most similar to the query under the base MiniLM: each
    utterance gains its cosine minus the dialogue's ``quantile`` cosine (so only the clearly
    similar ones pay for a longer run)."""

    modes: tuple[Mode, ...] = ("single",)

    def __init__(self, max_window: int = 10, quantile: float = 0.75) -> None:
        self.max_window, self.quantile = max_window, quantile
        self.dense = DenseMiniLM()

    def setup(self, corpus: Corpus) -> None:
        self.dense.setup(corpus)

    def predict_dialogue(self, query: str, dialogue: Dialogue) -> Prediction:
        timings: dict[str, float] = {}
        scores = self.dense.dialogue_scores(query, dialogue, timings)
        if not len(scores):
            return Prediction(timings=timings)
        start, end = best_run(scores, float(np.quantile(scores, self.quantile)), self.max_window)
        span = list(range(start, end))
        unit = RankedFragment(dialogue.id, span, _owned(dialogue, span), float(scores[span].mean()))
        prediction = span_prediction(dialogue, span, [unit])
        prediction.timings = timings
        return prediction


# ----------------------------------------------------------------------------- trained reader


class TrainedReader(System):
    """The fine-stage reader (:mod:`ffr_lib.reader`). Single mode: it reads the query's dialogue.
    Corpus mode: the FEM recalls fragments through the index and the reader reads the top
    dialogue whole (it decides which runs answer, or that none does)."""

    def __init__(
        self, checkpoint: str | Path | None = None, k: int = 20, reference: bool = False
    ) -> None:
        self.checkpoint, self.k, self.reference = checkpoint, k, reference
        self.pipeline: FFRSPipeline | None = None

    def setup(self, corpus: Corpus) -> None:
        path = self.checkpoint or champion_path()
        if path is None:
            raise SystemSkipped("no trained reader: materialize reader_checkpoint (or --reader)")
        self.reader = Reader.load(path)
        if self.reference:
            weights = self.reader.weights.reference()
            if weights is None:
                raise SystemSkipped(
                    f"reader checkpoint {path} predates the reference decoding: retrain it"
                )
            self.reader = Reader(weights, self.reader.encoder)
        self.pipeline = recall_pipeline(corpus, self.k)

    def _read(self, query: str, dialogue: Dialogue, timings: dict[str, float]) -> Prediction:
        with timed(timings, "reader"):
            answer = self.reader.read(query, dialogue)
        p = answer.probabilities
        order = [int(i) for i in np.argsort(-p, kind="stable")] if len(p) else []
        units = [utterance_unit(dialogue, i, p[i]) for i in order]
        return span_prediction(
            dialogue, answer.utterance_ids, units, answer.score, image_ids=answer.image_ids
        )

    def predict_dialogue(self, query: str, dialogue: Dialogue) -> Prediction:
        timings: dict[str, float] = {}
        prediction = self._read(query, dialogue, timings)
        prediction.timings = timings
        return prediction

    def predict_corpus(self, query: str, corpus: Corpus) -> Prediction:
        if self.pipeline is None:
            raise SystemSkipped("no fragment index for this corpus (Corpus.prepare not run)")
        timings: dict[str, float] = {}
        units = self.pipeline.recall(query, self.k, corpus.restrict, timings)
        if not units:
            return Prediction(timings=timings)
        prediction = self._read(query, corpus.dialogues[units[0].dialogue_id], timings)
        prediction.timings = timings
        return prediction


# ----------------------------------------------------------------------------- factories
# What the registry (ffr_lib.evaluation.systems.SYSTEMS) builds each system name with.


def make_bm25_utterances(options: SystemOptions) -> System:
    return BM25Utterances()


def make_bm25_fragments(options: SystemOptions) -> System:
    return BM25Fragments()


def make_dense_minilm(options: SystemOptions) -> System:
    return DenseMiniLM()


def make_fem(options: SystemOptions) -> System:
    return FEMOnly(options.k)


def make_hybrid(options: SystemOptions) -> System:
    return HybridRecall(options.k, hybrid=True)


def make_ffrs_fragment(options: SystemOptions) -> System:
    return FFRSWholeFragment(options.k, hybrid=None)  # FFRS's own recall stage


def make_ffrs(options: SystemOptions) -> System:
    return FFRSSystem(options.model, options.k, reader=options.reader)


def make_f2rvlm(options: SystemOptions) -> System:
    return F2RVLMOnly(options.model, options.k)


def make_f2rvlm_sft(options: SystemOptions) -> System:
    return F2RVLMStage(options.model, "sft", options.k)


def make_f2rvlm_zero_shot(options: SystemOptions) -> System:
    return F2RVLMStage(options.model, "zero-shot", options.k)


def make_reader(options: SystemOptions) -> System:
    return TrainedReader(options.reader, options.k)


def make_reference_runs(options: SystemOptions) -> System:
    return TrainedReader(options.reader, options.k, reference=True)


def make_position_prior(options: SystemOptions) -> System:
    prior = PositionPrior()
    return prior.fit(options.prior_data) if options.prior_data is not None else prior


def make_whole_dialogue(options: SystemOptions) -> System:
    return WholeDialogue()


def make_overlap_window(options: SystemOptions) -> System:
    return OverlapWindow()


def make_minilm_window(options: SystemOptions) -> System:
    return MiniLMWindow()


# The registry's names and builder, for the callers that import them from here.
__all__ = ["OPTIONAL_SYSTEM_NAMES", "SYSTEM_NAMES", "build_systems"]
