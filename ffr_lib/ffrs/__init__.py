"""FFRS: the two-stage corpus retriever (FEM recall in pgvector, F2RVLM read with fragment-local
ids, merge per dialogue) and its Python API."""

from ffr_lib.ffrs.api import default_adapter_dir, load_retriever, open_ffrs, query
from ffr_lib.ffrs.pipeline import (
    FFRSConfig,
    FFRSPipeline,
    FragmentReader,
    fragment_prompts,
    map_answers,
    read_whole_dialogue,
)
from ffr_lib.ffrs.types import DialogueResult, Prediction, RankedFragment, merge_per_dialogue

__all__ = [
    "DialogueResult",
    "FFRSConfig",
    "FFRSPipeline",
    "FragmentReader",
    "Prediction",
    "RankedFragment",
    "default_adapter_dir",
    "fragment_prompts",
    "load_retriever",
    "map_answers",
    "merge_per_dialogue",
    "open_ffrs",
    "query",
    "read_whole_dialogue",
]
