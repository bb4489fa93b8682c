"""prices_to_starweb end to end at job level: Mamut mock over ODBC, sandbox over loopback, real staging.

Mamut is seeded with an article for every variant of the sandbox's demo shop (plus one the shop does not
sell), with a sales price, a reseller and a euro price list line each, and stock in two warehouses. What the
shop must hold afterwards is computed here from those seeds, not by the job's own mapping.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from types import ModuleType
from typing import Any

import pytest

from starmamut.config import Settings
from starmamut.failpoints import SimulatedCrash
from starmamut.jobs import prices_to_starweb
from starmamut.jobs.common import JobContext, QualityGateFailed
from starmamut.mapping.prices_stock import (
    StockStatusIds,
    price_request,
    shop_price,
    shop_stock,
    stock_request,
)
from starmamut.services.ledger import LEDGER_FLUSH
from starmamut.services.reference import ShopMappingError
from starmamut.staging.store import StagingStore
from starmamut.starweb.client import StarwebClient
from starmamut.starweb.errors import StarwebError
from starmamut_devtools.sandbox.server import RecordedRequest
from tests.fixtures.jobs import sandbox_job_context
from tests.fixtures.openapi_contract import assert_request_conforms

MASTER, RESELLER, EURO = 1, 2, 3
RESELLER_LIST, EURO_LIST = "Återförsäljare SEK", "Euro EUR"
PRICES = {
    "pricelists": [
        {"starweb": MASTER, "mamut": "base"},
        {"starweb": RESELLER, "mamut": RESELLER_LIST},
        {"starweb": EURO, "mamut": EURO_LIST},
    ]
}
STOCK = {"locations": [{"starweb": "variant", "warehouses": [1]}, {"starweb": 2, "warehouses": [2]}]}
NOT_IN_SHOP_SKU = "ENDAST-MAMUT"
CENT = Decimal("0.01")


@dataclass(frozen=True)
class SeededArticle:
    """One Mamut article as seeded: what the shop should show is derived from these numbers."""

    sku: str
    product_key: int
    price_out: Decimal
    reseller: Decimal
    euro: Decimal
    on_hand: tuple[Decimal, Decimal]  # warehouses 1 and 2
    reserved: Decimal  # in warehouse 1
    use_store: bool


def shop_skus(sandbox: Any) -> list[str]:
    return [
        variant["sku"]
        for product_id in sandbox.state.product_ids()
        for variant in sandbox.state.list_variants(product_id)
    ]


def seed_mamut(gateway: Any, skus: list[str], *, lines: bool = True) -> dict[str, SeededArticle]:
    """An article per SKU (prices with 4 decimals, one on a half cent), price-list lines and stock rows."""
    rows = [
        {
            "sku": sku,
            "name": f"Artikel {sku}",
            "vat_code": 1,
            "price_out": Decimal(f"{40 + index * 7}.{(index * 1237) % 10000:04d}"),
            "use_store": index != 3,
        }
        for index, sku in enumerate(skus)
    ]
    rows[0]["price_out"] = Decimal("99.9950")  # rounds half up to 100.00
    with gateway.transaction() as tx:
        tx.insert_many("product", rows)
        keys = {row["sku"]: row["product_key"] for row in tx.select("product", ["sku", "product_key"])}
        list_ids = {row["name"]: row["price_list_id"] for row in tx.select("price_list", ["name", "price_list_id"])}
    seeded: dict[str, SeededArticle] = {}
    for index, row in enumerate(rows):
        seeded[row["sku"]] = SeededArticle(
            sku=row["sku"],
            product_key=keys[row["sku"]],
            price_out=row["price_out"],
            reseller=(row["price_out"] * Decimal("0.7")).quantize(Decimal("0.0001")),
            euro=(row["price_out"] / 11).quantize(Decimal("0.0001")),
            on_hand=(Decimal(index % 9) + (Decimal("0.5") if index % 5 == 0 else 0), Decimal(index % 4)),
            reserved=Decimal(1) if index % 3 == 0 else Decimal(0),
            use_store=row["use_store"],
        )
    with gateway.transaction() as tx:
        if lines:
            tx.insert_many(
                "price_list_line",
                [
                    {
                        "price_list_id": list_ids[name],
                        "product_key": article.product_key,
                        "min_qty": Decimal(1),
                        "price": price,
                    }
                    for article in seeded.values()
                    for name, price in ((RESELLER_LIST, article.reseller), (EURO_LIST, article.euro))
                ],
            )
        tx.insert_many(
            "product_stock",
            [
                {
                    "product_key": article.product_key,
                    "warehouse_id": warehouse,
                    "qty_in_stock": article.on_hand[warehouse - 1],
                    "qty_reserved": article.reserved if warehouse == 1 else Decimal(0),
                    "qty_ordered": Decimal(0),
                }
                for article in seeded.values()
                for warehouse in (1, 2)
            ],
        )
    return seeded


def cents(value: Decimal) -> float:
    return float(value.quantize(CENT, rounding=ROUND_HALF_UP))


def shop_price_of(sandbox: Any, sku: str, pricelist_id: int) -> float:
    product_id, variant_id = sandbox.state.find_variant(sku)
    return sandbox.state.price(product_id, variant_id, pricelist_id)["priceExVat"]


def assert_shop_prices_match(sandbox: Any, seeded: dict[str, SeededArticle], skus: list[str]) -> None:
    for sku in skus:
        article = seeded[sku]
        expected = {MASTER: cents(article.price_out), RESELLER: cents(article.reseller), EURO: cents(article.euro)}
        assert {pl: shop_price_of(sandbox, sku, pl) for pl in expected} == expected, sku


def settings_for(
    flow: str = "erp", prices: dict[str, Any] | None = None, stock: dict[str, Any] | None = None
) -> Settings:
    return Settings.model_validate(
        {
            "version": 1,
            "mamut": {"conn_id": "mamut_default", "vat_codes": {25: 1, 12: 2, 6: 3, 0: 4}},
            "shops": {
                "demo": {
                    "name": "Demo",
                    "flow": flow,
                    "starweb_conn_id": "unused",
                    "prices_to_starweb": prices or PRICES,
                    "stock_to_starweb": stock or STOCK,
                }
            },
        }
    )


def context_factory(sandbox: Any, mamut_db: Any, staging_store: StagingStore) -> Callable[..., JobContext]:
    """JobContext factory: ``make(flow=..., prices=..., stock=..., **run_params)`` (shared with the stock tests)."""

    def make(
        flow: str = "erp", prices: dict[str, Any] | None = None, stock: dict[str, Any] | None = None, **params: Any
    ) -> JobContext:
        return sandbox_job_context(settings_for(flow, prices, stock), sandbox, staging_store, mamut_db.gateway, params)

    return make


@pytest.fixture
def make_ctx(sandbox: Any, mamut_db: Any, staging_store: StagingStore) -> Callable[..., JobContext]:
    return context_factory(sandbox, mamut_db, staging_store)


@pytest.fixture
def seeded(sandbox: Any, mamut_db: Any) -> dict[str, SeededArticle]:
    return seed_mamut(mamut_db.gateway, [*shop_skus(sandbox), NOT_IN_SHOP_SKU])


def crash_load_after_request(
    job: ModuleType, ctx: JobContext, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Extract and validate, then let the load die right after its 20th request, before that value's ledger
    entry (as a worker killed there); returns what extract and validate returned, for the retry."""
    extracted = job.extract(ctx)
    validated = job.validate(ctx, extracted["batch_id"])
    monkeypatch.setenv("STARMAMUT_FAILPOINT", f"{job.JOB}.after_request@20")
    with pytest.raises(SimulatedCrash):
        job.load(ctx, extracted["batch_id"])
    monkeypatch.delenv("STARMAMUT_FAILPOINT")
    return extracted, validated


