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

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from starmamut.jobs.base import Session
from starmamut.jobs.common import JobContext
from starmamut.mamut.catalogue import CatalogueReader, StockRow, UnknownWarehouse
from starmamut.mapping.prices_stock import PlannedRequest, StockStatusIds, shop_stock, stock_ledger_value, stock_request
from starmamut.quality.prices_stock import STOCK_COLUMNS, stock_check_row, stock_checks
from starmamut.quality.runner import RowCheck
from starmamut.services.ledger import STOCK, Desired, LedgerPush
from starmamut.services.reference import MappedStock, ShopMappingError, mapped_stocks, shop_stock_statuses


@dataclass(kw_only=True)
class _Reading(Session):
    stock: Iterator[StockRow]
    statuses: StockStatusIds


class StockToStarweb(LedgerPush):
    """Mamut stock per warehouse group to the shop's stock locations (only changed values)."""

    name = "stock_to_starweb"
    entity = STOCK
    noun = "stock value"
    transform_entity = "stock"
    columns = STOCK_COLUMNS

    @contextmanager
    def open_extract(self, ctx: JobContext) -> Iterator[Session]:
        """Check the mapping against the shop and Mamut before anything is staged."""
        settings = ctx.shop.stock_to_starweb
        with ctx.open_starweb() as client:
            statuses = shop_stock_statuses(ctx.shop.id, client, settings)
            groups = {
                stock.target: list(stock.entry.warehouses) for stock in mapped_stocks(ctx.shop.id, client, settings)
            }
            reader = CatalogueReader(ctx.open_mamut())
            try:
                stock = reader.iter_stock(
                    groups, subtract_reserved=settings.subtract_reserved, skus=ctx.params.skus or None
                )
            except UnknownWarehouse as exc:
                raise ShopMappingError(
                    f"shop {ctx.shop.id}: stock_to_starweb.locations: {exc}. Nothing was sent."
                ) from None
            yield _Reading(client=client, stock=stock, statuses=statuses)

    def desired(self, ctx: JobContext, session: Session) -> Iterator[Desired]:
        assert isinstance(session, _Reading)
        settings = ctx.shop.stock_to_starweb
        for row in session.stock:
            quantity, status = shop_stock(
                row.on_hand,
                use_store=row.use_store,
                inactive=row.inactive,
                negative=settings.negative,
                statuses=session.statuses,
            )
            record = {"quantity": quantity, "status": status, "available": str(row.on_hand)}
            yield Desired(sku=row.sku, target=row.group, value=self.ledger_value(record), record=record)

    def check_row(self, key: str, record: Mapping[str, Any]) -> dict[str, Any]:
        return stock_check_row(key, record)

    def checks(self) -> list[RowCheck]:
        return stock_checks()

    def request(self, record: Mapping[str, Any], variant: tuple[int, int], previous: str | None) -> PlannedRequest:
        return stock_request(*variant, record["target"], record["quantity"], record["status"])

    def ledger_value(self, record: Mapping[str, Any]) -> str:
        return stock_ledger_value(record["quantity"], record["status"])


JOB, ENTITY = StockToStarweb.name, StockToStarweb.entity
# The steps bound to one instance, for the CLI, benchmarks and tests (the registry names the class).
extract, validate, load, report, run = (
    getattr(StockToStarweb(), step) for step in ("extract", "validate", "load", "report", "run")
)
__all__ = ["ENTITY", "JOB", "MappedStock", "ShopMappingError", "StockToStarweb", "mapped_stocks", "shop_stock_statuses"]
