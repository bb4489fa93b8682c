"""The load steps of orders_to_mamut and products_to_mamut with ``mamut.write_mode: import``.

Instead of writing rows, a load issues Mamut Import/Export files (:mod:`starmamut.mamut.import_export`) and
a **confirm pass** reads Mamut over SQL; only what Mamut shows is linked in the id map (and, for an order,
written back to Starweb). The pass runs at the start of each load and again after issuing; it never waits.

Exactly once, without numbers of our own:

* an order's file is named by the order (``<shop>_order_<orderId>.xml``) and is never issued again while
  Mamut shows the order (read by its external number ``<shop>:<orderId>``) or while the file sits anywhere in
  the inbox (queued, processing, done or failed): a run killed between writing the file and recording it
  finds the file on the next run and only records it;
* the ledger (dimension ``mamut_import_order`` / ``mamut_import_product``) remembers what was issued and when;
  an order Mamut does not show yet is checked again on every run, and quarantined as a problem once
  ``mamut.import.confirm_timeout_minutes`` have passed; a file the importer moved to ``failed/`` is
  quarantined at once, naming the order and quoting Mamut's output. Deleting the file from ``failed/`` lets
  the next run issue it again (after the order is fixed);
* articles are confirmed when every article of the product reads back from G_PROD with the values sent.

An invoice (``orders_to_mamut.document: invoice``) goes to Mamut as an order for Mamut to invoice: the import
has no invoice of its own, and Mamut's invoicing is the point of this mode.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any

from starmamut.failpoints import failpoint
from starmamut.jobs.base import BatchCounts
from starmamut.jobs.common import JobContext, chunked, quarantine_on_load, variant_ref
from starmamut.mamut.customers import CONTACT, CustomerRepository
from starmamut.mamut.documents import ExchangeRateConvention, MamutCustomer
from starmamut.mamut.import_export.formats import ARTICLE_MODE, ORDER_MODE, article_file, order_file, order_file_name
from starmamut.mamut.import_export.transport import FileState, ImportTransport, open_transport
from starmamut.mamut.orders import ORDER
from starmamut.mamut.products import PRODUCT, ProductRepository
from starmamut.mapping.products import MappingError
from starmamut.services.articles import PRODUCT as PRODUCT_ENTITY
from starmamut.services.articles import product_transforms
from starmamut.services.orders import ORDER as ORDER_ENTITY
from starmamut.services.orders import OrderTransforms, status_after_transfer, write_back
from starmamut.staging.store import Link
from starmamut.starweb.errors import StarwebError

ORDER_LEDGER = "mamut_import_order"
PRODUCT_LEDGER = "mamut_import_product"
FAILED_CHECK = "mamut_import_failed"
UNCONFIRMED_CHECK = "mamut_import_unconfirmed"

log = logging.getLogger(__name__)


@contextmanager
def _transport(ctx: JobContext) -> Iterator[ImportTransport]:
    transport = open_transport(ctx.settings.mamut.import_)
    try:
        yield transport
    finally:
        close = getattr(transport, "close", None)
        if close is not None:
            close()


def _minutes_since(ctx: JobContext, issued_at: str) -> float:
    return (ctx.clock() - datetime.fromisoformat(issued_at)).total_seconds() / 60


def _unconfirmed(
    ctx: JobContext, transport: ImportTransport, batch_id: str, entity: str, key: str, info: dict[str, Any], what: str
) -> str:
    """Judge an issued file Mamut does not show yet: 'failed', 'timed_out', 'absent' or 'waiting'."""
    name, mode = info["file"], info["mode"]
    state = transport.state(name)
    if state is FileState.QUEUED:
        transport.resume(name, mode)  # ssh: a run died between upload and import; folder: the task takes it
        state = transport.state(name)
    if state is FileState.FAILED:
        output = transport.output(name) or "(no output)"
        quarantine_on_load(
            ctx,
            batch_id,
            entity,
            key,
            FAILED_CHECK,
            f"{what}: Mamut's import refused {name} (in failed/ of the import inbox): {output} — fix the cause, "
            "then delete the file from failed/ so the next run issues it again",
        )
        return "failed"
    if state is FileState.ABSENT:
        return "absent"  # cleared away by hand and not in Mamut: the next load issues it again
    waited = _minutes_since(ctx, info["issued_at"])
    timeout = ctx.settings.mamut.import_.confirm_timeout_minutes
    if waited > timeout:
        quarantine_on_load(
            ctx,
            batch_id,
            entity,
            key,
            UNCONFIRMED_CHECK,
            f"{what}: {name} was issued {waited:.0f} min ago and is {state.value} in the import inbox, but Mamut "
            f"(read over SQL) does not show it after mamut.import.confirm_timeout_minutes={timeout}; check the "
            "scheduled import task on the Mamut server and the file's log",
        )
        return "timed_out"
    return "waiting"


# -- orders ------------------------------------------------------------------------------------------------------


class _OrderConfirm:
    """The confirm pass of orders: link, record and write back what Mamut shows; judge the rest."""

    def __init__(self, ctx: JobContext, batch_id: str, client: Any, transport: ImportTransport, counts: dict) -> None:
        self.ctx, self.batch_id, self.client, self.transport, self.counts = ctx, batch_id, client, transport, counts
        self.gateway = ctx.open_mamut()
        self.status_after = status_after_transfer(ctx, client)
        self.settled: list[str] = []
        self.confirmed: set[str] = set()

    def pending(self) -> dict[str, dict[str, Any]]:
        entries = self.ctx.store.get_ledger(self.ctx.shop.id, ORDER_LEDGER)
        issued = {key: json.loads(value) for (key, _), value in entries.items()}
        return {key: info for key, info in issued.items() if not info.get("confirmed_at")}

    def track(self, key: str, info: dict[str, Any]) -> None:
        self.ctx.store.set_ledger(self.ctx.shop.id, ORDER_LEDGER, {(key, "order"): json.dumps(info, sort_keys=True)})

    def run(self) -> None:
        for key, info in sorted(self.pending().items()):
            if key in self.confirmed:
                continue
            if not self.confirm(key, info):
                verdict = _unconfirmed(self.ctx, self.transport, self.batch_id, ORDER_ENTITY, key, info, f"order {key}")
                self.counts["awaiting_mamut"] += verdict == "waiting"
                self.counts["failed"] += verdict in ("failed", "timed_out")

    def in_mamut(self, key: str) -> dict[str, Any] | None:
        with self.gateway.transaction() as transaction:
            rows = transaction.select(
                ORDER,
                ["order_key", "order_number", "invoice_number", "contact_key"],
                where={"external_id": f"{self.ctx.shop.id}:{key}"},
            )
        return rows[0] if rows else None

    def confirm(self, key: str, info: dict[str, Any]) -> bool:
        """Link, record and write back the order when Mamut shows it; False when it does not (yet)."""
        ctx, shop, store = self.ctx, self.ctx.shop, self.ctx.store
        row = self.in_mamut(key)
        if row is None:
            return False
        store.upsert_link(
            shop.id,
            ORDER_ENTITY,
            key,
            starweb_id=key,
            mamut_key=str(row["order_key"]),
            sku=None,
            content_hash=info.get("content_hash"),
        )
        if info.get("starweb_customer_id") is not None:
            store.upsert_link(
                shop.id,
                "customer",
                str(info["starweb_customer_id"]),
                starweb_id=str(info["starweb_customer_id"]),
                mamut_key=str(row["contact_key"]),
                sku=None,
                content_hash=None,
            )
        self.track(key, {**info, "confirmed_at": ctx.clock().isoformat()})
        self.confirmed.add(key)
        self.counts["loaded"] += 1
        log.info("shop %s: order %s confirmed in Mamut as order %s", shop.id, key, row["order_number"])
        number = row["invoice_number"] or row["order_number"]
        try:
            if shop.orders_to_mamut.write_back and write_back(ctx, self.client, key, number, self.status_after):
                self.counts["written_back"] += 1
        except StarwebError as exc:
            if not exc.is_record_level:
                raise
            quarantine_on_load(
                ctx,
                self.batch_id,
                ORDER_ENTITY,
                key,
                "write_back",
                f"order {key}: in Mamut as {number}, but Starweb refused the write-back of the number: {exc}",
            )
            self.counts["write_back_refused"] += 1
            return True
        self.settled.append(key)
        return True


def load_orders(ctx: JobContext, batch_id: str) -> dict[str, Any]:
    """orders_to_mamut's load in import mode: one GBAOX10 file per valid order not in Mamut, then confirm. Its
    result is the load's :class:`~starmamut.jobs.base.BatchCounts` (the watermark moves in the report)."""
    from starmamut.mapping.orders import mamut_customer, mamut_order

    shop, store, params = ctx.shop, ctx.store, ctx.params
    settings = shop.orders_to_mamut
    imports = ctx.settings.mamut.import_
    gateway = ctx.open_mamut()
    products, customers = ProductRepository(gateway), CustomerRepository(gateway)
    rates = ExchangeRateConvention(**ctx.settings.mamut.exchange_rate.model_dump())
    zero_vat = {code for rate, code in ctx.settings.mamut.vat_codes.items() if float(rate) == 0}
    counts = dict.fromkeys(
        (
            "loaded",
            "already_in_mamut",
            "customers_created",
            "written_back",
            "write_back_refused",
            "failed",
            "would_create",
            "requests",
            "issued",
            "awaiting_mamut",
        ),
        0,
    )
    before_load = OrderTransforms(ctx, batch_id, "before_load")
    with _transport(ctx) as transport, ctx.open_starweb() as client:
        confirm = _OrderConfirm(ctx, batch_id, client, transport, counts)
        if not params.dry_run:
            confirm.run()
        tracked = confirm.pending()
        for row in store.iter_staged(batch_id, ORDER_ENTITY, verdict="valid"):
            record, key = before_load.apply(row.payload), row.key
            if record is None or key in confirm.confirmed:
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
                quarantine_on_load(ctx, batch_id, ORDER_ENTITY, key, "mapping", str(exc))
                counts["failed"] += 1
                continue
            name = order_file_name(shop.id, key)
            info = {
                "file": name,
                "mode": ORDER_MODE,
                "issued_at": ctx.clock().isoformat(),
                "content_hash": row.content_hash,
                "starweb_customer_id": customer.starweb_customer_id,
            }
            shown = confirm.in_mamut(key)
            if params.dry_run:
                counts["would_create"] += shown is None and key not in tracked
                log.info("dry run: order %s would go to Mamut as %s (%d line(s))", key, name, len(order.lines))
                continue
            if shown is not None:  # in Mamut without a confirmed record of ours (e.g. the record was lost)
                counts["already_in_mamut"] += 1
                confirm.confirm(key, tracked.get(key, info))
                continue
            state = transport.state(name)
            if state is not FileState.ABSENT:  # issued before (maybe by a run that died before recording it)
                if key not in tracked:
                    confirm.track(key, info)
                    tracked[key] = info
                continue
            try:
                contact_id = _contact_for(ctx, customers, customer)
                file = order_file(
                    shop.id,
                    key,
                    order,
                    customer,
                    contact_id=contact_id,
                    warehouse=imports.warehouse,
                    zero_vat_codes=zero_vat,
                )
            except ValueError as exc:
                quarantine_on_load(ctx, batch_id, ORDER_ENTITY, key, "mamut_refused", str(exc))
                counts["failed"] += 1
                continue
            transport.issue(file)
            failpoint("orders_to_mamut.after_import_file")
            confirm.track(key, info)
            tracked[key] = info
            counts["issued"] += 1
            log.info("shop %s: order %s issued to Mamut as %s", shop.id, key, name)
        if not params.dry_run:
            counts["awaiting_mamut"] = 0
            confirm.run()
        counts["requests"] = client.stats.requests_sent
    result = BatchCounts(
        loaded=counts["loaded"],
        unchanged=counts["already_in_mamut"],
        failed=counts["failed"],
        requests=counts["requests"],
        would_write=counts["would_create"],
        details={
            name: counts[name]
            for name in (
                "already_in_mamut",
                "customers_created",
                "written_back",
                "write_back_refused",
                "issued",
                "awaiting_mamut",
            )
        },
    )
    result.add_transforms(before_load.finish(), at_load=True)
    if not params.dry_run:
        store.resolve_quarantine(shop.id, ORDER_ENTITY, confirm.settled)
    return result.as_dict(dry_run=params.dry_run)


