"""Initial product migration, either direction, matching on SKU: start → extract → migrate chunks → report.

When a shop or an ERP is first connected the whole catalogue moves once: ``starweb_to_mamut`` (a new ERP)
or ``mamut_to_starweb`` (a new shop). The regular product jobs do the writing (``products_to_mamut`` and
``products_to_starweb``), so a migrated product is exactly what those jobs would have made and their next
run finds nothing to do; this module adds what a first load needs on top:

* **Resumable.** A run's staging batch is its checkpoint. ``start`` resumes the newest unfinished batch
  with the same options, so a run killed anywhere and triggered again continues: Starweb pages already
  staged are not read again, families already settled are skipped without a request, and families whose
  write may have been cut short are found in the target by SKU before anything is written again.
* **Chunked.** ``extract`` cuts the staged families into key ranges; the DAG maps one task per range, so
  each chunk is retried on its own. A chunk validates its families (Great Expectations), matches them
  with the target and loads them; each family's outcome is its staged row's verdict, written right away.
* **Matching by SKU.** ``extract`` indexes the SKUs of both sides in staging (table ``staged_sku``). A
  family none of whose SKUs the target has is created. One whose SKUs are exactly those of one target
  product is *matched* and handled as the run's ``on_conflict`` option says: ``link_and_skip`` links it
  and leaves the target as it is, ``overwrite`` links it and writes the source's values, ``report_only``
  only lists it. A SKU on two source families, SKUs spread over several target products, or a target
  product with other SKUs (a different variant structure) are conflicts: quarantined, never guessed.
* **Minimal requests.** Reference data and the target catalogue are read once per run; a new product is
  one ``POST`` with its variants inline; prices and stock go Mamut → Starweb through the ledger-based
  ``prices_to_starweb`` and ``stock_to_starweb`` jobs (one request per value), and Starweb → Mamut inside
  each chunk from the values the catalogue listing already carried (no extra request).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from starmamut.failpoints import failpoint
from starmamut.jobs import prices_to_starweb, products_to_mamut, products_to_starweb, stock_to_starweb
from starmamut.jobs.common import (
    JobContext,
    RunParams,
    apply_verdicts,
    chunked,
    format_report,
    parse_variant_ref,
    quarantine_on_load,
    variant_ref,
)
from starmamut.jobs.products_to_mamut import ShopReference
from starmamut.jobs.products_to_starweb import AttributeIds, FamilyOutcome, FamilySync, KnownFamilies
from starmamut.jobs.starweb_binder import VARIANT, variants_of, with_variants
from starmamut.jobs.stock_to_starweb import shop_stock_statuses
from starmamut.mamut.catalogue import BASE_PRICE, CatalogueReader
from starmamut.mamut.products import ListPrice, MamutConflict, ProductRepository, StockLevel
from starmamut.mapping.catalogue import axis_values, normalise_family, sku_key, vat_rates_by_code
from starmamut.mapping.prices_stock import VARIANT_TARGET, StockStatusIds, shop_stock, stock_ledger_value
from starmamut.mapping.products import MappingError, children, content_hash, family_from_record
from starmamut.staging.store import Batch, Link, SkuHolder, StagedRow
from starmamut.starweb.client import StarwebClient
from starmamut.transforms import RecordTransforms

JOB = "initial_product_sync"
Direction = Literal["starweb_to_mamut", "mamut_to_starweb"]
OnConflict = Literal["link_and_skip", "overwrite", "report_only"]
DIRECTIONS: tuple[Direction, ...] = ("starweb_to_mamut", "mamut_to_starweb")
ON_CONFLICT: tuple[OnConflict, ...] = ("link_and_skip", "overwrite", "report_only")
SOURCE, TARGET = "source", "target"
VALUES = "values"  # payload key of a Starweb product's per-SKU prices and stock (not part of its content hash)

# Verdicts of a staged family once the run has dealt with it (a resumed run skips these).
SETTLED = frozenset({"created", "updated", "linked", "unchanged", "matched", "conflict", "failed", "quarantined"})
PROGRESS_EVERY_SECONDS = 10.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MigrationOptions:
    """The run's Params beyond the common ones; each is checked with an error naming it."""

    direction: Direction
    chunk_size: int = 500
    on_conflict: OnConflict = "link_and_skip"
    include_prices: bool = True
    include_price_lists: bool = True
    include_stock: bool = True
    restart: bool = False  # abandon an unfinished run with these options instead of resuming it

    @classmethod
    def from_mapping(cls, params: Mapping[str, Any]) -> MigrationOptions:
        direction = params.get("direction")
        if direction not in DIRECTIONS:
            raise ValueError(f"Param 'direction': expected one of {', '.join(DIRECTIONS)}, got {direction!r}")
        on_conflict = params.get("on_conflict", "link_and_skip")
        if on_conflict not in ON_CONFLICT:
            raise ValueError(f"Param 'on_conflict': expected one of {', '.join(ON_CONFLICT)}, got {on_conflict!r}")
        chunk_size = params.get("chunk_size", 500)
        if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or not 1 <= chunk_size <= 10_000:
            raise ValueError(f"Param 'chunk_size': expected a whole number from 1 to 10000, got {chunk_size!r}")
        return cls(direction=direction, chunk_size=chunk_size, on_conflict=on_conflict,
                   include_prices=bool(params.get("include_prices", True)),
                   include_price_lists=bool(params.get("include_price_lists", True)),
                   include_stock=bool(params.get("include_stock", True)),
                   restart=bool(params.get("restart", False)))

    def identity(self, params: RunParams) -> dict[str, Any]:
        """What a run must share with an unfinished batch to resume it (the chunk size may change)."""
        return {"direction": self.direction, "on_conflict": self.on_conflict, "skus": sorted(params.skus),
                "include_prices": self.include_prices, "include_price_lists": self.include_price_lists,
                "include_stock": self.include_stock}

    @property
    def entity(self) -> str:
        """The staged entity: the one the regular job of this direction stages, so links and hashes agree."""
        return products_to_mamut.ENTITY if self.direction == "starweb_to_mamut" else products_to_starweb.ENTITY


