"""Which fine stage FFRS serves: the champion reader or the trained F2RVLM, judged on the same
val queries by the same F1.

The reader's own champion gate (:mod:`ffr_lib.reader.stage`) only compares readers. Once F2RVLM
is trained, :func:`judge_fine_stage` scores its adapter and the champion reader on the same MLDR
val queries (single dialogue, :func:`ffr_lib.reader.stage.reader_f1`: the evaluation's headline
joint F1) and writes the verdict to ``$FFR_HOME/fine_stage.json``. F2RVLM serves only when it
beats the reader (or no reader is champion). QMSum val is left out: F2RVLM reads a meeting in
dozens of 100-turn windows, minutes per query on a CPU.

:func:`serving_fine_stage` reads the verdict back for ``open_ffrs(fine_stage="auto")``. A verdict
names the reader it was judged against; once another reader is champion the verdict is stale and
the champion reader serves until F2RVLM is judged again.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from ffr_lib.data.dataset import Dataset
from ffr_lib.data.model import Dialogue
from ffr_lib.f2rvlm.retriever import F2RVLMRetriever
from ffr_lib.mldr.stage import load_split
from ffr_lib.reader.reader import Reader
from ffr_lib.reader.stage import champion_path, reader_f1, sample_queries
from ffr_lib.settings import get_settings

log = logging.getLogger(__name__)

FineStageName = Literal["reader", "f2rvlm"]


class FineStageJudgeConfig(BaseModel):
    val_queries: int | None = Field(
        40,
        ge=1,
        description="MLDR val queries both fine stages answer (spread over the split; None = "
        "all). F2RVLM reads one dialogue in ~1-3 s on a CPU, the reader in milliseconds",
    )


@dataclass(frozen=True)
class _Answer:
    utterance_ids: list[int]
    image_ids: list[int]


class F2RVLMAnswers:
    """F2RVLM over a whole dialogue with the reader's ``read(query, dialogue)`` signature, so
    both fine stages are scored by the same :func:`reader_f1`."""

    def __init__(self, retriever: F2RVLMRetriever) -> None:
        self.retriever = retriever

    def read(self, query: str, dialogue: Dialogue) -> _Answer:
        utterance_ids, image_ids = self.retriever.retrieve(dialogue, query)
        return _Answer(list(utterance_ids), list(image_ids))


def choice_path() -> Path:
    """The verdict file (local state beside the reader checkpoints and adapters)."""
    return get_settings().home / "fine_stage.json"


def judge_fine_stage(
    adapter_dir: Path,
    config: FineStageJudgeConfig | None = None,
    dataset: Dataset | None = None,
) -> dict[str, Any]:
    """Score the F2RVLM adapter saved at ``adapter_dir`` and the champion reader on the same val
    queries (``dataset``, default MLDR val), write the verdict and return it."""
    config = config or FineStageJudgeConfig()
    if dataset is None:
        try:
            dataset = load_split("val")
        except FileNotFoundError as exc:
            # Nothing to judge on: no verdict, the previous one (if any) stands.
            return {"serves": None, "reason": f"fine stage not judged: {exc}"}
    retriever = F2RVLMRetriever.from_adapter(adapter_dir)
    data = sample_queries(dataset, config.val_queries)
    started = time.perf_counter()
    f2rvlm = reader_f1(F2RVLMAnswers(retriever), data)
    champion = champion_path()
    reader = reader_f1(Reader.load(champion), data) if champion is not None else None
    if reader is None:
        serves: FineStageName = "f2rvlm"
        reason = "no champion reader: F2RVLM serves"
    else:
        serves = "f2rvlm" if f2rvlm["f1"] > reader["f1"] else "reader"
        verb = "beats" if serves == "f2rvlm" else "does not beat"
        reason = (
            f"F2RVLM F1 {f2rvlm['f1']:.3f} {verb} the champion reader's {reader['f1']:.3f} on "
            f"{len(data.queries)} MLDR val queries: the {serves} serves"
        )
    verdict: dict[str, Any] = {
        "serves": serves,
        "adapter": str(adapter_dir),
        "reader": str(champion) if champion is not None else None,
        "val": {"f2rvlm": f2rvlm, "reader": reader},
        "queries": len(data.queries),
        "reason": reason,
        "judged_at": datetime.now(UTC).strftime("%Y%m%d-%H%M%S"),
        "seconds": round(time.perf_counter() - started, 1),
    }
    path = choice_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(verdict, indent=1), encoding="utf-8")
    partial.replace(path)  # atomic: a reader of the verdict never sees half of it
    log.info(reason)
    return verdict


def verdict_adapter() -> Path | None:
    """The F2RVLM adapter the last verdict chose to serve, or None: no verdict, a verdict for
    the reader, its adapter gone, or another reader champion since (stale)."""
    path = choice_path()
    if not path.is_file():
        return None
    verdict = json.loads(path.read_text(encoding="utf-8"))
    champion = champion_path()
    if verdict.get("reader") != (str(champion) if champion is not None else None):
        log.info("fine-stage verdict %s is stale (another reader is champion)", path)
        return None
    adapter = Path(verdict["adapter"])
    if verdict["serves"] != "f2rvlm" or not (adapter / "ffr_adapter.json").is_file():
        return None
    return adapter


def serving_fine_stage(reader: str | Path | None = None) -> tuple[FineStageName, Path | None]:
    """The fine stage that serves when none is forced, and what it runs: F2RVLM with the
    verdict's adapter when the verdict holds and no ``reader`` is named, else the reader
    (``reader``, else the champion; None when no reader is trained). One rule for `ffr query`
    (``open_ffrs``) and the evaluation's ``ffrs`` system."""
    adapter = verdict_adapter() if reader is None else None
    if adapter is not None:
        return "f2rvlm", adapter
    return "reader", Path(reader) if reader else champion_path()
