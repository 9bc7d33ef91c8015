"""F2RVLM, the generative fragment retriever.

The model-free core lives here: windows for long chats (``windows``), the GRPO rewards
(``rewards``) and the difficulty-aware curriculum (``curriculum``); the prompt, answer and
ms-swift formats it reads and writes are in :mod:`ffr_lib.data.format`. Importing this package
loads no model and no heavy library.
"""

from ffr_lib.f2rvlm.rewards import REWARDS, RewardWeights, build_rewards, make_fragment_reward
from ffr_lib.f2rvlm.windows import Window, WindowConfig, merge_window_answers, plan_windows

__all__ = [
    "REWARDS",
    "RewardWeights",
    "Window",
    "WindowConfig",
    "build_rewards",
    "make_fragment_reward",
    "merge_window_answers",
    "plan_windows",
]
