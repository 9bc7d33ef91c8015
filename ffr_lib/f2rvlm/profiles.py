"""Training profiles of F2RVLM: one pydantic object with everything SFT, the curriculum pass,
GRPO and inference need. ``paper`` holds the paper's hyper-parameters (Qwen2-VL on GPUs);
``cpu-small`` is sized so that the whole demo, training included, finishes within 30 minutes on 2
CPU cores (whole dialogues); ``cpu-small-windowed`` is the demo's profile before issue 16 (12-turn
windows), kept as the windowed arm of the prompt-shape ablation (``bench/f2rvlm_ablation.py``);
``cpu-full`` runs for hours; ``gpu`` is sized for one lent accelerator; ``tiny`` is for unit tests.

Prompt shape (issue 16, ``prompt_shape``): the paper reads the whole dialogue. ``whole`` gives one
prompt per dialogue whenever its lines fit ``max_prompt_tokens`` (MLDR's 20-34 turns are 510-850
SmolLM2 tokens with the short instruction and hints), so the SFT target, every GRPO reward and the
curriculum's F1 are computed on the query's own answer; only a chat over the budget is read in
windows of ``window_utterances`` (~100 turns in the paper, union merge). ``windowed`` reads every
dialogue in short windows and trains on each window's share of the gold, plus sampled windows
without gold ("none" targets).

CPU sizing (bench/f2rvlm_trial.py, SmolLM2-135M, markers as single tokens): cost is linear in
prompt length. A windowed record (12 utterances, ~300 tokens) takes ~4.5 s of SFT at one thread, a
whole MLDR dialogue (~800 tokens) ~9 s; GRPO takes ~40 s per step of 4 x 24 tokens. 4 GRPO steps
move the policy by a KL of 1e-4 to 5e-4 only (BENCHMARKS.md, "F2RVLM ablation"): at this size
GRPO is a proof of the path, and ``cpu-full`` / ``gpu`` are the profiles for quality.

Quality at demo size (BENCHMARKS.md, "F2RVLM ablation on 200 MLDR val queries"): whole-shape SFT
F1 0.168 [0.132, 0.207] against the windowed shape's 0.145 [0.105, 0.180], the position prior's
0.095 and answering with the whole dialogue 0.258. Earlier windowed experiments
(bench/f2rvlm_mldr.py, "F2RVLM experiments"): overlap hints and ``negative_window_ratio`` 0.5 were
the best windowed settings; fewer negatives, MiniLM+overlap hints and candidate pre-selection
(``hints.preselect_top``) were worse.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ffr_lib.data.format.answer import AnswerForm
from ffr_lib.data.format.prompt import ImageMode
from ffr_lib.f2rvlm.backbone import BackboneKind, LoraSettings
from ffr_lib.f2rvlm.hints import HintSettings
from ffr_lib.f2rvlm.rewards import DEFAULT_REWARDS, REWARDS, RewardWeights

SHORT_INSTRUCTION = (
    "Which lines answer the query? (rN) is a relevance hint, higher is more relevant. "
    "Answer U <utterance ids>; I <image ids>, ranges like 3-5, none if empty."
)


#: How a dialogue becomes prompts (see the module doc and ``F2RVLMProfile.prompt_shape``).
PromptShape = Literal["whole", "windowed"]


class SFTSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    learning_rate: float = Field(1e-4, description="AdamW learning rate of the LoRA weights")
    epochs: float = Field(1.0, description="passes over the records (fractions allowed)")
    warmup_ratio: float = Field(0.05, description="share of the steps with a linear warm-up")
    batch_size: int = Field(1, description="records per device step")
    grad_accum: int = Field(1, description="device steps per optimizer step")
    max_length: int = Field(1024, description="prompt + answer tokens kept (longer: truncated)")
    max_examples: int | None = Field(
        None,
        description="cap on training queries sampled from the split and on the records built "
        "from them (None = all)",
    )
    max_steps: int = Field(-1, description="-1 = epochs decide")
    logging_steps: int = Field(10, description="trainer log interval (steps)")


class GRPOSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    learning_rate: float = Field(2e-6, description="learning rate of the GRPO LoRA adapter")
    num_generations: int = Field(8, description="completions sampled per prompt (the group)")
    prompts_per_step: int = Field(1, ge=1, description="distinct prompts in one optimizer step")
    beta: float = Field(0.02, description="KL weight towards the SFT model")
    epsilon: float = Field(0.2, description="clip range, low side")
    epsilon_high: float = Field(0.28, description="clip range, high side (DAPO clip-higher)")
    temperature: float = Field(1.0, description="sampling temperature of the group")
    top_p: float = Field(0.85, description="nucleus sampling of the group")
    max_completion_length: int = Field(48, description="tokens per sampled completion")
    max_steps: int = Field(-1, description="-1 = one pass over the curriculum data")
    max_examples: int | None = Field(None, description="cap on curriculum records used")
    dynamic_sampling: bool = Field(
        True,
        description="drop prompts whose sampled group has zero reward variance (DAPO-style), "
        "using a cheap pre-sampling pass with the SFT model",
    )
    presample_generations: int = Field(
        4, ge=2, description="completions per prompt in the zero-variance pre-pass"
    )
    rewards: list[str] = Field(
        default_factory=lambda: list(DEFAULT_REWARDS),
        description="the rewards by name (ffr_lib.f2rvlm.rewards.REWARDS: f1, fragment, format)",
    )
    reward_weights: RewardWeights = Field(
        default_factory=RewardWeights,
        description="weights of R_F1 / R_Fragment / R_Format (paper 1 / 1 / 0.3); R_Fragment "
        "needs the FEM encoder and is left out at weight 0",
    )
    logging_steps: int = Field(1, description="trainer log interval (steps)")

    @field_validator("rewards")
    @classmethod
    def _known_rewards(cls, names: list[str]) -> list[str]:
        return REWARDS.check(names)


class CurriculumSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="order GRPO data easy -> hard (False: as built)")
    max_examples: int | None = Field(None, description="prompts scored by the SFT model")
    max_new_tokens: int = Field(48, description="greedy answer length when scoring")


class F2RVLMProfile(BaseModel):
    """Everything one training run needs."""

    model_config = ConfigDict(extra="forbid")

    name: str
    backbone: str = Field("smollm2-135m", description="alias, folder or hub id")
    backbone_kind: BackboneKind = Field("auto", description="text | vlm | auto (from config)")
    image_mode: ImageMode = Field(
        "caption", description="images as caption/OCR text (text LM) or <image> pixels (VLM)"
    )
    answer_form: AnswerForm = Field(
        "compact", description="what the model writes: compact (U 3-5; I 1) or reference"
    )
    add_marker_tokens: bool = Field(
        True, description="id markers as single tokens with trainable embeddings"
    )
    prompt_shape: PromptShape = Field(
        # The default is the shape every adapter saved before the field existed was trained
        # with (their stored profiles lack it); the named profiles all set it.
        "windowed",
        description="whole: one prompt per dialogue whenever its lines fit max_prompt_tokens "
        "(the paper), windows of window_utterances only for a longer chat; SFT targets, rewards "
        "and curriculum scores are the query's own answer (a long chat's window: the query's "
        "gold inside it; windows without gold of a positive query are not trained on). "
        "windowed: every dialogue in windows of window_utterances, one record per window with "
        "its share of the gold plus sampled windows without gold (negative_window_ratio, "
        "negative_query_windows)",
    )
    max_prompt_tokens: int = Field(
        768,
        ge=16,
        description="whole shape: tokens of utterance lines one prompt may hold, counted by the "
        "backbone's tokenizer with the markers as the model sees them (instruction, query and "
        "chat template come on top, ~150 tokens; vision tokens behind <image> are not counted); "
        "a dialogue over it is read in windows",
    )
    window_utterances: int = Field(
        12,
        ge=2,
        description="utterances per window: whole shape, the windows of a chat over "
        "max_prompt_tokens (paper ~100); windowed shape, every prompt. Also the chunk size of "
        "FFRS's candidate fragments",
    )
    window_overlap: int = Field(4, ge=0, description="utterances shared by neighbouring windows")
    negative_window_ratio: float = Field(
        0.5,
        ge=0,
        description="windowed shape, training, query with gold: windows without gold kept per "
        "window with gold (rounded half up); unused in the whole shape",
    )
    negative_query_windows: int = Field(
        0,
        ge=0,
        description="windowed shape, training, negative query: windows kept (all answer none); "
        "1 measured worse than 0 at cpu-small size (BENCHMARKS.md, F2RVLM experiments); unused "
        "in the whole shape (a negative query is one prompt answering none)",
    )
    instruction: str | None = Field(
        SHORT_INSTRUCTION,
        description="task text of the prompt; None = the long reference instruction. Short "
        "saves ~120 tokens per window prompt (cost is linear in prompt length)",
    )
    hints: HintSettings = Field(
        default_factory=HintSettings,
        description="cheap-retriever relevance hints on the lines and optional candidate "
        "pre-selection (ffr_lib.f2rvlm.hints)",
    )
    lora: LoraSettings = Field(default_factory=LoraSettings, description="LoRA r / alpha")
    sft: SFTSettings = Field(default_factory=SFTSettings, description="stage 1")
    curriculum: CurriculumSettings = Field(
        default_factory=CurriculumSettings, description="SFT-model scoring pass"
    )
    grpo: GRPOSettings = Field(default_factory=GRPOSettings, description="stage 2")
    max_new_tokens: int = Field(48, description="generation budget at inference")
    constrained_decoding: bool = Field(
        True,
        description="inference (F2RVLM alone and as FFRS's fine stage): the generator can only "
        "write a well-formed answer in answer_form whose ids exist in its prompt "
        "(ffr_lib.f2rvlm.constrained, transformers' prefix_allowed_tokens_fn); False = free "
        "greedy decoding. Training, curriculum scoring and GRPO sampling stay unconstrained",
    )
    seed: int = Field(0, description="record sampling and trainer seed")
    device: Literal["cpu", "auto"] = Field("auto", description="cpu, or auto (CUDA if present)")

    @model_validator(mode="after")
    def _consistent(self) -> F2RVLMProfile:
        if self.window_overlap >= self.window_utterances:
            raise ValueError("window_overlap must be smaller than window_utterances")
        if self.prompt_shape == "whole":
            # trl truncates from the right: a prompt longer than sft.max_length loses its answer.
            if self.sft.max_length <= self.max_prompt_tokens + self.max_new_tokens:
                raise ValueError(
                    "whole shape: sft.max_length must exceed max_prompt_tokens + max_new_tokens "
                    "(plus ~150 tokens of instruction and template), or SFT cuts the answer off"
                )
            if self.hints.preselect_top is not None:
                raise ValueError(
                    "hints.preselect_top reads a candidate prompt instead of the dialogue: use "
                    "prompt_shape='windowed' with it"
                )
        return self


def _cpu_small_grpo() -> GRPOSettings:
    """The demo's GRPO, the same for both prompt shapes (a fresh object per profile): 4 steps of
    4 completions, R_F1 + R_Format (R_Fragment needs the MiniLM encoder in the loop)."""
    return GRPOSettings(
        num_generations=4,
        prompts_per_step=1,
        max_steps=4,
        learning_rate=1e-5,
        max_completion_length=24,
        presample_generations=2,
        reward_weights=RewardWeights(fragment=0.0),
    )


PROFILES: dict[str, F2RVLMProfile] = {
    # The paper's hyper-parameters (Qwen2-VL-2B, GPU): the whole dialogue in one prompt, windows
    # of ~100 turns only for longer chats, reference answer format, pixels for images, no hints.
    "paper": F2RVLMProfile(
        name="paper",
        backbone="Qwen/Qwen2-VL-2B-Instruct",
        backbone_kind="vlm",
        image_mode="placeholder",
        answer_form="reference",
        add_marker_tokens=False,
        instruction=None,
        prompt_shape="whole",
        max_prompt_tokens=6144,
        window_utterances=100,
        window_overlap=10,
        hints=HintSettings(method="none"),
        sft=SFTSettings(learning_rate=1e-4, epochs=1, warmup_ratio=0.05, max_length=8192),
        grpo=GRPOSettings(num_generations=8, prompts_per_step=4, max_completion_length=256),
        max_new_tokens=256,
    ),
    # Demo profile: ~30 min on 2 CPU cores with the rest of the demo. The whole dialogue in
    # one prompt (issue 16): at demo size it beat the windowed shape on every arm of the
    # 200-query ablation (SFT 0.168 vs 0.145, intervals including 0; BENCHMARKS.md), costs the
    # same in SFT (fewer, longer records) and reads faster (one prompt per MLDR dialogue).
    # 96 SFT dialogues (lr 3e-4 or 1e-3) scored lower (0.120, 0.119) and cost ~4 demo minutes.
    "cpu-small": F2RVLMProfile(
        name="cpu-small",
        prompt_shape="whole",
        max_prompt_tokens=768,
        window_utterances=100,
        window_overlap=10,
        hints=HintSettings(method="overlap"),
        sft=SFTSettings(max_examples=48, learning_rate=3e-4, max_length=1024, logging_steps=10),
        curriculum=CurriculumSettings(max_examples=24),
        grpo=_cpu_small_grpo(),
        max_new_tokens=24,
        device="cpu",
    ),
    # The demo's profile before issue 16, the windowed arm of the prompt-shape ablation: 12-turn
    # windows + overlap hints + negative_window_ratio 0.5 measured best of the windowed variants
    # (module doc).
    "cpu-small-windowed": F2RVLMProfile(
        name="cpu-small-windowed",
        prompt_shape="windowed",
        window_utterances=12,
        window_overlap=4,
        negative_window_ratio=0.5,
        negative_query_windows=0,
        hints=HintSettings(method="overlap"),
        sft=SFTSettings(max_examples=100, max_length=512, logging_steps=10),
        curriculum=CurriculumSettings(max_examples=24),
        grpo=_cpu_small_grpo(),
        max_new_tokens=24,
        device="cpu",
    ),
    # Hours in the background: more prompts, two SFT epochs, a longer GRPO with 8 generations;
    # whole-dialogue prompts (max_length holds MLDR's longest, ~850 tokens).
    "cpu-full": F2RVLMProfile(
        name="cpu-full",
        prompt_shape="whole",
        max_prompt_tokens=768,
        window_utterances=100,
        window_overlap=10,
        sft=SFTSettings(max_examples=3000, epochs=2, max_length=1024, logging_steps=50),
        curriculum=CurriculumSettings(max_examples=600),
        grpo=GRPOSettings(
            num_generations=8,
            prompts_per_step=2,
            max_steps=300,
            learning_rate=5e-6,
            max_completion_length=32,
        ),
        max_new_tokens=32,
        device="cpu",
    ),
    # One lent accelerator (an H100 / H200, issue 16): SmolLM2 on every MLDR train query, whole
    # dialogues, the paper's rewards (R_Fragment included) and a real GRPO run. Sized from the
    # H200 measurements of 2026-11-26 (SFT 0.19 s per record at batch 1, GRPO ~1 s per step of
    # 4 completions) to about 10 minutes of device time; not yet measured at this size.
    "gpu": F2RVLMProfile(
        name="gpu",
        prompt_shape="whole",
        max_prompt_tokens=1536,
        window_utterances=100,
        window_overlap=10,
        hints=HintSettings(method="overlap"),
        sft=SFTSettings(
            max_examples=None,
            epochs=1,
            learning_rate=2e-4,
            batch_size=8,
            max_length=2048,
            logging_steps=50,
        ),
        curriculum=CurriculumSettings(max_examples=512),
        grpo=GRPOSettings(
            num_generations=8,
            prompts_per_step=4,
            max_steps=120,
            learning_rate=5e-6,
            max_completion_length=48,
        ),
        max_new_tokens=48,
        device="auto",
    ),
    # Unit tests: tiny config-built models, a couple of steps; whole dialogues, windows of 8
    # utterances for a dialogue over 384 tokens.
    "tiny": F2RVLMProfile(
        name="tiny",
        backbone="tiny-qwen2",
        prompt_shape="whole",
        max_prompt_tokens=384,
        window_utterances=8,
        window_overlap=2,
        sft=SFTSettings(max_examples=4, max_steps=2, max_length=512, learning_rate=5e-2),
        curriculum=CurriculumSettings(max_examples=4, max_new_tokens=8),
        grpo=GRPOSettings(
            num_generations=2,
            max_steps=2,
            learning_rate=5e-2,
            max_completion_length=8,
            dynamic_sampling=False,
            reward_weights=RewardWeights(fragment=0.0),
        ),
        max_new_tokens=8,
        device="cpu",
    ),
}


def get_profile(name: str, **overrides: object) -> F2RVLMProfile:
    """A copy of the named profile with top-level overrides applied, validated again (a plain
    ``model_copy(update=...)`` would skip the checks, e.g. a whole-shape budget that SFT would
    truncate)."""
    if name not in PROFILES:
        raise KeyError(f"unknown F2RVLM profile {name!r}; known: {sorted(PROFILES)}")
    data = PROFILES[name].model_dump()
    data.update(overrides)
    return F2RVLMProfile.model_validate(data)