def _contact_for(ctx: JobContext, customers: CustomerRepository, customer: MamutCustomer) -> int:
    """CONTID of the customer the shop's match keys find (or the guest customer), else 0: Mamut's import then
    matches the buyer by name or creates the customer itself. Reads only."""
    settings = ctx.shop.orders_to_mamut
    with ctx.open_mamut().transaction() as transaction:
        contact_id = customers.find(transaction, customer, settings.customer_match)
        if contact_id is None and customer.external_id is None and settings.guest_customer_no is not None:
            rows = transaction.select(CONTACT, ["contact_key"], where={"customer_number": settings.guest_customer_no})
            contact_id = rows[0]["contact_key"] if rows else None
    return contact_id or 0


# -- articles ----------------------------------------------------------------------------------------------------

_COMPARED = ("name", "vat_code", "price_out")


def _expected(article: Any, with_price: bool) -> dict[str, str]:
    values = {"name": article.name, "vat_code": str(article.vat_code)}
    if with_price and article.price_out is not None:
        values["price_out"] = str(Decimal(article.price_out).normalize())
    return values


def _shows(rows: Mapping[str, Mapping[str, Any]], expected: Mapping[str, Mapping[str, str]]) -> bool:
    for sku, values in expected.items():
        row = rows.get(sku)
        if row is None:
            return False
        for column, value in values.items():
            stored = row[column]
            stored = str(Decimal(stored).normalize()) if column == "price_out" else str(stored)
            if stored != value:
                return False
    return True