def assert_nothing_written(sandbox: Any, store: StagingStore, job: ModuleType) -> None:
    """No write reached the shop, the ledger is empty and no batch was started."""
    assert sandbox.write_requests() == []
    assert store.get_ledger("demo", job.ENTITY) == {}
    assert store.latest_batches("demo", job.JOB) == []


def price_writes(sandbox: Any) -> list[RecordedRequest]:
    return [request for request in sandbox.write_requests() if "/prices/" in request.path]


# ---------------------------------------------------------------- pure mapping


def test_prices_are_rounded_half_up_and_incl_vat_lists_are_converted_to_ex_vat() -> None:
    assert shop_price(Decimal("99.995"), (), incl_vat=False, vat_rate=None, rounding="cents") == {
        "price": "100.00",
        "volume": [],
    }
    assert shop_price(Decimal("99.5"), (), incl_vat=False, vat_rate=None, rounding="whole")["price"] == "100"
    assert shop_price(Decimal("99.5000"), (), incl_vat=False, vat_rate=None, rounding="none")["price"] == "99.5"
    incl = shop_price(
        Decimal("125.00"),
        [(Decimal("10.000"), Decimal("100.00"))],
        incl_vat=True,
        vat_rate=Decimal(25),
        rounding="cents",
    )
    assert incl == {"price": "100.00", "volume": [["10", "80.00"]]}
    assert shop_price(Decimal("10"), (), incl_vat=True, vat_rate=Decimal(12), rounding="none")["price"] == "8.9286"
    assert shop_price(Decimal("125"), (), incl_vat=True, vat_rate=None, rounding="cents") is None


