"""F2RVLM profiles: the prompt-shape fields and the checks that keep a profile trainable."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ffr_lib.f2rvlm.hints import HintSettings
from ffr_lib.f2rvlm.profiles import PROFILES, F2RVLMProfile, SFTSettings, get_profile


def test_shapes_of_the_named_profiles() -> None:
    demo = PROFILES["cpu-small"]  # the demo reads whole MLDR dialogues (issue 16)
    assert (demo.prompt_shape, demo.max_prompt_tokens) == ("whole", 768)
    assert demo.sft.max_length > demo.max_prompt_tokens + demo.max_new_tokens
    assert PROFILES["paper"].prompt_shape == "whole"
    windowed = PROFILES["cpu-small-windowed"]  # the demo before issue 16, the ablation's arm
    assert (windowed.prompt_shape, windowed.window_utterances, windowed.window_overlap) == (
        "windowed",
        12,
        4,
    )
    assert (windowed.negative_window_ratio, windowed.sft.max_examples) == (0.5, 100)
    # A profile stored with an adapter before prompt_shape existed reads as it was trained.
    stored = windowed.model_dump(exclude={"prompt_shape", "max_prompt_tokens"})
    assert F2RVLMProfile.model_validate(stored).prompt_shape == "windowed"
    for profile in PROFILES.values():  # every preset passes its own checks
        assert F2RVLMProfile.model_validate(profile.model_dump()) == profile


def test_gpu_profile_trains_on_every_query_with_the_papers_rewards_on_a_gpu_node() -> None:
    from ffr_assets import execution

    gpu = get_profile("gpu")
    assert (gpu.prompt_shape, gpu.device, gpu.sft.max_examples) == ("whole", "auto", None)
    assert gpu.grpo.reward_weights.fragment > 0 and gpu.curriculum.enabled
    # Its whole prompts fit SFT's length with the answer (the check every whole profile passes).
    assert gpu.sft.max_length > gpu.max_prompt_tokens + gpu.max_new_tokens
    assert execution.training_step("gpu") is execution.GPU_STEP


def test_profile_field_validation() -> None:
    with pytest.raises(ValidationError, match="prompt_shape"):
        get_profile("cpu-small", prompt_shape="sliding")
    with pytest.raises(ValidationError, match="max_prompt_tokens"):
        get_profile("cpu-small", max_prompt_tokens=0)
    with pytest.raises(ValidationError, match="window_overlap must be smaller"):
        get_profile("cpu-small", window_overlap=100)
    # A whole prompt longer than SFT's max_length would lose its answer to truncation.
    with pytest.raises(ValidationError, match="sft.max_length"):
        get_profile("cpu-small", max_prompt_tokens=1000)
    with pytest.raises(ValidationError, match="sft.max_length"):
        get_profile("cpu-small", sft=SFTSettings(max_length=512))
    # The windowed shape counts utterances only: a short max_length is its own business.
    windowed = get_profile("cpu-small", prompt_shape="windowed", sft=SFTSettings(max_length=512))
    assert windowed.prompt_shape == "windowed"
    # Candidate pre-selection replaces the dialogue with a candidate prompt: windowed only.
    preselect = HintSettings(method="overlap", preselect_top=4)
    with pytest.raises(ValidationError, match="preselect_top"):
        get_profile("cpu-small", hints=preselect)
    assert get_profile("cpu-small-windowed", hints=preselect).hints.preselect_top == 4
