"""Page sizes and the page a list method returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from store.errors import InvalidInput

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200

ItemT = TypeVar("ItemT")


@dataclass(frozen=True, slots=True)
class Page(Generic[ItemT]):
    """One page of a list; ``next_cursor`` is None on the last page."""

    items: list[ItemT]
    next_cursor: str | None

    @property
    def has_more(self) -> bool:
        return self.next_cursor is not None


def check_limit(limit: object, field: str = "limit") -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInput(field, f"must be an integer from 1 to {MAX_PAGE_SIZE}")
    return limit