def test_price_request_carries_volume_prices_and_clears_earlier_ones() -> None:
    with_breaks = price_request(7, 9, 2, "100.00", [["10", "80.00"]], clear_volume=False)
    assert (with_breaks.method, with_breaks.path) == ("PUT", "/products/7/variants/9/prices/2")
    assert with_breaks.body["volumePrices"] == {"data": [{"pricelistId": 2, "quantity": 10, "priceExVat": 80.0}]}
    assert "volumePrices" not in price_request(7, 9, 2, "100.00", [], clear_volume=False).body
    assert price_request(7, 9, 2, "100.00", [], clear_volume=True).body["volumePrices"] == {"data": []}


def test_stock_rules_round_down_clamp_and_choose_the_status() -> None:
    statuses = StockStatusIds(in_stock=1, out_of_stock=2, backorder=3)
    no_backorder = StockStatusIds(in_stock=1, out_of_stock=2, backorder=None)

    def stock(available: str, **kwargs: Any) -> tuple[int, int]:
        options = {"use_store": True, "inactive": False, "negative": "clamp", "statuses": statuses, **kwargs}
        return shop_stock(Decimal(available), **options)

    assert stock("2.7") == (2, 1)
    assert stock("0.5") == (0, 3)
    assert stock("0.5", statuses=no_backorder) == (0, 2)
    assert stock("-3") == (0, 3)
    assert stock("-2.5", negative="pass") == (-3, 3)
    assert stock("-4", use_store=False) == (0, 1)  # a non-stock article is always buyable
    assert stock("5", inactive=True) == (5, 2)
    assert stock_request(7, 9, "variant", 5, 1).method == "PATCH"
    assert stock_request(7, 9, "location:2", 5, 1).path == "/products/7/variants/9/stocks/2"


# ---------------------------------------------------------------- job runs


def test_first_run_sets_every_price_list_and_a_second_run_sends_nothing(make_ctx, sandbox, seeded, staging_store):
    skus = shop_skus(sandbox)
    first = prices_to_starweb.run(make_ctx())

    assert_shop_prices_match(sandbox, seeded, skus)
    assert (first["read"], first["changed"], first["loaded"]) == (3 * len(seeded), 3 * len(skus), 3 * len(skus))
    assert (first["not_in_shop"], first["quarantined"], first["failed"]) == (1, 0, 0)
    assert first["write_requests"] == len(price_writes(sandbox)) == 3 * len(skus)
    assert first["requests"] == len(sandbox.requests)  # tokens, reference reads and the shop search included
    assert all(request.status == 200 for request in price_writes(sandbox))
    for request in price_writes(sandbox)[:3]:
        assert_request_conforms(request)
    ledger = staging_store.get_ledger("demo", "price")
    assert ledger[(skus[0], "pricelist:1")] == "100.00"

    sandbox.reset_requests()
    second = prices_to_starweb.run(make_ctx())
    assert sandbox.write_requests() == []
    assert (second["changed"], second["loaded"], second["write_requests"]) == (0, 0, 0)
    assert second["unchanged"] == 3 * len(skus)
    assert not any(request.path == "/products" for request in sandbox.requests), "the shop was searched again"
    assert second["not_in_shop"] == 1


