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
  Starweb → Mamut the extract loads a chunk at a time behind the pages it reads (:class:`_LoadBehind`), so
  the load ends within a chunk of the last response; the chunk tasks then load only what it left (after
  a crash, say). Its Mamut writes are set-based: 500 families per transaction, a few statements per table.
* **Matching by SKU.** ``extract`` indexes the SKUs of both sides in staging (table ``staged_sku``). A
  family none of whose SKUs the target has is created. One whose SKUs are exactly those of one target
  product is *matched* and handled as the run's ``on_conflict`` option says: ``link_and_skip`` links it
  and leaves the target as it is, ``overwrite`` links it and writes the source's values, ``report_only``
  only lists it. A SKU on two source families, SKUs spread over several target products, or a target
  product with other SKUs (a different variant structure) are conflicts, judged as the regular product jobs
  judge them (:mod:`starmamut.catalogue_conflicts`): quarantined, never guessed.
* **Minimal requests.** Reference data and the target catalogue are read once per run; a new product is
  one ``POST`` with its variants inline; prices and stock go Mamut → Starweb through the ledger-based
  ``prices_to_starweb`` and ``stock_to_starweb`` jobs (one request per value; a new variant carries its own
  stock inline), and Starweb → Mamut inside each chunk from the values the catalogue listing already carried
  (no extra request, except one per variant when a stock location other than the e-commerce one is mapped:
  the listing carries only the variant's own stock). A price-list or stock mapping entry that moved nothing is
  logged as a warning and listed in the report.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from starmamut.catalogue_conflicts import CHECK as CONFLICT_CHECK
from starmamut.catalogue_conflicts import MAMUT_TO_SHOP, SHOP_TO_MAMUT, SkuConflict, check_structure, locate
from starmamut.config import PricelistMapping, PricesToStarwebSettings, ShopConfig, StockLocationMapping
from starmamut.failpoints import failpoint
from starmamut.jobs.common import (
    JobContext,
    RunParams,
    advance_watermark,
    apply_verdicts,
    chunked,
    format_report,
    holding_leases,
    holds_leases,
    parse_variant_ref,
    quarantine_on_load,
    variant_ref,
)
from starmamut.jobs.registry import JOBS, MIGRATION_WRITES
from starmamut.mamut.catalogue import BASE_PRICE, CatalogueReader
from starmamut.mamut.gateway import process_round_trips
from starmamut.mamut.products import FamilyWriteResult, ListPrice, MamutConflict, ProductRepository, StockLevel
from starmamut.mapping.catalogue import axis_values, normalise_family, sku_key, vat_rates_by_code
from starmamut.mapping.prices_stock import VARIANT_TARGET, StockStatusIds, shop_stock, stock_ledger_value
from starmamut.mapping.products import MappingError, children, content_hash, family_from_record
from starmamut.services.articles import (
    PRODUCT,
    PRODUCT_INCLUDE,
    VARIANT_INCLUDE,
    FamilyToWrite,
    check_products,
    product_transforms,
    write_families,
)
from starmamut.services.binder import VARIANT, variants_of, with_variants
from starmamut.services.families import (
    ARTICLE,
    AttributeIds,
    FamilyOutcome,
    FamilySync,
    KnownFamilies,
    check_families,
    family_transforms,
)
from starmamut.services.ledger import STOCK
from starmamut.services.reference import (
    ShopMappingError,
    ShopReference,
    check_mamut_price_lists,
    mapped_stocks,
    shop_pricelist_currencies,
    shop_stock_statuses,
)
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
WRITTEN = frozenset({"created", "updated", "would_created", "would_updated"})  # the families whose values move
PROGRESS_EVERY_SECONDS = 10.0
WRITE_GROUP = 500  # families per Mamut transaction: its statements are per table, not per family
LOADS_WAITING = 2  # chunks handed to the load behind the extract and not loaded yet, at most (the one loading too)

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
        return cls(
            direction=direction,
            chunk_size=chunk_size,
            on_conflict=on_conflict,
            include_prices=bool(params.get("include_prices", True)),
            include_price_lists=bool(params.get("include_price_lists", True)),
            include_stock=bool(params.get("include_stock", True)),
            restart=bool(params.get("restart", False)),
        )

    def identity(self, params: RunParams) -> dict[str, Any]:
        """What a run must share with an unfinished batch to resume it (the chunk size may change)."""
        return {
            "direction": self.direction,
            "on_conflict": self.on_conflict,
            "skus": sorted(params.skus),
            "include_prices": self.include_prices,
            "include_price_lists": self.include_price_lists,
            "include_stock": self.include_stock,
        }

    @property
    def entity(self) -> str:
        """The staged entity: the one the regular job of this direction stages, so links and hashes agree."""
        return PRODUCT if self.direction == "starweb_to_mamut" else ARTICLE


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
        log.info(
            "shop %s: resuming initial product sync batch %s (phase %s)",
            shop,
            batch.batch_id,
            batch.counts.get("phase"),
        )
        return {"batch_id": batch.batch_id, "resumed": True}
    batch_id = store.start_batch(shop, JOB, options.entity, dry_run=ctx.params.dry_run)
    store.set_batch_progress(batch_id, {"options": options.identity(ctx.params), "phase": "extract", "pages_done": 0})
    log.info("shop %s: initial product sync %s started as batch %s", shop, options.direction, batch_id)
    return {"batch_id": batch_id, "resumed": False}


def _unfinished_batch(ctx: JobContext, options: MigrationOptions) -> Batch | None:
    """The newest unfinished batch of this kind of run (dry or not) with these options: the run's own."""
    identity = options.identity(ctx.params)
    return next(
        (
            batch
            for batch in ctx.store.latest_batches(ctx.shop.id, JOB, limit=50)
            if batch.status == "running"
            and batch.dry_run == ctx.params.dry_run
            and batch.counts.get("options") == identity
        ),
        None,
    )


# ----------------------------------------------------------------------------------------------------- extract


def extract(ctx: JobContext, options: MigrationOptions, batch_id: str) -> list[dict[str, Any]]:
    """Stage the source catalogue and index both sides' SKUs (each once per batch); return the chunks."""
    store = ctx.store
    progress = store.get_batch(batch_id).counts
    if progress["phase"] == "extract":
        requests = (_extract_from_starweb if options.direction == "starweb_to_mamut" else _extract_from_mamut)(
            ctx, options, batch_id, progress
        )
        staged = sum(store.count_staged(batch_id, options.entity).values())
        progress = {**store.get_batch(batch_id).counts, "phase": "load", "extract_requests": requests}
        store.set_batch_progress(batch_id, progress)
        log.info(
            "shop %s: %d famil(ies) staged and both sides indexed with %d request(s)", ctx.shop.id, staged, requests
        )
    ranges = store.key_ranges(batch_id, options.entity, options.chunk_size)
    return [
        {"batch_id": batch_id, "index": index, "chunks": len(ranges), "first": first, "last": last}
        for index, (first, last) in enumerate(ranges)
    ]


def _extract_from_starweb(ctx: JobContext, options: MigrationOptions, batch_id: str, progress: dict[str, Any]) -> int:
    """The stock mapping checked, Starweb products page by page (a page's products staged together, then the
    page counted as done), then the Mamut register's SKUs as the target index."""
    store, shop = ctx.store, ctx.shop
    after_mapping = product_transforms(ctx, batch_id, "after_mapping")
    with ctx.open_starweb() as client:
        reference = ShopReference.read(client, shop.language)
        sources = _stock_sources(ctx, client, options)
        if not progress.get("target_indexed"):
            _index_mamut(ctx, batch_id)
        progress = {**progress, "stock_sources": sources, "target_indexed": True}
        store.set_batch_progress(batch_id, progress)
        locations = {int(source) for source in sources if source != VARIANT_TARGET}
        include = PRODUCT_INCLUDE

        # Pages overlap by one on resume: a product deleted meanwhile shifts the next ones a place forward.
        first_page = max(1, int(progress["pages_done"]))
        first_products, total_pages = client.products_page(first_page, include)  # says how many pages there are
        pages = range(first_page, total_pages + 1)

        wanted = {sku_key(sku) for sku in ctx.params.skus}

        def read_page(page: int) -> list[StagedRow]:
            products = first_products if page == first_page else client.products_page(page, include)[0]
            return [
                row
                for product in products
                if (row := _staged_product(client, reference, after_mapping, product, wanted, locations)) is not None
            ]

        started = time.monotonic()
        staged = client.map_concurrent(read_page, pages)
        with _LoadBehind(ctx, options, batch_id) as loader:
            for page, rows in zip(pages, staged, strict=True):
                store.stage_rows(batch_id, options.entity, rows)
                store.index_skus(batch_id, SOURCE, _source_holders(rows))
                store.set_batch_progress(batch_id, {**progress, "pages_done": page})
                failpoint("initial_product_sync.after_page")
                loader.add(rows)
                _log_rate(ctx, "extract: page", page - first_page + 1, len(pages), started)
        requests = client.stats.requests_sent
    after_mapping.finish()
    store.set_batch_progress(batch_id, {**store.get_batch(batch_id).counts, "loaded_in_extract": loader.figures()})
    return requests


def _index_mamut(ctx: JobContext, batch_id: str) -> None:
    """The Mamut register's SKUs as the target index, read once per batch before anything is written: a family
    the batch wrote before a crash is then still planned as what it was (created), not found as existing."""
    with ctx.open_mamut() as gateway:
        ctx.store.clear_sku_index(batch_id, TARGET)
        ctx.store.index_skus(
            batch_id,
            TARGET,
            (
                SkuHolder(key=snapshot.family.main.sku, sku=article.sku, sku_key=sku_key(article.sku))
                for snapshot in CatalogueReader(gateway).iter_families()
                for article in (snapshot.family.variants or (snapshot.family.main,))
            ),
        )


class _LoadBehind:
    """Starweb → Mamut: loads the families a chunk at a time while later pages are still being read, so the load
    ends within a chunk of the last response instead of starting after it.

    The load runs on a thread of its own (the page pool keeps reading meanwhile), each chunk under the
    migration's leases, exactly as a ``migrate_chunk`` task would load it. What it has not loaded when the run
    stops stays pending for the chunk tasks. Its error stops the extract at the next page. A resumed extract
    stages its first page again, which makes that page's families pending again: they are loaded again, which
    writes nothing new (the write finds them in Mamut) and counts them as the first load did.

    A SKU two shop products hold (Starweb refuses duplicate SKUs, so only a transform or a SKU moved during the
    read makes one) is found when the second product is read: the family loaded before it stays migrated,
    the later one is quarantined naming it.
    """

    def __init__(self, ctx: JobContext, options: MigrationOptions, batch_id: str) -> None:
        self._ctx, self._options, self._batch_id = ctx, options, batch_id
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="migration-load")
        self._loads: list[Future[tuple[int, int]]] = []
        self._rows: list[StagedRow] = []
        self._failed = False

    def __enter__(self) -> _LoadBehind:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self._submit()
        self._pool.shutdown(wait=True, cancel_futures=exc_type is not None)
        if exc_type is None:
            for load in self._loads:
                load.result()

    def add(self, rows: list[StagedRow]) -> None:
        """Queue staged rows; a full chunk goes to the loader. Raises the error of a load that failed. Waits while
        the loader is more than a chunk behind, so the rows held in memory stay bounded."""
        for load in self._loads:
            if load.done():
                load.result()
        self._rows.extend(rows)
        if len(self._rows) >= self._options.chunk_size:
            self._submit()
        waiting = [load for load in self._loads if not load.done()]
        if len(waiting) > LOADS_WAITING:
            waiting[0].result()

    def figures(self) -> dict[str, int]:
        """Families loaded behind the extract and the Mamut round trips that took."""
        done = [load.result() for load in self._loads]
        return {"families": sum(families for families, _ in done), "mamut_round_trips": sum(trips for _, trips in done)}

    def _submit(self) -> None:
        if self._rows:
            self._loads.append(self._pool.submit(self._load, self._rows))
            self._rows = []

    def _load(self, rows: list[StagedRow]) -> tuple[int, int]:
        if self._failed:
            return 0, 0  # after a failed load nothing more is loaded: the extract stops at its next page
        started, round_trips = time.monotonic(), process_round_trips()
        try:
            with holding_leases(self._ctx, MIGRATION_WRITES) as leased:
                _migrate(leased, self._options, self._batch_id, rows)
        except BaseException:
            self._failed = True
            raise
        _log_progress(self._ctx, self._options, self._batch_id, "loaded behind the extract", len(rows), started)
        return len(rows), process_round_trips() - round_trips


