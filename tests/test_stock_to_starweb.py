"""stock_to_starweb end to end at job level, and both Mamut → Starweb jobs together in flows erp and combo.

Mamut is seeded as in tests/test_prices_to_starweb.py (one article per demo-shop variant, stock in warehouses
1 and 2); the shop's expected stock is computed here from the seeded numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_FLOOR, Decimal
from typing import Any

import pytest

from starmamut.jobs import prices_to_starweb, products_to_mamut, stock_to_starweb
from starmamut.jobs.common import JobContext
from starmamut.mamut.products import ProductRepository
from starmamut.services.reference import ShopMappingError
from starmamut.staging.store import StagingStore
from starmamut_devtools.sandbox.demo_data import WEB_STOCK_LOCATION_ID
from starmamut_devtools.sandbox.server import RecordedRequest
from tests.fixtures.openapi_contract import assert_request_conforms
from tests.test_prices_to_starweb import (
    MASTER,
    NOT_IN_SHOP_SKU,
    SeededArticle,
    assert_nothing_written,
    cents,
    context_factory,
    crash_load_after_request,
    seed_mamut,
    shop_price_of,
    shop_skus,
)

IN_STOCK, OUT_OF_STOCK, BACKORDER = 1, 2, 3  # the demo shop's stock status ids
STORE = 2  # the demo shop's second stock location (Butik Göteborg)


@pytest.fixture
def make_ctx(sandbox: Any, mamut_db: Any, staging_store: StagingStore) -> Callable[..., JobContext]:
    return context_factory(sandbox, mamut_db, staging_store)


@pytest.fixture
def seeded(sandbox: Any, mamut_db: Any) -> dict[str, SeededArticle]:
    return seed_mamut(mamut_db.gateway, [*shop_skus(sandbox), NOT_IN_SHOP_SKU])


def expected_stock(available: Decimal, *, use_store: bool = True) -> tuple[int, int]:
    """Whole units rounded down, clamped at 0; in stock above 0; a non-stock article is always in stock."""
    if not use_store:
        return 0, IN_STOCK
    quantity = max(int(available.to_integral_value(rounding=ROUND_FLOOR)), 0)
    return quantity, IN_STOCK if quantity > 0 else OUT_OF_STOCK


def shop_stock_of(sandbox: Any, sku: str) -> dict[str, tuple[int, int]]:
    """(quantity, status) of the variant's own stock, and at the store location where it has stock."""
    product_id, variant_id = sandbox.state.find_variant(sku)
    variant = sandbox.state.variant(product_id, variant_id)
    stocks = {row["stockLocationId"]: row for row in sandbox.state.stocks(product_id, variant_id)}
    shown = {"variant": (variant["stockQuantity"], variant["stockStatusId"])}
    if STORE in stocks:
        shown["store"] = (int(stocks[STORE]["stockQuantity"]), stocks[STORE]["stockStatusId"])
    return shown


def assert_shop_stock_matches(sandbox: Any, seeded: dict[str, SeededArticle], skus: list[str]) -> None:
    for sku in skus:
        article = seeded[sku]
        assert shop_stock_of(sandbox, sku) == {
            "variant": expected_stock(article.on_hand[0] - article.reserved, use_store=article.use_store),
            "store": expected_stock(article.on_hand[1], use_store=article.use_store),
        }, sku


def stock_writes(sandbox: Any) -> list[RecordedRequest]:
    return [r for r in sandbox.write_requests() if "/prices/" not in r.path]


def test_first_run_sets_every_stock_and_a_second_run_sends_nothing(make_ctx, sandbox, seeded, staging_store):
    skus = shop_skus(sandbox)
    first = stock_to_starweb.run(make_ctx())

    assert_shop_stock_matches(sandbox, seeded, skus)
    assert (first["read"], first["loaded"], first["not_in_shop"]) == (2 * len(seeded), 2 * len(skus), 1)
    writes = stock_writes(sandbox)
    assert first["write_requests"] == len(writes) == 2 * len(skus)
    assert {request.method for request in writes} == {"PATCH", "PUT"}
    assert_request_conforms(next(request for request in writes if request.method == "PATCH"))
    assert_request_conforms(next(request for request in writes if request.method == "PUT"))
    non_stock = skus[3]  # seeded with use_store off
    assert shop_stock_of(sandbox, non_stock) == {"variant": (0, IN_STOCK), "store": (0, IN_STOCK)}
    assert staging_store.get_ledger("demo", "stock")[(non_stock, "variant")] == f"0|{IN_STOCK}"

    sandbox.reset_requests()
    second = stock_to_starweb.run(make_ctx())
    assert sandbox.write_requests() == []
    assert (second["changed"], second["write_requests"], second["unchanged"]) == (0, 0, 2 * len(skus))


