"""A registry of named definitions: the one implementation behind the activation and loss registries.

Activations and losses are registered, looked up and listed the same way, with the same errors
(``TypeError`` for the wrong kind of object, ``ValueError`` for a name taken or unknown, ``KeyError``
for removing a name that is not there), so the code lives here once; ``handgrad.activations`` and
``handgrad.losses`` keep their public functions as thin, documented wrappers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, Protocol, TypeVar

__all__ = ["Registry"]


class _Named(Protocol):
    name: str


T = TypeVar("T", bound=_Named)


class Registry(Generic[T]):
    """Named objects of one class, in registration order.

    Example:
      >>> from dataclasses import dataclass
      >>> @dataclass
      ... class Thing:
      ...     name: str
      >>> things = Registry("thing", Thing)
      >>> things.register(Thing("a")).name, things.names()
      ('a', ['a'])
    """

    def __init__(self, kind: str, cls: type[T]) -> None:
        self.kind, self.cls = kind, cls
        self._items: dict[str, T] = {}
        self._an = "an" if kind[:1] in "aeiou" else "a"

    def register(self, item: T, *, replace: bool = False, argument: str | None = None) -> T:
        """Add ``item``; ``ValueError`` if its name is taken and ``replace`` is false."""
        if not isinstance(item, self.cls):
            raise TypeError(f"{argument or self.kind} must be {self._an} {self.cls.__name__}, "
                            f"got {type(item).__name__}")
        if item.name in self._items and not replace:
            raise ValueError(f"{self._an} {self.kind} named {item.name!r} is already registered (pass replace=True)")
        self._items[item.name] = item
        return item

    def unregister(self, name: str) -> None:
        """Remove ``name`` (``KeyError`` naming the known ones)."""
        if name not in self._items:
            raise KeyError(f"no {self.kind} named {name!r}; known: {sorted(self._items)}")
        del self._items[name]

    def get(self, name: str | T) -> T:
        """Look ``name`` up (an instance of the class is returned as is)."""
        if isinstance(name, self.cls):
            return name
        if not isinstance(name, str):
            raise TypeError(f"{self.kind} must be a name or {self._an} {self.cls.__name__}, "
                            f"got {type(name).__name__}")
        try:
            return self._items[name]
        except KeyError:
            raise ValueError(f"unknown {self.kind} {name!r}; registered: {sorted(self._items)}") from None

    def names(self) -> list[str]:
        """The registered names, in registration order."""
        return list(self._items)

    def values(self) -> Iterator[T]:
        """The registered objects, in registration order (a snapshot: registering while iterating is safe)."""
        return iter(list(self._items.values()))
