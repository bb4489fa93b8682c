"""Prices Mamut → Starweb (flows ``erp`` and ``combo``): extract → validate → load → report.

Per shop, each Starweb price list is fed from one Mamut source: ``base`` (the article's sales price, usually
to the master list) or a Mamut price list by name (e.g. a reseller list to a customer price list). Prices go
ex VAT, rounded as the shop says, with the Mamut list's quantity breaks as volume prices. Only prices that
differ from what was last pushed (the ledger) are sent; a full refresh sends every price again, which also
corrects a price changed in the shop by hand. See :mod:`starmamut.jobs.ledger_push` for the engine and
:mod:`starmamut.mapping.prices_stock` for the rules.

Before anything is staged, the run checks that every mapped Starweb price list exists in the shop and is
active (unless its entry says ``allow_inactive``: prices in an inactive list reach no buyer) and every mapped
Mamut price list exists in Mamut, and fails naming the first one that does not fit.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from starmamut.config import PricesToStarwebSettings
from starmamut.jobs.common import JobContext, chunked, run_steps
from starmamut.jobs.ledger_push import (
    Desired,
    PushSpec,
    ShopMappingError,
    stage_changes,
)
from starmamut.mamut.catalogue import BASE_PRICE, CatalogueReader, PriceRow
from starmamut.mamut.gateway import MamutGateway
from starmamut.mapping.prices_stock import (
    PlannedRequest,
    has_volume_breaks,
    price_ledger_value,
    price_request,
    pricelist_target,
    shop_price,
)
from starmamut.quality.prices_stock import PRICE_COLUMNS, price_check_row, price_checks
from starmamut.starweb.client import StarwebClient

JOB = "prices_to_starweb"
ENTITY = "price"
VAT_LOOKUP_CHUNK = 1000


def _request(record: Mapping[str, Any], variant: tuple[int, int], previous: str | None) -> PlannedRequest:
    return price_request(
        *variant, record["pricelist_id"], record["price"], record["volume"], clear_volume=has_volume_breaks(previous)
    )


def _ledger_value(record: Mapping[str, Any]) -> str:
    return "" if record["price"] is None else price_ledger_value(record["price"], record["volume"])


SPEC = PushSpec(
    job=JOB,
    entity=ENTITY,
    columns=PRICE_COLUMNS,
    check_row=price_check_row,
    checks=price_checks,
    request=_request,
    threshold=lambda shop: shop.prices_to_starweb.quarantine_threshold,
    transforms="prices",
    ledger_value=_ledger_value,
)


def extract(ctx: JobContext) -> dict[str, Any]:
    """Check the mapping, then stage every price that differs from the ledger (all on a full refresh)."""
    settings = ctx.shop.prices_to_starweb
    with ctx.open_starweb() as client:
        currencies = shop_pricelist_currencies(ctx.shop.id, client, settings)
        gateway = ctx.open_mamut()
        reader = CatalogueReader(gateway)
        check_mamut_price_lists(ctx.shop.id, reader, settings)
        prices = reader.iter_prices(
            list(dict.fromkeys(entry.mamut for entry in settings.pricelists)), skus=ctx.params.skus or None
        )
        return stage_changes(ctx, SPEC, client, _desired(ctx, gateway, prices, currencies))


validate = SPEC.validate
load = SPEC.load
report = SPEC.report


def run(ctx: JobContext) -> dict[str, Any]:
    """All four steps in one process (CLI, benchmarks, tests); the DAG runs them as separate tasks."""
    return run_steps(sys.modules[__name__], ctx)


def shop_pricelist_currencies(shop_id: str, client: StarwebClient, settings: PricesToStarwebSettings) -> dict[int, str]:
    """Currency of every mapped Starweb price list (a customer list has its parent's); one request.

    Raises ShopMappingError naming a mapped price list the shop does not have, one that is inactive (unless
    its entry allows it), or one mapped twice.
    """
    pricelists = {pricelist["pricelistId"]: pricelist for pricelist in client.list_pricelists()}
    currencies: dict[int, str] = {}
    for entry in settings.pricelists:
        if entry.starweb in currencies:
            raise ShopMappingError(
                f"shop {shop_id}: prices_to_starweb.pricelists maps Starweb price list {entry.starweb} twice; "
                "each Starweb price list takes its prices from one Mamut source"
            )
        pricelist = pricelists.get(entry.starweb)
        if pricelist is None:
            known = ", ".join(f"{pid} ({p.get('name')})" for pid, p in sorted(pricelists.items())) or "none"
            raise ShopMappingError(
                f"shop {shop_id}: Starweb price list {entry.starweb} (mapped from Mamut {entry.mamut!r}) does not "
                f"exist in the shop; the shop has: {known}. Nothing was sent."
            )
        if not pricelist.get("isActive") and not entry.allow_inactive:  # the spec's default is false
            raise ShopMappingError(
                f"shop {shop_id}: Starweb price list {entry.starweb} ({pricelist.get('name')}) is inactive, so the "
                f"prices_to_starweb.pricelists entry {{starweb: {entry.starweb}, mamut: {entry.mamut!r}}} would write "
                "prices no buyer sees (and activating a list resets its prices to 0). Activate the list in Starweb "
                "and run with full_refresh, map an active one, or set allow_inactive: true on that entry. Nothing "
                "was sent."
            )
        parent = pricelists.get(pricelist.get("parentPricelistId") or 0, {})
        currencies[entry.starweb] = pricelist.get("currencyCode") or parent.get("currencyCode")
    return currencies


def check_mamut_price_lists(shop_id: str, reader: CatalogueReader, settings: PricesToStarwebSettings) -> None:
    """Raise ShopMappingError naming a mapped Mamut price list that Mamut does not have."""
    lists = reader.price_lists()
    for entry in settings.pricelists:
        if entry.mamut != BASE_PRICE and entry.mamut not in lists:
            known = ", ".join(repr(name) for name in sorted(lists)) or "none"
            raise ShopMappingError(
                f"shop {shop_id}: Mamut price list {entry.mamut!r} (mapped to Starweb price list {entry.starweb}) "
                f"does not exist in Mamut; Mamut has: {known} (or 'base' for the sales price). Nothing was sent."
            )


def _desired(
    ctx: JobContext, gateway: MamutGateway, prices: Iterator[PriceRow], currencies: Mapping[int, str]
) -> Iterator[Desired]:
    """Each Mamut price once per Starweb price list it feeds, converted, rounded and in canonical form."""
    settings = ctx.shop.prices_to_starweb
    targets: dict[str, list[int]] = {}
    for entry in settings.pricelists:
        targets.setdefault(entry.mamut, []).append(entry.starweb)
    for chunk in chunked(prices, VAT_LOOKUP_CHUNK):
        rates = _vat_rates(ctx, gateway, [row.sku for row in chunk if row.incl_vat])
        for row in chunk:
            mapped = shop_price(
                row.price, row.volume, incl_vat=row.incl_vat, vat_rate=rates.get(row.sku), rounding=settings.rounding
            )
            price = None if mapped is None else mapped["price"]
            volume = [] if mapped is None else mapped["volume"]
            for pricelist_id in targets[row.source]:
                record = {
                    "pricelist_id": pricelist_id,
                    "source": row.source,
                    "currency": row.currency,
                    "pricelist_currency": currencies[pricelist_id],
                    "price": price,
                    "volume": volume,
                }
                yield Desired(
                    sku=row.sku, target=pricelist_target(pricelist_id), value=_ledger_value(record), record=record
                )


def _vat_rates(ctx: JobContext, gateway: MamutGateway, skus: list[str]) -> dict[str, Decimal]:
    """VAT rate per article, by its VAT code and the config's rates (absent when the config has none): only
    for prices kept incl. VAT, since the catalogue reader gives prices without the article's VAT code."""
    if not skus:
        return {}
    rate_by_code = {code: Decimal(str(rate)) for rate, code in ctx.settings.mamut.vat_codes.items()}
    with gateway.transaction() as transaction:
        rows = transaction.select("product", ["sku", "vat_code"], where_in=("sku", skus))
    return {row["sku"]: rate_by_code[row["vat_code"]] for row in rows if row["vat_code"] in rate_by_code}
