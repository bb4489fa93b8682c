"""Products Mamut → Starweb (flow ``erp``: Mamut governs the articles): extract → validate → load → report.

A Mamut family (a main article with its variants, or a single article) becomes one Starweb product whose
variants carry the article numbers as SKUs. Matching goes by the id map, then by SKU in the shop
(:mod:`starmamut.services.binder`), so products that already exist are linked, never duplicated.

A shop product the job did not make is taken over only when it is exactly the family: the same SKUs (letter
case aside) on the same attribute axes. Anything else is a SKU conflict (:mod:`starmamut.catalogue_conflicts`):
the family is quarantined naming both sides and nothing is written for it, until the SKUs are fixed on either
side or a run is triggered with ``on_conflict`` (``link_and_skip``, ``overwrite`` or ``report_only``). On a
product the shop already has, the shop's ``field_owners`` say which fields Mamut may write: by default an empty
Mamut EAN or weight never clears the shop's, and the shop's spelling of a SKU is kept.

Change detection has two levels. A family whose staged content hash equals the one last pushed is skipped
without a request. A changed family is compared field by field with what was last pushed (kept in the
ledger), and only differing values are sent. A full refresh (or a re-sync of given SKUs) compares with what
the shop shows instead, so values changed in the shop by hand are put back. Articles deactivated in Mamut
become inactive variants, and a product none of whose articles is active is hidden; nothing is deleted.

Prices and stock are not sent: a new variant starts at price 0 in every price list (Starweb's default) and
the prices and stock jobs fill it in; ``new_product_visibility: hidden`` keeps it out of sight until then.

Crash safety: a created product is linked in the id map right after Starweb answers; a crash in between is
healed by the retry, which finds the product by its SKUs and only records the link. A product or variant POST
whose answer was lost (:class:`~starmamut.starweb.errors.StarwebAmbiguousWrite`) is looked up by SKU before it
is sent again. A write Starweb refuses for one family's data quarantines that family, naming it, the variant
and the fields sent, and the batch goes on.
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
from starmamut.jobs.common import JobContext, Reasons, chunked
from starmamut.mamut.catalogue import CatalogueReader, FamilySnapshot
from starmamut.mapping.catalogue import normalise_family, sku_key, vat_rates_by_code
from starmamut.services.families import (
    ARTICLE,
    FamilySync,
    KnownFamilies,
    check_families,
    family_transforms,
    forced,
    placed_skus,
)
from starmamut.staging.store import StagedRow
from starmamut.transforms import RecordTransforms

LOAD_CHUNK = 200

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class _Reading(Session):
    reader: CatalogueReader
    vat_rates: dict[Any, Any]


@dataclass(kw_only=True)
class _Writing(Session):
    sync: FamilySync


class ProductsToStarweb(Job):
    """Mamut families changed since the watermark (and the quarantined ones) become Starweb products."""

    name = "products_to_starweb"
    entity = ARTICLE
    noun = "Mamut product"
    key_field = "key"
    transform_entity = "products"
    load_chunk = LOAD_CHUNK
    details = ("conflicts", "created_products", "updated_products")
    dry_run_details = ("would_write_requests", "would_create_products")

    # extract

    @contextmanager
    def open_extract(self, ctx: JobContext) -> Iterator[Session]:
        with ctx.open_mamut() as gateway:
            yield _Reading(reader=CatalogueReader(gateway), vat_rates=vat_rates_by_code(ctx.settings.mamut.vat_codes))

    def read_given(self, ctx: JobContext, session: Session) -> Iterable[Any] | None:
        assert isinstance(session, _Reading)
        return session.reader.iter_families(skus=ctx.params.skus) if ctx.params.skus else None

    def read_changed(self, ctx: JobContext, session: Session, since: datetime | None) -> Iterator[Any]:
        assert isinstance(session, _Reading)
        return session.reader.iter_families(changed_since=since)

    def read_quarantined(self, ctx: JobContext, session: Session, seen: set[str]) -> Iterator[Any]:
        """The open quarantine entries not read already, in one read; a family Mamut no longer has closes its entry."""
        assert isinstance(session, _Reading)
        recheck = [entry.key for entry in ctx.store.open_quarantine(ctx.shop.id, ARTICLE) if entry.key not in seen]
        if not recheck:
            return
        for snapshot in session.reader.iter_families(skus=recheck):
            seen.add(self.source_key(snapshot))
            yield snapshot
        gone = [key for key in recheck if key not in seen]
        if gone and not ctx.params.dry_run:
            log.warning(
                "shop %s: quarantined product(s) %s are no longer in Mamut; their entries are closed", ctx.shop.id, gone
            )
            ctx.store.resolve_quarantine(ctx.shop.id, ARTICLE, gone)

    def source_key(self, item: FamilySnapshot) -> str:
        return item.family.main.sku

    def normalise(self, ctx: JobContext, session: Session, item: Any, fetched: Any, known: Any) -> dict[str, Any]:
        assert isinstance(session, _Reading)
        return normalise_family(item.family, vat_rates=session.vat_rates)

    def transforms(self, ctx: JobContext, batch_id: str, point: TransformPoint) -> RecordTransforms:
        return family_transforms(ctx, batch_id, point)

    # validate

    def check(self, ctx: JobContext, batch_id: str, rows: list[StagedRow]) -> dict[str, Reasons]:
        return check_families(ctx, batch_id, rows)

    # load

    @contextmanager
    def open_load(self, ctx: JobContext, batch_id: str, before_load: Any) -> Iterator[Session]:
        """Starweb, with the SKUs of the changed families placed in the shop first (one search at most).

        A dry run reads what it needs (the SKU lookups, the shop's products on a full refresh) and logs every
        write it would send; its result lists the first of them. Every result lists the first SKU conflicts.
        """
        with ctx.open_starweb() as client:
            sync = FamilySync(ctx, client)
            sync.bind(_skus_to_bind(ctx, batch_id, before_load))
            yield _Writing(client=client, concurrent=True, sync=sync)

    def known_at_load(self, ctx: JobContext, session: Session, chunk: list[StagedRow]) -> KnownFamilies:
        return KnownFamilies.read(ctx, [row.key for row in chunk])

    def unchanged(self, ctx: JobContext, known: KnownFamilies, row: StagedRow) -> bool:
        return known.unchanged(row, force=forced(ctx))

    def write_one(self, ctx: JobContext, session: Session, known: Any, row: StagedRow) -> Outcome:
        """Create or update the family in Starweb, sending only what differs."""
        assert isinstance(session, _Writing)
        family = session.sync.run(row, known)
        outcome = Outcome(counted=None, writes=family.writes)
        if ctx.params.dry_run and family.planned:
            for request in family.planned:
                log.info("dry run: would send %s", request.describe())
            outcome.would_write = True
            outcome.planned = [request.describe() for request in family.planned]
            outcome.details["would_write_requests"] = len(family.planned)
            outcome.details["would_create_products"] = sum(request.kind == "new_product" for request in family.planned)
        if family.conflict is not None:
            outcome.details["conflicts"] = 1
            outcome.lists["conflict_reasons"] = [f"{family.key}: {family.conflict}"]
        if family.problem is not None:
            outcome.counted, outcome.problem = "failed", family.problem
        elif family.conflict is not None:  # on_conflict report_only: listed and left as it is
            outcome.settles = False
        elif not ctx.params.dry_run:
            outcome.counted = "loaded"
            if family.planned:
                outcome.details["created_products" if family.created else "updated_products"] = 1
        return outcome


def _skus_to_bind(ctx: JobContext, batch_id: str, before_load: RecordTransforms) -> list[str]:
    """SKUs of changed families (as the before_load transforms leave them) the last pushed state does not place:
    the binder looks them up once."""
    skus: list[str] = []
    for chunk in chunked(ctx.store.iter_staged(batch_id, ARTICLE, verdict="valid"), LOAD_CHUNK):
        known = KnownFamilies.read(ctx, [row.key for row in chunk])
        for row in chunk:
            if known.unchanged(row, force=forced(ctx)) or (record := before_load.preview(row.payload)) is None:
                continue
            placed = placed_skus(known.pushed.get(row.key))
            skus.extend(variant["sku"] for variant in record["variants"] if sku_key(variant["sku"]) not in placed)
    return skus


JOB, ENTITY = ProductsToStarweb.name, ProductsToStarweb.entity
# The steps bound to one instance, for the CLI, benchmarks and tests (the registry names the class).
extract, validate, load, report, run = (
    getattr(ProductsToStarweb(), step) for step in ("extract", "validate", "load", "report", "run")
)
__all__ = ["ENTITY", "JOB", "ProductsToStarweb"]
