"""initial_product_sync end to end at job level, both directions: the sandbox over loopback, the Mamut mock over
ODBC (SQLite and PostgreSQL), real staging.

What the target must hold is derived from the source (the sandbox's state; Mamut through the catalogue reader), from
what the regular product job makes, or from an uninterrupted run on a fresh pair of systems; never written by hand.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from starmamut import failpoints
from starmamut.config import Settings
from starmamut.jobs import (
    initial_product_sync,
    prices_to_starweb,
    products_to_mamut,
    products_to_starweb,
    stock_to_starweb,
)
from starmamut.jobs.common import JobContext
from starmamut.jobs.initial_product_sync import SETTLED, MigrationOptions
from starmamut.mamut.articles import MamutArticle, MamutProductFamily
from starmamut.mamut.catalogue import CatalogueReader
from starmamut.mamut.gateway import MamutGateway
from starmamut.mamut.products import ProductRepository
from starmamut.mamut.schema_map import SchemaMap
from starmamut.services.reference import ShopMappingError
from starmamut.staging.store import StagedRow, StagingStore
from starmamut_devtools.sandbox import Sandbox, start_sandbox
from starmamut_devtools.sandbox.demo_data import SIZE_VALUE_IDS, WEB_STOCK_LOCATION_ID
from tests.fixtures.jobs import sandbox_job_context
from tests.fixtures.mamut import MAMUT_BACKENDS, fresh_mock_database
from tests.test_prices_to_starweb import EURO, EURO_LIST, MASTER, RESELLER, RESELLER_LIST, cents, shop_price_of
from tests.test_products_to_mamut import expected_mamut_skus, mamut_rows
from tests.test_products_to_starweb import assert_shop_matches_mamut, axis_values, families
from tests.test_stock_to_starweb import STORE, expected_stock, shop_stock_of

SHOP = "demo"
JOB = initial_product_sync.JOB
S2M, M2S = "starweb_to_mamut", "mamut_to_starweb"
SEEDS = {S2M: ("demo", "reference"), M2S: ("empty", "demo")}  # (sandbox seed, Mamut seed): a catalogue, no catalogue
FLOWS = {S2M: "ecom", M2S: "erp"}
ENTITIES = {S2M: "product", M2S: "article"}  # the staged entity and id-map entity of each direction
PRICE_SOURCES = {MASTER: "base", RESELLER: RESELLER_LIST, EURO: EURO_LIST}  # Starweb price list -> Mamut source
STOCK_GROUPS = {"variant": [1], "store": [2]}  # as shop_stock_of names them -> Mamut warehouses
PER_PAGE = 6  # the demo shop's 15 products come in three pages (and no product has more than six variants)
CHUNK_SIZE = 3  # five chunks of the demo shop, two of Mamut's demo families


def settings_for(direction: str, **sections: Any) -> Settings:
    """The demo shop's settings for a direction; ``sections`` replace whole sections of the shop (e.g. its stock)."""
    return Settings.model_validate(
        {
            "version": 1,
            "mamut": {"conn_id": "mamut_default", "vat_codes": {25: 1, 12: 2, 6: 3, 0: 4}},
            "shops": {
                SHOP: {
                    "name": "Demo",
                    "flow": FLOWS[direction],
                    "starweb_conn_id": "unused",
                    "products_to_mamut": {"quarantine_threshold": 0.9},
                    "products_to_starweb": {"new_product_visibility": "visible", "quarantine_threshold": 0.9},
                    "prices_to_starweb": {
                        "pricelists": [
                            {"starweb": pricelist, "mamut": source} for pricelist, source in PRICE_SOURCES.items()
                        ]
                    },
                    "stock_to_starweb": {
                        "locations": [
                            {"starweb": "variant", "warehouses": STOCK_GROUPS["variant"]},
                            {"starweb": STORE, "warehouses": STOCK_GROUPS["store"]},
                        ]
                    },
                    **sections,
                }
            },
        }
    )


@dataclass
class Systems:
    """A shop, a Mamut company and a staging store: what one migration runs against."""

    direction: str
    sandbox: Sandbox
    mamut: MamutGateway
    store: StagingStore
    sections: dict[str, Any] = field(default_factory=dict)  # shop sections replacing settings_for's

    def params(self, **overrides: Any) -> dict[str, Any]:
        """The run's Params as the DAG passes them (both RunParams and MigrationOptions read them)."""
        return {"direction": self.direction, "chunk_size": CHUNK_SIZE, **overrides}

    def ctx(self, params: Mapping[str, Any]) -> JobContext:
        return sandbox_job_context(
            settings_for(self.direction, **self.sections), self.sandbox, self.store, self.mamut, params, shop=SHOP
        )

    def migrate(self, **overrides: Any) -> dict[str, Any]:
        params = self.params(**overrides)
        return initial_product_sync.run(self.ctx(params), MigrationOptions.from_mapping(params))