def test_an_article_the_shop_lacked_gets_its_prices_once_a_products_job_links_it(
    make_ctx, sandbox, seeded, staging_store
):
    prices_to_starweb.run(make_ctx())
    created = sandbox.state.add_product(
        {
            "languages": [{"langCode": "sv", "name": "Ny i butiken"}],
            "variants": [{"sku": NOT_IN_SHOP_SKU, "attributeValueLinks": []}],
        }
    )
    variant_id = created["variants"]["data"][0]["variantId"]
    staging_store.upsert_link(
        "demo",
        "variant",
        str(variant_id),
        starweb_id=f"{created['productId']}:{variant_id}",
        mamut_key=str(seeded[NOT_IN_SHOP_SKU].product_key),
        sku=NOT_IN_SHOP_SKU,
        content_hash=None,
    )
    sandbox.reset_requests()

    result = prices_to_starweb.run(make_ctx())

    assert (result["loaded"], result["not_in_shop"]) == (3, 0)
    assert_shop_prices_match(sandbox, seeded, [NOT_IN_SHOP_SKU])
    assert not any(request.path == "/products" for request in sandbox.requests)


def test_a_changed_price_is_the_only_write_and_a_hand_edit_waits_for_a_full_refresh(
    make_ctx, sandbox, seeded, mamut_db
):
    prices_to_starweb.run(make_ctx())
    sku, edited_by_hand = shop_skus(sandbox)[5], shop_skus(sandbox)[6]
    with mamut_db.gateway.transaction() as tx:
        tx.update("product", {"price_out": Decimal("123.4567")}, {"sku": sku})
    product_id, variant_id = sandbox.state.find_variant(edited_by_hand)
    sandbox.state.set_price(product_id, variant_id, MASTER, {"priceExVat": 1.0})
    sandbox.reset_requests()

    result = prices_to_starweb.run(make_ctx())

    writes = sandbox.write_requests()
    assert [(request.method, request.body["priceExVat"]) for request in writes] == [("PUT", 123.46)]
    assert writes[0].path.endswith(f"/prices/{MASTER}") and result["loaded"] == 1
    assert shop_price_of(sandbox, edited_by_hand, MASTER) == 1.0

    refreshed = prices_to_starweb.run(make_ctx(full_refresh=True))
    assert refreshed["loaded"] == 3 * len(shop_skus(sandbox))
    assert shop_price_of(sandbox, edited_by_hand, MASTER) == cents(seeded[edited_by_hand].price_out)


@pytest.mark.parametrize(
    ("prices", "named"),
    [
        (
            {"pricelists": [{"starweb": MASTER, "mamut": "base"}, {"starweb": 99, "mamut": RESELLER_LIST}]},
            "Starweb price list 99",
        ),
        (
            {"pricelists": [{"starweb": MASTER, "mamut": "base"}, {"starweb": RESELLER, "mamut": "Grossist NOK"}]},
            "Mamut price list 'Grossist NOK'",
        ),
        (
            {"pricelists": [{"starweb": MASTER, "mamut": "base"}, {"starweb": MASTER, "mamut": RESELLER_LIST}]},
            "Starweb price list 1 twice",
        ),
    ],
)
def test_a_price_list_missing_in_the_shop_or_in_mamut_stops_the_run_before_anything_is_written(
    make_ctx, sandbox, seeded, staging_store, prices, named
):
    with pytest.raises(ShopMappingError, match=named):
        prices_to_starweb.extract(make_ctx(prices=prices))
    assert_nothing_written(sandbox, staging_store, prices_to_starweb)


