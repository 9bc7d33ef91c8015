"""The one error type for bad input: it names the file, the record and the field."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad input data. The message always says where: file, record (line/index/id) and field.

    Readers raise this and nothing else for bad input, so callers (CLI, sensor) can report it and
    move on without guessing which exceptions mean "the data is wrong".
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        record: str | int | None = None,
        field: str | None = None,
    ) -> None:
        self.file = str(file) if file is not None else None
        self.record = record
        self.field = field
        self.reason = message
        where = []
        if self.file is not None:
            where.append(f"file {self.file}")
        if record is not None:
            where.append(f"record {record}")
        if field is not None:
            where.append(f"field '{field}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
