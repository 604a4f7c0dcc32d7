"""A bounded memory of the last value seen per key, for state carried from one command of a
session to its next (the carts the command reader read, the cart JSON the handlers sent)."""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["Recent"]

_V = TypeVar("_V")


class Recent(Generic[_V]):
    """The last value put for each of up to `size` keys, the least recently put dropped.

    `get` takes the value out: whoever uses it puts back the next one (or none, to forget the
    key), which also makes it the most recent.
    """

    __slots__ = ("_size", "_values")

    def __init__(self, size: int = 8192) -> None:
        self._values: dict[str, _V] = {}
        self._size = size

    def get(self, key: str) -> _V | None:
        return self._values.pop(key, None)

    def put(self, key: str, value: _V) -> None:
        values = self._values
        if len(values) >= self._size:
            del values[next(iter(values))]
        values[key] = value

    def __len__(self) -> int:
        return len(self._values)
