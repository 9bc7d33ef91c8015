"""The Python API of FFRS.

    from ffr_lib.ffrs import open_ffrs
    ffrs = open_ffrs()                                   # serving FEM + trained F2RVLM if any
    result = ffrs.query("the photo of the lake", k=20)   # corpus: ranked dialogues
    result.dialogues[0].utterance_ids, result.dialogues[0].image_ids
    ffrs.query_dialogue("the photo of the lake", "dialogue-id")   # one dialogue, F2RVLM

``model`` is a trained adapter folder (what the F2RVLM training assets save), an F2RVLM profile
name (an untrained backbone, e.g. ``tiny`` in tests), or a loaded ``F2RVLMRetriever``. Without
one, FFRS answers with the whole recalled fragments (stage 2 off) and says so in ``stage2``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ffr_lib.data.model import Dialogue
from ffr_lib.f2rvlm.profiles import get_profile
from ffr_lib.f2rvlm.retriever import F2RVLMRetriever
from ffr_lib.ffrs.pipeline import DialogueSource, FFRSConfig, FFRSPipeline, FragmentReader
from ffr_lib.ffrs.types import Prediction
from ffr_lib.settings import get_settings

ModelSpec = str | Path | Any


def default_adapter_dir() -> Path:
    """Where the training assets leave the final (GRPO) adapter."""
    return get_settings().home / "f2rvlm" / "grpo" / "adapter"


def load_retriever(model: ModelSpec) -> F2RVLMRetriever:
    """A loaded F2RVLM from an adapter folder, a profile name (untrained backbone) or a loaded
    retriever."""
    if isinstance(model, F2RVLMRetriever):
        return model
    path = Path(str(model))
    if path.is_dir():
        if not (path / "ffr_adapter.json").is_file():
            raise FileNotFoundError(f"{path} is not an adapter folder saved by F2RVLM training")
        return F2RVLMRetriever.from_adapter(path)
    return F2RVLMRetriever.from_base(get_profile(str(model)))


def resolve_model(model: ModelSpec | None) -> ModelSpec | None:
    """``model``, or the default trained adapter when it exists, else None."""
    if model is not None:
        return model
    folder = default_adapter_dir()
    return folder if (folder / "ffr_adapter.json").is_file() else None


def open_ffrs(
    model: ModelSpec | None = None,
    *,
    config: FFRSConfig | None = None,
    encoder: Any = None,
    url: str | None = None,
    dialogues: DialogueSource | None = None,
) -> FFRSPipeline:
    """An FFRS pipeline over the serving index. ``model=None`` uses the default trained adapter
    when there is one; with no model at all, stage 2 is off (whole fragments)."""
    config = (config or FFRSConfig()).model_copy()
    spec = resolve_model(model)
    reader = None
    if spec is not None and config.stage2 == "f2rvlm":
        reader = FragmentReader(load_retriever(spec), batch_size=config.batch_size)
    else:
        config.stage2 = "fragment"
    return FFRSPipeline(config, reader, encoder=encoder, url=url, dialogues=dialogues)


def query(
    text: str,
    k: int = 20,
    *,
    dialogue: str | Dialogue | None = None,
    dialogue_ids: Sequence[str] | None = None,
    model: ModelSpec | None = None,
    url: str | None = None,
) -> Prediction:
    """One-shot query: corpus search (optionally within ``dialogue_ids``), or, with
    ``dialogue``, F2RVLM over that whole dialogue."""
    ffrs = open_ffrs(model, config=FFRSConfig(k=k), url=url)
    if dialogue is not None:
        return ffrs.query_dialogue(text, dialogue)
    return ffrs.query(text, k, dialogue_ids)