def _staged_product(
    client: StarwebClient,
    reference: ShopReference,
    after_mapping: RecordTransforms,
    product: dict[str, Any],
    wanted: set[str],
    locations: Collection[int],
) -> StagedRow | None:
    """One Starweb product as products_to_mamut stages it, plus its per-SKU prices and stock (outside the hash);
    None when a transform drops it or it holds none of the ``wanted`` SKUs (before its stock is read)."""
    variants = variants_of(client, product, include=VARIANT_INCLUDE)
    record = after_mapping.apply(reference.normalise(product, variants), source=product)
    if record is None or not _holds_any(record, wanted):
        return None
    values = {
        variant.get("sku"): {
            "prices": {str(price["pricelistId"]): price.get("priceExVat") for price in children(variant, "prices")},
            "stock": variant.get("stockQuantity"),
            "stocks": _location_stock(client, product["productId"], variant, locations),
        }
        for variant in variants
    }
    return StagedRow(
        key=str(record["product_id"]), payload={**record, VALUES: values}, content_hash=content_hash(record)
    )


def _location_stock(
    client: StarwebClient, product_id: int, variant: Mapping[str, Any], locations: Collection[int]
) -> dict[str, Any]:
    """A variant's stockQuantity at each mapped stock location other than the e-commerce one, by location id: one
    request for all of them, made only when one is mapped (the listing carries only the variant's own stock)."""
    if not locations:
        return {}
    return {
        str(stock["stockLocationId"]): stock.get("stockQuantity")
        for stock in client.list_variant_stocks(product_id, variant["variantId"])
        if stock["stockLocationId"] in locations
    }