def test_an_inactive_price_list_stops_the_run_before_anything_is_written_unless_its_entry_allows_it(
    make_ctx, sandbox, sandbox_api, seeded, staging_store
):
    created = sandbox_api.post("/pricelists", json={"name": "Kampanj", "currencyCode": "SEK"})
    inactive = created.json()["data"]["pricelistId"]
    listed = {pricelist["pricelistId"]: pricelist for pricelist in sandbox_api.get("/pricelists").json()["data"]}
    assert (listed[MASTER]["isActive"], listed[inactive]["isActive"]) == (True, False), "a new list starts inactive"
    sandbox.reset_requests()
    entry = {"starweb": inactive, "mamut": "base"}

    with pytest.raises(
        ShopMappingError,
        match=rf"shop demo: Starweb price list {inactive} \(Kampanj\) is inactive, "
        rf"so the prices_to_starweb\.pricelists entry "
        rf"\{{starweb: {inactive}, mamut: 'base'\}}.*allow_inactive: true",
    ):
        prices_to_starweb.extract(make_ctx(prices={"pricelists": [{"starweb": MASTER, "mamut": "base"}, entry]}))
    assert_nothing_written(sandbox, staging_store, prices_to_starweb)

    allowed = prices_to_starweb.run(make_ctx(prices={"pricelists": [{**entry, "allow_inactive": True}]}))

    skus = shop_skus(sandbox)
    assert allowed["loaded"] == len(skus)
    assert {sku: shop_price_of(sandbox, sku, inactive) for sku in skus} == {
        sku: cents(seeded[sku].price_out) for sku in skus
    }


def test_bad_prices_are_quarantined_with_reasons_the_rest_loads_and_a_fix_loads_them(
    make_ctx, sandbox, seeded, mamut_db, staging_store
):
    skus = shop_skus(sandbox)
    negative, fractional_break, with_break = skus[1], skus[2], skus[4]
    untouched_price = shop_price_of(sandbox, negative, MASTER)
    with mamut_db.gateway.transaction() as tx:
        reseller = tx.select("price_list", ["price_list_id"], where={"name": RESELLER_LIST})[0]["price_list_id"]
        tx.update("product", {"price_out": Decimal("-5")}, {"sku": negative})
        tx.insert_many(
            "price_list_line",
            [
                {"price_list_id": reseller, "product_key": seeded[sku].product_key, "min_qty": min_qty, "price": price}
                for sku, min_qty, price in (
                    (fractional_break, Decimal("2.5"), Decimal(10)),
                    (with_break, Decimal(10), Decimal(20)),
                )
            ],
        )

    result = prices_to_starweb.run(make_ctx())

    reasons = {
        entry.key: " ".join(r["reason"] for r in entry.reasons)
        for entry in staging_store.open_quarantine("demo", "price")
    }
    assert set(reasons) == {f"{negative}@pricelist:1", f"{fractional_break}@pricelist:2"}
    assert "price -5.0 is negative" in reasons[f"{negative}@pricelist:1"]
    assert "2.5" in reasons[f"{fractional_break}@pricelist:2"]
    assert (result["quarantined"], result["failed"], result["loaded"]) == (2, 0, 3 * len(skus) - 2)
    assert shop_price_of(sandbox, negative, MASTER) == untouched_price
    product_id, variant_id = sandbox.state.find_variant(with_break)
    breaks = sandbox.state.price(product_id, variant_id, RESELLER, volume=True)["volumePrices"]["data"]
    assert [(b["quantity"], b["priceExVat"]) for b in breaks] == [(10, 20.0)]
    (sent,) = [r for r in price_writes(sandbox) if r.body.get("volumePrices")]
    assert_request_conforms(sent)

    with mamut_db.gateway.transaction() as tx:
        tx.update("product", {"price_out": Decimal("12.5")}, {"sku": negative})
    fixed = prices_to_starweb.run(make_ctx())

    assert {entry.key for entry in staging_store.open_quarantine("demo", "price")} == {
        f"{fractional_break}@pricelist:2"
    }
    assert fixed["loaded"] == 1 and shop_price_of(sandbox, negative, MASTER) == 12.5