def load_products(ctx: JobContext, batch_id: str) -> dict[str, Any]:
    """products_to_mamut's load in import mode: changed products as GBAPX10 files (chunked by product id), then
    confirm each product by reading its articles back over SQL. Its result is the load's
    :class:`~starmamut.jobs.base.BatchCounts` (the watermark moves in the report)."""
    from starmamut.mapping.products import family_from_record

    shop, store, params = ctx.shop, ctx.store, ctx.params
    settings = shop.products_to_mamut
    imports = ctx.settings.mamut.import_
    with_price = shop.flow == "ecom"
    gateway = ctx.open_mamut()
    before_load = product_transforms(ctx, batch_id, "before_load")
    counts = dict.fromkeys(
        ("changed", "loaded", "unchanged", "created_articles", "updated_articles", "failed", "issued"), 0
    )
    counts["awaiting_mamut"] = 0
    settled: list[str] = []

    def pending() -> dict[str, dict[str, Any]]:
        entries = store.get_ledger(shop.id, PRODUCT_LEDGER)
        issued = {key: json.loads(value) for (key, _), value in entries.items()}
        return {key: info for key, info in issued.items() if not info.get("confirmed_at")}

    def record_issue(key: str, info: dict[str, Any]) -> None:
        store.set_ledger(shop.id, PRODUCT_LEDGER, {(key, "product"): json.dumps(info, sort_keys=True)})

    def read_back(skus: list[str]) -> dict[str, dict[str, Any]]:
        with gateway.transaction() as transaction:
            rows = transaction.select(PRODUCT, ["product_key", "sku", *_COMPARED], where_in=("sku", skus))
        return {row["sku"]: row for row in rows}

    def confirm_pass() -> None:
        for key, info in sorted(pending().items()):
            rows = read_back(list(info["expected"]))
            if _shows(rows, info["expected"]):
                _link_product(ctx, key, info, {sku: row["product_key"] for sku, row in rows.items()})
                record_issue(key, {**info, "confirmed_at": ctx.clock().isoformat()})
                counts["loaded"] += 1
                settled.append(key)
                continue
            verdict = _unconfirmed(ctx, transport, batch_id, PRODUCT_ENTITY, key, info, f"product {key}")
            counts["awaiting_mamut"] += verdict == "waiting"
            counts["failed"] += verdict in ("failed", "timed_out")

    with _transport(ctx) as transport:
        if not params.dry_run:
            confirm_pass()
        tracked = pending()
        to_issue: list[tuple[str, Any, dict[str, Any]]] = []
        for batch in chunked(store.iter_staged(batch_id, PRODUCT_ENTITY, verdict="valid"), 500):
            links = store.get_links(shop.id, PRODUCT_ENTITY, [row.key for row in batch])
            for row in batch:
                link = links.get(row.key)
                if link and link.content_hash == row.content_hash and not params.full_refresh:
                    counts["unchanged"] += 1
                    settled.append(row.key)
                    continue
                info = tracked.get(row.key)
                if info and info["content_hash"] == row.content_hash:
                    continue  # this version is issued already and awaits Mamut
                record = before_load.apply(row.payload)
                if record is None:
                    continue
                counts["changed"] += 1
                try:
                    family = family_from_record(
                        record, vat_codes=ctx.settings.mamut.vat_codes, main_sku_template=settings.main_sku_template
                    )
                except MappingError as exc:
                    quarantine_on_load(ctx, batch_id, PRODUCT_ENTITY, row.key, "mapping", str(exc))
                    counts["failed"] += 1
                    continue
                articles = (family.main, *family.variants)
                to_issue.append(
                    (
                        row.key,
                        articles,
                        {
                            "mode": ARTICLE_MODE,
                            "content_hash": row.content_hash,
                            "expected": {article.sku: _expected(article, with_price) for article in articles},
                            "main_sku": family.main.sku,
                            "variants": {str(v["variant_id"]): v["sku"] for v in record["variants"]},
                        },
                    )
                )
        if params.dry_run:
            for key, articles, _ in to_issue:
                log.info("dry run: product %s would go to Mamut as %d article(s)", key, len(articles))
            return _product_counts(counts, before_load.finish(), would_write=len(to_issue)).as_dict(dry_run=True)
        to_issue.sort(key=lambda item: int(item[0]) if item[0].isdigit() else item[0])
        for chunk in chunked(iter(to_issue), imports.articles_per_file):
            file = article_file(
                shop.id,
                chunk[0][0],
                chunk[-1][0],
                (article for _, articles, _ in chunk for article in articles),
                warehouse=imports.warehouse,
                with_price=with_price,
            )
            if transport.state(file.name) is FileState.ABSENT:
                transport.issue(file)
                counts["issued"] += 1
            failpoint("products_to_mamut.after_import_file")
            now = ctx.clock().isoformat()
            for key, _, info in chunk:
                record_issue(key, {**info, "file": file.name, "issued_at": now})
        counts["awaiting_mamut"] = 0
        confirm_pass()
    result = _product_counts(counts, before_load.finish())
    store.resolve_quarantine(shop.id, PRODUCT_ENTITY, settled)
    return result.as_dict()


