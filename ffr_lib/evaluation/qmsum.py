"""QMSum evaluation (``ffr eval --dataset qmsum --split val`` or ``--path DIR``).

Real meetings with human-marked answer spans (:mod:`ffr_lib.data.readers.qmsum`): every specific
query is scored against its own meeting (``single``) and against all meetings of the folder
(``corpus``), with the same metrics and report layout as MLDR. What differs:

- dataset keys ``qmsum-<split>/<mode>`` (``qmsum/<mode>`` for ``--path``);
- length buckets that fit meetings: ``<300``, ``300-600``, ``>600`` turns (:data:`BUCKETS`);
- groups by the number of gold spans (``spans=1`` / ``spans=2+``); QMSum has no query families;
- the position prior is fitted on another split (``train`` when evaluating ``val``), never on
  the evaluated one;
- no corpus-style variants (those are built from MLDR's topic metadata);
- the report gains Pk / WindowDiff of the segmenters against the human topic spans
  (:func:`segmentation_scores`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from ffr_lib.data.dataset import Dataset
from ffr_lib.data.model import Dialogue, Query
from ffr_lib.data.readers import read_dataset
from ffr_lib.evaluation.harness import Grouper, default_groupers
from ffr_lib.segment.evaluate import compare_segmenters
from ffr_lib.segment.stage import FragmentStageConfig, make_segmenter
from ffr_lib.segment.windows import FixedWindowSegmenter
from ffr_lib.settings import get_settings

log = logging.getLogger(__name__)

#: Meeting length bucket edges in turns: <300, 300-600, >600 (val: median 541 turns).
BUCKETS: tuple[int, int] = (300, 600)


def qmsum_split(split: str, path: Path | None = None) -> tuple[Dataset, Dataset | None, str]:
    """The meetings to evaluate, the meetings to fit priors on (another split: ``train`` when
    evaluating anything else, else ``val``; None when absent) and the dataset name.

    ``path`` None: ``<Settings.qmsum_dir>/<split>``, name ``qmsum-<split>``. A ``path`` (a
    folder of meeting files, or one file) is read as given, name ``qmsum``; its prior comes
    from a ``train`` folder beside it, when there is one."""
    if path is None:
        folder = get_settings().qmsum_dir / split
        if not folder.is_dir():
            raise FileNotFoundError(
                f"no QMSum split at {folder}: set FFR_QMSUM_DIR to the folder holding "
                "train/ and val/, or pass --path"
            )
        name = f"qmsum-{split}"
    else:
        folder = path
        if not folder.exists():
            raise FileNotFoundError(f"no QMSum meetings at {folder}")
        name = "qmsum"
    data = read_dataset(folder, "qmsum")
    prior = None
    siblings = folder.parent if folder.is_dir() else folder.parent.parent
    current = folder.name if folder.is_dir() else folder.parent.name
    for other in ("train", "val"):
        candidate = siblings / other
        if other != current and candidate.is_dir():
            prior = read_dataset(candidate, "qmsum")
            break
    log.info(
        "QMSum %s: %d meetings, %d specific queries (%d general skipped); prior from %s",
        name,
        len(data.dialogues),
        len(data.queries),
        data.metadata.get("general_queries_skipped", 0),
        "none" if prior is None else prior.metadata.get("path"),
    )
    return data, prior, name


def _spans(query: Query, dialogue: Dialogue) -> str | None:
    spans = query.metadata.get("spans")
    if not spans:
        return None
    return "1" if len(spans) == 1 else "2+"


def qmsum_groupers(edges: tuple[int, int] = BUCKETS) -> dict[str, Grouper]:
    """Meeting length bucket, query type and the number of gold spans."""
    groupers = default_groupers(edges)
    groupers.pop("family", None)  # QMSum queries are human-written, not from generator families
    groupers["spans"] = _spans
    return groupers


def segmentation_scores(
    dialogues: Sequence[Dialogue], config: FragmentStageConfig | None = None
) -> dict[str, dict[str, float]]:
    """Pk / WindowDiff (and segment counts) of TextTiling (as the fragments stage cuts) and of
    fixed windows against the human topic spans (``metadata['topic_boundaries']``); only the
    meetings that have topic spans are scored ({} when none has)."""
    scored = [d for d in dialogues if d.metadata.get("topic_boundaries")]
    if not scored:
        return {}
    config = config or FragmentStageConfig()
    texttiling = make_segmenter(config.model_copy(update={"segmenter": "texttiling"}))
    return compare_segmenters(
        scored,
        {"texttiling": texttiling, "fixed_windows": FixedWindowSegmenter(config.windows)},
    )