def test_stock_mapped_by_location_ids_only_moves_to_each_location(make_ctx, sandbox, seeded):
    stock = {
        "locations": [{"starweb": WEB_STOCK_LOCATION_ID, "warehouses": [1]}, {"starweb": STORE, "warehouses": [2]}]
    }

    stock_to_starweb.run(make_ctx(stock=stock))

    assert_shop_stock_matches(sandbox, seeded, shop_skus(sandbox))  # the e-commerce location is the variant's stock
    assert {request.path.rsplit("/", 1)[1] for request in stock_writes(sandbox)} == {
        str(WEB_STOCK_LOCATION_ID),
        str(STORE),
    }


def test_backorder_status_and_negative_stock_passed_on(make_ctx, sandbox, seeded, mamut_db):
    skus = shop_skus(sandbox)
    oversold, empty = skus[6], skus[9]
    with mamut_db.gateway.transaction() as tx:
        for sku, on_hand, reserved in ((oversold, Decimal("1"), Decimal("3.5")), (empty, Decimal(0), Decimal(0))):
            tx.update(
                "product_stock",
                {"qty_in_stock": on_hand, "qty_reserved": reserved},
                {"product_key": seeded[sku].product_key, "warehouse_id": 1},
            )
    stock = {
        "locations": [{"starweb": "variant", "warehouses": [1]}],
        "negative": "pass",
        "backorder_status": "backorder",
    }

    stock_to_starweb.run(make_ctx(stock=stock))

    assert shop_stock_of(sandbox, oversold)["variant"] == (-3, BACKORDER)  # -2.5 rounded down
    assert shop_stock_of(sandbox, empty)["variant"] == (0, BACKORDER)


def test_reserved_stock_is_counted_when_the_shop_says_so(make_ctx, sandbox, seeded):
    stock_to_starweb.run(
        make_ctx(stock={"locations": [{"starweb": "variant", "warehouses": [1, 2]}], "subtract_reserved": False})
    )
    for sku in shop_skus(sandbox)[:12]:
        article = seeded[sku]
        assert shop_stock_of(sandbox, sku)["variant"] == expected_stock(
            article.on_hand[0] + article.on_hand[1], use_store=article.use_store
        ), sku


def test_a_quantity_starweb_cannot_hold_is_quarantined_and_the_rest_loads(
    make_ctx, sandbox, seeded, mamut_db, staging_store
):
    huge = shop_skus(sandbox)[0]
    with mamut_db.gateway.transaction() as tx:
        tx.update(
            "product_stock",
            {"qty_in_stock": Decimal("250000000")},
            {"product_key": seeded[huge].product_key, "warehouse_id": 2},
        )

    result = stock_to_starweb.run(make_ctx())

    [entry] = staging_store.open_quarantine("demo", "stock")
    assert entry.key == f"{huge}@location:{STORE}"
    assert entry.reasons[0]["check"] == "quantity_within_starweb_bounds"
    assert "250000000" in entry.reasons[0]["reason"]
    assert (result["quarantined"], result["loaded"]) == (1, 2 * len(shop_skus(sandbox)) - 1)


@pytest.mark.parametrize(
    ("stock", "named"),
    [
        (
            {"locations": [{"starweb": "variant", "warehouses": [1]}, {"starweb": 7, "warehouses": [2]}]},
            "Starweb stock location 7",
        ),
        ({"locations": [{"starweb": "variant", "warehouses": [1, 9]}]}, "unknown Mamut warehouse 9"),
        ({"in_stock_status": "finnsInte"}, "idCode 'finnsInte'"),
        (
            {"locations": [{"starweb": "variant", "warehouses": [1]}, {"starweb": 1, "warehouses": [2]}]},
            "the same Starweb stock twice",
        ),
    ],
)
def test_a_stock_location_status_or_warehouse_missing_stops_the_run_before_anything_is_written(
    make_ctx, sandbox, seeded, staging_store, stock, named
):
    with pytest.raises(ShopMappingError, match=named):
        stock_to_starweb.extract(make_ctx(stock=stock))
    assert_nothing_written(sandbox, staging_store, stock_to_starweb)