@pytest.fixture
def open_systems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Systems]]:
    """Opens fresh systems seeded for a direction (a sandbox may be shared), all closed after the test."""
    monkeypatch.setenv("STARMAMUT_REPORTS_DIR", str(tmp_path / "reports"))
    with ExitStack() as stack:

        def open_(direction: str, backend: str = "sqlite", *, sandbox: Sandbox | None = None) -> Systems:
            shop_seed, mamut_seed = SEEDS[direction]
            if sandbox is None:
                sandbox = stack.enter_context(start_sandbox(seed=shop_seed, per_page=PER_PAGE))
            odbc = stack.enter_context(fresh_mock_database(backend, tmp_path, seed=mamut_seed))
            gateway = MamutGateway(odbc, SchemaMap.load())
            stack.callback(gateway.close)
            store = StagingStore.from_url(f"sqlite:///{tmp_path / f'staging-{uuid.uuid4().hex[:8]}.db'}")
            store.migrate()
            stack.callback(store.close)
            return Systems(direction, sandbox, gateway, store)

        yield open_


# ------------------------------------------------------------------------------------------- what the target holds


def outcomes(result: Mapping[str, Any]) -> dict[str, Any]:
    """A run's counts without those that differ between two runs of the same work."""
    return {
        key: value
        for key, value in result.items()
        if key not in ("requests_this_run", "mamut_round_trips_in_load", "seconds_since_start", "report_file")
    }


def mamut_tables(gateway: MamutGateway) -> dict[str, list[dict[str, Any]]]:
    """Every article, price-list line and stock row exactly as stored, edit dates included."""
    with gateway.transaction() as transaction:
        return {
            table: sorted(
                transaction.select(table, [column.logical for column in gateway.schema_map.table(table).columns]),
                key=repr,
            )
            for table in ("product", "price_list_line", "product_stock")
        }


def mamut_catalogue(gateway: MamutGateway) -> dict[str, Any]:
    """Articles, price-list lines and stock by SKU, without keys and dates (they differ between two databases
    holding the same catalogue); fails on an article number or a line held twice."""
    rows = mamut_rows(gateway)
    sku_of = {row["product_key"]: sku for sku, row in rows.items()}
    articles = {
        sku: {
            **{
                column: value
                for column, value in row.items()
                if column not in ("product_key", "main_product_key", "reg_date", "edit_date")
            },
            "main_sku": sku_of.get(row["main_product_key"]),
        }
        for sku, row in rows.items()
    }
    with gateway.transaction() as transaction:
        lists = {
            row["price_list_id"]: row["name"] for row in transaction.select("price_list", ["price_list_id", "name"])
        }
        lines = [
            ((sku_of[row["product_key"]], lists[row["price_list_id"]], row["min_qty"]), row["price"])
            for row in transaction.select("price_list_line", ["price_list_id", "product_key", "min_qty", "price"])
        ]
        stock = [
            ((sku_of[row["product_key"]], row["warehouse_id"]), (row["qty_in_stock"], row["qty_reserved"]))
            for row in transaction.select(
                "product_stock", ["product_key", "warehouse_id", "qty_in_stock", "qty_reserved"]
            )
        ]
    assert len(dict(lines)) == len(lines) and len(dict(stock)) == len(stock), "a Mamut value row is held twice"
    return {"articles": articles, "price_list_lines": dict(lines), "stock": dict(stock)}


def shop_variants(sandbox: Sandbox) -> dict[str, tuple[int, dict[str, Any]]]:
    """Every shop variant by SKU, with its product id; fails on a SKU the shop holds twice."""
    listed = [
        (variant["sku"].casefold(), (product_id, variant))
        for product_id in sandbox.state.product_ids()
        for variant in sandbox.state.list_variants(product_id)
    ]
    assert len(dict(listed)) == len(listed), "a SKU is on two shop variants"
    return {variant["sku"]: (product_id, variant) for _, (product_id, variant) in listed}


def shop_catalogue(sandbox: Sandbox) -> dict[frozenset[str], dict[str, Any]]:
    """Every shop product keyed by its SKUs, as the shop shows it, without ids and timestamps (they differ between
    two shops holding the same catalogue); fails on a SKU the shop holds twice."""
    state = sandbox.state
    shop_variants(sandbox)
    catalogue: dict[frozenset[str], dict[str, Any]] = {}
    for product_id in state.product_ids():
        variants: dict[str, Any] = {}
        for listed in state.list_variants(product_id):
            variant = state.variant(product_id, listed["variantId"], ["attributeValues.attribute"])
            variants[variant["sku"]] = {
                **{
                    field: value
                    for field, value in variant.items()
                    if field not in ("variantId", "attributeValueLinks", "attributeValues")
                },
                "axes": axis_values(variant),
                "prices": state.prices(product_id, listed["variantId"], volume=True),
                "stocks": state.stocks(product_id, listed["variantId"]),
            }
        product = {
            field: value
            for field, value in state.product(product_id).items()
            if field not in ("productId", "createdAt", "modifiedAt")
        }
        catalogue[frozenset(variants)] = {**product, "languages": state.languages(product_id), "variants": variants}
    return catalogue


def sellable_skus(gateway: MamutGateway) -> set[str]:
    """What Mamut sells: each family's variants, or the main article of a family without variants."""
    return {article.sku for family in families(gateway).values() for article in (family.variants or (family.main,))}


