"""A cache key that is its object itself, for caches of SQLAlchemy expressions.

An expression answers == with another expression, not a bool, so it cannot key a dict or an
lru_cache as it is; statements built once and reused are the same object each time, and that
is what such a cache means to match. A kept key holds its object, so the object's id is not
reused while the key is in the cache. Must never be used for objects built anew per call
(the cache would only grow).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Same"]


@dataclass(frozen=True, eq=False)
class Same:
    """Equal only to a Same of the very same object."""

    obj: Any

    def __hash__(self) -> int:
        return id(self.obj)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Same) and other.obj is self.obj