def _stock_sources(ctx: JobContext, client: StarwebClient, options: MigrationOptions) -> dict[str, dict[str, Any]]:
    """Starweb → Mamut: where each mapped Starweb stock is read (``variant``: the variant's own stockQuantity, which
    is the e-commerce location's stock and comes with the listing; else a stock location id), with the Mamut
    warehouse it goes into (its entry's first) and the entry as the report names it.

    Raises ShopMappingError before anything is written for a stock location the shop lacks, a Starweb stock mapped
    twice, a warehouse Mamut lacks, or two Starweb stocks going into one warehouse.
    """
    if not options.include_stock:
        return {}
    shop = ctx.shop.id
    known = CatalogueReader(ctx.open_mamut()).warehouses()
    sources: dict[str, dict[str, Any]] = {}
    for stock in mapped_stocks(shop, client, ctx.shop.stock_to_starweb):
        mapping, warehouse = _stock_mapping(stock.entry), stock.entry.warehouses[0]
        if warehouse not in known:
            listed = ", ".join(f"{key} ({name})" for key, name in sorted(known.items())) or "none"
            raise ShopMappingError(
                f"shop {shop}: {mapping} puts Starweb stock into Mamut warehouse {warehouse}, "
                f"which Mamut does not have; Mamut has: {listed}. Nothing was written."
            )
        taken = next((source["mapping"] for source in sources.values() if source["warehouse"] == warehouse), None)
        if taken is not None:
            raise ShopMappingError(
                f"shop {shop}: {taken} and {mapping} both put Starweb stock into Mamut warehouse "
                f"{warehouse} (Starweb → Mamut fills the first warehouse of an entry); give each "
                "its own first warehouse. Nothing was written."
            )
        source = VARIANT_TARGET if stock.on_variant else str(stock.entry.starweb)
        sources[source] = {"warehouse": warehouse, "mapping": mapping}
    return sources


def _stock_mapping(entry: StockLocationMapping) -> str:
    return f"stock_to_starweb.locations entry {{starweb: {entry.starweb}, warehouses: {list(entry.warehouses)}}}"