def assert_mamut_holds_the_shop(systems: Systems, articles_by_products_to_mamut: dict[str, Any]) -> None:
    """Articles as products_to_mamut makes them; base price = master price; each mapped list's lines = the shop's
    prices of that list; stock in the mapped warehouse = the variant's stockQuantity."""
    sandbox, mamut = systems.sandbox, systems.mamut
    assert set(mamut_rows(mamut)) == expected_mamut_skus(sandbox)
    assert mamut_catalogue(mamut)["articles"] == articles_by_products_to_mamut
    reader = CatalogueReader(mamut)
    variants = shop_variants(sandbox)
    assert {(row.sku, row.source): row.price for row in reader.iter_prices(list(PRICE_SOURCES.values()))} == {
        (sku, source): Decimal(str(shop_price_of(sandbox, sku, pricelist)))
        for sku in variants
        for pricelist, source in PRICE_SOURCES.items()
    }
    assert {
        row.sku: row.on_hand for row in reader.iter_stock({"variant": STOCK_GROUPS["variant"]}, subtract_reserved=False)
    } == {sku: Decimal(str(variant["stockQuantity"])) for sku, (_, variant) in variants.items()}


def assert_shop_holds_mamut(sandbox: Sandbox, mamut: MamutGateway) -> None:
    """One shop product per Mamut family with its SKUs and values, each mapped price list's price and the stock of
    each mapped warehouse group, as the catalogue reader reads them."""
    assert_shop_matches_mamut(sandbox, mamut)
    assert set(shop_catalogue(sandbox)) == {
        frozenset(article.sku for article in (family.variants or (family.main,))) for family in families(mamut).values()
    }
    reader = CatalogueReader(mamut)
    expected_prices = {
        (row.sku, pricelist): cents(row.price)
        for row in reader.iter_prices(list(PRICE_SOURCES.values()))
        for pricelist, source in PRICE_SOURCES.items()
        if source == row.source
    }
    assert {sku for sku, _ in expected_prices} == sellable_skus(mamut)
    assert {key: shop_price_of(sandbox, *key) for key in expected_prices} == expected_prices
    expected_stocks: dict[str, dict[str, tuple[int, int]]] = {}
    for row in reader.iter_stock(STOCK_GROUPS):
        expected_stocks.setdefault(row.sku, {})[row.group] = expected_stock(row.on_hand, use_store=row.use_store)
    assert {sku: shop_stock_of(sandbox, sku) for sku in expected_stocks} == expected_stocks


def writes_to(sandbox: Sandbox, product_id: int) -> list[tuple[str, str]]:
    """Write requests on one shop product or anything under it."""
    return [
        (request.method, request.path)
        for request in sandbox.write_requests()
        if request.path == f"/products/{product_id}" or request.path.startswith(f"/products/{product_id}/")
    ]


def write_kinds(sandbox: Sandbox) -> list[tuple[str, str]]:
    """Every write request as (method, path with product and variant ids left out): two shops given the same
    catalogue number their products in whatever order the concurrent creates arrive."""
    return sorted(
        (request.method, re.sub(r"/(products|variants)/\d+", r"/\1/{id}", request.path))
        for request in sandbox.write_requests()
    )


def page_reads(sandbox: Sandbox, since: int = 0) -> int:
    """Catalogue listing pages read (GET /products), not counting single products or variant listings."""
    return sum(1 for request in sandbox.requests[since:] if request.method == "GET" and request.path == "/products")


