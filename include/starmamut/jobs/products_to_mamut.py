"""Products Starweb → Mamut (flows ``ecom`` and ``combo``): extract → validate → load → report.

Each step reads and writes staging only by batch id, so any step can be retried on its own. The load writes
one product family per Mamut transaction, looks every article number up inside that transaction before
inserting, and records the id-map link (with the content hash) right after the commit: a crash between the
two is healed by the retry, which finds the articles by number and only records the link.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any

import pandas as pd

from starmamut.config import TransformPoint
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
    variant_ref,
)
from starmamut.jobs.starweb_binder import variants_of
from starmamut.mamut.articles import MamutProductFamily
from starmamut.mamut.products import FamilyWriteResult, MamutConflict, ProductRepository
from starmamut.mapping.products import (
    AttributeValue,
    MappingError,
    children,
    content_hash,
    family_from_record,
    language_name,
    normalise_product,
    validation_rows,
)
from starmamut.staging.store import Link, StagedRow
from starmamut.starweb.client import StarwebClient
from starmamut.starweb.errors import StarwebNotFound
from starmamut.transforms import RecordTransforms

JOB = "products_to_mamut"
ENTITY = "product"
PRODUCT_INCLUDE = ("languages", "primaryVariant", "primaryVariant.prices")
VARIANT_INCLUDE = ("prices",)

log = logging.getLogger(__name__)


def extract(ctx: JobContext) -> dict[str, Any]:
    """Stage every product changed since the watermark (minus the overlap), plus open quarantine re-checks."""
    shop, store, params = ctx.shop, ctx.store, ctx.params
    batch_id = store.start_batch(shop.id, JOB, ENTITY, dry_run=params.dry_run)
    after_mapping = transforms_at(ctx, batch_id, "after_mapping")
    with ctx.open_starweb() as client:
        reference = ShopReference.read(client, shop.language)
        check_clock(client, shop.products_to_mamut.overlap_minutes)
        products = _products_to_read(ctx, client)

        def read_variants(product: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
            variants = variants_of(client, product, include=VARIANT_INCLUDE)
            key = str(product["productId"])
            return product, read_record("product", key, "product_id", lambda: reference.normalise(product, variants))

        records = client.map_concurrent(read_variants, products)
        staged = store.stage_rows(
            batch_id,
            ENTITY,
            (
                StagedRow(key=str(rec["product_id"]), payload=rec, content_hash=content_hash(rec))
                for product, normalised in records
                if (rec := normalised if UNREADABLE in normalised else after_mapping.apply(normalised, source=product))
                is not None
            ),
        )
        requests = client.stats.requests_sent
    transformed = after_mapping.finish()
    log.info("shop %s: staged %d product(s) in batch %s with %d request(s)", shop.id, staged, batch_id, requests)
    return {"batch_id": batch_id, "read": staged + sum(transformed.values()), "requests": requests, **transformed}


def validate(ctx: JobContext, batch_id: str) -> dict[str, Any]:
    """Run the product checks; quarantine failing products with their reasons; stop if too many fail."""
    staged = list(ctx.store.iter_staged(batch_id, ENTITY))
    return apply_verdicts(
        ctx,
        batch_id,
        ENTITY,
        (record.key for record in staged),
        check_records(ctx, batch_id, staged),
        threshold=ctx.shop.products_to_mamut.quarantine_threshold,
        noun="product",
    )


def check_records(ctx: JobContext, batch_id: str, staged: list[StagedRow]) -> dict[str, Reasons]:
    """Why each failing staged product fails: the product suite on its variant rows, or having no variant."""
    from starmamut.quality.products import product_checks
    from starmamut.quality.runner import validate_rows

    reasons_by_product: dict[str, Reasons] = {
        record.key: record.payload[UNREADABLE] for record in staged if UNREADABLE in record.payload
    }
    readable = [record for record in staged if record.key not in reasons_by_product]
    rows: list[dict[str, Any]] = []
    for record in readable:
        record_rows, problems = guard_record(
            "product", record.key, lambda record=record: list(validation_rows(record.payload))
        )
        if record_rows is None:
            reasons_by_product[record.key] = problems
        else:
            rows.extend(record_rows)
    frame = pd.DataFrame(
        rows, columns=["row_key", "product_key", "sku", "name", "price", "vat_rate", "axis_count", "ean"]
    )
    report = validate_rows(
        frame,
        product_checks(allowed_vat_rates=ctx.settings.mamut.vat_codes),
        key_column="row_key",
        suite_name=f"{ctx.shop.id}_{JOB}_{batch_id}",
    )
    for row_key, failures in report.failures.items():
        product_key = row_key.split(":", 1)[0]
        reasons_by_product.setdefault(product_key, []).extend(
            {"check": failure.check, "reason": failure.reason} for failure in failures
        )
    for record in readable:
        if not record.payload["variants"]:
            reasons_by_product.setdefault(record.key, []).append(
                {"check": "has_variants", "reason": "the product has no variant, so no article number"}
            )
    return reasons_by_product


def load(ctx: JobContext, batch_id: str) -> dict[str, Any]:
    """Write new and changed valid products to Mamut; link each one in the id map right after its commit."""
    if ctx.settings.mamut.write_mode == "import":  # GBAPX10 files confirmed over SQL
        from starmamut.jobs.mamut_import import load_products

        return load_products(ctx, batch_id)
    shop, store, params = ctx.shop, ctx.store, ctx.params
    settings = ctx.shop.products_to_mamut
    repository = ProductRepository(ctx.open_mamut())
    before_load = transforms_at(ctx, batch_id, "before_load")
    counts = {
        "changed": 0,
        "loaded": 0,
        "unchanged": 0,
        "created_articles": 0,
        "updated_articles": 0,
        "quarantined_on_load": 0,
    }
    plan: list[dict[str, Any]] = []
    settled: list[str] = []
    for batch in chunked(store.iter_staged(batch_id, ENTITY, verdict="valid"), 500):
        links = store.get_links(shop.id, ENTITY, [row.key for row in batch])
        for row in batch:
            link = links.get(row.key)
            if link and link.content_hash == row.content_hash and not params.full_refresh:
                counts["unchanged"] += 1
                settled.append(row.key)
                continue
            record = before_load.apply(row.payload)
            if record is None:
                continue
            counts["changed"] += 1
            try:
                family = family_from_record(
                    record, vat_codes=ctx.settings.mamut.vat_codes, main_sku_template=settings.main_sku_template
                )
            except MappingError as exc:
                quarantine_on_load(ctx, batch_id, ENTITY, row.key, "mapping", str(exc))
                counts["quarantined_on_load"] += 1
                continue
            if params.dry_run:
                existing = repository.keys_by_sku(family.skus)
                plan.append(
                    {
                        "product": row.key,
                        "create": [s for s in family.skus if s not in existing],
                        "update": [s for s in family.skus if s in existing],
                    }
                )
                continue
            try:
                result = write_family(
                    ctx, repository, family, record, content_hash=row.content_hash, update_price=shop.flow == "ecom"
                )
            except MamutConflict as exc:
                quarantine_on_load(ctx, batch_id, ENTITY, row.key, "mamut_conflict", str(exc))
                counts["quarantined_on_load"] += 1
                continue
            except ValueError as exc:  # a value Mamut cannot hold (e.g. a name too long); database faults propagate
                quarantine_on_load(ctx, batch_id, ENTITY, row.key, "mamut_refused", f"product {row.key}: {exc}")
                counts["quarantined_on_load"] += 1
                continue
            counts["loaded"] += 1
            counts["created_articles"] += len(result.created)
            counts["updated_articles"] += len(result.updated)
            settled.append(row.key)
    counts.update(before_load.finish())
    if params.dry_run:
        for item in plan:
            log.info(
                "dry run: product %s would create %s and update %s", item["product"], item["create"], item["update"]
            )
        return {
            **counts,
            "would_write": len(plan),
            "would_create_articles": sum(len(item["create"]) for item in plan),
            "would_update_articles": sum(len(item["update"]) for item in plan),
        }
    store.resolve_quarantine(shop.id, ENTITY, settled)
    advance_watermark(ctx, JOB, store.get_batch(batch_id).started_at)
    return counts


def write_family(
    ctx: JobContext,
    repository: ProductRepository,
    family: MamutProductFamily,
    record: dict[str, Any],
    *,
    content_hash: str,
    update_price: bool,
) -> FamilyWriteResult:
    """Upsert one product family in Mamut, then link the product and its variants at once (after the commit)."""
    shop = ctx.shop.id
    result = repository.upsert_family(family, update_price=update_price, now=ctx.clock())
    failpoint("products_to_mamut.after_mamut_commit")
    ctx.store.upsert_links(
        [
            *(
                Link(
                    shop=shop,
                    entity="variant",
                    key=str(variant["variant_id"]),
                    starweb_id=variant_ref(record["product_id"], variant["variant_id"]),
                    mamut_key=str(result.keys[variant["sku"]]),
                    sku=variant["sku"],
                    content_hash=None,
                    synced_at=None,
                    retired_at=None,
                )
                for variant in record["variants"]
            ),
            Link(
                shop=shop,
                entity=ENTITY,
                key=str(record["product_id"]),
                starweb_id=str(record["product_id"]),
                mamut_key=str(result.keys[family.main.sku]),
                sku=family.main.sku,
                content_hash=content_hash,
                synced_at=None,
                retired_at=None,
            ),
        ]
    )
    return result


def report(
    ctx: JobContext, batch_id: str, extracted: dict[str, Any], validated: dict[str, Any], loaded: dict[str, Any]
) -> dict[str, Any]:
    """Close the batch with its counts and log them as a table."""
    counts = {
        "read": extracted["read"],
        "changed": loaded["changed"],
        "loaded": loaded["loaded"],
        "unchanged": loaded["unchanged"],
        "skipped": extracted["skipped"] + loaded["skipped"],
        "quarantined": validated["quarantined"] + extracted["rejected"],
        "failed": loaded["quarantined_on_load"] + loaded["rejected"],
        "requests": extracted["requests"],
        "created_articles": loaded["created_articles"],
        "updated_articles": loaded["updated_articles"],
    }
    if ctx.params.dry_run:
        counts.update({key: loaded[key] for key in ("would_write", "would_create_articles", "would_update_articles")})
    return close_batch(ctx, batch_id, JOB, counts)


def transforms_at(ctx: JobContext, batch_id: str, point: TransformPoint) -> RecordTransforms:
    """The shop's product transforms at one point; they see the staged record (``product_id`` stays fixed)."""
    return RecordTransforms(
        ctx,
        batch_id,
        job=JOB,
        entity="products",
        point=point,
        staged_entity=ENTITY,
        key=lambda record: str(record["product_id"]),
        fixed=("product_id",),
    )


