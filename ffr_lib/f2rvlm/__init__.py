"""F2RVLM, the generative fragment retriever.

The model-free core lives here: prompt rendering (``prompt``), the answer format and its parser
(``answer``), sliding windows (``windows``), the GRPO rewards (``rewards``), the difficulty-aware
curriculum (``curriculum``) and the ms-swift sample format (``swift_format``). Importing this
package loads no model and no heavy library.
"""

from ffr_lib.f2rvlm.answer import (
    ParsedAnswer,
    compact_to_reference,
    format_answer,
    format_compact,
    parse_answer,
    parse_compact,
    reference_to_compact,
)
from ffr_lib.f2rvlm.prompt import SPECIAL_TOKENS, PromptConfig, RenderedPrompt, render_prompt
from ffr_lib.f2rvlm.rewards import REWARDS, RewardWeights, build_rewards, make_fragment_reward
from ffr_lib.f2rvlm.windows import Window, WindowConfig, merge_window_answers, plan_windows

__all__ = [
    "REWARDS",
    "SPECIAL_TOKENS",
    "ParsedAnswer",
    "PromptConfig",
    "RenderedPrompt",
    "RewardWeights",
    "Window",
    "WindowConfig",
    "build_rewards",
    "compact_to_reference",
    "format_answer",
    "format_compact",
    "make_fragment_reward",
    "merge_window_answers",
    "parse_answer",
    "parse_compact",
    "plan_windows",
    "reference_to_compact",
    "render_prompt",
]
