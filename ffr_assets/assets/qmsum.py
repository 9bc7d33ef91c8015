"""`qmsum_dialogues`: read and validate the QMSum meetings (train, val) where they lie.

QMSum is training, gating and evaluation data: nothing goes into Postgres; `fem_checkpoint`,
`reader_checkpoint` and `ffr eval --dataset qmsum` read it by path (`FFR_QMSUM_DIR`). Without
the folder the asset succeeds with `present: False` and the reason, so everything else runs.

No `from __future__ import annotations` in asset modules: Dagster resolves Config types at runtime.
"""

import time
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext, MetadataValue, Output, asset

from ffr_lib.data.readers.qmsum import DEFAULT_SPLITS, read_qmsum
from ffr_lib.settings import get_settings

#: Malformed-query messages kept per split in the summary (the count is always complete).
MAX_MESSAGES = 20


def _read_split(folder: Path) -> dict[str, Any]:
    """One split folder read with the QMSum reader: what it holds and what it skipped."""
    dataset = read_qmsum(folder)
    meta = dataset.metadata
    messages = [problem["message"] for problem in meta["skipped_queries"]]
    return {
        "folder": str(folder),
        "meetings": len(dataset.dialogues),
        "turns": sum(len(d.utterances) for d in dataset.dialogues),
        "specific_queries": len(dataset.queries),
        "general_queries_skipped": meta["general_queries_skipped"],
        "malformed_queries": len(messages),
        "malformed_messages": messages[:MAX_MESSAGES],
    }


def qmsum_summary(root: Path) -> dict[str, Any]:
    """Every split folder of ``root`` present (train, val; never test) read and counted, or
    ``present: False`` with the reason. A broken meeting file raises the reader's InputError."""
    if not root.is_dir():
        return {
            "present": False,
            "path": str(root),
            "reason": f"no QMSum folder at {root} (set FFR_QMSUM_DIR to the folder holding "
            "train/ and val/); QMSum training, gating and evaluation are skipped",
            "splits": {},
        }
    folders = {split: root / split for split in DEFAULT_SPLITS}
    if not any(folder.is_dir() for folder in folders.values()):
        return {
            "present": False,
            "path": str(root),
            "reason": f"no train/ or val/ folder under {root} (FFR_QMSUM_DIR); QMSum training, "
            "gating and evaluation are skipped",
            "splits": {},
        }
    splits: dict[str, Any] = {
        split: _read_split(folder)
        if folder.is_dir()
        else {"skipped": f"no QMSum {split} folder at {folder} (FFR_QMSUM_DIR)"}
        for split, folder in folders.items()
    }
    return {"present": True, "path": str(root), "splits": splits}


@asset(
    group_name="data",
    description="QMSum meetings (real multi-party dialogues, human-marked answer spans) read and "
    "validated in place from FFR_QMSUM_DIR (default ../shared/data/qmsum): per split (train, "
    "val) meetings, turns, specific queries, general queries skipped and malformed spans. "
    "Writes nothing: fem_checkpoint, reader_checkpoint and `ffr eval --dataset qmsum` read the "
    "files by path. Without the folder it succeeds with present=False and the reason.",
    owners=["team:ffr"],
    kinds={"python"},
)
def qmsum_dialogues(context: AssetExecutionContext):
    root = get_settings().qmsum_dir
    started = time.perf_counter()
    summary = qmsum_summary(root)
    summary["seconds"] = round(time.perf_counter() - started, 2)
    metadata: dict[str, Any] = {
        "present": summary["present"],
        "path": MetadataValue.path(str(root)),
        "seconds": summary["seconds"],
    }
    if not summary["present"]:
        context.log.warning(f"QMSum skipped: {summary['reason']}")
        metadata["skipped"] = summary["reason"]
        return Output(summary, metadata=metadata)
    for split, counts in summary["splits"].items():
        if "skipped" in counts:
            context.log.warning(f"QMSum {split} skipped: {counts['skipped']}")
            metadata[f"{split}/skipped"] = counts["skipped"]
            continue
        context.log.info(
            f"QMSum {split}: {counts['meetings']} meetings, {counts['turns']} turns, "
            f"{counts['specific_queries']} specific queries; skipped "
            f"{counts['general_queries_skipped']} general and {counts['malformed_queries']} "
            "malformed ones"
        )
        for message in counts["malformed_messages"]:
            context.log.warning(f"QMSum query skipped: {message}")
        for key in (
            "meetings",
            "turns",
            "specific_queries",
            "general_queries_skipped",
            "malformed_queries",
        ):
            metadata[f"{split}/{key}"] = counts[key]
    metadata["splits"] = MetadataValue.json(summary["splits"])
    return Output(summary, metadata=metadata)