def _extract_from_mamut(ctx: JobContext, options: MigrationOptions, batch_id: str, progress: dict[str, Any]) -> int:
    """Mamut families (a database read, so simply read again on resume), then the shop's catalogue once as the
    target index, then every variant attribute value the families need, created where the shop lacks it."""
    store = ctx.store
    vat_rates = vat_rates_by_code(ctx.settings.mamut.vat_codes)
    after_mapping = family_transforms(ctx, batch_id, "after_mapping")
    pairs: set[tuple[str, str]] = set()

    def staged(rows: Iterator[StagedRow]) -> Iterator[StagedRow]:
        for row in rows:
            pairs.update(axis_values(row.payload))
            yield row

    with ctx.open_mamut() as gateway:
        snapshots = CatalogueReader(gateway).iter_families(skus=ctx.params.skus or None)
        rows = (
            StagedRow(key=record["key"], payload=record, content_hash=content_hash(record))
            for snapshot in snapshots
            if (record := after_mapping.apply(normalise_family(snapshot.family, vat_rates=vat_rates))) is not None
        )
        for chunk in chunked(staged(rows), 1000):
            store.stage_rows(batch_id, options.entity, chunk)
            store.index_skus(batch_id, SOURCE, _source_holders(chunk))
    after_mapping.finish()
    with ctx.open_starweb() as client:
        prices = _pushed_prices(ctx.shop, options)
        if prices.pricelists:  # the price push comes after the products: its mapping checks come before any write
            shop_pricelist_currencies(ctx.shop.id, client, prices)
            check_mamut_price_lists(ctx.shop.id, CatalogueReader(ctx.open_mamut()), prices)
        inline_stock = _inline_stock_mapping(ctx, client, options)
        store.clear_sku_index(batch_id, TARGET)
        listed = client.map_concurrent(
            lambda product: with_variants(client, product), client.iter_products(include=("primaryVariant",))
        )
        store.index_skus(
            batch_id,
            TARGET,
            (
                SkuHolder(
                    key=str(product_id),
                    sku=variant["sku"],
                    sku_key=sku_key(variant["sku"]),
                    ref=variant_ref(product_id, variant["variantId"]),
                )
                for product_id, variants in listed
                for variant in variants
            ),
        )
        attributes = AttributeIds(ctx, client)
        attributes.resolve(pairs, FamilyOutcome(key="(attributes)"))  # creates the values the shop lacks
        store.set_batch_progress(batch_id, {**progress, "attributes": attributes.known(), "inline_stock": inline_stock})
        return client.stats.requests_sent


def _inline_stock_mapping(ctx: JobContext, client: StarwebClient, options: MigrationOptions) -> dict[str, Any] | None:
    """Mamut → Starweb: the mapped stock a new variant carries in its create request (the variant's own stock,
    mapped as ``variant`` or as the e-commerce stock location by id): its ledger target, Mamut warehouses and the
    stock status ids. The whole stock mapping is checked first, so a bad one stops the run before any write."""
    if not options.include_stock:
        return None
    settings = ctx.shop.stock_to_starweb
    stocks = mapped_stocks(ctx.shop.id, client, settings)
    statuses = shop_stock_statuses(ctx.shop.id, client, settings)
    inline = next((stock for stock in stocks if stock.on_variant), None)
    return inline and {
        "target": inline.target,
        "warehouses": list(inline.entry.warehouses),
        "statuses": asdict(statuses),
    }


def _source_holders(rows: Sequence[StagedRow]) -> Iterator[SkuHolder]:
    return (
        SkuHolder(key=row.key, sku=variant["sku"], sku_key=sku_key(variant["sku"]))
        for row in rows
        for variant in row.payload["variants"]
    )


def _holds_any(record: Mapping[str, Any], wanted: set[str]) -> bool:
    """With a SKU filter (``wanted``, as SKU keys), only families holding one of its SKUs."""
    return not wanted or any(sku_key(variant["sku"]) in wanted for variant in record["variants"])


# ------------------------------------------------------------------------------------------------------- chunks


@dataclass
class _Plan:
    """What a chunk does with each of its valid families."""

    create: list[StagedRow]
    matched: list[tuple[StagedRow, list[SkuHolder]]]  # (family, the SKUs of the one target product it matched)
    conflicts: dict[str, str]  # family key -> reason
    unchanged: list[str]


@holds_leases(*MIGRATION_WRITES)
def migrate_chunk(ctx: JobContext, options: MigrationOptions, chunk: Mapping[str, Any]) -> dict[str, Any]:
    """Validate, match and load one key range of families; each family's outcome is recorded at once. Holds the
    shop's product, price and stock leases, so no regular load of those runs meanwhile."""
    batch_id, store = chunk["batch_id"], ctx.store
    key_range = (chunk["first"], chunk["last"])
    started, round_trips = time.monotonic(), process_round_trips()
    pending = [
        row for row in store.iter_staged(batch_id, options.entity, key_range=key_range) if row.verdict not in SETTLED
    ]
    if not pending:
        log.info("shop %s: chunk %d/%d was done before", ctx.shop.id, chunk["index"] + 1, chunk["chunks"])
        return {"families": 0, "requests": 0, "mamut_round_trips": 0}
    requests = _migrate(ctx, options, batch_id, pending)
    _log_progress(ctx, options, batch_id, f"chunk {chunk['index'] + 1}/{chunk['chunks']} done", len(pending), started)
    return {"families": len(pending), "requests": requests, "mamut_round_trips": process_round_trips() - round_trips}


def _migrate(ctx: JobContext, options: MigrationOptions, batch_id: str, pending: list[StagedRow]) -> int:
    """Validate, match and load families the batch has not settled; returns the Starweb requests it took."""
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
        quarantine_on_load(ctx, batch_id, options.entity, key, CONFLICT_CHECK, reason)
    return requests