# ------------------------------------------------------------------------------------------------------- start


def start(ctx: JobContext, options: MigrationOptions) -> dict[str, Any]:
    """Resume the newest unfinished batch with these options, or start one (a dry run always starts afresh).

    With ``restart`` the unfinished batch is closed as ``abandoned`` and a new one reads both sides again:
    the way to pick up source fixes after a chunk stopped at the quality gate. Families it already moved are
    found linked and counted ``unchanged``.
    """
    store, shop = ctx.store, ctx.shop.id
    batch = None if ctx.params.dry_run else _unfinished_batch(ctx, options)
    if batch is not None and options.restart:
        store.finish_batch(batch.batch_id, "abandoned", batch.counts)
        log.info("shop %s: unfinished initial product sync batch %s abandoned (restart)", shop, batch.batch_id)
        batch = None
    if batch is not None:
        log.info("shop %s: resuming initial product sync batch %s (phase %s)", shop, batch.batch_id,
                 batch.counts.get("phase"))
        return {"batch_id": batch.batch_id, "resumed": True}
    batch_id = store.start_batch(shop, JOB, options.entity, dry_run=ctx.params.dry_run)
    store.set_batch_progress(batch_id, {"options": options.identity(ctx.params), "phase": "extract",
                                        "pages_done": 0})
    log.info("shop %s: initial product sync %s started as batch %s", shop, options.direction, batch_id)
    return {"batch_id": batch_id, "resumed": False}


def _unfinished_batch(ctx: JobContext, options: MigrationOptions) -> Batch | None:
    """The newest unfinished batch of this kind of run (dry or not) with these options: the run's own."""
    identity = options.identity(ctx.params)
    return next((batch for batch in ctx.store.latest_batches(ctx.shop.id, JOB, limit=50)
                 if batch.status == "running" and batch.dry_run == ctx.params.dry_run
                 and batch.counts.get("options") == identity), None)


# ----------------------------------------------------------------------------------------------------- extract


def extract(ctx: JobContext, options: MigrationOptions, batch_id: str) -> list[dict[str, Any]]:
    """Stage the source catalogue and index both sides' SKUs (each once per batch); return the chunks."""
    store = ctx.store
    progress = store.get_batch(batch_id).counts
    if progress["phase"] == "extract":
        requests = (_extract_from_starweb if options.direction == "starweb_to_mamut" else _extract_from_mamut)(
            ctx, options, batch_id, progress)
        staged = sum(store.count_staged(batch_id, options.entity).values())
        progress = {**store.get_batch(batch_id).counts, "phase": "load", "extract_requests": requests}
        store.set_batch_progress(batch_id, progress)
        log.info("shop %s: %d famil(ies) staged and both sides indexed with %d request(s)", ctx.shop.id, staged,
                 requests)
    ranges = store.key_ranges(batch_id, options.entity, options.chunk_size)
    return [{"batch_id": batch_id, "index": index, "chunks": len(ranges), "first": first, "last": last}
            for index, (first, last) in enumerate(ranges)]


