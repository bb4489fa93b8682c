"""Prices Mamut → Starweb (flows ``erp`` and ``combo``): extract → validate → load → report.

Per shop, each Starweb price list is fed from one Mamut source: ``base`` (the article's sales price, usually
to the master list) or a Mamut price list by name (e.g. a reseller list to a customer price list). Prices go
ex VAT, rounded as the shop says, with the Mamut list's quantity breaks as volume prices. Only prices that
differ from what was last pushed (the ledger) are sent; a full refresh sends every price again, which also
corrects a price changed in the shop by hand. See :mod:`starmamut.services.ledger` for the engine and
:mod:`starmamut.mapping.prices_stock` for the rules.

Before anything is staged, the run checks that every mapped Starweb price list exists in the shop and is
active (unless its entry says ``allow_inactive``: prices in an inactive list reach no buyer) and every mapped
Mamut price list exists in Mamut, and fails naming the first one that does not fit.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from starmamut.jobs.base import Session
from starmamut.jobs.common import JobContext, chunked
from starmamut.mamut.catalogue import CatalogueReader
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
from starmamut.quality.runner import RowCheck
from starmamut.services.ledger import PRICE, Desired, LedgerPush
from starmamut.services.reference import ShopMappingError, check_mamut_price_lists, shop_pricelist_currencies

VAT_LOOKUP_CHUNK = 1000


@dataclass(kw_only=True)
class _Reading(Session):
    gateway: MamutGateway
    reader: CatalogueReader
    currencies: dict[int, str | None]


class PricesToStarweb(LedgerPush):
    """Mamut prices, price lists and quantity breaks to the shop's price lists (only changed values)."""

    name = "prices_to_starweb"
    entity = PRICE
    noun = "price value"
    transform_entity = "prices"
    columns = PRICE_COLUMNS

    @contextmanager
    def open_extract(self, ctx: JobContext) -> Iterator[Session]:
        """Check the mapping against the shop and Mamut before anything is staged."""
        settings = ctx.shop.prices_to_starweb
        with ctx.open_starweb() as client:
            currencies = shop_pricelist_currencies(ctx.shop.id, client, settings)
            gateway = ctx.open_mamut()
            reader = CatalogueReader(gateway)
            check_mamut_price_lists(ctx.shop.id, reader, settings)
            yield _Reading(client=client, gateway=gateway, reader=reader, currencies=currencies)

    def desired(self, ctx: JobContext, session: Session) -> Iterator[Desired]:
        """Each Mamut price once per Starweb price list it feeds, converted, rounded and in canonical form."""
        assert isinstance(session, _Reading)
        settings = ctx.shop.prices_to_starweb
        targets: dict[str, list[int]] = {}
        for entry in settings.pricelists:
            targets.setdefault(entry.mamut, []).append(entry.starweb)
        prices = session.reader.iter_prices(list(targets), skus=ctx.params.skus or None)
        for chunk in chunked(prices, VAT_LOOKUP_CHUNK):
            rates = _vat_rates(ctx, session.gateway, [row.sku for row in chunk if row.incl_vat])
            for row in chunk:
                mapped = shop_price(
                    row.price,
                    row.volume,
                    incl_vat=row.incl_vat,
                    vat_rate=rates.get(row.sku),
                    rounding=settings.rounding,
                )
                price = None if mapped is None else mapped["price"]
                volume = [] if mapped is None else mapped["volume"]
                for pricelist_id in targets[row.source]:
                    record = {
                        "pricelist_id": pricelist_id,
                        "source": row.source,
                        "currency": row.currency,
                        "pricelist_currency": session.currencies[pricelist_id],
                        "price": price,
                        "volume": volume,
                    }
                    yield Desired(
                        sku=row.sku,
                        target=pricelist_target(pricelist_id),
                        value=self.ledger_value(record),
                        record=record,
                    )

    def check_row(self, key: str, record: Mapping[str, Any]) -> dict[str, Any]:
        return price_check_row(key, record)

    def checks(self) -> list[RowCheck]:
        return price_checks()

    def request(self, record: Mapping[str, Any], variant: tuple[int, int], previous: str | None) -> PlannedRequest:
        return price_request(
            *variant,
            record["pricelist_id"],
            record["price"],
            record["volume"],
            clear_volume=has_volume_breaks(previous),
        )

    def ledger_value(self, record: Mapping[str, Any]) -> str:
        return "" if record["price"] is None else price_ledger_value(record["price"], record["volume"])


def _vat_rates(ctx: JobContext, gateway: MamutGateway, skus: list[str]) -> dict[str, Decimal]:
    """VAT rate per article, by its VAT code and the config's rates (absent when the config has none): only
    for prices kept incl. VAT, since the catalogue reader gives prices without the article's VAT code."""
    if not skus:
        return {}
    rate_by_code = {code: Decimal(str(rate)) for rate, code in ctx.settings.mamut.vat_codes.items()}
    with gateway.transaction() as transaction:
        rows = transaction.select("product", ["sku", "vat_code"], where_in=("sku", skus))
    return {row["sku"]: rate_by_code[row["vat_code"]] for row in rows if row["vat_code"] in rate_by_code}


JOB, ENTITY = PricesToStarweb.name, PricesToStarweb.entity
# The steps bound to one instance, for the CLI, benchmarks and tests (the registry names the class).
extract, validate, load, report, run = (
    getattr(PricesToStarweb(), step) for step in ("extract", "validate", "load", "report", "run")
)
__all__ = [
    "ENTITY",
    "JOB",
    "PricesToStarweb",
    "ShopMappingError",
    "check_mamut_price_lists",
    "shop_pricelist_currencies",
]
