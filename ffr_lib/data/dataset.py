"""A dataset is what every reader returns: dialogues plus the queries asked about them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from ffr_lib.data.model import Dialogue, Query


class Dataset(BaseModel):
    dialogues: list[Dialogue] = Field(default_factory=list)
    queries: list[Query] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="reader notes, e.g. 'warnings' for repaired records"
    )

    def dialogue_by_id(self) -> dict[str, Dialogue]:
        return {dialogue.id: dialogue for dialogue in self.dialogues}
