"""Multishop: the three-shop example config (config/examples/three_shops.yaml: an ecom, an erp and a combo shop)
on one Mamut mock, each shop with its own sandbox, Connection and request budget.

Proven here: every shop's data lands right and nothing of one shop reaches another (articles, orders with the
same Starweb ids, customers with the same e-mail, write-backs, prices and stock of one article published to two
shops); a shop that is down, rate-limiting, refusing its credentials or flooding its quarantine fails alone
(job level, and as real DAG runs with ``dag.test()``); each shop paces its requests under its own budget.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from starmamut import airflow_adapter
from starmamut.config import Settings
from starmamut.jobs import (
    orders_to_mamut,
    prices_to_starweb,
    products_to_mamut,
    products_to_starweb,
    stock_to_starweb,
)
from starmamut.jobs.common import JobContext, QualityGateFailed, RunParams
from starmamut.mamut.catalogue import CatalogueReader
from starmamut.mamut.gateway import MamutGateway
from starmamut.mamut.products import ProductRepository
from starmamut.mamut.schema_map import SchemaMap
from starmamut.staging.store import StagingStore
from starmamut.starweb.client import StarwebClient
from starmamut.starweb.errors import StarwebAuthError, StarwebRateLimited, StarwebUnavailable
from starmamut.starweb.ratelimit import FilePacer, pacer_from_url
from starmamut_devtools.sandbox import Sandbox, start_sandbox
from tests.fixtures.airflow import REPO_ROOT, mamut_connection, starweb_connection
from tests.fixtures.mamut import fresh_mock_database
from tests.test_orders_to_mamut import eligible_orders, mamut_orders
from tests.test_products_to_mamut import expected_mamut_skus

EXAMPLE = REPO_ROOT / "config" / "examples" / "three_shops.yaml"
SHOPS = ("webshop", "grossist", "kombo")
JOBS = {
    "products_to_mamut": products_to_mamut,
    "products_to_starweb": products_to_starweb,
    "prices_to_starweb": prices_to_starweb,
    "stock_to_starweb": stock_to_starweb,
    "orders_to_mamut": orders_to_mamut,
}
STANDARD, RESELLER = 1, 2  # the demo shops' standard and reseller price lists
CHARGES = {None, "FRAKT", "AVGIFT"}  # order lines that are not articles
PURCHASE_ORDER = "PO-4711"


def connection_env(shop: str) -> str:
    return f"AIRFLOW_CONN_STARWEB_{shop.upper()}"


@dataclass
class ThreeShops:
    """The example's shops, each on its own sandbox, sharing one Mamut mock and one staging database."""

    settings: Settings
    sandboxes: dict[str, Sandbox]
    odbc: str
    gateway: MamutGateway
    store: StagingStore
    monkeypatch: pytest.MonkeyPatch

    def ctx(self, shop_id: str, **params: Any) -> JobContext:
        """The shop's job context; its client gets the credentials from the shop's own Airflow Connection and
        its pacer as in production (per shop key and budget), only with short back-off for the tests."""
        shop = self.settings.shop(shop_id)

        def open_starweb() -> StarwebClient:
            pacer = pacer_from_url(self.settings.request_pacer_url, shop.pacer_key, shop.request_budget_per_minute)
            return StarwebClient(
                airflow_adapter.starweb_credentials(shop.starweb_conn_id),
                pacer=pacer,
                max_concurrency=shop.max_concurrency,
                backoff_base=0.01,
                backoff_cap=0.05,
            )

        return JobContext(
            settings=self.settings,
            shop=shop,
            store=self.store,
            open_starweb=open_starweb,
            open_mamut=lambda: self.gateway,
            params=RunParams.from_mapping(params),
        )

    def run(self, shop_id: str, job: str) -> dict[str, Any]:
        return JOBS[job].run(self.ctx(shop_id))

    def refuse_credentials(self, shop_id: str) -> None:
        sandbox = self.sandboxes[shop_id]
        self.monkeypatch.setenv(
            connection_env(shop_id), starweb_connection(sandbox.base_url, sandbox.client_id, "not-the-secret")
        )

    def pacer_state(self, shop_id: str) -> Path:
        """Where the shop's budget lives (the file pacer's schedule, one file per pacer key)."""
        shop = self.settings.shop(shop_id)
        assert self.settings.request_pacer_url is not None
        directory = Path(self.settings.request_pacer_url.removeprefix("file://"))
        return FilePacer(shop.pacer_key, shop.request_budget_per_minute, directory).path


