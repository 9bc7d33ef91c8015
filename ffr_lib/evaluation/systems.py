"""The systems an evaluation compares: one registry, ``name -> what it predicts + factory``.

Every list of systems comes from :data:`SYSTEMS`: the default names (:data:`SYSTEM_NAMES`), the
`ffr eval --systems` help (:func:`systems_help`), the report's legend
(:func:`ffr_lib.evaluation.report.render_markdown`) and the name a built system reports under.
The factories live in :mod:`ffr_lib.evaluation.baselines` and are imported on first use, so
reading the names and descriptions loads no model code. Utterances are seen as a text model sees
them (``speaker: text [image: caption]``); a pick of utterances includes the images sent with
them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ffr_lib.registry import Entry, Registry, UnknownNameError

if TYPE_CHECKING:
    from ffr_lib.data.dataset import Dataset
    from ffr_lib.evaluation.harness import System


@dataclass(frozen=True)
class SystemEntry(Entry):
    """A registered system; ``factory(options: SystemOptions) -> System``. ``default``: run when
    no system is named. ``baseline``: a reference system; the report compares each of FFR's own
    systems with the best baseline of its table (paired bootstrap of the F1 difference)."""

    default: bool = True
    baseline: bool = False


@dataclass(frozen=True)
class SystemOptions:
    """What the factories build from. ``model``: the F2RVLM adapter folder, profile name or
    loaded retriever (F2RVLM systems without one are built and report themselves skipped);
    ``k``: fragments FEM/FFRS recall; ``prior_data``: the split the position prior is fitted on
    (not the evaluated one); ``reader``: the trained reader checkpoint (default: the champion,
    ``ffr_lib.reader.stage.champion_path``)."""

    model: str | Path | Any | None = None
    k: int = 20
    prior_data: Dataset | None = None
    reader: str | Path | None = None


_B = "ffr_lib.evaluation.baselines"

SYSTEMS: Registry[SystemEntry] = Registry(
    "system",
    {
        "bm25-utt": SystemEntry(
            "BM25 (bm25s) over utterances; pick = the top 3 with a positive score in the top "
            "dialogue",
            f"{_B}:make_bm25_utterances",
            baseline=True,
        ),
        "bm25-frag": SystemEntry(
            "BM25 over the indexed fragments; pick = the top fragment",
            f"{_B}:make_bm25_fragments",
            baseline=True,
        ),
        "dense-minilm": SystemEntry(
            "zero-shot base MiniLM over utterances (cosine); pick = the top 3 in the top dialogue",
            f"{_B}:make_dense_minilm",
            baseline=True,
        ),
        "fem": SystemEntry(
            "FEM alone (ffr.search_fragments); pick = all of the top fragment",
            f"{_B}:make_fem",
        ),
        "hybrid": SystemEntry(
            "FFRS's recall stage through ffr.hybrid_search (full-text + FEM, reciprocal rank "
            "fusion): the top fragment, all of it (corpus queries; a single dialogue is "
            "filtered, and filtered search is vector-only)",
            f"{_B}:make_hybrid",
        ),
        "ffrs-fragment": SystemEntry(
            "FFRS without its fine stage: the whole fragments its recall stage returns "
            "(ffr.hybrid_search by default, FFRSConfig.hybrid), merged per dialogue",
            f"{_B}:make_ffrs_fragment",
        ),
        "ffrs": SystemEntry(
            "FFRS: its recall stage's top-K (full-text + FEM fusion by default), then the "
            "serving fine stage (the trained reader over the top dialogues, ranked by its "
            "confidence, else F2RVLM inside each fragment), merged per dialogue",
            f"{_B}:make_ffrs",
        ),
        "f2rvlm": SystemEntry(
            "F2RVLM alone over the whole dialogue (in the profile's prompt shape: windows, or one "
            "prompt per dialogue that fits)",
            f"{_B}:make_f2rvlm",
        ),
        "f2rvlm-sft": SystemEntry(
            "F2RVLM alone with the SFT adapter the given GRPO adapter was trained from",
            f"{_B}:make_f2rvlm_sft",
        ),
        # Only when named: the zero-shot backbone never answers in the format (F1 0 on MLDR
        # val, BENCHMARKS.md "F2RVLM experiments") and generates to the token budget on every
        # window, so it is slow for nothing in the default report.
        "f2rvlm-zero-shot": SystemEntry(
            "F2RVLM alone with the untrained backbone (only when named)",
            f"{_B}:make_f2rvlm_zero_shot",
            default=False,
        ),
        "reader": SystemEntry(
            "the trained fine-stage reader: every utterance scored with its neighbours, decoded "
            "into runs (or nothing); corpus mode reads the FEM's top dialogue",
            f"{_B}:make_reader",
        ),
        "zsum-runs": SystemEntry(
            "untrained BM25 + MiniLM z-scores summed per utterance, decoded into runs (or "
            "nothing) by the decoding tuned for it on the reader's held-aside queries: the "
            "baseline decoded as well as the reader is",
            f"{_B}:make_reference_runs",
            baseline=True,
        ),
        "position-prior": SystemEntry(
            "the gold's typical position and length, fitted on other queries",
            f"{_B}:make_position_prior",
            baseline=True,
        ),
        "whole-dialogue": SystemEntry(
            "every utterance and image of the dialogue: the F1 of answering with everything, "
            "the floor a picker must clear",
            f"{_B}:make_whole_dialogue",
            baseline=True,
        ),
        "overlap-window": SystemEntry(
            "the window sharing the most query words",
            f"{_B}:make_overlap_window",
            baseline=True,
        ),
        "minilm-window": SystemEntry(
            "the run of consecutive utterances most similar to the query (MiniLM)",
            f"{_B}:make_minilm_window",
            baseline=True,
        ),
    },
)

#: The systems an evaluation runs when none is named.
SYSTEM_NAMES: tuple[str, ...] = tuple(n for n, e in SYSTEMS.entries.items() if e.default)
#: Systems that run only when named.
OPTIONAL_SYSTEM_NAMES: tuple[str, ...] = tuple(
    n for n, e in SYSTEMS.entries.items() if not e.default
)
#: The reference systems FFR's own are compared with.
BASELINE_NAMES: tuple[str, ...] = tuple(n for n, e in SYSTEMS.entries.items() if e.baseline)


def systems_help() -> str:
    """The help of `ffr eval --systems`: the names, the optional ones marked."""
    return (
        "systems to run (repeat or comma list; default all but "
        f"{', '.join(OPTIONAL_SYSTEM_NAMES)}): {', '.join(SYSTEMS.names())}"
    )


def build_system(name: str, options: SystemOptions | None = None) -> System:
    """The system registered as ``name``, reporting under that name."""
    entry = SYSTEMS.entry(name)
    system = SYSTEMS.factory(name)(options or SystemOptions())
    system.name, system.description = name, entry.description
    system.baseline = entry.baseline
    return system


def build_systems(
    names: Sequence[str] | None = None,
    *,
    model: str | Path | Any | None = None,
    k: int = 20,
    prior_data: Dataset | None = None,
    reader: str | Path | None = None,
) -> list[System]:
    """The named systems (default :data:`SYSTEM_NAMES`); :class:`UnknownNameError` (a
    ValueError listing the known names) for an unknown one. See :class:`SystemOptions`."""
    options = SystemOptions(model=model, k=k, prior_data=prior_data, reader=reader)
    return [build_system(n, options) for n in SYSTEMS.check(names or SYSTEM_NAMES)]


__all__ = [
    "BASELINE_NAMES",
    "OPTIONAL_SYSTEM_NAMES",
    "SYSTEMS",
    "SYSTEM_NAMES",
    "SystemEntry",
    "SystemOptions",
    "UnknownNameError",
    "build_system",
    "build_systems",
    "systems_help",
]
