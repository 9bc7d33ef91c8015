"""Build-once cache folders under `Settings.models_dir`, safe against two processes at once.

A converted or built model lives in `<models_dir>/<alias>/` with a `ffr_model.json` marker written
last: a folder without the marker is an interrupted build and is rebuilt. Builds go to a temporary
sibling folder that is renamed into place under a file lock, so readers never see half a model.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

MARKER = "ffr_model.json"


def is_built(folder: Path) -> bool:
    """True when `folder` holds a finished build (marker present)."""
    return (folder / MARKER).is_file()


def read_marker(folder: Path) -> dict[str, Any]:
    """The metadata written with a finished build ({} when absent)."""
    try:
        return json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return {}


def build_once(
    folder: Path, build: Callable[[Path], dict[str, Any]], *, timeout_s: float = 1800
) -> Path:
    """Run `build(tmp_folder)` unless `folder` is already built; return `folder`.

    `build` writes the model into the folder it is given and returns metadata for the marker.
    A second process waiting on the lock finds the finished folder and returns at once.
    """
    if is_built(folder):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock", timeout=timeout_s):
        if is_built(folder):  # another process finished while we waited
            return folder
        tmp = folder.parent / f".{folder.name}.building"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        started = time.perf_counter()
        try:
            meta = dict(build(tmp) or {})
            meta["build_seconds"] = round(time.perf_counter() - started, 2)
            (tmp / MARKER).write_text(json.dumps(meta, indent=2, sort_keys=True))
            shutil.rmtree(folder, ignore_errors=True)  # leftover of an interrupted build
            tmp.rename(folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return folder
