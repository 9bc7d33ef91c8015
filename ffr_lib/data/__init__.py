"""Dialogue data: the typed model, the canonical on-disk format and readers for other formats."""

from ffr_lib.data.errors import InputError
from ffr_lib.data.model import Dialogue, Image, Query, QueryType, Utterance

__all__ = ["Dialogue", "Image", "InputError", "Query", "QueryType", "Utterance"]