def test_a_crash_after_a_stock_request_resends_only_that_value(make_ctx, sandbox, seeded, staging_store, monkeypatch):
    ctx = make_ctx()
    extracted, _ = crash_load_after_request(stock_to_starweb, ctx, monkeypatch)
    recorded = len(staging_store.get_ledger("demo", "stock"))
    assert len(stock_writes(sandbox)) == recorded + 1

    stock_to_starweb.load(ctx, extracted["batch_id"])

    skus = shop_skus(sandbox)
    assert len(stock_writes(sandbox)) == 2 * len(skus) + 1
    assert_shop_stock_matches(sandbox, seeded, skus)


def test_one_changed_price_and_one_changed_stock_level_make_exactly_two_writes(make_ctx, sandbox, seeded, mamut_db):
    prices_to_starweb.run(make_ctx())
    stock_to_starweb.run(make_ctx())
    price_sku, stock_sku = shop_skus(sandbox)[10], shop_skus(sandbox)[11]
    with mamut_db.gateway.transaction() as tx:
        tx.update("product", {"price_out": Decimal("777.70")}, {"sku": price_sku})
        tx.update(
            "product_stock",
            {"qty_in_stock": Decimal(42), "qty_reserved": Decimal(0)},
            {"product_key": seeded[stock_sku].product_key, "warehouse_id": 1},
        )
    sandbox.reset_requests()

    prices = prices_to_starweb.run(make_ctx())
    stock = stock_to_starweb.run(make_ctx())

    writes = sandbox.write_requests()
    assert [(request.method, request.body) for request in writes] == [
        ("PUT", {"pricelistId": MASTER, "priceExVat": 777.7}),
        ("PATCH", {"stockQuantity": 42, "stockStatusId": IN_STOCK}),
    ]
    assert prices["write_requests"] + stock["write_requests"] == 2
    assert shop_price_of(sandbox, price_sku, MASTER) == 777.7
    assert shop_stock_of(sandbox, stock_sku)["variant"] == (42, IN_STOCK)


def test_combo_products_flow_to_mamut_while_prices_and_stock_flow_to_the_shop(make_ctx, sandbox, mamut_db):
    combo = {"prices": {"pricelists": [{"starweb": MASTER, "mamut": "base"}]}, "flow": "combo"}
    products_to_mamut.run(make_ctx(**combo))
    skus = shop_skus(sandbox)
    inactive = {
        variant["sku"]
        for product_id in sandbox.state.product_ids()
        for variant in sandbox.state.list_variants(product_id)
        if not variant["isActive"]
    }
    repriced, restocked = skus[2], next(sku for sku in skus[4:] if sku not in inactive)
    keys = ProductRepository(mamut_db.gateway).keys_by_sku(skus)
    with mamut_db.gateway.transaction() as tx:
        tx.update("product", {"price_out": Decimal("88.8850")}, {"sku": repriced})
        tx.insert_many(
            "product_stock",
            [
                {
                    "product_key": keys[sku],
                    "warehouse_id": 1,
                    "qty_in_stock": Decimal(5 + index),
                    "qty_reserved": Decimal(0),
                    "qty_ordered": Decimal(0),
                }
                for index, sku in enumerate((restocked, *skus[12:15]))
            ],
        )
    mamut_prices = {row["sku"]: row["price_out"] for row in ProductRepository(mamut_db.gateway).iter_articles()}
    sandbox.reset_requests()

    prices = prices_to_starweb.run(make_ctx(**combo))
    stock = stock_to_starweb.run(make_ctx(**combo))

    assert prices["not_in_shop"] == stock["not_in_shop"] == 0  # products_to_mamut linked every variant
    assert not any(request.path == "/products" for request in sandbox.requests), "the shop was searched"
    assert {sku: shop_price_of(sandbox, sku, MASTER) for sku in skus} == {sku: cents(mamut_prices[sku]) for sku in skus}
    assert shop_price_of(sandbox, repriced, MASTER) == 88.89
    assert shop_stock_of(sandbox, restocked)["variant"] == (5, IN_STOCK)
    assert {shop_stock_of(sandbox, sku)["variant"][1] for sku in inactive} == {OUT_OF_STOCK}

    again = products_to_mamut.run(make_ctx(**combo))  # re-reads the products the price and stock jobs touched
    assert again["read"] > 0
    after = {row["sku"]: row["price_out"] for row in ProductRepository(mamut_db.gateway).iter_articles()}
    assert after == mamut_prices, "products_to_mamut overwrote a price Mamut governs"

    sandbox.reset_requests()
    prices_to_starweb.run(make_ctx(**combo))
    stock_to_starweb.run(make_ctx(**combo))
    assert sandbox.write_requests() == []
