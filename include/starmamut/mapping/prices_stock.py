"""Pure mapping of Mamut prices and stock to what a Starweb shop should hold (no I/O).

Every value is mapped to a canonical string, the ledger value: the same Mamut data always gives the same
string, so comparing it with the last value pushed says whether a request is needed. Requests carry absolute
values (never deltas), so sending one twice is harmless.

Rules decided here:

* Prices go to Starweb ex VAT; a Mamut price list kept incl. VAT is divided by (1 + rate/100) of the
  article's VAT rate (to 4 decimals, as Mamut keeps prices). Rounding is per shop: ``none`` (Mamut's value
  as is), ``cents`` or ``whole``, half up.
* Volume prices: Starweb wants an integer minimum quantity of at least 2 per break; Mamut's quantities are
  decimals, so they are carried as they are and the quality checks reject the ones Starweb cannot take.
* Stock quantities are whole numbers, rounded **down** (2.7 available shows as 2): the shop must never offer a
  unit Mamut does not have. Negative values are clamped to 0 or passed on, per shop.
* Stock status: an article that is not stock-managed is always buyable (in-stock status, quantity 0); an
  inactive article is out of stock; otherwise quantity > 0 is in stock, and 0 or less is back-order when the
  shop configured a back-order status, else out of stock.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any, Literal

Rounding = Literal["none", "cents", "whole"]
NegativeStock = Literal["clamp", "pass"]
VARIANT_TARGET = "variant"
_QUANTUM: dict[str, Decimal] = {"cents": Decimal("0.01"), "whole": Decimal("1")}
_HUNDRED = Decimal(100)
_MAMUT_PRICE_QUANTUM = Decimal("0.0001")  # G_PROD.PRICEOUT and price-list prices are decimal(19,4)


@dataclass(frozen=True)
class PlannedRequest:
    """One write to Starweb: what the load sends, and what a dry run shows."""

    method: Literal["PUT", "PATCH"]
    path: str
    body: dict[str, Any]

    def describe(self) -> str:
        return f"{self.method} {self.path} {json.dumps(self.body, sort_keys=True, ensure_ascii=False)}"


@dataclass(frozen=True)
class StockStatusIds:
    """The shop's stock status ids for the configured idCodes."""

    in_stock: int
    out_of_stock: int
    backorder: int | None


def pricelist_target(pricelist_id: int) -> str:
    """The ledger target of a Starweb price list."""
    return f"pricelist:{pricelist_id}"


def stock_target(location: int | str) -> str:
    """The ledger target of a Starweb stock location, or ``variant`` for the variant's own stock fields."""
    return VARIANT_TARGET if location == VARIANT_TARGET else f"location:{location}"


def row_key(sku: str, target: str) -> str:
    """Staging and quarantine key of one value, e.g. ``MUGG-ORE@pricelist:2``."""
    return f"{sku}@{target}"


def plain(value: Decimal) -> str:
    """A decimal without exponent or trailing zeros: ``Decimal("10.000")`` → ``"10"``."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


# ---------------------------------------------------------------- prices


def ex_vat(price: Decimal, *, incl_vat: bool, vat_rate: Decimal | None) -> Decimal | None:
    """The price without VAT, to Mamut's 4 decimals; None when it is kept incl. VAT and the rate is unknown."""
    if not incl_vat:
        return price
    if vat_rate is None:
        return None
    return (price * _HUNDRED / (_HUNDRED + vat_rate)).quantize(_MAMUT_PRICE_QUANTUM, rounding=ROUND_HALF_UP)


def round_price(price: Decimal, rounding: Rounding) -> Decimal:
    quantum = _QUANTUM.get(rounding)
    return price if quantum is None else price.quantize(quantum, rounding=ROUND_HALF_UP)


def format_price(price: Decimal, rounding: Rounding) -> str:
    """The canonical text of a rounded price: "199.20" with cents, "199" whole, "199.2" unrounded."""
    return format(price, "f") if rounding in _QUANTUM else plain(price)


