"""Fixed-size windows: the fallback segmenter and the baseline for the topic segmenter."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ffr_lib.data.model import Dialogue
from ffr_lib.segment.fragments import Fragment, fragments_from_boundaries


class WindowConfig(BaseModel):
    size: int = Field(8, ge=1, description="utterances per window")


def window_boundaries(n: int, size: int) -> list[int]:
    """Boundaries of consecutive windows of ``size`` over ``n`` utterances; a short tail joins
    the previous window when it is under half a window, so no fragment is a lone leftover."""
    cuts = list(range(size, n, size))
    if cuts and n - cuts[-1] < max(1, size // 2):
        cuts.pop()
    return cuts


class FixedWindowSegmenter:
    """Cuts every ``size`` utterances regardless of content."""

    def __init__(self, config: WindowConfig | None = None) -> None:
        self.config = config or WindowConfig()

    def boundaries(self, dialogue: Dialogue) -> list[int]:
        return window_boundaries(len(dialogue.utterances), self.config.size)

    def segment(self, dialogue: Dialogue) -> list[Fragment]:
        return fragments_from_boundaries(dialogue, self.boundaries(dialogue))
