"""Dagster Config fields whose defaults come from the library config that owns them.

Every default lives once, in the typed ``ffr_lib`` config of its stage; an asset's Config field
repeats only the name and type, so the Dagster UI and a bare library call run the same values.
"""

from typing import Any

from pydantic import BaseModel, Field


def library_default(model: type[BaseModel], name: str) -> Any:
    """The default of ``model.<name>``."""
    return model.model_fields[name].get_default(call_default_factory=True)


def from_library(model: type[BaseModel], name: str, description: str | None = None) -> Any:
    """A Config field with the default (and, unless given, the description) of ``model.<name>``."""
    field = model.model_fields[name]
    return Field(default=library_default(model, name), description=description or field.description)
