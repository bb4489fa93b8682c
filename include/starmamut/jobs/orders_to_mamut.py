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
import sys
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from starmamut.config import TransformEntity, TransformPoint
from starmamut.failpoints import failpoint
from starmamut.jobs.common import (
    UNREADABLE,
    JobContext,
    Reasons,
    advance_watermark,
    apply_verdicts,
    check_clock,
    chunked,
    close_batch,
    guard_record,
    quarantine_on_load,
    read_record,
    reread_quarantined,
    run_steps,
)
from starmamut.mamut.customers import MamutRecordError
from starmamut.mamut.documents import CustomerNumberPolicy, ExchangeRateConvention
from starmamut.mamut.orders import OrderRepository
from starmamut.mamut.products import ProductRepository
from starmamut.mapping.orders import mamut_customer, mamut_order, normalise_order, order_check_row
from starmamut.mapping.products import MappingError, content_hash
from starmamut.staging.store import StagedRow
from starmamut.starweb.client import StarwebClient
from starmamut.starweb.errors import StarwebError, StarwebNotFound
from starmamut.transforms import RecordTransforms

JOB = "orders_to_mamut"
ENTITY = "order"
ORDER_INCLUDE = ("items", "addresses", "customer", "status", "externalServices")
WRITE_BACK = "write_back"  # ledger dimension: the Mamut number last written to the Starweb order

log = logging.getLogger(__name__)


class UnknownOrderStatus(ValueError):
    """The config names a Starweb order status the shop does not have."""


def resolve_statuses(statuses: Iterable[dict[str, Any]], wanted: Iterable[int | str], shop_id: str) -> set[int]:
    """Status ids for config entries given by id or idCode; an unknown one is a clear error naming it."""
    statuses = list(statuses)
    by_code = {status["idCode"]: status["statusId"] for status in statuses if status.get("idCode")}
    ids = {status["statusId"] for status in statuses}
    resolved = set()
    for entry in wanted:
        status_id = entry if isinstance(entry, int) else by_code.get(entry)
        if status_id not in ids:
            known = ", ".join(f"{status.get('idCode') or '-'}={status['statusId']}" for status in statuses)
            raise UnknownOrderStatus(
                f"shop {shop_id}: order status {entry!r} does not exist in the shop (the shop has: {known})"
            )
        resolved.add(status_id)
    return resolved


def extract(ctx: JobContext) -> dict[str, Any]:
    """Stage eligible orders not yet in Mamut (or not yet written back)."""
    shop, store, params = ctx.shop, ctx.store, ctx.params
    settings = shop.orders_to_mamut
    batch_id = store.start_batch(shop.id, JOB, ENTITY, dry_run=params.dry_run)
    counts = {"listed": 0, "not_eligible": 0, "already_transferred": 0, "unreadable": 0}
    after_mapping = _Transforms(ctx, batch_id, "after_mapping")
    held = {entry.key for entry in store.open_quarantine(shop.id, ENTITY)}
    gone_from_quarantine: list[str] = []  # held orders no longer eligible (e.g. cancelled): nothing to transfer
    with ctx.open_starweb() as client:
        eligible = resolve_statuses(client.list_order_statuses(), settings.eligible_statuses, shop.id)
        check_clock(client, settings.overlap_minutes)
        resync = {str(order_id) for order_id in params.resync_ids}

        def to_stage() -> Iterator[StagedRow]:
            for orders in chunked(_orders_to_read(ctx, client), 100):
                keys = [str(order["orderId"]) for order in orders]
                done = _transferred(ctx, keys)
                for order in orders:
                    counts["listed"] += 1
                    key = str(order["orderId"])
                    if key in done and key not in resync:
                        counts["already_transferred"] += 1
                    elif order.get("statusId") not in eligible:
                        counts["not_eligible"] += 1
                        if key in held:
                            gone_from_quarantine.append(key)
                    else:
                        record: dict[str, Any] | None = read_record(
                            "order", key, "order_id", lambda order=order: normalise_order(order)
                        )
                        if UNREADABLE in record:
                            counts["unreadable"] += 1
                        else:
                            record = after_mapping.apply(record, source=order)
                        if record is not None:
                            yield StagedRow(key=key, payload=record, content_hash=content_hash(record))

        staged = store.stage_rows(batch_id, ENTITY, to_stage())
        requests = client.stats.requests_sent
    if gone_from_quarantine and not params.dry_run:
        store.resolve_quarantine(shop.id, ENTITY, gone_from_quarantine)
    log.info("shop %s: staged %d order(s) of %d listed in batch %s", shop.id, staged, counts["listed"], batch_id)
    return {
        "batch_id": batch_id,
        "read": counts["listed"],
        "staged": staged,
        "requests": requests,
        **counts,
        **after_mapping.finish(),
    }


