"""``Registry``: the one convention for things chosen by name — models, pipeline components, evaluable factories.

A registry maps canonical names (and aliases) to values of one kind; ``register`` is a decorator, ``get`` resolves a
name case-insensitively and raises :class:`~belong.errors.ValidationError` naming the field and the known names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from belong.errors import ValidationError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> values of one ``kind`` (e.g. ``"source"``); errors name ``field`` (e.g. ``"sources[0].type"``)."""

    def __init__(self, kind: str, field: str | None = None) -> None:
        self.kind = kind
        self.field = field or kind
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def add(self, name: str, value: T, aliases: tuple[str, ...] = ()) -> T:
        key = name.lower()
        self._items[key] = value  # a second registration of a name replaces the first
        for a in aliases:
            self._aliases[a.lower()] = key
        return value

    def register(self, name: str, *aliases: str) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("name", "alias")``."""

        def deco(value: T) -> T:
            return self.add(name, value, aliases)

        return deco

    def resolve(self, name: str, field: str | None = None) -> str:
        """The canonical name of ``name`` (or an alias), case-insensitive."""
        key = str(name).strip().lower()
        key = self._aliases.get(key, key)
        if key not in self._items:
            known = ", ".join(self._items) or "none registered"
            raise ValidationError(field or self.field, f"unknown {self.kind} {name!r}; known: {known}")
        return key

    def get(self, name: str, field: str | None = None) -> T:
        return self._items[self.resolve(name, field)]

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def names(self) -> list[str]:
        return list(self._items)

    def items(self) -> list[tuple[str, T]]:
        return list(self._items.items())

    def __contains__(self, name: object) -> bool:
        key = str(name).strip().lower()
        return self._aliases.get(key, key) in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
