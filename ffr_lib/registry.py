"""Name registries: one table ``name -> (description, factory)`` per kind of pluggable part, in
the shape of the reader registry (:mod:`ffr_lib.data.readers`).

A factory is a callable, or ``"module:attribute"`` imported on first use, so a registry can list
parts whose modules are heavy (or import the registry themselves) without importing them. The
names, the help texts and the reports all come from the table, and an unknown name is one error,
:class:`UnknownNameError`, listing the known names.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

E = TypeVar("E", bound="Entry")


class UnknownNameError(ValueError):
    """A name the registry does not know; the message lists the known names."""

    def __init__(self, kind: str, names: Iterable[str], known: Iterable[str]) -> None:
        self.kind, self.names, self.known = kind, list(names), list(known)
        unknown = ", ".join(repr(n) for n in self.names)
        plural = "s" if len(self.names) > 1 else ""
        super().__init__(f"unknown {kind}{plural} {unknown}; known: {', '.join(self.known)}")


@dataclass(frozen=True)
class Entry:
    """One registered part: what it is (one line, for help texts and reports) and its factory
    (a callable or ``"module:attribute"``)."""

    description: str
    factory: str | Callable[..., Any]


class Registry(Generic[E]):
    """An ordered ``name -> entry`` table of one ``kind`` of part (the word in the errors)."""

    def __init__(self, kind: str, entries: Mapping[str, E]) -> None:
        self.kind = kind
        self.entries: dict[str, E] = dict(entries)

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def names(self) -> tuple[str, ...]:
        return tuple(self.entries)

    def descriptions(self) -> dict[str, str]:
        return {name: entry.description for name, entry in self.entries.items()}

    def check(self, names: Iterable[str]) -> list[str]:
        """``names`` as a list; :class:`UnknownNameError` naming every unknown one."""
        names = list(names)
        unknown = [n for n in names if n not in self.entries]
        if unknown:
            raise UnknownNameError(self.kind, unknown, self.entries)
        return names

    def entry(self, name: str) -> E:
        self.check([name])
        return self.entries[name]

    def factory(self, name: str) -> Callable[..., Any]:
        """The factory of ``name``, imported now when it is given as ``"module:attribute"``."""
        target = self.entry(name).factory
        if not isinstance(target, str):
            return target
        module_name, _, attribute = target.partition(":")
        module = importlib.import_module(module_name)
        found = module
        for part in attribute.split("."):
            found = getattr(found, part)
        return found


__all__ = ["Entry", "Registry", "UnknownNameError"]