def _validate(ctx: JobContext, options: MigrationOptions, batch_id: str, rows: list[StagedRow]) -> set[str]:
    """Run the regular product job's checks on the families not yet validated; returns the keys that passed."""
    if not rows:
        return set()
    if options.direction == "starweb_to_mamut":
        reasons = check_products(ctx, batch_id, rows)
        threshold = ctx.shop.products_to_mamut.quarantine_threshold
    else:
        reasons = check_families(ctx, batch_id, rows)
        threshold = ctx.shop.products_to_starweb.quarantine_threshold
    apply_verdicts(
        ctx, batch_id, options.entity, (row.key for row in rows), reasons, threshold=threshold, noun="product family"
    )
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
        batch_id, TARGET, {holder.key for holders in target_holders.values() for holder in holders}
    )
    sides = SHOP_TO_MAMUT if options.direction == "starweb_to_mamut" else MAMUT_TO_SHOP
    for row in rows:
        link = links.get(row.key)
        # A link this batch made is a write cut off before its outcome was recorded: planned again, it is
        # found in the target and counted as what it was (created, updated, linked), not as unchanged.
        if (
            link is not None
            and link.retired_at is None
            and link.content_hash == row.content_hash
            and (link.synced_at is None or link.synced_at < started_at)
        ):
            plan.unchanged.append(row.key)
            continue
        ours = [variant["sku"] for variant in row.payload["variants"]]
        try:
            product = locate(row.key, ours, targets=target_holders, sources=source_holders, sides=sides)
            if product is not None:
                check_structure(
                    row.key, ours, product, [holder.sku for holder in target_products[product]], sides=sides
                )
        except SkuConflict as conflict:
            plan.conflicts[row.key] = str(conflict)
            continue
        if product is None:
            plan.create.append(row)
        else:
            plan.matched.append((row, target_products[product]))
    return plan


def _settle(ctx: JobContext, batch_id: str, entity: str, verdicts: Mapping[str, tuple[str, str | None]]) -> None:
    """Record families' outcomes (``would_…`` in a dry run, which a later run does not take as done)."""
    if not verdicts:
        return
    if ctx.params.dry_run:
        verdicts = {
            key: (f"would_{verdict}" if verdict in ("created", "updated", "linked") else verdict, reason)
            for key, (verdict, reason) in verdicts.items()
        }
    ctx.store.set_verdicts(batch_id, entity, verdicts)


# ----------------------------------------------------------------------------------------- load: Starweb → Mamut


def _load_into_mamut(ctx: JobContext, options: MigrationOptions, batch_id: str, plan: _Plan) -> int:
    """Create new families and, on overwrite, matched ones through products_to_mamut; link the others."""
    repository = ProductRepository(ctx.open_mamut())
    settings = ctx.shop.products_to_mamut
    write = plan.create + ([row for row, _ in plan.matched] if options.on_conflict == "overwrite" else [])
    existing = {row.key for row, _ in plan.matched}
    sources = ctx.store.get_batch(batch_id).counts["stock_sources"]
    for rows in chunked(write, WRITE_GROUP):
        outcomes: dict[str, tuple[str, str | None]] = {}
        mapped: list[tuple[StagedRow, FamilyToWrite]] = []
        for row in rows:
            try:
                family = family_from_record(
                    row.payload, vat_codes=ctx.settings.mamut.vat_codes, main_sku_template=settings.main_sku_template
                )
            except MappingError as exc:
                outcomes[row.key] = ("failed", str(exc))
                quarantine_on_load(ctx, batch_id, options.entity, row.key, "mapping", str(exc))
                continue
            mapped.append((row, FamilyToWrite(family, row.payload, row.content_hash)))
        results: Sequence[FamilyWriteResult | Exception | None] = (
            [None] * len(mapped)  # a dry run writes nothing
            if ctx.params.dry_run
            else write_families(ctx, repository, [item for _, item in mapped], update_price=options.include_prices)
        )
        written: list[StagedRow] = []
        for (row, _), result in zip(mapped, results, strict=True):
            if isinstance(result, Exception):
                check = "target_conflict" if isinstance(result, MamutConflict) else "mamut_refused"
                outcomes[row.key] = ("failed", str(result))
                quarantine_on_load(ctx, batch_id, options.entity, row.key, check, str(result))
                continue
            outcomes[row.key] = ("updated" if row.key in existing else "created", None)
            written.append(row)
        if not ctx.params.dry_run:
            _values_into_mamut(ctx, options, repository, sources, written)
        _settle(ctx, batch_id, options.entity, outcomes)
        failpoint("initial_product_sync.after_settle")
    if options.on_conflict == "link_and_skip":
        _link_in_mamut(ctx, batch_id, options, repository, plan.matched)
    elif options.on_conflict == "report_only":
        _report_matched(ctx, batch_id, options, plan)
    return 0