def _extract_from_starweb(ctx: JobContext, options: MigrationOptions, batch_id: str,
                          progress: dict[str, Any]) -> int:
    """Starweb products page by page (a page's products staged together, then the page counted as done),
    then the Mamut register's SKUs as the target index."""
    store, shop = ctx.store, ctx.shop
    after_mapping = products_to_mamut.transforms_at(ctx, batch_id, "after_mapping")
    with ctx.open_starweb() as client:
        reference = ShopReference.read(client, shop.language)
        include = products_to_mamut.PRODUCT_INCLUDE

        # Pages overlap by one on resume: a product deleted meanwhile shifts the next ones a place forward.
        first_page = max(1, int(progress["pages_done"]))
        first_products, total_pages = client.products_page(first_page, include)  # says how many pages there are
        pages = range(first_page, total_pages + 1)

        def read_page(page: int) -> list[StagedRow]:
            products = first_products if page == first_page else client.products_page(page, include)[0]
            return [row for product in products
                    if (row := _staged_product(client, reference, after_mapping, product)) is not None]

        wanted = {sku_key(sku) for sku in ctx.params.skus}
        started = time.monotonic()
        staged = client.map_concurrent(read_page, pages)
        for page, rows in zip(pages, staged, strict=True):
            rows = [row for row in rows if _holds_any(row, wanted)]
            store.stage_rows(batch_id, options.entity, rows)
            store.index_skus(batch_id, SOURCE, _source_holders(rows))
            store.set_batch_progress(batch_id, {**progress, "pages_done": page})
            failpoint("initial_product_sync.after_page")
            _log_rate(ctx, "extract: page", page - first_page + 1, len(pages), started)
        requests = client.stats.requests_sent
    after_mapping.finish()
    with ctx.open_mamut() as gateway:
        store.clear_sku_index(batch_id, TARGET)
        store.index_skus(batch_id, TARGET, (
            SkuHolder(key=snapshot.family.main.sku, sku=article.sku, sku_key=sku_key(article.sku))
            for snapshot in CatalogueReader(gateway).iter_families()
            for article in (snapshot.family.variants or (snapshot.family.main,))
        ))
    return requests


def _staged_product(client: StarwebClient, reference: ShopReference, after_mapping: RecordTransforms,
                    product: dict[str, Any]) -> StagedRow | None:
    """One Starweb product as products_to_mamut stages it, plus its per-SKU prices and stock (outside the hash)."""
    variants = variants_of(client, product, include=products_to_mamut.VARIANT_INCLUDE)
    record = after_mapping.apply(reference.normalise(product, variants), source=product)
    if record is None:
        return None
    values = {variant.get("sku"): {
        "prices": {str(price["pricelistId"]): price.get("priceExVat") for price in children(variant, "prices")},
        "stock": variant.get("stockQuantity"),
    } for variant in variants}
    return StagedRow(key=str(record["product_id"]), payload={**record, VALUES: values},
                     content_hash=content_hash(record))


def _extract_from_mamut(ctx: JobContext, options: MigrationOptions, batch_id: str, progress: dict[str, Any]) -> int:
    """Mamut families (a database read, so simply read again on resume), then the shop's catalogue once as the
    target index, then every variant attribute value the families need, created where the shop lacks it."""
    store = ctx.store
    vat_rates = vat_rates_by_code(ctx.settings.mamut.vat_codes)
    after_mapping = products_to_starweb.transforms_at(ctx, batch_id, "after_mapping")
    pairs: set[tuple[str, str]] = set()

    def staged(rows: Iterator[StagedRow]) -> Iterator[StagedRow]:
        for row in rows:
            pairs.update(axis_values(row.payload))
            yield row

    with ctx.open_mamut() as gateway:
        snapshots = CatalogueReader(gateway).iter_families(skus=ctx.params.skus or None)
        rows = (StagedRow(key=record["key"], payload=record, content_hash=content_hash(record))
                for snapshot in snapshots
                if (record := after_mapping.apply(normalise_family(snapshot.family, vat_rates=vat_rates)))
                is not None)
        for chunk in chunked(staged(rows), 1000):
            store.stage_rows(batch_id, options.entity, chunk)
            store.index_skus(batch_id, SOURCE, _source_holders(chunk))
    after_mapping.finish()
    with ctx.open_starweb() as client:
        store.clear_sku_index(batch_id, TARGET)
        listed = client.map_concurrent(lambda product: with_variants(client, product),
                                       client.iter_products(include=("primaryVariant",)))
        store.index_skus(batch_id, TARGET, (
            SkuHolder(key=str(product_id), sku=variant["sku"], sku_key=sku_key(variant["sku"]),
                      ref=variant_ref(product_id, variant["variantId"]))
            for product_id, variants in listed for variant in variants))
        attributes = AttributeIds(ctx, client)
        attributes.resolve(pairs, FamilyOutcome(key="(attributes)"))  # creates the values the shop lacks
        statuses = (shop_stock_statuses(ctx.shop.id, client, ctx.shop.stock_to_starweb)
                    if options.include_stock and _variant_warehouses(ctx) else None)
        store.set_batch_progress(batch_id, {**progress, "attributes": attributes.known(),
                                            "stock_statuses": statuses and asdict(statuses)})
        return client.stats.requests_sent


def _variant_warehouses(ctx: JobContext) -> list[int]:
    """The Mamut warehouses feeding the variant's own stock (the shop's e-commerce location), if mapped."""
    return next((list(location.warehouses) for location in ctx.shop.stock_to_starweb.locations
                 if location.starweb == VARIANT_TARGET), [])


def _source_holders(rows: Sequence[StagedRow]) -> Iterator[SkuHolder]:
    return (SkuHolder(key=row.key, sku=variant["sku"], sku_key=sku_key(variant["sku"]))
            for row in rows for variant in row.payload["variants"])