def _product_counts(counts: Mapping[str, int], transformed: Mapping[str, int], *, would_write: int = 0) -> BatchCounts:
    result = BatchCounts(
        changed=counts["changed"],
        loaded=counts["loaded"],
        unchanged=counts["unchanged"],
        failed=counts["failed"],
        would_write=would_write,
        details={name: counts[name] for name in ("created_articles", "updated_articles", "issued", "awaiting_mamut")},
    )
    result.add_transforms(transformed, at_load=True)
    return result


def _link_product(ctx: JobContext, key: str, info: Mapping[str, Any], keys: Mapping[str, int]) -> None:
    shop = ctx.shop.id
    ctx.store.upsert_links(
        [
            *(
                Link(
                    shop=shop,
                    entity="variant",
                    key=variant_id,
                    starweb_id=variant_ref(key, variant_id),
                    mamut_key=str(keys[sku]),
                    sku=sku,
                    content_hash=None,
                    synced_at=None,
                    retired_at=None,
                )
                for variant_id, sku in info["variants"].items()
                if sku in keys
            ),
            Link(
                shop=shop,
                entity="product",
                key=key,
                starweb_id=key,
                mamut_key=str(keys[info["main_sku"]]),
                sku=info["main_sku"],
                content_hash=info["content_hash"],
                synced_at=None,
                retired_at=None,
            ),
        ]
    )
