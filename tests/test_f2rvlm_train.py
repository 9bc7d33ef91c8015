"""F2RVLM trainers on tiny config-built models: an SFT step and a GRPO step must CHANGE the LoRA
weights, for the text-LM path (tiny Qwen2, captions as text) and the VLM path (tiny Qwen2-VL,
pixels through the image processor); the curriculum pass scores every record; adapters load
back for inference and are logged to MLflow."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from ffr_lib.data.format.answer import parse
from ffr_lib.data.format.prompt import SPECIAL_TOKENS
from ffr_lib.data.model import Dialogue, Image, Query, QueryType, Utterance
from ffr_lib.f2rvlm.backbone import load_backbone, read_adapter_meta
from ffr_lib.f2rvlm.difficulty import normalised_entropy, score_records
from ffr_lib.f2rvlm.grpo import train_grpo
from ffr_lib.f2rvlm.profiles import PROFILES, get_profile
from ffr_lib.f2rvlm.retriever import F2RVLMRetriever, training_records
from ffr_lib.f2rvlm.sft import train_sft
from ffr_lib.settings import get_settings

pytestmark = pytest.mark.slow


def _dialogue() -> Dialogue:
    texts = [
        "we went hiking near the lake",
        "the water was so clear",
        "look at this view",
        "wow the mountains are huge",
        "what did you eat later",
        "pizza with mushrooms",
        "my cat sleeps all day",
        "cats are lazy",
        "did you fix the bike",
        "yes new tires",
    ]
    utterances = [
        Utterance(index=i, speaker="Ann" if i % 2 == 0 else "Bob", text=t)
        for i, t in enumerate(texts)
    ]
    images = [
        Image(index=0, utterance_index=2, caption="a lake below mountains"),
        Image(index=1, utterance_index=6, caption="a cat on a sofa"),
    ]
    return Dialogue(id="d1", source="test", utterances=utterances, images=images)


def _queries() -> list[Query]:
    return [
        Query(id="q1", dialogue_id="d1", text="the hiking trip and the lake photo",
              type=QueryType.MULTIMODAL, gold_utterance_ids=[0, 1, 2, 3], gold_image_ids=[0]),
        Query(id="q2", dialogue_id="d1", text="the cat picture", type=QueryType.IMAGE_ONLY,
              gold_image_ids=[1]),
        Query(id="q3", dialogue_id="d1", text="the bike repair", type=QueryType.UTTERANCE_ONLY,
              gold_utterance_ids=[8, 9]),
        Query(id="q4", dialogue_id="d1", text="the concert tickets", type=QueryType.NEGATIVE),
    ]  # fmt: skip


def _lora_tensors(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "adapter_model.safetensors"))


def _varied_reward(completions: list[Any], **_: Any) -> list[float]:
    """A graded reward with variance among random completions (the real rewards are all 0 for
    an untrained tiny model, which gives zero advantages and no update)."""
    from ffr_lib.f2rvlm.rewards import completion_text

    return [len(set(completion_text(c))) / 10.0 for c in completions]


@pytest.fixture(scope="module")
def models_dir() -> Path:
    # Tiny models are built once under the configured models folder and reused.
    return get_settings().models_dir


def _profile(kind: str) -> Any:
    if kind == "text":
        return get_profile("tiny")
    return get_profile("tiny", backbone="tiny-qwen2-vl", image_mode="placeholder")


@pytest.mark.parametrize("kind", ["text", "vlm"])
def test_sft_then_grpo_change_lora_weights(
    kind: str, tmp_path: Path, models_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ffr_lib.progress")
    profile = _profile(kind)
    dialogues = {"d1": _dialogue()}
    records = training_records(dialogues, _queries(), profile)
    assert records and all("completion" in r for r in records)
    if kind == "vlm":  # pixels travel with the records, one per <image> tag
        assert any(r["images"] for r in records)

    sft = train_sft(profile, records, tmp_path / "sft", track=False)
    meta = read_adapter_meta(sft.adapter_dir)
    assert meta["stage"] == "sft" and meta["kind"] == kind
    tensors = _lora_tensors(sft.adapter_dir)
    lora_b = [t for name, t in tensors.items() if "lora_B" in name]
    assert lora_b, "adapter has no LoRA tensors"
    # LoRA B starts at zero: any non-zero entry proves the SFT step updated the adapter.
    assert any(float(t.abs().sum()) > 0 for t in lora_b)
    # The marker embedding rows are trained too (peft trainable tokens), not the whole matrix.
    token_rows = [t for name, t in tensors.items() if "trainable_tokens" in name]
    assert token_rows and token_rows[0].shape[0] == len(SPECIAL_TOKENS)
    assert math.isfinite(sft.metrics["sft_train_loss"])
    # Progress lines (what Dagster's run log shows): steps out of the known total.
    lines = [r.getMessage() for r in caplog.records]
    assert "F2RVLM SFT: 0/2 steps" in lines
    assert any(line.startswith("F2RVLM SFT (loss ") and "2/2 steps in" in line for line in lines)

    scored = score_records(sft.adapter_dir, records)
    assert len(scored.f1) == len(records) == len(scored.entropy)
    assert all(0.0 <= f <= 1.0 for f in scored.f1) and all(h >= 0 for h in scored.entropy)
    assert all(0.0 < p <= 1.0 for probs in scored.token_probs for p in probs)

    grpo = train_grpo(
        profile, records, sft.adapter_dir, tmp_path / "grpo", scores=scored, track=False,
        reward_override=([_varied_reward], [1.0]),
    )  # fmt: skip
    assert grpo.metrics["grpo_steps"] == profile.grpo.max_steps
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("F2RVLM GRPO (reward ") and "2/2 steps in" in line for line in lines)
    after = _lora_tensors(grpo.adapter_dir)
    assert any(float(t.abs().sum()) > 0 for name, t in after.items() if "lora_B" in name)
    meta = read_adapter_meta(grpo.adapter_dir)
    assert meta["parents"] == [str(sft.adapter_dir.resolve())]
    assert set(meta["curriculum"]["class_counts"]) == {"easy", "middle", "confusing", "hard"}

    # The trained chain loads back and answers with ids inside the dialogue.
    retriever = F2RVLMRetriever.from_adapter(grpo.adapter_dir)
    utt, img = retriever.retrieve(_dialogue(), "the lake")
    assert all(0 <= i < 10 for i in utt) and all(0 <= i < 2 for i in img)


def test_markers_are_single_unskipped_tokens(models_dir: Path) -> None:
    backbone = load_backbone("tiny-qwen2")
    tok = backbone.tokenizer
    for marker in SPECIAL_TOKENS:
        assert len(tok.encode(marker, add_special_tokens=False)) == 1
    answer = "<|utt_ids_start|>[1, 2]<|utt_ids_end|>;<|img_ids_start|>[]<|img_ids_end|>"
    ids = tok.encode(answer, add_special_tokens=False)
    # trl decodes completions with skip_special_tokens=True: the markers must survive it.
    assert parse(tok.decode(ids, skip_special_tokens=True)).utt_ids == [1, 2]
    embeddings = backbone.model.get_input_embeddings().weight
    assert embeddings.shape[0] >= len(tok)


def test_sft_logs_and_registers_in_mlflow(tmp_path: Path, models_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("FFR_MODELS_DIR", str(models_dir))
    monkeypatch.setenv("FFR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    profile = get_profile("tiny")
    profile.sft.max_steps = 1
    records = training_records({"d1": _dialogue()}, _queries()[:1], profile)
    result = train_sft(profile, records, tmp_path / "sft", track=True, experiment="f2rvlm-test")
    from mlflow import MlflowClient

    client = MlflowClient()
    run = client.get_run(result.run_id)
    assert run.data.metrics["sft_examples"] == len(records)
    versions = client.search_model_versions("name='f2rvlm-sft'")
    assert any(v.run_id == result.run_id for v in versions)


def test_normalised_entropy_hand_computed() -> None:
    assert normalised_entropy([]) == 0.0
    assert normalised_entropy([math.log(0.5)]) == 0.0
    # Two equal probabilities normalise to 1/2 each: entropy ln 2.
    assert normalised_entropy([math.log(0.3), math.log(0.3)]) == pytest.approx(math.log(2))
    # p = (0.9, 0.1) already sums to 1.
    expected = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    assert normalised_entropy([math.log(0.9), math.log(0.1)]) == pytest.approx(expected)


def test_profiles_are_consistent() -> None:
    paper = PROFILES["paper"]
    assert (paper.sft.learning_rate, paper.sft.epochs, paper.sft.warmup_ratio) == (1e-4, 1, 0.05)
    g = paper.grpo
    assert (g.learning_rate, g.num_generations, g.beta) == (2e-6, 8, 0.02)
    assert (g.epsilon, g.epsilon_high, g.temperature, g.top_p) == (0.2, 0.28, 1.0, 0.85)
    assert (paper.lora.r, paper.lora.alpha) == (8, 32)
    for profile in PROFILES.values():
        assert profile.window_overlap < profile.window_utterances
        assert profile.grpo.num_generations >= 2
    with pytest.raises(KeyError):
        get_profile("nope")
