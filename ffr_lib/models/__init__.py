"""Model weights: one resolver for every stage (`resolve_model`), offline conversions, tiny models,
and the frozen text encoder (`ffr_lib.models.encoder`).

Importing this package is cheap: torch / transformers load only when a model is converted or built.
"""

from ffr_lib.models.resolve import (
    ALIASES,
    ModelNotAvailableError,
    ResolvedModel,
    alias_status,
    offline_choices,
    prepare_models,
    resolve_model,
)

__all__ = [
    "ALIASES",
    "ModelNotAvailableError",
    "ResolvedModel",
    "alias_status",
    "offline_choices",
    "prepare_models",
    "resolve_model",
]