class ShopReference:
    """Shop-wide facts a product record needs: master price list, default VAT, attribute names."""

    def __init__(
        self, master_pricelist_id: int, shop_vat_rate: float, values: dict[int, AttributeValue], language: str
    ) -> None:
        self.master_pricelist_id = master_pricelist_id
        self.shop_vat_rate = shop_vat_rate
        self.values = values
        self.language = language

    @classmethod
    def read(cls, client: StarwebClient, language: str) -> ShopReference:
        master = next(pricelist for pricelist in client.list_pricelists() if pricelist.get("isMaster"))
        shop = client.get_shop()
        values: dict[int, AttributeValue] = {}
        for attribute in client.list_attributes():
            axis = language_name(children(attribute, "languages"), language) or str(attribute["attributeId"])
            for value in client.list_attribute_values(attribute["attributeId"]):
                values[value["attributeValueId"]] = AttributeValue(
                    attribute_id=attribute["attributeId"],
                    axis=axis,
                    value=language_name(children(value, "languages"), language) or str(value["attributeValueId"]),
                )
        return cls(master["pricelistId"], float(shop.get("generalDefaultVatRate") or 25), values, language)

    def normalise(self, product: dict[str, Any], variants: list[dict[str, Any]]) -> dict[str, Any]:
        return normalise_product(
            product,
            variants,
            language=self.language,
            master_pricelist_id=self.master_pricelist_id,
            shop_vat_rate=self.shop_vat_rate,
            attribute_values=self.values,
        )