def _link_in_mamut(
    ctx: JobContext,
    batch_id: str,
    options: MigrationOptions,
    repository: ProductRepository,
    matched: list[tuple[StagedRow, list[SkuHolder]]],
) -> None:
    """Link matched families to the Mamut family that already holds their SKUs, writing nothing to Mamut."""
    shop = ctx.shop.id
    for chunk in chunked(matched, 500):
        if not ctx.params.dry_run:
            # A target holder's key is its Mamut family's main article number, whatever it is called.
            keys = repository.keys_by_sku(
                [sku for _, holders in chunk for sku in (holders[0].key, *(holder.sku for holder in holders))]
            )
            ctx.store.upsert_links(
                [
                    *(
                        Link(
                            shop=shop,
                            entity=VARIANT,
                            key=str(variant["variant_id"]),
                            starweb_id=variant_ref(row.payload["product_id"], variant["variant_id"]),
                            mamut_key=_key(keys, _target_sku(holders, variant["sku"])),
                            sku=variant["sku"],
                            content_hash=None,
                            synced_at=None,
                            retired_at=None,
                        )
                        for row, holders in chunk
                        for variant in row.payload["variants"]
                    ),
                    *(
                        Link(
                            shop=shop,
                            entity=options.entity,
                            key=row.key,
                            starweb_id=row.key,
                            mamut_key=_key(keys, holders[0].key),
                            sku=holders[0].key,
                            content_hash=row.content_hash,
                            synced_at=None,
                            retired_at=None,
                        )
                        for row, holders in chunk
                    ),
                ]
            )
        _settle(ctx, batch_id, options.entity, {row.key: ("linked", None) for row, _ in chunk})


def _target_sku(holders: list[SkuHolder], sku: str) -> str:
    """The target's own spelling of a SKU the family holds (matching ignores letter case)."""
    return next(holder.sku for holder in holders if holder.sku_key == sku_key(sku))


def _key(keys: Mapping[str, int], sku: str) -> str | None:
    return str(keys[sku]) if sku in keys else None


def _values_into_mamut(
    ctx: JobContext,
    options: MigrationOptions,
    repository: ProductRepository,
    sources: Mapping[str, Mapping[str, Any]],
    rows: list[StagedRow],
) -> None:
    """Price lists and stock of written families, from the values the Starweb listing carried."""
    prices: list[ListPrice] = []
    stock: list[StockLevel] = []
    for _mapping, value in _mamut_values(ctx, options, sources, rows):
        if isinstance(value, ListPrice):
            prices.append(value)
        else:
            stock.append(value)
    if prices:
        repository.set_list_prices(prices, now=ctx.clock())
    if stock:
        repository.set_stock(stock, now=ctx.clock())


def _mamut_values(
    ctx: JobContext, options: MigrationOptions, sources: Mapping[str, Mapping[str, Any]], rows: Iterable[StagedRow]
) -> Iterator[tuple[str, ListPrice | StockLevel]]:
    """Each price-list price and stock level the listing carried for these families, with the mapping entry that
    moves it (the report names the entries that moved nothing)."""
    price_lists = (
        {
            str(mapping.starweb): mapping
            for mapping in ctx.shop.prices_to_starweb.pricelists
            if mapping.mamut != BASE_PRICE
        }
        if options.include_price_lists
        else {}
    )
    for row in rows:
        for sku, values in row.payload[VALUES].items():
            for pricelist, price in values["prices"].items():
                if pricelist in price_lists and price is not None:
                    mapping = price_lists[pricelist]
                    yield (
                        _pricelist_mapping(mapping),
                        ListPrice(sku=sku, price_list=mapping.mamut, price=Decimal(str(price))),
                    )
            for source, into in sources.items():
                quantity = values["stock"] if source == VARIANT_TARGET else values["stocks"].get(source)
                if quantity is not None:
                    yield (
                        into["mapping"],
                        StockLevel(sku=sku, warehouse_id=into["warehouse"], quantity=Decimal(str(quantity))),
                    )


def _pricelist_mapping(mapping: PricelistMapping) -> str:
    return f"prices_to_starweb.pricelists entry {{starweb: {mapping.starweb}, mamut: {mapping.mamut!r}}}"


def _report_matched(ctx: JobContext, batch_id: str, options: MigrationOptions, plan: _Plan) -> None:
    for row, holders in plan.matched:
        log.info(
            "shop %s: family %s already exists as target product %s; left alone (report only)",
            ctx.shop.id,
            row.key,
            holders[0].key,
        )
    _settle(
        ctx,
        batch_id,
        options.entity,
        {row.key: ("matched", f"exists as target product {holders[0].key}") for row, holders in plan.matched},
    )


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

        inline = progress.get("inline_stock")
        stock = _inline_stock(ctx, inline, plan.create)
        sync = FamilySync(
            ctx,
            client,
            attributes=attributes,
            before_create=before_create,
            variant_extras={
                sku: {"stockQuantity": quantity, "stockStatusId": status} for sku, (quantity, status) in stock.items()
            },
            on_conflict="quarantine",
        )  # _plan matched exactly; what else differs is a conflict
        _place_interrupted(ctx, sync, plan.create)
        work = plan.create + ([row for row, _ in plan.matched] if options.on_conflict == "overwrite" else [])
        sync.place(
            {
                variant["sku"]: matched[row.key]
                for row in work
                if row.key in matched
                for variant in row.payload["variants"]
            }
        )
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
                    outcomes[outcome.key] = ("conflict" if outcome.conflict else "failed", reason)
                    quarantine_on_load(ctx, batch_id, options.entity, outcome.key, check, reason)
                    continue
                outcomes[outcome.key] = ("updated" if outcome.key in matched else "created", None)
            if not ctx.params.dry_run:
                store.set_ledger(
                    ctx.shop.id,
                    STOCK,
                    {
                        (variant["sku"], inline["target"]): stock_ledger_value(*stock[variant["sku"]])
                        for key, (verdict, _) in outcomes.items()
                        if verdict == "created"
                        for variant in rows_by_key[key].payload["variants"]
                        if variant["sku"] in stock
                    },
                )
            _settle(ctx, batch_id, options.entity, outcomes)
            failpoint("initial_product_sync.after_settle")
        if options.on_conflict == "link_and_skip":
            _link_in_starweb(ctx, batch_id, options, plan)
        elif options.on_conflict == "report_only":
            _report_matched(ctx, batch_id, options, plan)
        return client.stats.requests_sent


