"""Fragment decomposition: cut dialogues into minimal semantic fragments and measure the cuts."""

from ffr_lib.segment.evaluate import compare_segmenters, evaluate_segmentation, reference_boundaries
from ffr_lib.segment.fragments import Fragment, fragments_from_boundaries, render_span
from ffr_lib.segment.metrics import pk, window_diff
from ffr_lib.segment.texttiling import TextTilingConfig, TextTilingSegmenter
from ffr_lib.segment.windows import FixedWindowSegmenter, WindowConfig, window_boundaries

__all__ = [
    "FixedWindowSegmenter",
    "Fragment",
    "TextTilingConfig",
    "TextTilingSegmenter",
    "WindowConfig",
    "compare_segmenters",
    "evaluate_segmentation",
    "fragments_from_boundaries",
    "pk",
    "reference_boundaries",
    "render_span",
    "window_boundaries",
    "window_diff",
]
