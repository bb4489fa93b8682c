"""Round prices to whole kronor: a shop that shows 199 kr, not 199.20 kr.

List under ``prices`` (either point). Only price lists in kronor/kroner (SEK, NOK, DKK) are rounded; a EUR
list keeps its cents. Volume prices are rounded the same way. Half up: 199.50 → 200, 199.49 → 199.

``prices_to_starweb.rounding: whole`` rounds every list; this transform shows the pattern for a rule the
settings do not offer (only some currencies, or another step such as 9-endings).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from starmamut.transforms import TransformContext, applies_to

KRONOR_CURRENCIES = frozenset({"SEK", "NOK", "DKK"})


def _whole(price: str) -> str:
    return format(Decimal(price).quantize(Decimal(1), rounding=ROUND_HALF_UP), "f")


@applies_to("prices")
def round_to_whole_kronor(record: dict[str, Any], context: TransformContext) -> dict[str, Any]:
    """The price and its volume prices in whole kronor, for a price list in SEK, NOK or DKK."""
    if record["price"] is None or record["pricelist_currency"] not in KRONOR_CURRENCIES:
        return record  # no price (the checks quarantine it) or not a kronor list
    record["price"] = _whole(record["price"])
    record["volume"] = [[quantity, _whole(price)] for quantity, price in record["volume"]]
    return record