def _inline_stock(
    ctx: JobContext, inline: Mapping[str, Any] | None, rows: list[StagedRow]
) -> dict[str, tuple[int, int]]:
    """``{sku: (stockQuantity, stockStatusId)}`` of the variants about to be created, so the create request
    carries their stock inline instead of stock_to_starweb sending one request per variant afterwards."""
    if inline is None or not rows:
        return {}
    settings = ctx.shop.stock_to_starweb
    statuses = StockStatusIds(**inline["statuses"])
    levels = CatalogueReader(ctx.open_mamut()).iter_stock(
        {inline["target"]: inline["warehouses"]},
        subtract_reserved=settings.subtract_reserved,
        skus=[variant["sku"] for row in rows for variant in row.payload["variants"]],
    )
    return {
        level.sku: shop_stock(
            level.on_hand,
            use_store=level.use_store,
            inactive=level.inactive,
            negative=settings.negative,
            statuses=statuses,
        )
        for level in levels
    }


def _place_interrupted(ctx: JobContext, sync: FamilySync, rows: list[StagedRow]) -> None:
    """Families whose create was sent by a run that then died may exist in the shop unlinked: find them by SKU
    (a few requests per such family), so they are linked and updated, not created twice."""
    for row in rows:
        if row.verdict == "creating":
            log.warning(
                "shop %s: family %s may have been created by an interrupted run; looking it up by SKU",
                ctx.shop.id,
                row.key,
            )
            sync.bind([variant["sku"] for variant in row.payload["variants"]])


def _link_in_starweb(ctx: JobContext, batch_id: str, options: MigrationOptions, plan: _Plan) -> None:
    """Link matched families and their variants to what the shop already has, writing nothing to the shop.

    There is no pushed state yet, so the next products_to_starweb run for a changed family compares with the
    shop itself; nothing rests on a guess.
    """
    shop = ctx.shop.id
    for chunk in chunked(plan.matched, 500):
        if not ctx.params.dry_run:
            ctx.store.upsert_links(
                [
                    *(
                        Link(
                            shop=shop,
                            entity=VARIANT,
                            key=str(parse_variant_ref(holder.ref)[1]),
                            starweb_id=holder.ref,
                            mamut_key=None,
                            sku=_source_sku(row, holder),
                            content_hash=None,
                            synced_at=None,
                            retired_at=None,
                        )
                        for row, holders in chunk
                        for holder in holders
                        if holder.ref
                    ),
                    *(
                        Link(
                            shop=shop,
                            entity=options.entity,
                            key=row.key,
                            starweb_id=holders[0].key,
                            mamut_key=None,
                            sku=row.key,
                            content_hash=row.content_hash,
                            synced_at=None,
                            retired_at=None,
                        )
                        for row, holders in chunk
                    ),
                ]
            )
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
        prices = _pushed_prices(shop, options)
        shop = shop.model_copy(update={"prices_to_starweb": prices})
        wanted = bool(prices.pricelists)
    else:
        wanted = options.include_stock
    if not wanted:
        return {"skipped": True, "requests": 0}
    skus = _written_skus(ctx, options)
    if skus == ():
        return {"skipped": True, "requests": 0}
    pusher = JOBS[f"{job}_to_starweb"].steps()  # the regular job, as registered
    return pusher.run(replace(ctx, shop=shop, params=replace(ctx.params, skus=skus or ctx.params.skus)))


def _pushed_prices(shop: ShopConfig, options: MigrationOptions) -> PricesToStarwebSettings:
    """The shop's price mappings the run moves: ``include_prices`` keeps the base price's, ``include_price_lists``
    the Mamut price lists'."""
    return shop.prices_to_starweb.model_copy(
        update={
            "pricelists": [
                mapping
                for mapping in shop.prices_to_starweb.pricelists
                if (options.include_prices if mapping.mamut == BASE_PRICE else options.include_price_lists)
            ]
        }
    )


def _written_skus(ctx: JobContext, options: MigrationOptions) -> tuple[str, ...] | None:
    """The SKUs of the families the run's batch created or overwrote (or would have, in a dry run); None when
    that is every family it staged, so the push reads Mamut unfiltered instead of by a list of every SKU."""
    batch = _unfinished_batch(ctx, options)
    if batch is None:
        return ()
    outcomes = set(ctx.store.count_staged(batch.batch_id, options.entity))
    if outcomes and outcomes <= WRITTEN:
        return None
    return tuple(
        variant["sku"]
        for row in ctx.store.iter_staged(batch.batch_id, options.entity)
        if row.verdict in WRITTEN
        for variant in row.payload["variants"]
    )


# ------------------------------------------------------------------------------------------------------ report


