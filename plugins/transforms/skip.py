"""Leave out records by SKU pattern: test articles, gift cards, another shop's articles.

Patterns are shell-style (``*`` any text, ``?`` one character), compared without regard to letter case. A
product is left out when any of its SKUs (a Mamut family: its main article number too) matches; a price or
stock value when its SKU matches. Skipped records are counted as "skipped" in the report, never quarantined.
List under ``products``, ``prices`` or ``stock``, at either point.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from starmamut.transforms import Skip, TransformContext


class SkipSkus:
    """Skip a record whose SKU matches one of the patterns."""

    entities = frozenset({"products", "prices", "stock"})

    def __init__(self, *patterns: str) -> None:
        if not patterns:
            raise ValueError("SkipSkus needs at least one pattern")
        self.patterns = tuple(pattern.casefold() for pattern in patterns)

    def __repr__(self) -> str:
        return f"SkipSkus{self.patterns!r}"

    def __call__(self, record: dict[str, Any], context: TransformContext) -> dict[str, Any] | Skip:
        if context.entity == "products":
            skus = [record.get("key"), *(variant["sku"] for variant in record["variants"])]
        else:
            skus = [record["sku"]]
        for sku in filter(None, skus):
            for pattern in self.patterns:
                if fnmatchcase(sku.casefold(), pattern):
                    return Skip(f"SKU {sku} matches {pattern!r}")
        return record


# Ready to list: test articles and demo articles never go to the shop or to Mamut.
skip_test_articles = SkipSkus("TEST-*", "*-DEMO")
# Ready to list on a shop that publishes Mamut's catalogue: leave out the web shop's own "W-" articles.
skip_web_articles = SkipSkus("W-*")
