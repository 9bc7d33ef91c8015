"""Dialogue data: the typed model, the canonical on-disk format, readers for other formats, the
text formats of the retrieval task (``format``: prompt, answer, ms-swift sample) and what a
query's gold covers (``gold``)."""

from ffr_lib.data.errors import InputError
from ffr_lib.data.model import Dialogue, Image, Query, QueryType, Utterance

__all__ = ["Dialogue", "Image", "InputError", "Query", "QueryType", "Utterance"]
