"""Checks for prices and stock going Mamut → Starweb: one row per (SKU, price list) or (SKU, stock location).

The SKU rules are the product suite's (present, text, Starweb's characters, at most 40 long); uniqueness is
per target and ignores case, because Starweb compares SKUs case-insensitively while Mamut may not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from starmamut.quality.products import product_checks
from starmamut.quality.runner import RowCheck, import_great_expectations

PRICE_COLUMNS = (
    "row_key",
    "sku",
    "sku_folded",
    "target",
    "price",
    "currency",
    "pricelist_currency",
    "volume_quantities",
    "volume_min_quantity",
    "volume_min_price",
)
STOCK_COLUMNS = ("row_key", "sku", "sku_folded", "target", "quantity")
STARWEB_STOCK_LIMIT = 100_000_000
_SKU_RULES = ("sku_present", "sku_is_text", "sku_allowed_characters", "sku_max_length")
# Whole numbers separated by commas; `\Z` rather than `$` (see quality.products.SKU_PATTERN).
_WHOLE_QUANTITIES = r"^[0-9]+(?:,[0-9]+)*\Z"


def _expectations() -> ModuleType:
    return import_great_expectations().expectations


def _sku_checks() -> list[RowCheck]:
    """The product suite's SKU rules plus uniqueness per target, ignoring case."""
    shared = [check for check in product_checks(allowed_vat_rates=(0,)) if check.name in _SKU_RULES]
    return [
        *shared,
        RowCheck(
            name="sku_unique_per_target",
            expectation=lambda: _expectations().ExpectCompoundColumnsToBeUnique(column_list=["sku_folded", "target"]),
            describe=lambda row: (
                f"SKU {row['sku']!r} is, ignoring upper and lower case, the SKU of another Mamut article too; "
                "Starweb cannot tell them apart"
            ),
        ),
    ]


def price_checks() -> list[RowCheck]:
    """What a price must pass before it is sent: present, not negative, in the price list's currency, and
    volume breaks Starweb accepts (whole quantities of at least 2, prices not negative)."""
    return [
        *_sku_checks(),
        RowCheck(
            name="price_present",
            expectation=lambda: _expectations().ExpectColumnValuesToNotBeNull(column="price"),
            describe=lambda row: "the price list keeps this price incl. VAT and the article's VAT rate is unknown",
        ),
        _between("price_not_negative", "price", lambda row: f"price {row['price']} is negative", min_value=0),
        RowCheck(
            name="currency_matches_pricelist",
            expectation=lambda: _expectations().ExpectColumnPairValuesToBeEqual(
                column_A="currency", column_B="pricelist_currency"
            ),
            describe=lambda row: (
                f"the Mamut price is in {row['currency']}, but Starweb price list "
                f"{row['target'].removeprefix('pricelist:')} is in {row['pricelist_currency']}"
            ),
        ),
        RowCheck(
            name="volume_quantities_whole",
            expectation=lambda: _expectations().ExpectColumnValuesToMatchRegex(
                column="volume_quantities", regex=_WHOLE_QUANTITIES
            ),
            describe=lambda row: (
                f"volume price quantities {row['volume_quantities']} are not all whole numbers; Starweb needs them"
            ),
        ),
        _between(
            "volume_quantity_at_least_2",
            "volume_min_quantity",
            lambda row: f"a volume price starts at quantity {row['volume_min_quantity']}; Starweb's start at 2",
            min_value=2,
        ),
        _between(
            "volume_price_not_negative",
            "volume_min_price",
            lambda row: f"a volume price is negative ({row['volume_min_price']})",
            min_value=0,
        ),
    ]


def stock_checks() -> list[RowCheck]:
    """What a stock value must pass: the SKU rules and Starweb's bounds for a quantity (±1e8)."""
    return [
        *_sku_checks(),
        _between(
            "quantity_within_starweb_bounds",
            "quantity",
            lambda row: f"stock quantity {row['quantity']} is outside what Starweb accepts (±100 000 000)",
            min_value=-STARWEB_STOCK_LIMIT,
            max_value=STARWEB_STOCK_LIMIT,
        ),
    ]


def _between(
    name: str,
    column: str,
    describe: Callable[[dict[str, Any]], str],
    *,
    min_value: float | None = None,
    max_value: float | None = None,
) -> RowCheck:
    """A range check on one column; a missing value passes (presence is another check's business)."""
    return RowCheck(
        name=name,
        expectation=lambda: _expectations().ExpectColumnValuesToBeBetween(
            column=column, min_value=min_value, max_value=max_value
        ),
        describe=describe,
    )


def price_check_row(key: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """The row the price checks read, from a staged price record."""
    volume = record["volume"]
    return {
        **_identity(key, record),
        "price": None if record["price"] is None else float(record["price"]),
        "currency": record["currency"],
        "pricelist_currency": record["pricelist_currency"],
        "volume_quantities": ",".join(quantity for quantity, _ in volume) or None,
        "volume_min_quantity": min((float(quantity) for quantity, _ in volume), default=None),
        "volume_min_price": min((float(price) for _, price in volume), default=None),
    }


def stock_check_row(key: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """The row the stock checks read, from a staged stock record."""
    return {**_identity(key, record), "quantity": record["quantity"]}


def _identity(key: str, record: Mapping[str, Any]) -> dict[str, Any]:
    sku = record["sku"]
    return {
        "row_key": key,
        "sku": sku,
        "sku_folded": sku.casefold() if isinstance(sku, str) else sku,
        "target": record["target"],
    }
