"""SKU prefix mapping between the systems: Mamut numbers a shop's articles ``<mamut prefix><rest>`` while the
shop shows ``<starweb prefix><rest>`` (either prefix may be empty).

Typical use: several shops share one Mamut company and each shop's articles carry that shop's prefix in Mamut
(``W-KL-2101`` in Mamut is ``KL-2101`` in the web shop), so two shops' SKUs never collide.

List one instance under ``products``, ``orders``, ``prices`` and ``stock`` at ``after_mapping``, so that the
checks, the matching and the ledger all see the target system's numbers and every job of the shop agrees:

* toward Mamut (products_to_mamut, orders_to_mamut) ``starweb`` is replaced by ``mamut``;
* toward Starweb (products_to_starweb, prices_to_starweb, stock_to_starweb) ``mamut`` by ``starweb``.

A product, price or stock record whose SKU lacks the source side's prefix is skipped: it does not follow this
shop's numbering (in Mamut: it belongs to another shop). An order line without it is left as it is. The main
article of a multi-variant product is named by ``products_to_mamut.main_sku_template``; give it the prefix
there. A Mamut family keeps its ``key`` (its main article number, the job's own key): only variant SKUs map.
"""

from __future__ import annotations

from typing import Any

from starmamut.transforms import Skip, TransformContext

TOWARD_MAMUT = frozenset({"products_to_mamut", "orders_to_mamut"})


class SkuPrefixMap:
    """Replace one SKU prefix by another, in the direction the job goes (see the module docstring)."""

    entities = frozenset({"products", "orders", "prices", "stock"})
    points = frozenset({"after_mapping"})

    def __init__(self, *, starweb: str, mamut: str) -> None:
        self.starweb = starweb
        self.mamut = mamut

    def __repr__(self) -> str:
        return f"SkuPrefixMap(starweb={self.starweb!r}, mamut={self.mamut!r})"

    def __call__(self, record: dict[str, Any], context: TransformContext) -> dict[str, Any] | Skip:
        old, new = (self.starweb, self.mamut) if context.job in TOWARD_MAMUT else (self.mamut, self.starweb)
        holders = _sku_holders(record, context)
        foreign = [holder["sku"] for holder in holders if holder["sku"] and not holder["sku"].startswith(old)]
        if foreign and context.entity != "orders":
            return Skip(f"SKU {foreign[0]} does not start with {old!r}: not one of this shop's articles")
        for holder in holders:
            if holder["sku"] and holder["sku"].startswith(old):
                holder["sku"] = new + holder["sku"][len(old) :]
        return record


def _sku_holders(record: dict[str, Any], context: TransformContext) -> list[dict[str, Any]]:
    """Where the SKUs sit: an order's lines, a product's variants, or the record itself (a price or stock)."""
    if context.entity == "orders":
        return record["lines"]
    if context.entity == "products":
        return record["variants"]
    return [record]


# Ready to list: the web shop's articles carry "W-" in Mamut and no prefix in the shop.
web_articles_prefixed_w = SkuPrefixMap(starweb="", mamut="W-")