def test_a_price_in_another_currency_than_its_price_list_is_refused_and_too_many_stop_the_batch(
    make_ctx, sandbox, seeded, staging_store
):
    sek_into_euro_list = {"pricelists": [{"starweb": EURO, "mamut": "base"}]}

    with pytest.raises(QualityGateFailed, match="nothing was loaded"):
        prices_to_starweb.run(make_ctx(prices=sek_into_euro_list))

    assert sandbox.write_requests() == []
    entry = staging_store.open_quarantine("demo", "price")[0]
    assert entry.reasons == [
        {
            "check": "currency_matches_pricelist",
            "reason": "the Mamut price is in SEK, but Starweb price list 3 is in EUR",
        }
    ]


def test_dry_run_shows_the_requests_it_would_make_and_writes_nothing(make_ctx, sandbox, seeded, staging_store):
    result = prices_to_starweb.run(make_ctx(dry_run=True))

    skus = shop_skus(sandbox)
    assert sandbox.write_requests() == []
    assert result["would_write"] == 3 * len(skus) and result["loaded"] == 0
    first = min(skus)  # the plan follows the staged keys' order
    product_id, variant_id = sandbox.state.find_variant(first)
    path = f"/products/{product_id}/variants/{variant_id}/prices/{MASTER}"
    price = cents(seeded[first].price_out)
    assert result["planned"][0] == f'PUT {path} {{"priceExVat": {price}, "pricelistId": {MASTER}}}'
    assert staging_store.get_ledger("demo", "price") == {}
    assert staging_store.latest_batches("demo", prices_to_starweb.JOB)[0].status == "dry_run"


def test_given_skus_only_reads_and_sends_those(make_ctx, sandbox, seeded):
    chosen = shop_skus(sandbox)[7:9]
    result = prices_to_starweb.run(make_ctx(skus=chosen))

    assert (result["read"], result["loaded"]) == (6, 6)
    written = {request.path for request in sandbox.write_requests()}
    assert written == {
        f"/products/{pid}/variants/{vid}/prices/{pl}"
        for pid, vid in (sandbox.state.find_variant(sku) for sku in chosen)
        for pl in (MASTER, RESELLER, EURO)
    }
    assert_shop_prices_match(sandbox, seeded, chosen)


def test_a_crash_after_a_request_resends_only_that_value_on_the_retry(
    make_ctx, sandbox, seeded, staging_store, monkeypatch
):
    ctx = make_ctx()
    extracted, validated = crash_load_after_request(prices_to_starweb, ctx, monkeypatch)
    recorded = len(staging_store.get_ledger("demo", "price"))
    assert len(price_writes(sandbox)) == recorded + 1

    loaded = prices_to_starweb.load(ctx, extracted["batch_id"])  # the Airflow retry of the load task
    prices_to_starweb.report(ctx, extracted["batch_id"], extracted, validated, loaded)

    skus = shop_skus(sandbox)
    assert loaded["loaded"] == 3 * len(skus) - recorded
    assert len(price_writes(sandbox)) == 3 * len(skus) + 1  # one value sent twice, as an absolute value
    assert_shop_prices_match(sandbox, seeded, skus)


def counting_ledger_writes(store: StagingStore, monkeypatch: pytest.MonkeyPatch, dimension: str) -> list[int]:
    """The size of every ``set_ledger`` call on ``dimension`` from now on (each is one staging transaction)."""
    sizes: list[int] = []
    set_ledger = store.set_ledger

    def counting(shop: str, called: str, entries: Any) -> None:
        if called == dimension:
            sizes.append(len(entries))
        set_ledger(shop, called, entries)

    monkeypatch.setattr(store, "set_ledger", counting)
    return sizes


