"""Starweb products as Mamut articles: the checks, the shop's transforms and the family write.

Shared by ``products_to_mamut`` and the initial product sync's ``starweb_to_mamut`` direction, so a migrated
product is exactly what the regular job would have made.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from starmamut.config import TransformPoint
from starmamut.failpoints import failpoint
from starmamut.jobs.common import UNREADABLE, JobContext, Reasons, guard_record, variant_ref
from starmamut.mamut.articles import MamutProductFamily
from starmamut.mamut.products import FamilyWriteResult, ProductRepository
from starmamut.mapping.products import validation_rows
from starmamut.staging.store import Link, StagedRow
from starmamut.transforms import RecordTransforms

JOB = "products_to_mamut"
PRODUCT = "product"  # staged rows, quarantine and product links, keyed by the Starweb productId
PRODUCT_INCLUDE = ("languages", "primaryVariant", "primaryVariant.prices")
VARIANT_INCLUDE = ("prices",)


def check_products(ctx: JobContext, batch_id: str, staged: list[StagedRow]) -> dict[str, Reasons]:
    """Why each failing staged product fails: unreadable, the product suite on its variant rows, or no variant."""
    import pandas as pd

    from starmamut.quality.products import product_checks
    from starmamut.quality.runner import validate_rows

    reasons_by_product: dict[str, Reasons] = {
        record.key: record.payload[UNREADABLE] for record in staged if UNREADABLE in record.payload
    }
    readable = [record for record in staged if record.key not in reasons_by_product]
    rows: list[dict[str, Any]] = []
    for record in readable:
        record_rows, problems = guard_record("product", record.key, partial(_validation_rows, record.payload))
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


def _validation_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    return list(validation_rows(record))


def product_transforms(ctx: JobContext, batch_id: str, point: TransformPoint) -> RecordTransforms:
    """The shop's product transforms at one point; they see the staged record (``product_id`` stays fixed)."""
    return RecordTransforms(
        ctx,
        batch_id,
        job=JOB,
        entity="products",
        point=point,
        staged_entity=PRODUCT,
        key=lambda record: str(record["product_id"]),
        fixed=("product_id",),
    )


@dataclass(frozen=True)
class FamilyToWrite:
    """A Starweb product mapped to a Mamut family, with what its links need."""

    family: MamutProductFamily
    record: dict[str, Any]  # the staged Starweb product
    content_hash: str


def write_family(
    ctx: JobContext, repository: ProductRepository, item: FamilyToWrite, *, update_price: bool
) -> FamilyWriteResult:
    """Upsert one product family in Mamut and link it (:func:`write_families` of one, its refusal raised)."""
    (outcome,) = write_families(ctx, repository, [item], update_price=update_price)
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def write_families(
    ctx: JobContext, repository: ProductRepository, items: list[FamilyToWrite], *, update_price: bool
) -> list[FamilyWriteResult | Exception]:
    """Upsert product families in Mamut in one transaction (see ``ProductRepository.upsert_families``), then link
    every written product and its variants at once, right after the commit. Returns each family's result or
    the error that kept it out."""
    outcomes = repository.upsert_families([item.family for item in items], update_price=update_price, now=ctx.clock())
    failpoint("products_to_mamut.after_mamut_commit")
    ctx.store.upsert_links(
        [
            link
            for item, outcome in zip(items, outcomes, strict=True)
            if isinstance(outcome, FamilyWriteResult)
            for link in _links(ctx.shop.id, item, outcome)
        ]
    )
    return outcomes


def _links(shop: str, item: FamilyToWrite, result: FamilyWriteResult) -> list[Link]:
    record = item.record
    return [
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
            entity=PRODUCT,
            key=str(record["product_id"]),
            starweb_id=str(record["product_id"]),
            mamut_key=str(result.keys[item.family.main.sku]),
            sku=item.family.main.sku,
            content_hash=item.content_hash,
            synced_at=None,
            retired_at=None,
        ),
    ]