def _holds_any(row: StagedRow, wanted: set[str]) -> bool:
    """With a SKU filter (``wanted``, as SKU keys), only families holding one of its SKUs."""
    return not wanted or any(sku_key(variant["sku"]) in wanted for variant in row.payload["variants"])


# ------------------------------------------------------------------------------------------------------- chunks


@dataclass
class _Plan:
    """What a chunk does with each of its valid families."""

    create: list[StagedRow]
    matched: list[tuple[StagedRow, list[SkuHolder]]]  # (family, the SKUs of the one target product it matched)
    conflicts: dict[str, str]  # family key -> reason
    unchanged: list[str]


def migrate_chunk(ctx: JobContext, options: MigrationOptions, chunk: Mapping[str, Any]) -> dict[str, Any]:
    """Validate, match and load one key range of families; each family's outcome is recorded at once."""
    batch_id, store = chunk["batch_id"], ctx.store
    key_range = (chunk["first"], chunk["last"])
    started = time.monotonic()
    pending = [row for row in store.iter_staged(batch_id, options.entity, key_range=key_range)
               if row.verdict not in SETTLED]
    if not pending:
        log.info("shop %s: chunk %d/%d was done before", ctx.shop.id, chunk["index"] + 1, chunk["chunks"])
        return {"families": 0, "requests": 0}
    valid = _validate(ctx, options, batch_id, [row for row in pending if row.verdict == "pending"])
    rows = [row for row in pending if row.verdict in ("valid", "creating") or row.key in valid]
    plan = _plan(ctx, options, batch_id, rows)
    if options.direction == "starweb_to_mamut":
        requests = _load_into_mamut(ctx, options, batch_id, plan)
    else:
        requests = _load_into_starweb(ctx, options, batch_id, plan)
    _settle(ctx, batch_id, options.entity, {key: ("unchanged", None) for key in plan.unchanged})
    _settle(ctx, batch_id, options.entity, {key: ("conflict", reason) for key, reason in plan.conflicts.items()})
    for key, reason in plan.conflicts.items():
        quarantine_on_load(ctx, batch_id, options.entity, key, "sku_conflict", reason)
    _log_progress(ctx, options, batch_id, chunk, len(pending), started)
    return {"families": len(pending), "requests": requests}


def _validate(ctx: JobContext, options: MigrationOptions, batch_id: str, rows: list[StagedRow]) -> set[str]:
    """Run the regular product job's checks on the families not yet validated; returns the keys that passed."""
    if not rows:
        return set()
    if options.direction == "starweb_to_mamut":
        reasons = products_to_mamut.check_records(ctx, batch_id, rows)
        threshold = ctx.shop.products_to_mamut.quarantine_threshold
    else:
        reasons = products_to_starweb.check_records(ctx, batch_id, rows)
        threshold = ctx.shop.products_to_starweb.quarantine_threshold
    apply_verdicts(ctx, batch_id, options.entity, (row.key for row in rows), reasons, threshold=threshold,
                   noun="product family")
    return {row.key for row in rows} - set(reasons)


def _plan(ctx: JobContext, options: MigrationOptions, batch_id: str, rows: list[StagedRow]) -> _Plan:
    """Sort the valid families: done before, new, matched with one target product, or in conflict."""
    store = ctx.store
    plan = _Plan(create=[], matched=[], conflicts={}, unchanged=[])
    links = store.get_links(ctx.shop.id, options.entity, [row.key for row in rows])
    started_at = store.get_batch(batch_id).started_at
    skus = {row.key: {sku_key(variant["sku"]) for variant in row.payload["variants"]} for row in rows}
    all_skus = [key for family in skus.values() for key in family]
    source_holders = store.holders_by_sku(batch_id, SOURCE, all_skus)
    target_holders = store.holders_by_sku(batch_id, TARGET, all_skus)
    target_products = store.holders_by_key(
        batch_id, TARGET, {holder.key for holders in target_holders.values() for holder in holders})
    for row in rows:
        link = links.get(row.key)
        # A link this batch made is a write cut off before its outcome was recorded: planned again, it is
        # found in the target and counted as what it was (created, updated, linked), not as unchanged.
        if (link is not None and link.retired_at is None and link.content_hash == row.content_hash
                and (link.synced_at is None or link.synced_at < started_at)):
            plan.unchanged.append(row.key)
            continue
        shared = {sku: sorted(holder.key for holder in source_holders[sku] if holder.key != row.key)
                  for sku in sorted(skus[row.key]) if len(source_holders.get(sku, ())) > 1}
        if shared:
            plan.conflicts[row.key] = "; ".join(
                f"SKU {source_holders[sku][0].sku} is also on source product {', '.join(others)}"
                for sku, others in shared.items()) + ": one SKU on two products"
            continue
        holders = sorted({holder.key for sku in skus[row.key] for holder in target_holders.get(sku, ())})
        if not holders:
            plan.create.append(row)
        elif len(holders) > 1:
            plan.conflicts[row.key] = (f"its SKUs are on {len(holders)} target products ({', '.join(holders)}): "
                                       "one family split over several products")
        elif {holder.sku_key for holder in target_products[holders[0]]} != skus[row.key]:
            theirs = sorted(holder.sku for holder in target_products[holders[0]])
            ours = sorted(variant["sku"] for variant in row.payload["variants"])
            plan.conflicts[row.key] = (f"a different variant structure: the source has SKUs {', '.join(ours)}, "
                                       f"target product {holders[0]} has {', '.join(theirs)}")
        else:
            plan.matched.append((row, target_products[holders[0]]))
    return plan


