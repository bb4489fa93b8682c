"""Web orders with their customers, Starweb → Mamut, exactly once (every flow).

Extract reads orders created since the watermark (minus an overlap) and, because orders have no updatedSince,
also walks the orders sorted by modifiedAt back to the same point: that is how an order that becomes eligible
later (paid, or moved to an eligible status) is still picked up. Orders already in Mamut are not staged again.

Load writes each order with its customer in one Mamut transaction keyed by the external id ``<shop>:<orderId>``
(looked up inside that transaction, backed by a unique index), links it in the id map, then writes the Mamut
number back to the Starweb order and records that in the ledger. A crash between any two of these is healed by
the retry: Mamut returns the existing order, and the write-back is repeated only if it was not recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from starmamut.config import TransformPoint
from starmamut.failpoints import failpoint
from starmamut.jobs.base import BatchCounts, Job, Outcome, Session
from starmamut.jobs.common import JobContext, Reasons, guard_record
from starmamut.mamut.customers import MamutRecordError
from starmamut.mamut.documents import CustomerNumberPolicy, ExchangeRateConvention
from starmamut.mamut.orders import OrderRepository
from starmamut.mamut.products import ProductRepository
from starmamut.mapping.orders import mamut_customer, mamut_order, normalise_order, order_check_row
from starmamut.mapping.products import MappingError
from starmamut.services.orders import ORDER, WRITE_BACK, OrderTransforms, status_after_transfer, write_back
from starmamut.services.reference import UnknownOrderStatus, resolve_statuses
from starmamut.staging.store import StagedRow
from starmamut.starweb.client import StarwebClient
from starmamut.starweb.errors import StarwebError, StarwebNotFound

ORDER_INCLUDE = ("items", "addresses", "customer", "status", "externalServices")

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class _Reading(Session):
    eligible: set[int]
    held: set[str]  # orders with an open quarantine entry
    resync: set[str]
    gone_from_quarantine: list[str] = field(default_factory=list)  # held orders no longer eligible (e.g. cancelled)


@dataclass(kw_only=True)
class _Writing(Session):
    orders: OrderRepository
    products: ProductRepository
    numbers: CustomerNumberPolicy
    rates: ExchangeRateConvention
    status_after: int | None


class OrdersToMamut(Job):
    """Eligible web orders not yet in Mamut become Mamut orders or invoices, with their customers."""

    name = "orders_to_mamut"
    entity = ORDER
    noun = "order"
    key_field = "order_id"
    detects_change = "extract"
    reads_starweb_by_time = True
    read_chunk = 100
    details = (
        "not_eligible",
        "already_transferred",
        "already_in_mamut",
        "customers_created",
        "written_back",
        "write_back_refused",
    )

    # extract

    @contextmanager
    def open_extract(self, ctx: JobContext) -> Iterator[Session]:
        shop = ctx.shop
        with ctx.open_starweb() as client:
            eligible = resolve_statuses(client.list_order_statuses(), shop.orders_to_mamut.eligible_statuses, shop.id)
            self.check_clocks(ctx, client)
            yield _Reading(
                client=client,
                eligible=eligible,
                held={entry.key for entry in ctx.store.open_quarantine(shop.id, self.entity)},
                resync={str(order_id) for order_id in ctx.params.resync_ids},
            )

    def since(self, ctx: JobContext) -> datetime | None:
        """The watermark less the overlap, else the oldest order still transferred (``max_age_days``)."""
        return super().since(ctx) or self._oldest(ctx)

    @staticmethod
    def _oldest(ctx: JobContext) -> datetime:
        return ctx.clock() - timedelta(days=ctx.shop.orders_to_mamut.max_age_days)

    def read_given(self, ctx: JobContext, session: Session) -> Iterable[Any] | None:
        if not ctx.params.resync_ids:
            return None
        return self._orders_by_id(ctx, session.client, ctx.params.resync_ids)

    def read_changed(self, ctx: JobContext, session: Session, since: datetime | None) -> Iterator[Any]:
        """New orders since ``since``, then older ones modified since then (newly paid or moved status)."""
        settings, client = ctx.shop.orders_to_mamut, session.client
        oldest = self._oldest(ctx)
        since = since or oldest
        seen: set[str] = set()
        for order in client.iter_orders(
            created_after=since,
            include=ORDER_INCLUDE,
            sort_by="createdAt",
            sort_order="ASC",
            include_non_complete_payments=settings.include_unpaid,
        ):
            seen.add(str(order["orderId"]))
            yield order
        if since > oldest:
            for order in client.iter_orders(
                created_after=oldest,
                include=ORDER_INCLUDE,
                sort_by="modifiedAt",
                sort_order="DESC",
                include_non_complete_payments=settings.include_unpaid,
            ):
                modified = _modified_at(order)
                if modified is not None and modified < since:
                    break
                if str(order["orderId"]) not in seen:
                    seen.add(str(order["orderId"]))
                    yield order

    def read_by_key(self, ctx: JobContext, session: Session, key: str) -> Any:
        return session.client.get_order(int(key), include=ORDER_INCLUDE)

    def source_key(self, item: Any) -> str:
        return str(item["orderId"])

    def known_at_extract(self, ctx: JobContext, session: Session, chunk: list[Any]) -> set[str]:
        """Orders already in Mamut and, when write-back is on, already written back."""
        return _transferred(ctx, [self.source_key(order) for order in chunk])

    def passes_over(self, ctx: JobContext, session: Session, known: Any, item: Any, counts: BatchCounts) -> bool:
        assert isinstance(session, _Reading)
        key = self.source_key(item)
        if key in known and key not in session.resync:
            counts.unchanged += 1
            counts.count("already_transferred")
            return True
        if item.get("statusId") not in session.eligible:
            counts.count("not_eligible")
            if key in session.held:
                session.gone_from_quarantine.append(key)
            return True
        return False

    def normalise(self, ctx: JobContext, session: Session, item: Any, fetched: Any, known: Any) -> dict[str, Any]:
        return normalise_order(item)

    def transforms(self, ctx: JobContext, batch_id: str, point: TransformPoint) -> OrderTransforms:
        return OrderTransforms(ctx, batch_id, point)

    def after_extract(self, ctx: JobContext, session: Session, counts: BatchCounts) -> None:
        """Held orders no longer eligible: nothing to transfer, so their entries close."""
        assert isinstance(session, _Reading)
        if session.gone_from_quarantine and not ctx.params.dry_run:
            ctx.store.resolve_quarantine(ctx.shop.id, self.entity, session.gone_from_quarantine)

    @staticmethod
    def _orders_by_id(ctx: JobContext, client: StarwebClient, order_ids: Iterable[int]) -> Iterator[dict[str, Any]]:
        for order_id in order_ids:
            try:
                yield client.get_order(order_id, include=ORDER_INCLUDE)
            except StarwebNotFound:
                log.warning("shop %s: order %s does not exist in Starweb", ctx.shop.id, order_id)

    # validate

    def check(self, ctx: JobContext, batch_id: str, rows: list[StagedRow]) -> dict[str, Reasons]:
        """Totals reconcile, addresses present, currency known, quantities positive, e-mail well-formed."""
        import pandas as pd

        from starmamut.quality.orders import ORDER_COLUMNS, order_checks
        from starmamut.quality.runner import validate_rows

        settings = ctx.shop.orders_to_mamut
        reasons: dict[str, Reasons] = {}
        gateway = ctx.open_mamut()
        skus = {line.get("sku") for row in rows for line in row.payload["lines"] if line.get("sku")}
        known_skus = set(ProductRepository(gateway).keys_by_sku(skus))
        known_currencies = OrderRepository(gateway).known_currencies()
        check_rows = []
        for row in rows:
            check_row, problems = guard_record(
                "order",
                row.key,
                partial(
                    order_check_row,
                    row.payload,
                    tolerance_per_line=settings.total_tolerance_per_line,
                    known_skus=known_skus,
                    known_currencies=known_currencies,
                ),
            )
            if check_row is None:
                reasons[row.key] = problems
            else:
                check_rows.append(check_row)
        report = validate_rows(
            pd.DataFrame(check_rows, columns=list(ORDER_COLUMNS)),
            order_checks(quarantine_unknown_skus=settings.unknown_sku == "quarantine"),
            key_column="row_key",
            suite_name=f"{ctx.shop.id}_{self.name}_{batch_id}",
        )
        reasons.update(
            {
                key: [{"check": f.check, "reason": f"order {key}: {f.reason}"} for f in failures]  # names the record
                for key, failures in report.failures.items()
            }
        )
        return reasons

    # load

    def load(self, ctx: JobContext, batch_id: str) -> dict[str, Any]:
        """Rows (``mamut.write_mode: sql``), or Import/Export files confirmed over SQL (``import``)."""
        if ctx.settings.mamut.write_mode == "import":
            from starmamut.services.mamut_import import load_orders

            return load_orders(ctx, batch_id)
        return super().load(ctx, batch_id)

    @contextmanager
    def open_load(self, ctx: JobContext, batch_id: str, before_load: Any) -> Iterator[Session]:
        gateway = ctx.open_mamut()
        with ctx.open_starweb() as client:
            yield _Writing(
                client=client,
                orders=OrderRepository(gateway),
                products=ProductRepository(gateway),
                numbers=CustomerNumberPolicy(**ctx.settings.mamut.customer_numbers.model_dump()),
                rates=ExchangeRateConvention(**ctx.settings.mamut.exchange_rate.model_dump()),
                status_after=status_after_transfer(ctx, client),
            )

    def write_one(self, ctx: JobContext, session: Session, known: Any, row: StagedRow) -> Outcome:
        """Create the order in Mamut exactly once, link it, write the number back to Starweb."""
        assert isinstance(session, _Writing)
        shop, store, settings = ctx.shop, ctx.store, ctx.shop.orders_to_mamut
        record, key = row.payload, row.key
        try:
            customer = mamut_customer(record, shop_id=shop.id)
            known_skus = session.products.keys_by_sku(line["sku"] for line in record["lines"] if line["sku"])
            order = mamut_order(
                record,
                shop_id=shop.id,
                document=settings.document,
                vat_codes=ctx.settings.mamut.vat_codes,
                known_skus=known_skus,
                shipping_sku=settings.shipping_sku,
                payment_fee_sku=settings.payment_fee_sku,
                rates=session.rates,
            )
        except MappingError as exc:
            return Outcome.refused("mapping", str(exc))
        if ctx.params.dry_run:
            log.info(
                "dry run: order %s would become a Mamut %s of %s with %d line(s) for %s",
                key,
                settings.document,
                order.total_incl_vat,
                len(order.lines),
                customer.name,
            )
            return Outcome(counted=None, would_write=session.orders.find_by_external_id(order.external_id) is None)
        try:
            result = session.orders.create(
                order,
                customer,
                match_keys=settings.customer_match,
                numbers=session.numbers,
                guest_customer_no=settings.guest_customer_no,
                update_customer=settings.update_customer_from_order,
                now=ctx.clock(),
            )
        except (ValueError, MamutRecordError) as exc:  # refused data; database faults propagate and retry
            return Outcome.refused("mamut_refused", str(exc))
        failpoint("orders_to_mamut.after_mamut_commit")
        store.upsert_link(
            shop.id,
            self.entity,
            key,
            starweb_id=key,
            mamut_key=str(result.order_key),
            sku=None,
            content_hash=row.content_hash,
        )
        if customer.starweb_customer_id is not None:
            store.upsert_link(
                shop.id,
                "customer",
                str(customer.starweb_customer_id),
                starweb_id=str(customer.starweb_customer_id),
                mamut_key=str(result.contact_id),
                sku=None,
                content_hash=None,
            )
        outcome = Outcome() if result.created else Outcome(counted="unchanged", details={"already_in_mamut": 1})
        outcome.details["customers_created"] = int(result.customer_created)
        number = result.invoice_no or result.order_no
        try:
            if settings.write_back and write_back(ctx, session.client, key, number, session.status_after):
                outcome.details["written_back"] = 1
        except StarwebError as exc:
            if not exc.is_record_level:
                raise
            outcome.problem = (
                "write_back",
                f"order {key}: in Mamut as {number}, but Starweb refused the write-back of the number: {exc}",
            )
            outcome.details["write_back_refused"] = 1
        return outcome


def _modified_at(order: Mapping[str, Any]) -> datetime | None:
    """When the order last changed; None when Starweb sent no readable time (the order is then read anyway)."""
    try:
        return datetime.fromisoformat(order["modifiedAt"])
    except (KeyError, TypeError, ValueError):
        log.warning(
            "order %s: field 'modifiedAt' is missing or unreadable (%r); read anyway",
            order.get("orderId"),
            order.get("modifiedAt"),
        )
        return None


def _transferred(ctx: JobContext, keys: list[str]) -> set[str]:
    """Orders already in Mamut and, when write-back is on, already written back."""
    linked = set(ctx.store.get_links(ctx.shop.id, OrdersToMamut.entity, keys))
    if not ctx.shop.orders_to_mamut.write_back:
        return linked
    written = {sku for sku, _ in ctx.store.get_ledger(ctx.shop.id, WRITE_BACK, keys)}
    return linked & written


JOB, ENTITY = OrdersToMamut.name, OrdersToMamut.entity
# The steps bound to one instance, for the CLI, benchmarks and tests (the registry names the class).
extract, validate, load, report, run = (
    getattr(OrdersToMamut(), step) for step in ("extract", "validate", "load", "report", "run")
)
__all__ = ["ENTITY", "JOB", "OrdersToMamut", "UnknownOrderStatus", "resolve_statuses"]
