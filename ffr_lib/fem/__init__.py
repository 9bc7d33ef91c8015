"""Fragment Embedding Model: the frozen text encoder (and, later, its fine-tuning)."""

from ffr_lib.fem.encoder import DEFAULT_ENCODER, TextEncoder, get_text_encoder

__all__ = ["DEFAULT_ENCODER", "TextEncoder", "get_text_encoder"]