def _settle(ctx: JobContext, batch_id: str, entity: str, verdicts: Mapping[str, tuple[str, str | None]]) -> None:
    """Record families' outcomes (``would_…`` in a dry run, which a later run does not take as done)."""
    if not verdicts:
        return
    if ctx.params.dry_run:
        verdicts = {key: (f"would_{verdict}" if verdict in ("created", "updated", "linked") else verdict, reason)
                    for key, (verdict, reason) in verdicts.items()}
    ctx.store.set_verdicts(batch_id, entity, verdicts)


# ----------------------------------------------------------------------------------------- load: Starweb → Mamut


def _load_into_mamut(ctx: JobContext, options: MigrationOptions, batch_id: str, plan: _Plan) -> int:
    """Create new families and, on overwrite, matched ones through products_to_mamut; link the others."""
    repository = ProductRepository(ctx.open_mamut())
    settings = ctx.shop.products_to_mamut
    write = plan.create + ([row for row, _ in plan.matched] if options.on_conflict == "overwrite" else [])
    existing = {row.key for row, _ in plan.matched}
    for rows in chunked(write, 50):
        outcomes: dict[str, tuple[str, str | None]] = {}
        written: list[StagedRow] = []
        for row in rows:
            try:
                family = family_from_record(row.payload, vat_codes=ctx.settings.mamut.vat_codes,
                                            main_sku_template=settings.main_sku_template)
                if not ctx.params.dry_run:
                    products_to_mamut.write_family(ctx, repository, family, row.payload,
                                                   content_hash=row.content_hash, update_price=options.include_prices)
            except (MappingError, MamutConflict) as exc:
                outcomes[row.key] = ("failed", str(exc))
                quarantine_on_load(ctx, batch_id, options.entity, row.key,
                                   "mapping" if isinstance(exc, MappingError) else "target_conflict", str(exc))
                continue
            outcomes[row.key] = ("updated" if row.key in existing else "created", None)
            written.append(row)
        if not ctx.params.dry_run:
            _values_into_mamut(ctx, options, repository, written)
        _settle(ctx, batch_id, options.entity, outcomes)
        failpoint("initial_product_sync.after_settle")
    if options.on_conflict == "link_and_skip":
        _link_in_mamut(ctx, batch_id, options, repository, plan.matched)
    elif options.on_conflict == "report_only":
        _report_matched(ctx, batch_id, options, plan)
    return 0


def _link_in_mamut(ctx: JobContext, batch_id: str, options: MigrationOptions, repository: ProductRepository,
                   matched: list[tuple[StagedRow, list[SkuHolder]]]) -> None:
    """Link matched families to the Mamut family that already holds their SKUs, writing nothing to Mamut."""
    shop = ctx.shop.id
    for chunk in chunked(matched, 500):
        if not ctx.params.dry_run:
            # A target holder's key is its Mamut family's main article number, whatever it is called.
            keys = repository.keys_by_sku([sku for _, holders in chunk for sku in
                                           (holders[0].key, *(holder.sku for holder in holders))])
            ctx.store.upsert_links([
                *(Link(shop=shop, entity=VARIANT, key=str(variant["variant_id"]),
                       starweb_id=variant_ref(row.payload["product_id"], variant["variant_id"]),
                       mamut_key=_key(keys, _target_sku(holders, variant["sku"])), sku=variant["sku"],
                       content_hash=None, synced_at=None, retired_at=None)
                  for row, holders in chunk for variant in row.payload["variants"]),
                *(Link(shop=shop, entity=options.entity, key=row.key, starweb_id=row.key,
                       mamut_key=_key(keys, holders[0].key), sku=holders[0].key, content_hash=row.content_hash,
                       synced_at=None, retired_at=None) for row, holders in chunk),
            ])
        _settle(ctx, batch_id, options.entity, {row.key: ("linked", None) for row, _ in chunk})


def _target_sku(holders: list[SkuHolder], sku: str) -> str:
    """The target's own spelling of a SKU the family holds (matching ignores letter case)."""
    return next(holder.sku for holder in holders if holder.sku_key == sku_key(sku))


def _key(keys: Mapping[str, int], sku: str) -> str | None:
    return str(keys[sku]) if sku in keys else None