def crash(systems: Systems, failpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the migration with a fail point armed until it fires; return the batch the crash left unfinished."""
    monkeypatch.setenv("STARMAMUT_FAILPOINT", failpoint)
    try:
        with pytest.raises(failpoints.SimulatedCrash):
            systems.migrate()
    finally:
        monkeypatch.delenv("STARMAMUT_FAILPOINT")
        failpoints._passes.clear()
    (batch,) = systems.store.latest_batches(SHOP, JOB)
    assert batch.status == "running"
    return batch.batch_id


def assert_resumes(systems: Systems, batch_id: str) -> None:
    """Triggered again with the same options, the run takes up the unfinished batch instead of starting one."""
    params = systems.params()
    assert initial_product_sync.start(systems.ctx(params), MigrationOptions.from_mapping(params)) == {
        "batch_id": batch_id,
        "resumed": True,
    }


def assert_one_finished_batch(systems: Systems, batch_id: str) -> None:
    assert [(batch.batch_id, batch.status) for batch in systems.store.latest_batches(SHOP, JOB)] == [(batch_id, "done")]


# ------------------------------------------------------------------------------------------------ pre-existing data


def add_matching_shop_product(sandbox: Sandbox) -> int:
    """A shop product with exactly the SKU of Mamut's MUGG-ORE (spelt in lower case), under another name."""
    return sandbox.state.add_product(
        {
            "visibility": "visible",
            "defaultVatRate": "25",
            "languages": [{"langCode": "sv", "name": "Gammal mugg"}],
            "variants": [{"sku": "mugg-ore", "attributeValueLinks": []}],
        }
    )["productId"]


def add_matching_mamut_article(systems: Systems) -> str:
    """A Mamut article with exactly the SKU of the shop's first (single-variant) product, under another name;
    returns the product's id (its family's key)."""
    product_id = systems.sandbox.state.product_ids()[0]
    (variant,) = systems.sandbox.state.list_variants(product_id)
    ProductRepository(systems.mamut).upsert_family(
        MamutProductFamily(MamutArticle(sku=variant["sku"], name="Gammal artikel", vat_code=1, price_out=Decimal(1))),
        update_price=True,
        now=datetime.now(UTC),
    )
    return str(product_id)


def read_report(result: Mapping[str, Any]) -> str:
    return Path(result["report_file"]).read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("backend", MAMUT_BACKENDS)
def test_starweb_to_mamut_makes_mamut_equal_to_the_shop_and_a_second_run_changes_nothing(open_systems, backend) -> None:
    systems = open_systems(S2M, backend)
    products = len(systems.sandbox.state.product_ids())

    first = systems.migrate()

    assert outcomes(first) == {"direction": S2M, "families": products, "created": products}
    regular = open_systems(S2M, backend, sandbox=systems.sandbox)  # the same shop into a second, empty Mamut
    products_to_mamut.run(regular.ctx({}))
    assert_mamut_holds_the_shop(systems, mamut_catalogue(regular.mamut)["articles"])
    assert len(systems.store.get_links(SHOP, "product")) == products
    assert systems.sandbox.write_requests() == []

    stored = mamut_tables(systems.mamut)
    second = systems.migrate()

    assert outcomes(second) == {"direction": S2M, "families": products, "unchanged": products}
    assert mamut_tables(systems.mamut) == stored, "not even an edit date moved"
    assert products_to_mamut.run(systems.ctx({}))["changed"] == 0, "the regular job finds nothing to do"


@pytest.mark.parametrize("backend", MAMUT_BACKENDS)
def test_mamut_to_starweb_makes_the_shop_equal_to_mamut_and_a_second_run_sends_nothing(open_systems, backend) -> None:
    systems = open_systems(M2S, backend)
    family_count = len(families(systems.mamut))

    first = systems.migrate()

    assert outcomes(first) == {"direction": M2S, "families": family_count, "created": family_count}
    assert len(systems.sandbox.state.product_ids()) == family_count
    assert_shop_holds_mamut(systems.sandbox, systems.mamut)
    assert len(systems.store.get_links(SHOP, "article")) == family_count

    sent = len(systems.sandbox.write_requests())
    second = systems.migrate()

    assert outcomes(second) == {"direction": M2S, "families": family_count, "unchanged": family_count}
    for job in (products_to_starweb, prices_to_starweb, stock_to_starweb):
        job.run(systems.ctx({}))
    assert len(systems.sandbox.write_requests()) == sent, "neither a second run nor the regular jobs send a write"


def test_progress_is_logged_with_done_total_rate_and_eta_and_the_report_counts_the_requests(
    open_systems, caplog
) -> None:
    systems = open_systems(S2M)
    caplog.set_level(logging.INFO, logger="starmamut.jobs.initial_product_sync")

    result = systems.migrate()

    lines = [record.getMessage() for record in caplog.records]
    pages = [line for line in lines if re.search(r"extract: page \d+/\d+ \([\d.]+/s, ETA \d+m\d\ds\)", line)]
    assert len(pages) == page_reads(systems.sandbox) == -(-len(systems.sandbox.state.product_ids()) // PER_PAGE)
    loads = [
        re.search(
            r"(chunk \d+/\d+ done|loaded behind the extract): (\d+)/(\d+) families \(\d+ %\), [\d.]+ families/s, ETA",
            line,
        )
        for line in lines
    ]
    done = [(int(m[2]), int(m[3])) for m in loads if m]
    families = result["families"]
    assert len(done) >= 2, "the families are loaded a chunk at a time, each logged"
    assert [count for count, _ in done] == sorted(count for count, _ in done)
    assert done[-1] == (families, families)
    assert result["requests_this_run"] == len(systems.sandbox.requests), "the report counts every request sent"
    assert f"| requests_this_run | {len(systems.sandbox.requests)} |" in read_report(result)


def test_mamut_to_starweb_moves_only_the_values_the_include_params_ask_for(open_systems) -> None:
    systems = open_systems(M2S)

    systems.migrate(include_prices=True, include_price_lists=False, include_stock=False)

    reader = CatalogueReader(systems.mamut)
    base = {row.sku: cents(row.price) for row in reader.iter_prices(["base"])}
    assert base and {sku: shop_price_of(systems.sandbox, sku, MASTER) for sku in base} == base
    for pricelist in (RESELLER, EURO):
        assert {shop_price_of(systems.sandbox, sku, pricelist) for sku in base} == {0}, "price lists left out"
    shown = [shop_stock_of(systems.sandbox, sku) for sku in base]
    assert all(stock["variant"][0] in (None, 0) and "store" not in stock for stock in shown), "stock left out"
    written = {
        (request.method, re.sub(r"\d+", "{id}", request.path))
        for request in systems.sandbox.write_requests()
        if not request.path.startswith("/product-attributes")
    }  # the variant values the shop lacked
    assert written == {("POST", "/products"), ("PUT", "/products/{id}/variants/{id}/prices/{id}")}
    assert {
        int(request.path.rsplit("/", 1)[1])
        for request in systems.sandbox.write_requests()
        if "/prices/" in request.path
    } == {MASTER}


@pytest.mark.parametrize("backend", MAMUT_BACKENDS)
@pytest.mark.parametrize(
    "failpoint",
    [
        "initial_product_sync.after_page@2",
        # the load runs behind the extract, so a crash in it stops the extract too
        "initial_product_sync.after_settle@2",
        "products_to_mamut.after_mamut_commit@3",
    ],
)
def test_starweb_to_mamut_killed_midway_resumes_to_the_state_of_an_uninterrupted_run(
    open_systems, monkeypatch, backend, failpoint
) -> None:
    uninterrupted = open_systems(S2M, backend)
    expected = uninterrupted.migrate()
    killed = open_systems(S2M, backend)
    batch_id = crash(killed, failpoint, monkeypatch)
    progress = killed.store.get_batch(batch_id).counts
    settled = [row.key for row in killed.store.iter_staged(batch_id, "product") if row.verdict in SETTLED]
    written = mamut_rows(killed.mamut)
    sent = len(killed.sandbox.requests)

    assert_resumes(killed, batch_id)
    resumed = killed.migrate()

    assert outcomes(resumed) == outcomes(expected)
    assert_one_finished_batch(killed, batch_id)
    assert mamut_catalogue(killed.mamut) == mamut_catalogue(uninterrupted.mamut)
    assert len(mamut_rows(killed.mamut)) == len(mamut_rows(uninterrupted.mamut)), "no article twice"
    assert {sku: row for sku, row in mamut_rows(killed.mamut).items() if sku in written} == written, (
        "nothing written before the crash is written again"
    )
    assert progress["phase"] == "extract"
    assert (
        page_reads(killed.sandbox, sent)
        == page_reads(uninterrupted.sandbox) - progress["pages_done"] + 1
        < page_reads(uninterrupted.sandbox)
    ), "only the page in progress and the unread ones are read"
    if "after_page" not in failpoint:
        assert settled, "the families of the pages read before the crash were loaded behind the extract"


def test_restart_abandons_the_unfinished_run_and_still_duplicates_nothing(open_systems, monkeypatch) -> None:
    uninterrupted = open_systems(S2M)
    uninterrupted.migrate()
    killed = open_systems(S2M)
    batch_id = crash(killed, "initial_product_sync.after_settle@2", monkeypatch)
    moved = {row.key for row in killed.store.iter_staged(batch_id, "product") if row.verdict == "created"}

    restarted = killed.migrate(restart=True)

    assert killed.store.get_batch(batch_id).status == "abandoned"
    (latest, abandoned) = killed.store.latest_batches(SHOP, JOB, limit=2)
    assert abandoned.batch_id == batch_id and latest.batch_id != batch_id and latest.status == "done"
    assert moved and restarted["unchanged"] == len(moved), "what the abandoned run moved is found linked"
    assert restarted["created"] == restarted["families"] - len(moved)
    assert mamut_catalogue(killed.mamut) == mamut_catalogue(uninterrupted.mamut)


@pytest.mark.parametrize("backend", MAMUT_BACKENDS)
@pytest.mark.parametrize(
    "failpoint", ["initial_product_sync.after_settle@1", "products_to_starweb.after_starweb_create@4"]
)
def test_mamut_to_starweb_killed_midway_resumes_to_the_state_of_an_uninterrupted_run(
    open_systems, monkeypatch, backend, failpoint
) -> None:
    uninterrupted = open_systems(M2S, backend)
    expected = uninterrupted.migrate()
    killed = open_systems(M2S, backend)
    batch_id = crash(killed, failpoint, monkeypatch)

    assert_resumes(killed, batch_id)
    resumed = killed.migrate()

    assert outcomes(resumed) == outcomes(expected)
    assert_one_finished_batch(killed, batch_id)
    assert shop_catalogue(killed.sandbox) == shop_catalogue(uninterrupted.sandbox)
    created = [request for request in killed.sandbox.write_requests() if request.path == "/products"]
    assert len(created) == len(families(killed.mamut)), "no product created twice"
    assert write_kinds(killed.sandbox) == write_kinds(uninterrupted.sandbox), (
        "the killed and the resumed run together send what one run sends"
    )


@pytest.mark.parametrize("backend", MAMUT_BACKENDS)
@pytest.mark.parametrize("on_conflict", ["link_and_skip", "overwrite", "report_only"])
def test_mamut_to_starweb_links_overwrites_or_lists_a_matching_shop_product_and_quarantines_conflicts(
    open_systems, backend, on_conflict
) -> None:
    systems = open_systems(M2S, backend)
    state = systems.sandbox.state
    mugg = add_matching_shop_product(systems.sandbox)
    tshirt = state.add_product(
        {
            "visibility": "visible",
            "languages": [{"langCode": "sv", "name": "T-shirt"}],
            "variants": [
                {"sku": sku, "attributeValueLinks": [SIZE_VALUE_IDS[size]]}
                for sku, size in (("TS-BAS-S", "S"), ("TS-BAS-M", "M"))
            ],
        }
    )["productId"]
    ProductRepository(systems.mamut).upsert_family(  # Mamut's KASSE-ARE in other letters: one SKU on two families
        MamutProductFamily(MamutArticle(sku="kasse-are", name="Tygkasse liten", vat_code=1, price_out=Decimal(9))),
        update_price=True,
        now=datetime.now(UTC),
    )
    mugg_before = shop_catalogue(systems.sandbox)[frozenset({"mugg-ore"})]
    new_families = len(families(systems.mamut)) - 4  # MUGG-ORE matches; TS-BAS, KASSE-ARE and kasse-are conflict

    result = systems.migrate(on_conflict=on_conflict)

    verdict = {"link_and_skip": "linked", "overwrite": "updated", "report_only": "matched"}[on_conflict]
    assert outcomes(result) == {
        "direction": M2S,
        "families": new_families + 4,
        "created": new_families,
        verdict: 1,
        "conflict": 3,
    }
    quarantined = {entry.key: entry.reasons for entry in systems.store.open_quarantine(SHOP, "article")}
    assert set(quarantined) == {"TS-BAS", "KASSE-ARE", "kasse-are"}
    assert all(reason["check"] == "sku_conflict" for reasons in quarantined.values() for reason in reasons)
    assert "a different variant structure" in quarantined["TS-BAS"][0]["reason"]
    assert "one SKU on two products" in quarantined["KASSE-ARE"][0]["reason"]
    report = read_report(result)
    assert "## conflict (3)" in report
    assert all(f"| {key} | {reasons[0]['reason']} |" in report for key, reasons in quarantined.items())
    assert writes_to(systems.sandbox, tshirt) == [], "a product in conflict is left alone"
    assert {sku.casefold() for sku in shop_variants(systems.sandbox)} == {
        sku.casefold() for sku in sellable_skus(systems.mamut) - {"TS-BAS-L", "KASSE-ARE", "kasse-are"}
    }, "every SKU once, nothing duplicated, nothing of a family in conflict loaded"
    assert len(state.product_ids()) == 2 + new_families
    link = systems.store.get_links(SHOP, "article").get("MUGG-ORE")
    if on_conflict == "overwrite":
        assert link is not None and link.starweb_id == str(mugg)
        assert state.language(mugg, "sv")["name"] == "Kaffemugg Örebro"
        assert shop_price_of(systems.sandbox, "MUGG-ORE", RESELLER) == 55.44
        assert shop_variants(systems.sandbox)["mugg-ore"][0] == mugg, "the shop's spelling of the SKU stays"
    else:
        assert writes_to(systems.sandbox, mugg) == [], "a matched product is left as it is"
        assert shop_catalogue(systems.sandbox)[frozenset({"mugg-ore"})] == mugg_before
        assert (link is not None and link.starweb_id == str(mugg)) is (on_conflict == "link_and_skip")
    assert ("## matched (1)" in report and "| MUGG-ORE | exists as target product" in report) is (
        on_conflict == "report_only"
    )


@pytest.mark.parametrize("backend", MAMUT_BACKENDS)
@pytest.mark.parametrize("on_conflict", ["link_and_skip", "overwrite", "report_only"])
def test_starweb_to_mamut_links_overwrites_or_lists_a_matching_mamut_article_and_quarantines_conflicts(
    open_systems, backend, on_conflict
) -> None:
    systems = open_systems(S2M, backend)
    state = systems.sandbox.state
    matched = add_matching_mamut_article(systems)
    several = next(product_id for product_id in state.product_ids() if len(state.list_variants(product_id)) > 2)
    shop_skus = [variant["sku"] for variant in state.list_variants(several)]
    ProductRepository(systems.mamut).upsert_family(
        MamutProductFamily(  # two of the product's variants only
            main=MamutArticle(sku="EGEN-FAMILJ", name="Egen familj", vat_code=1, variant_axes=("Storlek", None)),
            variants=tuple(
                MamutArticle(sku=sku, name=sku, vat_code=1, main_sku="EGEN-FAMILJ", variant_values=(sku, None))
                for sku in shop_skus[:2]
            ),
        ),
        update_price=True,
        now=datetime.now(UTC),
    )
    before = mamut_tables(systems.mamut)
    products = len(state.product_ids())

    result = systems.migrate(on_conflict=on_conflict)

    verdict = {"link_and_skip": "linked", "overwrite": "updated", "report_only": "matched"}[on_conflict]
    assert outcomes(result) == {
        "direction": S2M,
        "families": products,
        "created": products - 2,
        verdict: 1,
        "conflict": 1,
    }
    (entry,) = systems.store.open_quarantine(SHOP, "product")
    assert (entry.key, entry.reasons[0]["check"]) == (str(several), "sku_conflict")
    assert (
        f"shop product {several} has SKUs {', '.join(sorted(shop_skus))}; Mamut family EGEN-FAMILJ has"
        in entry.reasons[0]["reason"]
    )
    assert f"| {several} | {entry.reasons[0]['reason']} |" in read_report(result)
    rows = mamut_rows(systems.mamut)
    assert not set(shop_skus[2:]) & set(rows) and f"SW-{several}" not in rows, "a family in conflict is not loaded"
    assert set(rows) == expected_mamut_skus(systems.sandbox) - set(shop_skus) - {f"SW-{several}"} | {
        "EGEN-FAMILJ",
        *shop_skus[:2],
    }, "every SKU once, nothing duplicated"
    (sku,) = (variant["sku"] for variant in state.list_variants(int(matched)))
    link = systems.store.get_links(SHOP, "product").get(matched)
    if on_conflict == "overwrite":
        assert link is not None and link.mamut_key == str(rows[sku]["product_key"])
        assert rows[sku]["name"] == state.language(int(matched), "sv")["name"]
        assert rows[sku]["price_out"] == Decimal(str(shop_price_of(systems.sandbox, sku, MASTER)))
    else:
        before_rows = {row["sku"]: row for row in before["product"]}
        assert {sku: row for sku, row in rows.items() if sku in before_rows} == before_rows, "Mamut is left as it is"
        assert sku not in {line_sku for line_sku, _, _ in mamut_catalogue(systems.mamut)["price_list_lines"]}
        assert (link is not None and link.mamut_key == str(rows[sku]["product_key"])) is (
            on_conflict == "link_and_skip"
        )


def test_starweb_to_mamut_links_a_family_mamut_holds_under_its_own_main_article_number(open_systems) -> None:
    systems = open_systems(S2M, "sqlite")
    state = systems.sandbox.state
    several = next(product_id for product_id in state.product_ids() if len(state.list_variants(product_id)) > 2)
    shop_skus = [variant["sku"] for variant in state.list_variants(several)]
    ProductRepository(systems.mamut).upsert_family(
        MamutProductFamily(  # every variant, under Mamut's own main
            main=MamutArticle(sku="EGEN-HEL", name="Egen familj", vat_code=1, variant_axes=("Storlek", None)),
            variants=tuple(
                MamutArticle(sku=sku, name=sku, vat_code=1, main_sku="EGEN-HEL", variant_values=(sku, None))
                for sku in shop_skus
            ),
        ),
        update_price=True,
        now=datetime.now(UTC),
    )

    result = systems.migrate(on_conflict="link_and_skip")

    assert result["linked"] == 1 and "conflict" not in result
    rows = mamut_rows(systems.mamut)
    assert f"SW-{several}" not in rows, "no second main article for a family Mamut already has"
    link = systems.store.get_links(SHOP, "product")[str(several)]
    assert (link.sku, link.mamut_key) == ("EGEN-HEL", str(rows["EGEN-HEL"]["product_key"]))
    variant_links = {item.sku: item.mamut_key for item in systems.store.get_links(SHOP, "variant").values()}
    assert {sku: variant_links[sku] for sku in shop_skus} == {sku: str(rows[sku]["product_key"]) for sku in shop_skus}


def test_starweb_to_mamut_moves_stock_mapped_by_location_id_and_reports_a_mapping_that_moves_nothing(
    open_systems, caplog
) -> None:
    systems = open_systems(S2M)
    state = systems.sandbox.state
    empty = state.seed_stock_location({"languages": [{"langCode": "sv", "name": "Tomt lager"}]})  # no stock in it
    with systems.mamut.transaction() as transaction:
        transaction.insert_many("warehouse", [{"warehouse_id": 3, "description": "Reservlager"}])
    idle = f"stock_to_starweb.locations entry {{starweb: {empty}, warehouses: [3]}}"
    systems.sections = {
        "stock_to_starweb": {
            "locations": [
                {"starweb": WEB_STOCK_LOCATION_ID, "warehouses": [1]},  # the e-commerce location, by its id
                {"starweb": STORE, "warehouses": [2]},
                {"starweb": empty, "warehouses": [3]},
            ]
        }
    }
    caplog.set_level(logging.WARNING, logger="starmamut.jobs.initial_product_sync")

    result = systems.migrate()

    variants = shop_variants(systems.sandbox)
    expected = {(sku, 1): Decimal(str(variant["stockQuantity"])) for sku, (_, variant) in variants.items()}
    expected.update(
        {
            (sku, 2): Decimal(str(stock["stockQuantity"]))
            for sku, (product_id, variant) in variants.items()
            for stock in state.stocks(product_id, variant["variantId"])
            if stock["stockLocationId"] == STORE
        }
    )
    assert len(expected) > len(variants), "the demo shop has store stock"
    assert {key: on_hand for key, (on_hand, _) in mamut_catalogue(systems.mamut)["stock"].items()} == expected
    stock_reads = [request.path for request in systems.sandbox.requests if "/stocks" in request.path]
    assert sorted(stock_reads) == sorted(
        f"/products/{product_id}/variants/{variant['variantId']}/stocks" for product_id, variant in variants.values()
    ), "one read per variant"
    assert result["mappings_moving_nothing"] == 1
    assert [record.levelno for record in caplog.records if idle in record.getMessage()] == [logging.WARNING]
    assert f"- {idle}" in read_report(result)


def test_mamut_to_starweb_moves_stock_mapped_by_location_id_with_the_variants_own_stock_inline(open_systems) -> None:
    systems = open_systems(M2S)
    systems.sections = {
        "stock_to_starweb": {
            "locations": [{"starweb": WEB_STOCK_LOCATION_ID, "warehouses": [1]}, {"starweb": STORE, "warehouses": [2]}]
        }
    }

    systems.migrate()

    assert_shop_holds_mamut(systems.sandbox, systems.mamut)
    writes = systems.sandbox.write_requests()
    assert not any(request.path.endswith(f"/stocks/{WEB_STOCK_LOCATION_ID}") for request in writes), (
        "a new variant carries the e-commerce location's stock in its create request"
    )
    stock_to_starweb.run(systems.ctx({}))
    assert len(systems.sandbox.write_requests()) == len(writes), "the regular job finds nothing to send"


def test_mamut_to_starweb_refuses_an_inactive_price_list_before_writing_anything(open_systems) -> None:
    systems = open_systems(M2S)
    inactive = systems.sandbox.state.add_pricelist({"name": "Kampanj", "currencyCode": "SEK"})["pricelistId"]
    systems.sections = {
        "prices_to_starweb": {
            "pricelists": [{"starweb": MASTER, "mamut": "base"}, {"starweb": inactive, "mamut": RESELLER_LIST}]
        }
    }

    with pytest.raises(ShopMappingError, match=rf"Starweb price list {inactive} \(Kampanj\) is inactive"):
        systems.migrate()
    assert systems.sandbox.write_requests() == []

    result = systems.migrate(include_price_lists=False)  # the inactive list is not pushed to: the run goes on
    assert result["created"] == len(families(systems.mamut))
    assert not any(f"/prices/{inactive}" in request.path for request in systems.sandbox.write_requests())


@pytest.mark.parametrize("backend", MAMUT_BACKENDS)
@pytest.mark.parametrize("direction", [S2M, M2S])
def test_a_dry_run_writes_nothing_and_counts_exactly_what_a_real_run_then_does(
    open_systems, backend, direction
) -> None:
    systems = open_systems(direction, backend)
    if direction == S2M:
        add_matching_mamut_article(systems)
    else:
        add_matching_shop_product(systems.sandbox)
    stored = mamut_tables(systems.mamut)
    shop_before = shop_catalogue(systems.sandbox)

    dry = systems.migrate(dry_run=True)

    assert systems.sandbox.write_requests() == []
    assert mamut_tables(systems.mamut) == stored and shop_catalogue(systems.sandbox) == shop_before
    for entity in ("product", "article", "variant"):
        assert systems.store.get_links(SHOP, entity) == {}
    assert systems.store.get_watermark(SHOP, "products_to_mamut" if direction == S2M else "products_to_starweb") is None
    assert "DRY RUN: nothing was written" in read_report(dry)
    assert dry["would_linked"] == 1 and dry["would_created"] == dry["families"] - 1

    real = systems.migrate()

    assert (real["created"], real["linked"]) == (dry["would_created"], dry["would_linked"])
    assert [batch.status for batch in systems.store.latest_batches(SHOP, JOB)] == ["done", "dry_run"], (
        "the real run started afresh instead of taking up the dry run's batch"
    )
    assert len(systems.store.get_links(SHOP, ENTITIES[direction])) == dry["families"]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({}, "direction"),
        ({"direction": "sideways"}, "direction"),
        ({"direction": S2M, "on_conflict": "merge"}, "on_conflict"),
        ({"direction": M2S, "chunk_size": 0}, "chunk_size"),
        ({"direction": M2S, "chunk_size": "100"}, "chunk_size"),
    ],
)
def test_bad_params_are_refused_naming_the_param(params, named) -> None:
    with pytest.raises(ValueError, match=rf"^Param '{named}': expected .*, got {params.get(named)!r}"):
        MigrationOptions.from_mapping(params)