def shop_price(
    price: Decimal,
    volume: Iterable[tuple[Decimal, Decimal]],
    *,
    incl_vat: bool,
    vat_rate: Decimal | None,
    rounding: Rounding,
) -> dict[str, Any] | None:
    """The price record for one Starweb price list: ``price`` and ``volume`` [[quantity, price], ...] as text,
    sorted by quantity; None when an incl. VAT price cannot be converted (no VAT rate)."""
    base = ex_vat(price, incl_vat=incl_vat, vat_rate=vat_rate)
    if base is None:
        return None
    breaks = []
    for quantity, break_price in sorted(volume):
        converted = ex_vat(break_price, incl_vat=incl_vat, vat_rate=vat_rate)
        if converted is None:
            return None
        breaks.append([plain(quantity), format_price(round_price(converted, rounding), rounding)])
    return {"price": format_price(round_price(base, rounding), rounding), "volume": breaks}


def price_ledger_value(price: str, volume: Iterable[Iterable[str]]) -> str:
    """``"199.20"``, or with volume breaks ``"199.20|10:179.00;50:159.00"``."""
    breaks = ";".join(f"{quantity}:{break_price}" for quantity, break_price in volume)
    return f"{price}|{breaks}" if breaks else price


def has_volume_breaks(ledger_value: str | None) -> bool:
    return ledger_value is not None and "|" in ledger_value


def price_request(
    product_id: int,
    variant_id: int,
    pricelist_id: int,
    price: str,
    volume: Iterable[Iterable[str]],
    *,
    clear_volume: bool,
) -> PlannedRequest:
    """``PUT …/variants/{vid}/prices/{pricelistId}``; ``volumePrices`` goes with it when there are breaks, or
    when breaks pushed earlier must be cleared (``clear_volume``), so the price list holds exactly Mamut's."""
    body: dict[str, Any] = {"pricelistId": pricelist_id, "priceExVat": float(price)}
    breaks = [
        {"pricelistId": pricelist_id, "quantity": int(Decimal(quantity)), "priceExVat": float(break_price)}
        for quantity, break_price in volume
    ]
    if breaks or clear_volume:
        body["volumePrices"] = {"data": breaks}
    return PlannedRequest("PUT", f"/products/{product_id}/variants/{variant_id}/prices/{pricelist_id}", body)


# ---------------------------------------------------------------- stock


def shop_stock(
    available: Decimal, *, use_store: bool, inactive: bool, negative: NegativeStock, statuses: StockStatusIds
) -> tuple[int, int]:
    """(stockQuantity, stockStatusId) by the rules in this module's docstring."""
    if not use_store:
        return 0, statuses.in_stock
    quantity = int(available.to_integral_value(rounding=ROUND_FLOOR))
    if negative == "clamp":
        quantity = max(quantity, 0)
    if inactive:
        return quantity, statuses.out_of_stock
    if quantity > 0:
        return quantity, statuses.in_stock
    return quantity, statuses.backorder if statuses.backorder is not None else statuses.out_of_stock


def stock_ledger_value(quantity: int, status_id: int) -> str:
    """``"<quantity>|<stockStatusId>"``."""
    return f"{quantity}|{status_id}"


def stock_request(product_id: int, variant_id: int, target: str, quantity: int, status_id: int) -> PlannedRequest:
    """``PATCH …/variants/{vid}`` for the variant's own stock, else ``PUT …/stocks/{stockLocationId}``."""
    body = {"stockQuantity": quantity, "stockStatusId": status_id}
    variant_path = f"/products/{product_id}/variants/{variant_id}"
    if target == VARIANT_TARGET:
        return PlannedRequest("PATCH", variant_path, body)
    location_id = int(target.removeprefix("location:"))
    return PlannedRequest("PUT", f"{variant_path}/stocks/{location_id}", body)