def _products_to_read(ctx: JobContext, client: StarwebClient) -> Iterator[dict[str, Any]]:
    """Changed products since the watermark, then open quarantine entries not already seen (to re-check)."""
    params, store, shop = ctx.params, ctx.store, ctx.shop
    if params.resync_ids:
        yield from _products_by_id(ctx, client, params.resync_ids)
        return
    watermark = None if params.full_refresh else store.get_watermark(shop.id, JOB)
    since = watermark - timedelta(minutes=shop.products_to_mamut.overlap_minutes) if watermark else None
    seen: set[str] = set()
    for product in client.iter_products(updated_since=since, include=PRODUCT_INCLUDE):
        seen.add(str(product["productId"]))
        yield product
    yield from reread_quarantined(ctx, ENTITY, seen, lambda key: client.get_product(int(key), include=PRODUCT_INCLUDE))


def _products_by_id(ctx: JobContext, client: StarwebClient, product_ids: Iterable[int]) -> Iterator[dict[str, Any]]:
    """The products asked for by id (``resync_ids``); one that does not exist is named and left out."""
    for product_id in product_ids:
        try:
            yield client.get_product(product_id, include=PRODUCT_INCLUDE)
        except StarwebNotFound:
            log.warning("shop %s: product %s does not exist in Starweb", ctx.shop.id, product_id)


def run(ctx: JobContext) -> dict[str, Any]:
    """All four steps in one process (CLI, benchmarks, tests); the DAG runs them as separate tasks."""
    return run_steps(sys.modules[__name__], ctx)