def test_the_load_behind_the_extract_waits_when_it_is_more_than_a_chunk_behind(open_systems, monkeypatch) -> None:
    """The extract hands chunks to the loader and reads on, but not without bound: once two chunks wait behind the
    one loading it waits too, so the rows held in memory stay a few chunks whatever the Mamut's speed."""
    systems = open_systems(S2M)
    params = systems.params(chunk_size=1)
    ctx, options = systems.ctx(params), MigrationOptions.from_mapping(params)
    batch_id = initial_product_sync.start(ctx, options)["batch_id"]
    release, loading = threading.Event(), []

    def slow_migrate(_ctx: JobContext, _options: MigrationOptions, _batch_id: str, rows: list[StagedRow]) -> int:
        loading.append(rows[0].key)
        assert release.wait(10)
        return 0

    monkeypatch.setattr(initial_product_sync, "_migrate", slow_migrate)
    added: list[str] = []
    with initial_product_sync._LoadBehind(ctx, options, batch_id) as loader:

        def extract() -> None:
            for key in "123456":
                loader.add([StagedRow(key=key, payload={}, content_hash=key)])
                added.append(key)

        extracting = threading.Thread(target=extract)
        extracting.start()
        extracting.join(timeout=2)
        assert extracting.is_alive(), "the extract waits for the loader"
        assert (loading, added) == (["1"], ["1", "2"]), "one chunk loading, two waiting, the third add held"
        release.set()
        extracting.join(timeout=10)
    assert loading == list("123456")
