"""Products Starweb → Mamut (flows ``ecom`` and ``combo``): extract → validate → load → report.

Each step reads and writes staging only by batch id, so any step can be retried on its own. The load writes
one product family per Mamut transaction, looks every article number up inside that transaction before
inserting, and records the id-map link (with the content hash) right after the commit: a crash between the
two is healed by the retry, which finds the articles by number and only records the link.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starmamut.config import TransformPoint
from starmamut.jobs.base import Job, Outcome, Session
from starmamut.jobs.common import JobContext, Reasons
from starmamut.mamut.products import MamutConflict, ProductRepository
from starmamut.mapping.products import MappingError, family_from_record
from starmamut.services.articles import (
    PRODUCT,
    PRODUCT_INCLUDE,
    VARIANT_INCLUDE,
    FamilyToWrite,
    check_products,
    product_transforms,
    write_family,
)
from starmamut.services.binder import variants_of
from starmamut.services.reference import ShopReference
from starmamut.staging.store import Link, StagedRow
from starmamut.starweb.errors import StarwebNotFound
from starmamut.transforms import RecordTransforms

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class _Reading(Session):
    reference: ShopReference


@dataclass(kw_only=True)
class _Writing(Session):
    repository: ProductRepository


class ProductsToMamut(Job):
    """Starweb products changed since the watermark (and the quarantined ones) become Mamut article families."""

    name = "products_to_mamut"
    entity = PRODUCT
    noun = "product"
    key_field = "product_id"
    transform_entity = "products"
    reads_starweb_by_time = True
    details = ("created_articles", "updated_articles")
    dry_run_details = ("would_create_articles", "would_update_articles")

    # extract

    @contextmanager
    def open_extract(self, ctx: JobContext) -> Iterator[Session]:
        with ctx.open_starweb() as client:
            reference = ShopReference.read(client, ctx.shop.language)
            self.check_clocks(ctx, client)
            yield _Reading(client=client, concurrent=True, reference=reference)

    def read_given(self, ctx: JobContext, session: Session) -> Iterable[Any] | None:
        return self._products_by_id(ctx, session, ctx.params.resync_ids) if ctx.params.resync_ids else None

    def read_changed(self, ctx: JobContext, session: Session, since: datetime | None) -> Iterator[Any]:
        return session.client.iter_products(updated_since=since, include=PRODUCT_INCLUDE)

    def read_by_key(self, ctx: JobContext, session: Session, key: str) -> Any:
        return session.client.get_product(int(key), include=PRODUCT_INCLUDE)

    def source_key(self, item: Any) -> str:
        return str(item["productId"])

    def fetch(self, ctx: JobContext, session: Session, item: Any) -> Any:
        return variants_of(session.client, item, include=VARIANT_INCLUDE)

    def normalise(self, ctx: JobContext, session: Session, item: Any, fetched: Any, known: Any) -> dict[str, Any]:
        assert isinstance(session, _Reading)
        return session.reference.normalise(item, fetched)

    def transforms(self, ctx: JobContext, batch_id: str, point: TransformPoint) -> RecordTransforms:
        return product_transforms(ctx, batch_id, point)

    @staticmethod
    def _products_by_id(ctx: JobContext, session: Session, product_ids: Iterable[int]) -> Iterator[dict[str, Any]]:
        """The products asked for by id (``resync_ids``); one that does not exist is named and left out."""
        for product_id in product_ids:
            try:
                yield session.client.get_product(product_id, include=PRODUCT_INCLUDE)
            except StarwebNotFound:
                log.warning("shop %s: product %s does not exist in Starweb", ctx.shop.id, product_id)

    # validate

    def check(self, ctx: JobContext, batch_id: str, rows: list[StagedRow]) -> dict[str, Reasons]:
        return check_products(ctx, batch_id, rows)

    # load

    def load(self, ctx: JobContext, batch_id: str) -> dict[str, Any]:
        """Rows (``mamut.write_mode: sql``), or GBAPX10 files confirmed over SQL (``import``)."""
        if ctx.settings.mamut.write_mode == "import":
            from starmamut.services.mamut_import import load_products

            return load_products(ctx, batch_id)
        return super().load(ctx, batch_id)

    @contextmanager
    def open_load(self, ctx: JobContext, batch_id: str, before_load: Any) -> Iterator[Session]:
        yield _Writing(repository=ProductRepository(ctx.open_mamut()))

    def known_at_load(self, ctx: JobContext, session: Session, chunk: list[StagedRow]) -> dict[str, Link]:
        return ctx.store.get_links(ctx.shop.id, PRODUCT, [row.key for row in chunk])

    def unchanged(self, ctx: JobContext, known: dict[str, Link], row: StagedRow) -> bool:
        link = known.get(row.key)
        return link is not None and link.content_hash == row.content_hash and not ctx.params.full_refresh

    def write_one(self, ctx: JobContext, session: Session, known: Any, row: StagedRow) -> Outcome:
        """Map the product to a Mamut family and upsert it (a dry run looks up which articles it would create)."""
        assert isinstance(session, _Writing)
        settings = ctx.shop.products_to_mamut
        try:
            family = family_from_record(
                row.payload, vat_codes=ctx.settings.mamut.vat_codes, main_sku_template=settings.main_sku_template
            )
        except MappingError as exc:
            return Outcome.refused("mapping", str(exc))
        if ctx.params.dry_run:
            existing = session.repository.keys_by_sku(family.skus)
            create = [sku for sku in family.skus if sku not in existing]
            update = [sku for sku in family.skus if sku in existing]
            log.info("dry run: product %s would create %s and update %s", row.key, create, update)
            return Outcome(
                counted=None,
                would_write=True,
                details={"would_create_articles": len(create), "would_update_articles": len(update)},
            )
        try:
            result = write_family(
                ctx,
                session.repository,
                FamilyToWrite(family, row.payload, row.content_hash),
                update_price=ctx.shop.flow == "ecom",
            )
        except MamutConflict as exc:
            return Outcome.refused("mamut_conflict", str(exc))
        except ValueError as exc:  # a value Mamut cannot hold (e.g. a name too long); database faults propagate
            return Outcome.refused("mamut_refused", f"product {row.key}: {exc}")
        return Outcome(details={"created_articles": len(result.created), "updated_articles": len(result.updated)})


JOB, ENTITY = ProductsToMamut.name, ProductsToMamut.entity
# The steps bound to one instance, for the CLI, benchmarks and tests (the registry names the class).
extract, validate, load, report, run = (
    getattr(ProductsToMamut(), step) for step in ("extract", "validate", "load", "report", "run")
)
__all__ = ["ENTITY", "JOB", "ProductsToMamut"]