def _values_into_mamut(ctx: JobContext, options: MigrationOptions, repository: ProductRepository,
                       rows: list[StagedRow]) -> None:
    """Price lists and stock of written families, from the values the Starweb listing carried."""
    price_lists = {str(mapping.starweb): mapping.mamut for mapping in ctx.shop.prices_to_starweb.pricelists
                   if mapping.mamut != BASE_PRICE}
    warehouse = next(iter(_variant_warehouses(ctx)), None)  # Starweb's one stock figure goes to the first
    prices: list[ListPrice] = []
    stock: list[StockLevel] = []
    for row in rows:
        for sku, values in row.payload[VALUES].items():
            if options.include_price_lists:
                prices.extend(ListPrice(sku=sku, price_list=price_lists[pricelist], price=Decimal(str(price)))
                              for pricelist, price in values["prices"].items()
                              if pricelist in price_lists and price is not None)
            if options.include_stock and warehouse is not None and values["stock"] is not None:
                stock.append(StockLevel(sku=sku, warehouse_id=warehouse, quantity=Decimal(str(values["stock"]))))
    if prices:
        repository.set_list_prices(prices, now=ctx.clock())
    if stock:
        repository.set_stock(stock, now=ctx.clock())


def _report_matched(ctx: JobContext, batch_id: str, options: MigrationOptions, plan: _Plan) -> None:
    for row, holders in plan.matched:
        log.info("shop %s: family %s already exists as target product %s; left alone (report only)",
                 ctx.shop.id, row.key, holders[0].key)
    _settle(ctx, batch_id, options.entity,
            {row.key: ("matched", f"exists as target product {holders[0].key}") for row, holders in plan.matched})


# ----------------------------------------------------------------------------------------- load: Mamut → Starweb


def _load_into_starweb(ctx: JobContext, options: MigrationOptions, batch_id: str, plan: _Plan) -> int:
    """Create new families and, on overwrite, update matched ones through products_to_starweb; link the others."""
    store = ctx.store
    progress = store.get_batch(batch_id).counts
    matched = {row.key: int(holders[0].key) for row, holders in plan.matched}
    with ctx.open_starweb() as client:
        attributes = AttributeIds(ctx, client)
        attributes.restore(progress["attributes"])

        def before_create(key: str) -> None:
            store.set_verdicts(batch_id, options.entity, {key: ("creating", None)})

        stock = _inline_stock(ctx, progress, plan.create)
        sync = FamilySync(ctx, client, attributes=attributes, before_create=before_create,
                          variant_extras={sku: {"stockQuantity": quantity, "stockStatusId": status}
                                          for sku, (quantity, status) in stock.items()})
        _place_interrupted(ctx, sync, plan.create)
        work = plan.create + ([row for row, _ in plan.matched] if options.on_conflict == "overwrite" else [])
        sync.place({variant["sku"]: matched[row.key] for row in work if row.key in matched
                    for variant in row.payload["variants"]})
        rows_by_key = {row.key: row for row in work}

        def with_known() -> Iterator[tuple[StagedRow, KnownFamilies]]:
            for rows in chunked(work, 50):
                known = KnownFamilies.read(ctx, [row.key for row in rows])
                yield from ((row, known) for row in rows)

        # One stream through the pool (it never drains between groups); outcomes are recorded 50 at a time.
        results = client.map_concurrent(lambda item: sync.run(*item), with_known())
        for done in chunked(results, 50):
            outcomes: dict[str, tuple[str, str | None]] = {}
            for outcome in done:
                if outcome.problem is not None:
                    check, reason = outcome.problem
                    outcomes[outcome.key] = ("failed", reason)
                    quarantine_on_load(ctx, batch_id, options.entity, outcome.key, check, reason)
                    continue
                outcomes[outcome.key] = ("updated" if outcome.key in matched else "created", None)
            if not ctx.params.dry_run:
                store.set_ledger(ctx.shop.id, stock_to_starweb.ENTITY, {
                    (variant["sku"], VARIANT_TARGET): stock_ledger_value(*stock[variant["sku"]])
                    for key, (verdict, _) in outcomes.items() if verdict == "created"
                    for variant in rows_by_key[key].payload["variants"] if variant["sku"] in stock})
            _settle(ctx, batch_id, options.entity, outcomes)
            failpoint("initial_product_sync.after_settle")
        if options.on_conflict == "link_and_skip":
            _link_in_starweb(ctx, batch_id, options, plan)
        elif options.on_conflict == "report_only":
            _report_matched(ctx, batch_id, options, plan)
        return client.stats.requests_sent


