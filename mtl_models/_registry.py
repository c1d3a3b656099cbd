"""Name -> class registries, so configs can name components and unknown names fail helpfully."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(ValueError):
    """Raised when a registry is asked for a name it does not hold."""


class Registry(Generic[T]):
    """Maps names to classes of one kind (backbones, heads, weightings)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def decorator(cls: type[T]) -> type[T]:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            self._items[name] = cls
            return cls

        return decorator

    def unregister(self, name: str) -> type[T]:
        """Remove ``name`` (e.g. a kind a test registered) and return its class."""
        cls = self.get(name)  # an unknown name fails listing the available ones
        del self._items[name]
        return cls

    def get(self, name: str) -> type[T]:
        """The class registered as ``name``; a family registered as ``"<family>/"`` answers
        every ``<family>/<member>`` name."""
        family = name.partition("/")[0] + "/" if "/" in name else None
        try:
            return self._items[family if family in self._items else name]
        except KeyError:
            available = ", ".join(self.names()) or "none"
            raise UnknownNameError(
                f"unknown {self.kind} '{name}'; available: {available}"
            ) from None

    def names(self) -> list[str]:
        """Registered names; a family shows as ``<family>/<name>``."""
        return sorted(n + "<name>" if n.endswith("/") else n for n in self._items)

    def items(self) -> Iterator[tuple[str, type[T]]]:
        return iter(sorted(self._items.items()))

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str) and "/" in name:
            return name.partition("/")[0] + "/" in self._items
        return name in self._items

    def __repr__(self) -> str:
        return f"Registry(kind={self.kind!r}, names={self.names()})"
