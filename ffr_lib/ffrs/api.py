"""The Python API of FFRS.

    from ffr_lib.ffrs import open_ffrs
    ffrs = open_ffrs()                                   # serving FEM + trained F2RVLM if any
    result = ffrs.query("the photo of the lake", k=20)   # corpus: ranked dialogues
    result.dialogues[0].utterance_ids, result.dialogues[0].image_ids
    ffrs.query_dialogue("the photo of the lake", "dialogue-id")   # one dialogue, F2RVLM

The fine stage (stage 2) is the one the last verdict chose (:mod:`ffr_lib.ffrs.serving`: the
trained F2RVLM and the champion reader scored on the same val queries after F2RVLM training),
else the trained reader when one is registered champion (``reader_checkpoint``; it beat F2RVLM
in every evaluation run so far, BENCHMARKS.md), else F2RVLM when a trained adapter exists, else
none (the whole recalled fragments). ``fine_stage`` forces one; the pipeline's ``config.stage2``
says which one serves.

``model`` is a trained adapter folder (what the F2RVLM training assets save), an F2RVLM profile
name (an untrained backbone, e.g. ``tiny`` in tests), or a loaded ``F2RVLMRetriever``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from ffr_lib.data.model import Dialogue
from ffr_lib.f2rvlm.profiles import get_profile
from ffr_lib.f2rvlm.retriever import F2RVLMRetriever
from ffr_lib.ffrs.pipeline import DialogueSource, FFRSConfig, FFRSPipeline, FragmentReader
from ffr_lib.ffrs.serving import serving_fine_stage
from ffr_lib.ffrs.types import Prediction
from ffr_lib.reader.reader import Reader
from ffr_lib.reader.stage import champion_path
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


FineStage = Literal["auto", "reader", "f2rvlm", "fragment"]


def open_ffrs(
    model: ModelSpec | None = None,
    *,
    config: FFRSConfig | None = None,
    encoder: Any = None,
    url: str | None = None,
    dialogues: DialogueSource | None = None,
    fine_stage: FineStage = "auto",
    reader: str | Path | None = None,
) -> FFRSPipeline:
    """An FFRS pipeline over the serving index with the fine stage ``fine_stage`` ("auto": the
    F2RVLM ``model`` when one is named, else the champion reader, else the trained F2RVLM, else
    whole fragments). ``model``: the F2RVLM
    adapter (default: the GRPO asset's); ``reader``: a reader checkpoint (default: the
    champion). Raises FileNotFoundError when a forced fine stage has nothing trained."""
    config = (config or FFRSConfig()).model_copy()
    spec = resolve_model(model)
    serving, served = serving_fine_stage(reader)
    reader_file = served if serving == "reader" else champion_path()
    if fine_stage == "auto":
        if model is not None:  # an F2RVLM asked for by name serves
            fine_stage = "f2rvlm"
        elif serving == "f2rvlm":  # the judged verdict (ffr_lib.ffrs.serving)
            fine_stage, spec = "f2rvlm", served
        else:
            fine_stage = "reader" if reader_file else "f2rvlm" if spec is not None else "fragment"
    span_reader = f2rvlm = None
    if fine_stage == "reader":
        if reader_file is None:
            raise FileNotFoundError("no trained reader: materialize reader_checkpoint first")
        span_reader = Reader.load(reader_file)
    elif fine_stage == "f2rvlm":
        if spec is None:
            raise FileNotFoundError("no trained F2RVLM adapter: materialize f2rvlm_grpo first")
        f2rvlm = FragmentReader(load_retriever(spec), batch_size=config.batch_size)
    config.stage2 = fine_stage
    return FFRSPipeline(
        config, f2rvlm, encoder=encoder, url=url, dialogues=dialogues, span_reader=span_reader
    )


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