def _inline_stock(ctx: JobContext, progress: Mapping[str, Any], rows: list[StagedRow]) -> dict[str, tuple[int, int]]:
    """``{sku: (stockQuantity, stockStatusId)}`` of the variants about to be created, so the create request
    carries their stock inline instead of stock_to_starweb sending one request per variant afterwards."""
    if not progress.get("stock_statuses") or not rows:
        return {}
    settings = ctx.shop.stock_to_starweb
    statuses = StockStatusIds(**progress["stock_statuses"])
    levels = CatalogueReader(ctx.open_mamut()).iter_stock(
        {VARIANT_TARGET: _variant_warehouses(ctx)}, subtract_reserved=settings.subtract_reserved,
        skus=[variant["sku"] for row in rows for variant in row.payload["variants"]])
    return {level.sku: shop_stock(level.on_hand, use_store=level.use_store, inactive=level.inactive,
                                  negative=settings.negative, statuses=statuses) for level in levels}


def _place_interrupted(ctx: JobContext, sync: FamilySync, rows: list[StagedRow]) -> None:
    """Families whose create was sent by a run that then died may exist in the shop unlinked: find them by SKU
    (a few requests per such family), so they are linked and updated, not created twice."""
    for row in rows:
        if row.verdict == "creating":
            log.warning("shop %s: family %s may have been created by an interrupted run; looking it up by SKU",
                        ctx.shop.id, row.key)
            sync.bind([variant["sku"] for variant in row.payload["variants"]])


def _link_in_starweb(ctx: JobContext, batch_id: str, options: MigrationOptions, plan: _Plan) -> None:
    """Link matched families and their variants to what the shop already has, writing nothing to the shop.

    There is no pushed state yet, so the next products_to_starweb run for a changed family compares with the
    shop itself; nothing rests on a guess.
    """
    shop = ctx.shop.id
    for chunk in chunked(plan.matched, 500):
        if not ctx.params.dry_run:
            ctx.store.upsert_links([
                *(Link(shop=shop, entity=VARIANT, key=str(parse_variant_ref(holder.ref)[1]), starweb_id=holder.ref,
                       mamut_key=None, sku=_source_sku(row, holder), content_hash=None, synced_at=None,
                       retired_at=None)
                  for row, holders in chunk for holder in holders if holder.ref),
                *(Link(shop=shop, entity=options.entity, key=row.key, starweb_id=holders[0].key, mamut_key=None,
                       sku=row.key, content_hash=row.content_hash, synced_at=None, retired_at=None)
                  for row, holders in chunk),
            ])
        _settle(ctx, batch_id, options.entity, {row.key: ("linked", None) for row, _ in chunk})


def _source_sku(row: StagedRow, holder: SkuHolder) -> str:
    """The family's own spelling of a SKU the shop holds (Starweb compares SKUs without regard to case)."""
    return next(variant["sku"] for variant in row.payload["variants"] if sku_key(variant["sku"]) == holder.sku_key)


def push_values(ctx: JobContext, options: MigrationOptions, job: Literal["prices", "stock"]) -> dict[str, Any]:
    """Mamut → Starweb prices or stock of the SKUs this run created or overwrote, through the regular ledger-based
    job; a product only linked, listed or in conflict keeps the shop's values (the regular jobs govern it later).
    ``include_prices`` and ``include_price_lists`` choose the base-price and the price-list mappings."""
    if options.direction != "mamut_to_starweb":
        return {"skipped": True, "requests": 0}
    shop = ctx.shop
    if job == "prices":
        mappings = [mapping for mapping in shop.prices_to_starweb.pricelists
                    if (options.include_prices if mapping.mamut == BASE_PRICE else options.include_price_lists)]
        shop = shop.model_copy(update={"prices_to_starweb": shop.prices_to_starweb.model_copy(
            update={"pricelists": mappings})})
        wanted = bool(mappings)
    else:
        wanted = options.include_stock
    if not wanted:
        return {"skipped": True, "requests": 0}
    skus = _written_skus(ctx, options)
    if skus == ():
        return {"skipped": True, "requests": 0}
    module = prices_to_starweb if job == "prices" else stock_to_starweb
    return module.run(replace(ctx, shop=shop, params=replace(ctx.params, skus=skus or ctx.params.skus)))


def _written_skus(ctx: JobContext, options: MigrationOptions) -> tuple[str, ...] | None:
    """The SKUs of the families the run's batch created or overwrote (or would have, in a dry run); None when
    that is every family it staged, so the push reads Mamut unfiltered instead of by a list of every SKU."""
    batch = _unfinished_batch(ctx, options)
    if batch is None:
        return ()
    written = {"created", "updated", "would_created", "would_updated"}
    outcomes = set(ctx.store.count_staged(batch.batch_id, options.entity))
    if outcomes and outcomes <= written:
        return None
    return tuple(variant["sku"] for row in ctx.store.iter_staged(batch.batch_id, options.entity)
                 if row.verdict in written for variant in row.payload["variants"])


# ------------------------------------------------------------------------------------------------------ report