BUDGET_SCALE = 50  # the example's budgets (300-1000 requests/min) would make this test mostly wait


def example_settings(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """The example config, with this test's pacer state, each shop's budget scaled up alike (still one budget
    per shop, still different from the others') and any overrides."""
    raw = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    for shop in raw["shops"].values():
        shop["request_budget_per_minute"] *= BUDGET_SCALE
        shop["live"] = True  # the example's shops are new, so in shadow mode; these tests run them armed
    return {**raw, "request_pacer_url": (tmp_path / "pacer").as_uri(), **overrides}


@pytest.fixture
def shops(tmp_path: Path, staging_store: StagingStore, monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreeShops]:
    with ExitStack() as stack:
        sandboxes = {shop: stack.enter_context(start_sandbox(seed="demo")) for shop in SHOPS}
        odbc = stack.enter_context(fresh_mock_database("sqlite", tmp_path, seed="demo"))
        gateway = MamutGateway(odbc, SchemaMap.load())
        stack.callback(gateway.close)
        for shop, sandbox in sandboxes.items():
            monkeypatch.setenv(
                connection_env(shop), starweb_connection(sandbox.base_url, sandbox.client_id, sandbox.client_secret)
            )
        settings = Settings.model_validate(example_settings(tmp_path))
        yield ThreeShops(settings, sandboxes, odbc, gateway, staging_store, monkeypatch)


def mamut_skus(gateway: MamutGateway) -> set[str]:
    return {row["sku"] for row in ProductRepository(gateway).iter_articles()}


def sellable_skus(gateway: MamutGateway) -> set[str]:
    """Mamut's articles as a shop sells them: the variants of a family, or the single article."""
    return {
        article.sku
        for snapshot in CatalogueReader(gateway).iter_families()
        for article in (snapshot.family.variants or (snapshot.family.main,))
    }


def shop_variant_skus(sandbox: Sandbox) -> set[str]:
    state = sandbox.state
    return {variant["sku"] for product_id in state.product_ids() for variant in state.list_variants(product_id)}


def shop_price(sandbox: Sandbox, sku: str, pricelist_id: int) -> float:
    located = sandbox.state.find_variant(sku)
    assert located is not None, f"{sku} is not in the shop"
    return sandbox.state.price(*located, pricelist_id)["priceExVat"]


def shop_stock(sandbox: Sandbox, sku: str) -> int:
    located = sandbox.state.find_variant(sku)
    assert located is not None, f"{sku} is not in the shop"
    return sandbox.state.variant(*located)["stockQuantity"]


def set_mamut_price_and_stock(
    gateway: MamutGateway, sku: str, price: Decimal, stock: dict[int, tuple[int, int]]
) -> None:
    """The article's sales price and, per warehouse, (on hand, reserved)."""
    with gateway.transaction() as tx:
        tx.update("product", {"price_out": price}, where={"sku": sku})
        (article,) = tx.select("product", ["product_key"], where={"sku": sku})
        present = {
            row["warehouse_id"]
            for row in tx.select("product_stock", ["warehouse_id"], where={"product_key": article["product_key"]})
        }
        for warehouse, (on_hand, reserved) in stock.items():
            values = {"qty_in_stock": Decimal(on_hand), "qty_reserved": Decimal(reserved)}
            if warehouse in present:
                tx.update(
                    "product_stock", values, where={"product_key": article["product_key"], "warehouse_id": warehouse}
                )
            else:
                tx.insert(
                    "product_stock",
                    {
                        "product_key": article["product_key"],
                        "warehouse_id": warehouse,
                        "qty_ordered": Decimal(0),
                        **values,
                    },
                )


def active_variant_sku(sandbox: Sandbox) -> str:
    """An active variant of a visible product: one the combo shop's Mamut article stays sellable for."""
    state = sandbox.state
    for product_id in state.product_ids():
        if state.product(product_id).get("visibility") != "visible":
            continue
        for variant in state.list_variants(product_id):
            if variant.get("isActive") is not False:
                return variant["sku"]
    raise AssertionError("the demo shop has no active variant")


# ------------------------------------------------------------------------------------------------ data, no leaks


def test_three_shops_on_one_mamut_each_get_their_own_data_and_nothing_leaks(shops: ThreeShops) -> None:
    web, grossist, kombo = (shops.sandboxes[shop] for shop in SHOPS)
    mamut_own = mamut_skus(shops.gateway)  # the Mamut demo company's own catalogue

    # Articles: the ecom and combo shops govern theirs, the erp shop gets Mamut's catalogue.
    assert shops.run("webshop", "products_to_mamut")["quarantined"] == 0
    assert shops.run("kombo", "products_to_mamut")["quarantined"] == 0
    web_articles = {f"W-{sku}" for sku in expected_mamut_skus(web)}  # main articles: W-SW-<id> by the template
    assert mamut_skus(shops.gateway) == mamut_own | web_articles | expected_mamut_skus(kombo)
    published = shops.run("grossist", "products_to_starweb")
    sellable = sellable_skus(shops.gateway)
    assert {sku for sku in sellable if not sku.startswith("W-")} <= shop_variant_skus(grossist)
    assert not any(sku.startswith("W-") for sku in shop_variant_skus(grossist))
    assert published["skipped"] == len(
        {
            snapshot.family.main.sku
            for snapshot in CatalogueReader(shops.gateway).iter_families()
            if snapshot.family.main.sku.startswith("W-")
        }
    )
    assert web.write_requests() == [] and kombo.write_requests() == []  # no products pushed to those shops

    # One Mamut article published to two shops, each with its own price list, rounding and warehouses.
    shared = active_variant_sku(kombo)
    set_mamut_price_and_stock(shops.gateway, shared, Decimal("123.45"), {1: (5, 1), 2: (7, 0)})
    for shop in ("grossist", "kombo"):
        for job in ("prices_to_starweb", "stock_to_starweb"):
            result = shops.run(shop, job)
            assert result["quarantined"] == 0 and result["failed"] == 0, (shop, job, result)
    assert (shop_price(grossist, shared, STANDARD), shop_price(kombo, shared, STANDARD)) == (123, 123.45)
    assert (shop_stock(grossist, shared), shop_stock(kombo, shared)) == (5 - 1, 5 - 1 + 7)
    assert shop_price(grossist, "MUGG-ORE", RESELLER) == 55  # Mamut's reseller list 55.44, in whole kronor
    assert kombo.state.find_variant("MUGG-ORE") is None  # not the combo shop's article: not published there
    assert web.write_requests() == []

    # Orders with the same Starweb ids in all three shops; the buyer's custom info on the same order in two.
    expected = eligible_orders(web)
    assert set(expected) == set(eligible_orders(grossist)) == set(eligible_orders(kombo))
    with_po = next(iter(expected))
    for sandbox in (web, kombo):
        sandbox.state.update_order(with_po, {"originalCustomerCustomInfo1": PURCHASE_ORDER})
    for shop in SHOPS:
        result = shops.run(shop, "orders_to_mamut")
        assert (result["loaded"], result["quarantined"], result["failed"]) == (len(expected), 0, 0), shop
    landed = {shop: mamut_orders(shops.gateway, f"{shop}:") for shop in SHOPS}
    for shop in SHOPS:
        assert set(landed[shop]) == {f"{shop}:{order_id}" for order_id in expected}
        for order_id in expected:
            mamut = landed[shop][f"{shop}:{order_id}"]
            article_lines = [line["sku"] for line in mamut["lines"] if line["sku"] not in CHARGES]
            assert article_lines and all(sku.startswith("W-") == (shop == "webshop") for sku in article_lines)
            assert (mamut["invoice_number"] is not None) == (shop == "grossist")  # the erp shop invoices
            written_back = mamut["invoice_number"] or mamut["order_number"]
            assert shops.sandboxes[shop].state.order(order_id)["externalId"] == str(written_back)
    assert landed["kombo"][f"kombo:{with_po}"]["your_reference"] == PURCHASE_ORDER
    assert landed["webshop"][f"webshop:{with_po}"]["your_reference"] != PURCHASE_ORDER  # not its transform

    # Customers: the two shops that match on e-mail share the buyer; the combo shop keeps its own.
    for order_id in expected:
        contact = {shop: landed[shop][f"{shop}:{order_id}"]["contact_key"] for shop in SHOPS}
        assert contact["webshop"] == contact["grossist"] != contact["kombo"], order_id

    # Staging keeps each shop's links apart: the same Starweb order id maps to each shop's own Mamut order.
    links = {shop: shops.store.get_links(shop, "order") for shop in SHOPS}
    assert all(set(links[shop]) == {str(order_id) for order_id in expected} for shop in SHOPS)
    for order_id in map(str, expected):
        assert len({links[shop][order_id].mamut_key for shop in SHOPS}) == 3


# -------------------------------------------------------------------------------------------------- isolation


def stop(shops: ThreeShops) -> None:
    shops.sandboxes["kombo"].stop()


def throttle(shops: ThreeShops) -> None:
    shops.sandboxes["kombo"].faults.fail_429_next = 1000


def refuse(shops: ThreeShops) -> None:
    shops.refuse_credentials("kombo")


def flood_quarantine(shops: ThreeShops) -> None:
    state = shops.sandboxes["kombo"].state
    for order_id in state.order_ids():
        state.update_order(order_id, {"originalCustomerEmail": "ingen e-post"})


@pytest.mark.parametrize(
    ("break_kombo", "error", "message"),
    [
        (stop, StarwebUnavailable, "ConnectError"),
        (throttle, StarwebRateLimited, "Too Many Requests"),
        (refuse, StarwebAuthError, "invalid_client"),
        (flood_quarantine, QualityGateFailed, "shop kombo:"),
    ],
    ids=["down", "rate-limiting", "bad-credentials", "quarantine-storm"],
)
def test_a_broken_shop_fails_alone_and_the_others_sync_in_the_same_period(
    shops: ThreeShops, break_kombo: Callable[[ThreeShops], None], error: type[Exception], message: str
) -> None:
    break_kombo(shops)

    with pytest.raises(error, match=message):
        shops.run("kombo", "orders_to_mamut")
    for shop in ("webshop", "grossist"):
        result = shops.run(shop, "orders_to_mamut")
        assert result["loaded"] == len(eligible_orders(shops.sandboxes[shop])) > 0
    assert mamut_orders(shops.gateway, "kombo:") == {}


def test_each_shop_paces_its_requests_under_its_own_budget(shops: ThreeShops) -> None:
    kombo = shops.settings.shop("kombo")
    exhausted = pacer_from_url(shops.settings.request_pacer_url, kombo.pacer_key, 1)
    assert exhausted.acquire() == 0.0  # the combo shop's next request may leave only a minute from now
    kombo_schedule = shops.pacer_state("kombo").read_text()

    for shop in ("webshop", "grossist"):
        assert shops.run(shop, "orders_to_mamut")["loaded"] > 0

    assert shops.pacer_state("kombo").read_text() == kombo_schedule  # untouched by the other shops' requests
    assert all(shops.pacer_state(shop).exists() for shop in ("webshop", "grossist"))


# ------------------------------------------------------------------------------------------------- DAG runs


@pytest.mark.slow
def test_dag_runs_fail_only_the_shop_whose_connection_is_refused(
    shops: ThreeShops, tmp_path: Path, shop_config, airflow_db, capfd
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    staging = json.dumps({"conn_type": "generic", "extra": {"sqlalchemy_url": f"sqlite:///{tmp_path / 'dags.db'}"}})
    shops.monkeypatch.setenv("AIRFLOW_CONN_STARMAMUT_STAGING", staging)
    shops.monkeypatch.setenv("AIRFLOW_CONN_MAMUT_DEFAULT", mamut_connection(shops.odbc))
    shop_config(example_settings(tmp_path, staging_conn_id="starmamut_staging"))
    shops.refuse_credentials("kombo")
    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    assert bag.import_errors == {}, bag.import_errors

    runs = {}
    for shop in ("kombo", "webshop", "grossist"):  # the broken shop first: the others run after its failure
        dag = bag.dags[f"{shop}__orders_to_mamut"]
        for task in dag.tasks:
            task.retries = 0  # Airflow's retries would only repeat the same refusal, minutes later
        runs[shop] = dag.test()

    assert {shop: run.state for shop, run in runs.items()} == {
        "kombo": "failed",
        "webshop": "success",
        "grossist": "success",
    }
    states = {ti.task_id: ti.state for ti in runs["kombo"].get_task_instances()}
    assert states["extract"] == "failed" and states["load"] != "success"
    log = capfd.readouterr().out
    failure = log[log.index("Task failed with exception") :]
    assert "StarwebAuthError: Starweb POST /token failed (HTTP 400): invalid_client" in failure
    assert "shop kombo (flow combo): Starweb Connection 'starweb_kombo'" in failure
    assert "Marking run <DagRun kombo__orders_to_mamut" in failure and log.count("Task failed with exception") == 1
    for shop in ("webshop", "grossist"):
        assert set(mamut_orders(shops.gateway, f"{shop}:")) == {
            f"{shop}:{order_id}" for order_id in eligible_orders(shops.sandboxes[shop])
        }
    assert mamut_orders(shops.gateway, "kombo:") == {}
    assert all(shops.pacer_state(shop).exists() for shop in SHOPS)  # the tasks paced each shop under its own key
