"""One page of a paginated listing: shared by the catalogue (state) and the sales side (sales_state)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Page:
    """One page of a paginated list with the spec's ``PaginationModel`` fields."""

    items: list[dict[str, Any]]
    pagination: dict[str, int]