def report(ctx: JobContext, options: MigrationOptions, batch_id: str, chunk_results: Sequence[Mapping[str, Any]],
           pushed: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """Count the outcomes, write the owner's report file, close the batch; a dry run's batch stays unresumed."""
    store = ctx.store
    batch = store.get_batch(batch_id)
    outcomes = store.count_staged(batch_id, options.entity)
    unsettled = {verdict: count for verdict, count in outcomes.items()
                 if verdict not in SETTLED and not verdict.startswith("would_")}
    if unsettled:
        raise RuntimeError(f"shop {ctx.shop.id}: batch {batch_id} still has families not dealt with ({unsettled}); "
                           "trigger the DAG again to resume it")
    requests = (int(batch.counts.get("extract_requests", 0)) + sum(int(result.get("requests", 0))
                                                                    for result in chunk_results)
                + sum(int(result.get("requests", 0)) for result in pushed))
    seconds = (ctx.clock() - batch.started_at).total_seconds()
    counts: dict[str, Any] = {"direction": options.direction, "families": sum(outcomes.values()),
                              **dict(sorted(outcomes.items())), "requests_this_run": requests,
                              "seconds_since_start": round(seconds, 1)}
    counts["report_file"] = str(_write_report_file(ctx, options, batch_id, counts))
    store.finish_batch(batch_id, "dry_run" if ctx.params.dry_run else "done", counts)
    if not ctx.params.dry_run and not ctx.params.skus:
        job = "products_to_mamut" if options.direction == "starweb_to_mamut" else "products_to_starweb"
        store.set_watermark(ctx.shop.id, job, batch.started_at)  # the regular job goes on from here
    log.info("%s", format_report(f"shop {ctx.shop.id} · {JOB} · batch {batch_id}", counts))
    return counts


def reports_dir() -> Path:
    """Where the owner finds the reports: $STARMAMUT_REPORTS_DIR, else ``reports/`` beside the Airflow home."""
    configured = os.environ.get("STARMAMUT_REPORTS_DIR")
    if configured:
        return Path(configured)
    return Path(os.environ.get("AIRFLOW_HOME", ".")) / "reports"


def _write_report_file(ctx: JobContext, options: MigrationOptions, batch_id: str, counts: Mapping[str, Any]) -> Path:
    """A Markdown report: the counts, then every family that was not migrated, with the reason."""
    store = ctx.store
    path = reports_dir() / ctx.shop.id / f"{JOB}-{options.direction}-{batch_id}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    held: dict[str, list[str]] = {verdict: [] for verdict in ("conflict", "quarantined", "failed", "matched")}
    with path.open("w", encoding="utf-8") as out:
        out.write(f"# Initial product sync · {ctx.shop.name} (`{ctx.shop.id}`) · {options.direction}\n\n")
        out.write(f"Batch `{batch_id}`{' — DRY RUN: nothing was written' if ctx.params.dry_run else ''}; "
                  f"on conflict: {options.on_conflict}.\n\n| outcome | count |\n|---|---|\n")
        for key, value in counts.items():
            out.write(f"| {key} | {value} |\n")
        for row in store.iter_staged(batch_id, options.entity):
            if row.verdict in held:
                held[row.verdict].append(f"| {row.key} | {(row.reason or '').replace('|', '/')} |")
        for verdict, lines in held.items():
            if lines:
                out.write(f"\n## {verdict} ({len(lines)})\n\n| family | reason |\n|---|---|\n")
                out.write("\n".join(lines) + "\n")
    return path


# ----------------------------------------------------------------------------------------------------- progress


def _log_rate(ctx: JobContext, what: str, done: int, total: int, started: float) -> None:
    elapsed = max(time.monotonic() - started, 1e-9)
    rate = done / elapsed
    eta = (total - done) / rate if rate else 0.0
    log.info("shop %s: %s %d/%d (%.1f/s, ETA %s)", ctx.shop.id, what, done, total, rate, _duration(eta))


def _log_progress(ctx: JobContext, options: MigrationOptions, batch_id: str, chunk: Mapping[str, Any],
                  families: int, started: float) -> None:
    """Done / total over the whole batch, this chunk's rate and the time left at that rate."""
    outcomes = ctx.store.count_staged(batch_id, options.entity)
    total = sum(outcomes.values())
    done = sum(count for verdict, count in outcomes.items() if verdict in SETTLED or verdict.startswith("would_"))
    elapsed = max(time.monotonic() - started, 1e-9)
    rate = families / elapsed
    log.info("shop %s: chunk %d/%d done: %d/%d families (%.0f %%), %.1f families/s, ETA %s", ctx.shop.id,
             chunk["index"] + 1, chunk["chunks"], done, total, 100 * done / total if total else 100, rate,
             _duration((total - done) / rate if rate else 0.0))


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


# --------------------------------------------------------------------------------------------------------- run


def run(ctx: JobContext, options: MigrationOptions) -> dict[str, Any]:
    """Every step in one process (CLI, benchmarks, tests); the DAG runs each chunk as its own task."""
    batch_id = start(ctx, options)["batch_id"]
    chunks = extract(ctx, options, batch_id)
    results = [migrate_chunk(ctx, options, chunk) for chunk in chunks]
    pushed = [push_values(ctx, options, "prices"), push_values(ctx, options, "stock")]
    return report(ctx, options, batch_id, results, pushed)