def test_the_load_records_the_ledger_a_group_of_values_at_a_time_not_one_transaction_per_value(
    make_ctx, sandbox, seeded, staging_store, monkeypatch
):
    chosen = shop_skus(sandbox)[:40]  # 120 values: 3 price lists each
    assert len(chosen) == 40
    sizes = counting_ledger_writes(staging_store, monkeypatch, "price")

    result = prices_to_starweb.run(make_ctx(skus=chosen))

    assert result["loaded"] == len(price_writes(sandbox)) == 120  # still one request per value
    assert sizes == [LEDGER_FLUSH, LEDGER_FLUSH, 120 - 2 * LEDGER_FLUSH]  # was 120 writes of one entry
    assert len(staging_store.get_ledger("demo", "price")) == 120
    assert_shop_prices_match(sandbox, seeded, chosen)


def test_a_load_failing_midway_still_records_the_values_starweb_accepted_before_it_failed(
    make_ctx, sandbox, seeded, staging_store, monkeypatch
):
    """Starweb fails with 500 (past the client's retries) from the 30th price on: the load fails, and the ledger
    holds exactly the values the shop accepted, though fewer than a group were waiting, so the retry sends
    each remaining value once and none twice."""
    ctx = make_ctx()
    extracted = prices_to_starweb.extract(ctx)
    validated = prices_to_starweb.validate(ctx, extracted["batch_id"])
    put = StarwebClient.put
    sent = itertools.count(1)

    def failing_from_the_30th(client: StarwebClient, path: str, body: Any) -> Any:
        if next(sent) == 30:
            sandbox.faults.fail_500_next = 10_000
        return put(client, path, body)

    monkeypatch.setattr(StarwebClient, "put", failing_from_the_30th)
    with pytest.raises(StarwebError) as failure:
        prices_to_starweb.load(ctx, extracted["batch_id"])
    assert failure.value.status == 500
    monkeypatch.undo()
    sandbox.faults.fail_500_next = 0

    accepted = [request for request in price_writes(sandbox) if request.status == 200]
    ledger = staging_store.get_ledger("demo", "price")
    assert 0 < len(ledger) < LEDGER_FLUSH  # a group not yet full when the load failed, recorded all the same
    assert len(ledger) == len(accepted)

    loaded = prices_to_starweb.load(ctx, extracted["batch_id"])  # the Airflow retry of the load task
    prices_to_starweb.report(ctx, extracted["batch_id"], extracted, validated, loaded)

    skus = shop_skus(sandbox)
    assert loaded["loaded"] == 3 * len(skus) - len(ledger)
    assert len([request for request in price_writes(sandbox) if request.status == 200]) == 3 * len(skus)
    assert_shop_prices_match(sandbox, seeded, skus)


def test_a_price_list_kept_incl_vat_goes_to_the_shop_ex_vat(make_ctx, sandbox, seeded, mamut_db, staging_store):
    skus = shop_skus(sandbox)[:4]
    unknown_rate = skus[3]
    with mamut_db.gateway.transaction() as tx:
        tx.insert("price_list", {"name": "Brutto SEK", "currency_id": 1, "incl_vat": True})
        [gross] = tx.select("price_list", ["price_list_id"], where={"name": "Brutto SEK"})
        tx.insert_many(
            "price_list_line",
            [
                {
                    "price_list_id": gross["price_list_id"],
                    "product_key": seeded[sku].product_key,
                    "min_qty": Decimal(1),
                    "price": Decimal(125 + index),
                }
                for index, sku in enumerate(skus)
            ],
        )
        tx.update("product", {"vat_code": 9}, {"sku": unknown_rate})  # a VAT code the config has no rate for

    result = prices_to_starweb.run(make_ctx(prices={"pricelists": [{"starweb": RESELLER, "mamut": "Brutto SEK"}]}))

    assert [shop_price_of(sandbox, sku, RESELLER) for sku in skus[:3]] == [100.0, 100.8, 101.6]  # VAT 25 %
    [entry] = staging_store.open_quarantine("demo", "price")
    assert (entry.key, entry.reasons[0]["check"]) == (f"{unknown_rate}@pricelist:{RESELLER}", "price_present")
    assert result["loaded"] == 3