def validate(ctx: JobContext, batch_id: str) -> dict[str, Any]:
    """Totals reconcile, addresses present, currency known, quantities positive, e-mail well-formed."""
    from starmamut.quality.orders import ORDER_COLUMNS, order_checks
    from starmamut.quality.runner import validate_rows

    shop = ctx.shop
    settings = shop.orders_to_mamut
    staged = list(ctx.store.iter_staged(batch_id, ENTITY))
    reasons: dict[str, Reasons] = {row.key: row.payload[UNREADABLE] for row in staged if UNREADABLE in row.payload}
    readable = [row for row in staged if row.key not in reasons]
    gateway = ctx.open_mamut()
    skus = {line.get("sku") for row in readable for line in row.payload["lines"] if line.get("sku")}
    known_skus = set(ProductRepository(gateway).keys_by_sku(skus))
    known_currencies = OrderRepository(gateway).known_currencies()
    check_rows = []
    for row in readable:
        check_row, problems = guard_record(
            "order",
            row.key,
            lambda row=row: order_check_row(
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
        suite_name=f"{shop.id}_{JOB}_{batch_id}",
    )
    reasons.update(
        {
            key: [{"check": f.check, "reason": f"order {key}: {f.reason}"} for f in failures]  # names the record
            for key, failures in report.failures.items()
        }
    )
    return apply_verdicts(
        ctx,
        batch_id,
        ENTITY,
        (row.key for row in staged),
        reasons,
        threshold=settings.quarantine_threshold,
        noun="order",
    )


def load(ctx: JobContext, batch_id: str) -> dict[str, Any]:
    """Create each valid order in Mamut exactly once, link it, write the number back to Starweb."""
    if ctx.settings.mamut.write_mode == "import":  # Import/Export files confirmed over SQL
        from starmamut.jobs.mamut_import import load_orders

        return load_orders(ctx, batch_id)
    shop, store, params = ctx.shop, ctx.store, ctx.params
    settings = shop.orders_to_mamut
    gateway = ctx.open_mamut()
    orders, products = OrderRepository(gateway), ProductRepository(gateway)
    numbers = CustomerNumberPolicy(**ctx.settings.mamut.customer_numbers.model_dump())
    rates = ExchangeRateConvention(**ctx.settings.mamut.exchange_rate.model_dump())
    counts = {
        "loaded": 0,
        "already_in_mamut": 0,
        "customers_created": 0,
        "written_back": 0,
        "write_back_refused": 0,
        "failed": 0,
        "would_create": 0,
        "requests": 0,
    }
    before_load = _Transforms(ctx, batch_id, "before_load")
    settled: list[str] = []
    with ctx.open_starweb() as client:
        status_after = _status_after_transfer(ctx, client)
        for row in store.iter_staged(batch_id, ENTITY, verdict="valid"):
            record, key = before_load.apply(row.payload), row.key
            if record is None:
                continue
            try:
                customer = mamut_customer(record, shop_id=shop.id)
                known = products.keys_by_sku(line["sku"] for line in record["lines"] if line["sku"])
                order = mamut_order(
                    record,
                    shop_id=shop.id,
                    document=settings.document,
                    vat_codes=ctx.settings.mamut.vat_codes,
                    known_skus=known,
                    shipping_sku=settings.shipping_sku,
                    payment_fee_sku=settings.payment_fee_sku,
                    rates=rates,
                )
            except MappingError as exc:
                quarantine_on_load(ctx, batch_id, ENTITY, key, "mapping", str(exc))
                counts["failed"] += 1
                continue
            if params.dry_run:
                counts["would_create"] += orders.find_by_external_id(order.external_id) is None
                log.info(
                    "dry run: order %s would become a Mamut %s of %s with %d line(s) for %s",
                    key,
                    settings.document,
                    order.total_incl_vat,
                    len(order.lines),
                    customer.name,
                )
                continue
            try:
                result = orders.create(
                    order,
                    customer,
                    match_keys=settings.customer_match,
                    numbers=numbers,
                    guest_customer_no=settings.guest_customer_no,
                    update_customer=settings.update_customer_from_order,
                    now=ctx.clock(),
                )
            except (ValueError, MamutRecordError) as exc:  # refused data; database faults propagate and retry
                quarantine_on_load(ctx, batch_id, ENTITY, key, "mamut_refused", str(exc))
                counts["failed"] += 1
                continue
            failpoint("orders_to_mamut.after_mamut_commit")
            store.upsert_link(
                shop.id,
                ENTITY,
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
            counts["loaded" if result.created else "already_in_mamut"] += 1
            counts["customers_created"] += result.customer_created
            number = result.invoice_no or result.order_no
            try:
                if settings.write_back and _write_back(ctx, client, key, number, status_after):
                    counts["written_back"] += 1
            except StarwebError as exc:
                if not exc.is_record_level:
                    raise
                quarantine_on_load(
                    ctx,
                    batch_id,
                    ENTITY,
                    key,
                    "write_back",
                    f"order {key}: in Mamut as {number}, but Starweb refused the write-back of the number: {exc}",
                )
                counts["write_back_refused"] += 1
                continue
            settled.append(key)
        counts["requests"] = client.stats.requests_sent
    counts.update(before_load.finish())
    if not params.dry_run:
        store.resolve_quarantine(shop.id, ENTITY, settled)
        advance_watermark(ctx, JOB, store.get_batch(batch_id).started_at)
    return counts


def report(
    ctx: JobContext, batch_id: str, extracted: dict[str, Any], validated: dict[str, Any], loaded: dict[str, Any]
) -> dict[str, Any]:
    counts = {
        "read": extracted["read"],
        "not_eligible": extracted["not_eligible"],
        "already_transferred": extracted["already_transferred"],
        "changed": extracted["staged"],
        "loaded": loaded["loaded"],
        "unchanged": extracted["already_transferred"] + loaded["already_in_mamut"],
        "skipped": extracted["skipped"] + loaded["skipped"],
        "quarantined": validated["quarantined"] + extracted["rejected"],
        "failed": loaded["failed"] + loaded["rejected"],
        "customers_created": loaded["customers_created"],
        "written_back": loaded["written_back"],
        "write_back_refused": loaded["write_back_refused"],
        "requests": extracted["requests"] + loaded["requests"],
    }
    if ctx.params.dry_run:
        counts["would_create"] = loaded["would_create"]
    return close_batch(ctx, batch_id, JOB, counts)


def run(ctx: JobContext) -> dict[str, Any]:
    """All four steps in one process (CLI, benchmarks, tests); the DAG runs them as separate tasks."""
    return run_steps(sys.modules[__name__], ctx)


class _Transforms:
    """The shop's order transforms, then its customer transforms, at one point (``order_id`` stays fixed).

    A customer is transformed as the order's ``customer`` fields plus its addresses, and goes back into the
    order; a customer that is skipped or rejected holds its order back with it (it cannot go without one).
    """

    def __init__(self, ctx: JobContext, batch_id: str, point: TransformPoint) -> None:
        def hook(entity: TransformEntity) -> RecordTransforms:
            return RecordTransforms(
                ctx,
                batch_id,
                job=JOB,
                entity=entity,
                point=point,
                staged_entity=ENTITY,
                key=lambda record: str(record["order_id"]),
                fixed=("order_id",),
            )

        self._orders, self._customers = hook("orders"), hook("customers")

    def finish(self) -> dict[str, int]:
        orders, customers = self._orders.finish(), self._customers.finish()
        return {name: orders[name] + customers[name] for name in orders}

    def apply(self, record: dict[str, Any], *, source: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        order = self._orders.apply(record, source=source)
        if order is None or not self._customers:
            return order
        customer = self._customers.apply(
            {
                "order_id": order["order_id"],
                **order["customer"],
                "invoice_address": order["invoice_address"],
                "delivery_address": order["delivery_address"],
            },
            source=source,
        )
        if customer is None:
            return None
        return {
            **order,
            "customer": {field: customer.get(field) for field in order["customer"]},
            "invoice_address": customer["invoice_address"],
            "delivery_address": customer["delivery_address"],
        }


def _orders_to_read(ctx: JobContext, client: StarwebClient) -> Iterator[dict[str, Any]]:
    """New orders since the watermark, then older ones modified since then (newly paid or moved status)."""
    params, shop = ctx.params, ctx.shop
    settings = shop.orders_to_mamut
    if params.resync_ids:
        for order_id in params.resync_ids:
            try:
                yield client.get_order(order_id, include=ORDER_INCLUDE)
            except StarwebNotFound:
                log.warning("shop %s: order %s does not exist in Starweb", shop.id, order_id)
        return
    now = ctx.clock()
    oldest = now - timedelta(days=settings.max_age_days)
    watermark = None if params.full_refresh else ctx.store.get_watermark(shop.id, JOB)
    since = params.since or (watermark - timedelta(minutes=settings.overlap_minutes) if watermark else oldest)
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
    yield from reread_quarantined(ctx, ENTITY, seen, lambda key: client.get_order(int(key), include=ORDER_INCLUDE))


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
    linked = set(ctx.store.get_links(ctx.shop.id, ENTITY, keys))
    if not ctx.shop.orders_to_mamut.write_back:
        return linked
    written = {sku for sku, _ in ctx.store.get_ledger(ctx.shop.id, WRITE_BACK, keys)}
    return linked & written


def _status_after_transfer(ctx: JobContext, client: StarwebClient) -> int | None:
    wanted = ctx.shop.orders_to_mamut.status_after_transfer
    if wanted is None or ctx.params.dry_run:
        return None
    (status_id,) = resolve_statuses(client.list_order_statuses(), [wanted], ctx.shop.id)
    return status_id


def _write_back(ctx: JobContext, client: StarwebClient, key: str, number: int, status_after: int | None) -> bool:
    """Put the Mamut number on the Starweb order (once; again when re-synced by id, to repair a hand edit),
    optionally moving it to a status without e-mail."""
    store, shop = ctx.store, ctx.shop
    written = store.get_ledger(shop.id, WRITE_BACK, [key]).get((key, "order")) == str(number)
    if written and int(key) not in ctx.params.resync_ids:
        return False
    body: dict[str, Any] = {"externalId": str(number), "externalIdType": f"mamut_{shop.orders_to_mamut.document}"}
    if status_after is not None:
        body |= {
            "statusId": status_after,
            "onOrderStatusChangeSendEmail": False,
            "onOrderStatusChangeProcessPayment": False,
        }
    client.patch(f"/orders/{int(key)}", body)
    failpoint("orders_to_mamut.after_write_back")
    store.set_ledger(shop.id, WRITE_BACK, {(key, "order"): str(number)})
    return True