def report(
    ctx: JobContext,
    options: MigrationOptions,
    batch_id: str,
    chunk_results: Sequence[Mapping[str, Any]],
    pushed: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """Count the outcomes, write the owner's report file, close the batch; a dry run's batch stays unresumed."""
    store = ctx.store
    batch = store.get_batch(batch_id)
    outcomes = store.count_staged(batch_id, options.entity)
    unsettled = {
        verdict: count
        for verdict, count in outcomes.items()
        if verdict not in SETTLED and not verdict.startswith("would_")
    }
    if unsettled:
        raise RuntimeError(
            f"shop {ctx.shop.id}: batch {batch_id} still has families not dealt with ({unsettled}); "
            "trigger the DAG again to resume it"
        )
    requests = (
        int(batch.counts.get("extract_requests", 0))
        + sum(int(result.get("requests", 0)) for result in chunk_results)
        + sum(int(result.get("requests", 0)) for result in pushed)
    )
    seconds = (ctx.clock() - batch.started_at).total_seconds()
    counts: dict[str, Any] = {
        "direction": options.direction,
        "families": sum(outcomes.values()),
        **dict(sorted(outcomes.items())),
        "requests_this_run": requests,
        "mamut_round_trips_in_load": int(batch.counts.get("loaded_in_extract", {}).get("mamut_round_trips", 0))
        + sum(int(result.get("mamut_round_trips", 0)) for result in chunk_results),
        "seconds_since_start": round(seconds, 1),
    }
    idle = _idle_mappings(ctx, options, batch, outcomes)
    if idle:
        counts["mappings_moving_nothing"] = len(idle)
    counts["report_file"] = str(_write_report_file(ctx, options, batch_id, counts, idle))
    store.finish_batch(batch_id, "dry_run" if ctx.params.dry_run else "done", counts)
    job = "products_to_mamut" if options.direction == "starweb_to_mamut" else "products_to_starweb"
    advance_watermark(ctx, job, batch.started_at)  # the regular job goes on from here
    log.info("%s", format_report(f"shop {ctx.shop.id} · {JOB} · batch {batch_id}", counts, ctx.params))
    return counts


def reports_dir() -> Path:
    """Where the owner finds the reports: $STARMAMUT_REPORTS_DIR, else ``reports/`` beside the Airflow home."""
    configured = os.environ.get("STARMAMUT_REPORTS_DIR")
    if configured:
        return Path(configured)
    return Path(os.environ.get("AIRFLOW_HOME", ".")) / "reports"


def _idle_mappings(ctx: JobContext, options: MigrationOptions, batch: Batch, outcomes: Mapping[str, int]) -> list[str]:
    """Starweb → Mamut: the price-list and stock mapping entries that move no value into the families the run wrote
    (judged only when it wrote some), each logged as a warning: the listing carried nothing for such an entry."""
    if options.direction != "starweb_to_mamut" or not any(outcomes.get(verdict) for verdict in WRITTEN):
        return []
    sources = batch.counts["stock_sources"]
    mappings = [
        *(
            _pricelist_mapping(mapping)
            for mapping in ctx.shop.prices_to_starweb.pricelists
            if mapping.mamut != BASE_PRICE and options.include_price_lists
        ),
        *(source["mapping"] for source in sources.values()),
    ]
    written = (row for row in ctx.store.iter_staged(batch.batch_id, options.entity) if row.verdict in WRITTEN)
    moved = {mapping for mapping, _ in _mamut_values(ctx, options, sources, written)}
    idle = [mapping for mapping in mappings if mapping not in moved]
    for mapping in idle:
        log.warning(
            "shop %s: the %s moves nothing: the shop holds no value for it on any family the run writes "
            "(a wrong id, or an empty price list or stock location)",
            ctx.shop.id,
            mapping,
        )
    return idle


def _write_report_file(
    ctx: JobContext, options: MigrationOptions, batch_id: str, counts: Mapping[str, Any], idle: Sequence[str]
) -> Path:
    """A Markdown report: the counts, the mapping entries that moved nothing, then every family that was not
    migrated, with the reason."""
    store = ctx.store
    path = reports_dir() / ctx.shop.id / f"{JOB}-{options.direction}-{batch_id}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    held: dict[str, list[str]] = {verdict: [] for verdict in ("conflict", "quarantined", "failed", "matched")}
    with path.open("w", encoding="utf-8") as out:
        label = ctx.params.dry_run_label
        title = f"Initial product sync · {ctx.shop.name} (`{ctx.shop.id}`) · {options.direction}"
        out.write(f"# {label + ' · ' if label else ''}{title}\n\n")
        out.write(
            f"Batch `{batch_id}`{f' — {label}: nothing was written' if label else ''}; "
            f"on conflict: {options.on_conflict}.\n\n| outcome | count |\n|---|---|\n"
        )
        for key, value in counts.items():
            out.write(f"| {key} | {value} |\n")
        if idle:
            out.write(
                f"\n## mappings moving nothing ({len(idle)})\n\nThe shop holds no value for these on any "
                "family the run writes: check the id, or fill the price list or stock location in Starweb.\n\n"
            )
            out.write("\n".join(f"- {mapping}" for mapping in idle) + "\n")
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


def _log_progress(
    ctx: JobContext, options: MigrationOptions, batch_id: str, what: str, families: int, started: float
) -> None:
    """Done / total over the whole batch (staged so far, while the extract goes on), the rate of the load that just
    finished and the time left at that rate."""
    outcomes = ctx.store.count_staged(batch_id, options.entity)
    total = sum(outcomes.values())
    done = sum(count for verdict, count in outcomes.items() if verdict in SETTLED or verdict.startswith("would_"))
    elapsed = max(time.monotonic() - started, 1e-9)
    rate = families / elapsed
    log.info(
        "shop %s: %s: %d/%d families (%.0f %%), %.1f families/s, ETA %s",
        ctx.shop.id,
        what,
        done,
        total,
        100 * done / total if total else 100,
        rate,
        _duration((total - done) / rate if rate else 0.0),
    )


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
