"""Stock and stock status Mamut → Starweb (flows ``erp`` and ``combo``): extract → validate → load → report.

Per shop, each Starweb stock location (or ``variant``: the variant's own ``stockQuantity``, which is the
shop's e-commerce location) is fed by the sum of some Mamut warehouses, on hand minus reserved unless the
shop says otherwise. Quantities are whole units rounded down, negatives clamped to 0 or passed on, and the
stock status follows the rules in :mod:`starmamut.mapping.prices_stock` with the shop's configured idCodes.
Only values that differ from what was last pushed (the ledger) are sent; a full refresh sends them all.

Before anything is staged, the run checks that every mapped stock location and stock status exists in the
shop and every mapped warehouse in Mamut, and fails naming the first one missing.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from starmamut.config import StockLocationMapping, StockToStarwebSettings
from starmamut.jobs.common import JobContext, run_steps
from starmamut.jobs.ledger_push import (
    Desired,
    PushSpec,
    ShopMappingError,
    stage_changes,
)
from starmamut.mamut.catalogue import CatalogueReader, StockRow, UnknownWarehouse
from starmamut.mapping.prices_stock import (
    VARIANT_TARGET,
    PlannedRequest,
    StockStatusIds,
    shop_stock,
    stock_ledger_value,
    stock_request,
    stock_target,
)
from starmamut.quality.prices_stock import STOCK_COLUMNS, stock_check_row, stock_checks
from starmamut.starweb.client import StarwebClient

JOB = "stock_to_starweb"
ENTITY = "stock"


def _request(record: Mapping[str, Any], variant: tuple[int, int], previous: str | None) -> PlannedRequest:
    return stock_request(*variant, record["target"], record["quantity"], record["status"])


def _ledger_value(record: Mapping[str, Any]) -> str:
    return stock_ledger_value(record["quantity"], record["status"])


SPEC = PushSpec(
    job=JOB,
    entity=ENTITY,
    columns=STOCK_COLUMNS,
    check_row=stock_check_row,
    checks=stock_checks,
    request=_request,
    threshold=lambda shop: shop.stock_to_starweb.quarantine_threshold,
    transforms="stock",
    ledger_value=_ledger_value,
)


def extract(ctx: JobContext) -> dict[str, Any]:
    """Check the mapping, then stage every stock value that differs from the ledger (all on a full refresh)."""
    settings = ctx.shop.stock_to_starweb
    with ctx.open_starweb() as client:
        statuses = shop_stock_statuses(ctx.shop.id, client, settings)
        groups = {stock.target: list(stock.entry.warehouses) for stock in mapped_stocks(ctx.shop.id, client, settings)}
        reader = CatalogueReader(ctx.open_mamut())
        try:
            stock = reader.iter_stock(
                groups, subtract_reserved=settings.subtract_reserved, skus=ctx.params.skus or None
            )
        except UnknownWarehouse as exc:
            raise ShopMappingError(
                f"shop {ctx.shop.id}: stock_to_starweb.locations: {exc}. Nothing was sent."
            ) from None
        return stage_changes(ctx, SPEC, client, _desired(settings, stock, statuses))


validate = SPEC.validate
load = SPEC.load
report = SPEC.report


def run(ctx: JobContext) -> dict[str, Any]:
    """All four steps in one process (CLI, benchmarks, tests); the DAG runs them as separate tasks."""
    return run_steps(sys.modules[__name__], ctx)


def shop_stock_statuses(shop_id: str, client: StarwebClient, settings: StockToStarwebSettings) -> StockStatusIds:
    """The ids of the configured stock status idCodes; one request. Raises ShopMappingError for a missing one."""
    by_code = {status.get("idCode"): status["stockStatusId"] for status in client.list_stock_statuses()}

    def resolve(field: str, id_code: str) -> int:
        if id_code not in by_code:
            known = ", ".join(sorted(str(code) for code in by_code if code)) or "none"
            raise ShopMappingError(
                f"shop {shop_id}: stock_to_starweb.{field}: the shop has no stock status with idCode {id_code!r}; "
                f"it has: {known}. Nothing was sent."
            )
        return by_code[id_code]

    return StockStatusIds(
        in_stock=resolve("in_stock_status", settings.in_stock_status),
        out_of_stock=resolve("out_of_stock_status", settings.out_of_stock_status),
        backorder=None if settings.backorder_status is None else resolve("backorder_status", settings.backorder_status),
    )


@dataclass(frozen=True)
class MappedStock:
    """One ``stock_to_starweb.locations`` entry, checked against the shop."""

    entry: StockLocationMapping
    target: str  # ledger target: ``variant`` or ``location:<id>``
    on_variant: bool  # the variant's own stock fields show it: ``variant``, or the e-commerce location by its id


def mapped_stocks(shop_id: str, client: StarwebClient, settings: StockToStarwebSettings) -> list[MappedStock]:
    """Every mapped Starweb stock, after checking each mapped stock location exists in the shop (one request,
    only when a location is mapped by id) and no Starweb stock is mapped twice."""
    locations: dict[int, dict[str, Any]] = {}
    if any(entry.starweb != VARIANT_TARGET for entry in settings.locations):
        locations = {location["stockLocationId"]: location for location in client.list_stock_locations()}
    # The variant's own stock fields are the e-commerce location's stock: one Starweb stock, two names.
    ecommerce = next((lid for lid, location in locations.items() if location.get("ecommerceStockLocation")), None)
    stocks: list[MappedStock] = []
    stocks_mapped: set[str] = set()
    for entry in settings.locations:
        if entry.starweb != VARIANT_TARGET and entry.starweb not in locations:
            known = ", ".join(str(location_id) for location_id in sorted(locations)) or "none"
            raise ShopMappingError(
                f"shop {shop_id}: Starweb stock location {entry.starweb} (fed by Mamut warehouses "
                f"{entry.warehouses}) does not exist in the shop; the shop has: {known}. Nothing was sent."
            )
        on_variant = entry.starweb in (VARIANT_TARGET, ecommerce)
        stock = VARIANT_TARGET if on_variant else stock_target(entry.starweb)
        if stock in stocks_mapped:
            same = f" (the variant's own stock is e-commerce stock location {ecommerce})" if ecommerce else ""
            raise ShopMappingError(
                f"shop {shop_id}: stock_to_starweb.locations maps the same Starweb stock twice: {entry.starweb!r}"
                f"{same}; map each one once"
            )
        stocks_mapped.add(stock)
        stocks.append(MappedStock(entry=entry, target=stock_target(entry.starweb), on_variant=on_variant))
    return stocks


def _desired(
    settings: StockToStarwebSettings, stock: Iterator[StockRow], statuses: StockStatusIds
) -> Iterator[Desired]:
    for row in stock:
        quantity, status = shop_stock(
            row.on_hand, use_store=row.use_store, inactive=row.inactive, negative=settings.negative, statuses=statuses
        )
        record = {"quantity": quantity, "status": status, "available": str(row.on_hand)}
        yield Desired(sku=row.sku, target=row.group, value=_ledger_value(record), record=record)
