"""Custom transforms: the engine (order, copies, Skip/Reject/exceptions, identity, loading errors), the job
bookkeeping (skipped counted, failures quarantined per record, dry runs show the transformed records) and each
example in plugins/transforms, alone and inside real jobs (sandbox over loopback, Mamut mock over ODBC).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from starmamut.config import Settings, load_settings
from starmamut.jobs import orders_to_mamut, prices_to_starweb, products_to_mamut, stock_to_starweb
from starmamut.jobs.common import JobContext
from starmamut.mamut.gateway import MamutGateway
from starmamut.mamut.products import ProductRepository
from starmamut.mamut.schema_map import SchemaMap
from starmamut.staging.store import StagingStore
from starmamut.transforms import (
    Reject,
    Skip,
    TransformContext,
    TransformError,
    TransformStep,
    check_shop_transforms,
    load_transform,
    run_transforms,
    transform_steps,
)
from tests.fixtures.jobs import sandbox_job_context
from tests.fixtures.mamut import fresh_mock_database
from tests.test_orders_to_mamut import ELIGIBLE, eligible_orders

REPO_ROOT = Path(__file__).resolve().parents[1]
HERE = "tests.test_transforms"
SEK, EUR = "SEK", "EUR"


# ---------------------------------------------------------------------------------------- transforms for tests


def fail_on_odd_product(record: dict[str, Any], context: TransformContext) -> dict[str, Any]:
    if record["product_id"] % 2:
        raise ValueError(f"odd product {record['product_id']} is not wanted")
    return record


def reject_foreign_currency(record: dict[str, Any], context: TransformContext) -> dict[str, Any] | Reject:
    return record if record["currency"] == SEK else Reject(f"{record['currency']} orders go by hand")


def shout_customer_email(record: dict[str, Any], context: TransformContext) -> dict[str, Any]:
    record["email"] = record["email"].upper() if record["email"] else None
    return record


def at_most_ten_in_stock(record: dict[str, Any], context: TransformContext) -> dict[str, Any]:
    record["quantity"] = min(record["quantity"], 10)
    return record


NOT_CALLABLE = 42


def context(
    entity: str = "products",
    point: str = "after_mapping",
    *,
    job: str = "products_to_mamut",
    source: dict[str, Any] | None = None,
) -> TransformContext:
    return TransformContext(
        shop_id="demo",
        job=job,
        entity=entity,
        point=point,
        dry_run=False,  # type: ignore[arg-type]
        source=source,
    )


def step(function: Callable[..., Any], path: str = "") -> TransformStep:
    return TransformStep(path or f"{HERE}.{function.__name__}", function)


# ---------------------------------------------------------------------------------------------------- engine


def test_transforms_apply_in_order_to_a_copy_of_the_record() -> None:
    def suffix(text: str) -> Callable[..., dict[str, Any]]:
        def add(record: dict[str, Any], _context: TransformContext) -> dict[str, Any]:
            record["name"] += text
            record["variants"][0]["sku"] += text
            return record

        return add

    original = {"product_id": 7, "name": "Mössa", "variants": [{"sku": "M"}]}
    result = run_transforms([step(suffix("-a"), "x.a"), step(suffix("-b"), "x.b")], original, context())

    assert result.outcome == "kept"
    assert result.record == {"product_id": 7, "name": "Mössa-a-b", "variants": [{"sku": "M-a-b"}]}
    assert original == {"product_id": 7, "name": "Mössa", "variants": [{"sku": "M"}]}  # nested lists too


@pytest.mark.parametrize(
    ("output", "outcome", "reason"),
    [
        (Skip("not for this shop"), "skipped", "not for this shop"),
        (Reject("price missing"), "rejected", "price missing"),
        (ValueError("division by zero in rule 3"), "rejected", "raised ValueError: division by zero in rule 3"),
        (None, "rejected", "returned NoneType; a transform returns the record"),
    ],
)
def test_skip_reject_an_exception_or_a_wrong_return_stop_the_chain_naming_the_transform(
    output: Any, outcome: str, reason: str
) -> None:
    calls: list[str] = []

    def deciding(record: dict[str, Any], _context: TransformContext) -> Any:
        calls.append("deciding")
        if isinstance(output, Exception):
            raise output
        return output

    def later(record: dict[str, Any], _context: TransformContext) -> dict[str, Any]:
        calls.append("later")
        return record

    result = run_transforms([step(deciding, "plugins_x.rules.deciding"), step(later)], {"product_id": 1}, context())

    assert (result.outcome, result.transform, result.record) == (outcome, "plugins_x.rules.deciding", None)
    assert result.reason is not None and result.reason.startswith(reason)
    assert calls == ["deciding"]


def test_a_transform_may_not_change_what_identifies_the_record() -> None:
    def renumber(record: dict[str, Any], _context: TransformContext) -> dict[str, Any]:
        record["product_id"] += 1
        return record

    result = run_transforms([step(renumber)], {"product_id": 1}, context(), fixed=("product_id",))

    assert result.outcome == "rejected" and result.transform == f"{HERE}.renumber"
    assert "changed 'product_id'" in str(result.reason)


def test_a_failure_carries_the_key_the_failing_transform_saw() -> None:
    def refuse(record: dict[str, Any], _context: TransformContext) -> Reject:
        return Reject("no")

    def key(record: Any) -> str:
        return f"{record['sku']}@{record['target']}"

    prefix = "transforms.sku.web_articles_prefixed_w"
    steps = [step(load_transform(prefix), prefix), step(refuse)]

    result = run_transforms(
        steps,
        {"sku": "W-MUGG", "target": "pricelist:1", "price": "10"},
        context("prices", job="prices_to_starweb"),
        key=key,
        fixed=("target",),
    )

    assert (result.outcome, result.key) == ("rejected", "MUGG@pricelist:1")  # the shop's SKU, as the next run sees


def shop_with(transforms: dict[str, Any], flow: str = "ecom", **shop: Any) -> Settings:
    return Settings.model_validate(
        {
            "version": 1,
            "mamut": {"vat_codes": {25: 1, 12: 2, 6: 3, 0: 4, 25.5: 5}},
            "shops": {
                "demo": {"name": "Demo", "flow": flow, "starweb_conn_id": "unused", "transforms": transforms, **shop}
            },
        }
    )


@pytest.mark.parametrize(
    ("path", "entity", "message"),
    [
        ("transforms.nosuch.thing", "products", "cannot import module 'transforms.nosuch'"),
        (f"{HERE}.no_such_function", "products", f"module '{HERE}' has no 'no_such_function'"),
        (f"{HERE}.NOT_CALLABLE", "products", "int is not callable"),
        ("transforms.prices.round_to_whole_kronor", "stock", "works on prices, not stock"),
        ("transforms.fields.custom_info_to_your_reference", "orders", "works at after_mapping, not before_load"),
    ],
)
def test_a_transform_that_cannot_be_used_is_a_clear_error_naming_shop_entity_point_and_path(
    path: str, entity: str, message: str
) -> None:
    settings = shop_with({entity: {"before_load": [f"{HERE}.shout_customer_email", path]}})

    with pytest.raises(TransformError) as raised:
        check_shop_transforms(settings.shop("demo"))

    assert str(raised.value).startswith(f"shop demo: transforms.{entity}.before_load: {path}: ")
    assert message in str(raised.value)


def test_the_example_config_names_only_transforms_that_load() -> None:
    settings = load_settings(REPO_ROOT / "config" / "examples" / "three_shops.yaml")
    for shop in settings.shops:
        check_shop_transforms(shop)
    kombo = settings.shop("kombo")
    assert [s.path for s in transform_steps(kombo, "orders", "after_mapping")] == [
        "transforms.fields.custom_info_to_your_reference"
    ]
    assert load_transform("transforms.skip.skip_web_articles").patterns == ("w-*",)


# ---------------------------------------------------------------------------------------------------- examples


def price(value: str | None, currency: str = SEK, volume: list[list[str]] | None = None) -> dict[str, Any]:
    return {
        "sku": "MUGG",
        "target": "pricelist:1",
        "pricelist_id": 1,
        "source": "base",
        "currency": currency,
        "pricelist_currency": currency,
        "price": value,
        "volume": volume or [],
    }


@pytest.mark.parametrize(
    ("before", "currency", "after"),
    [
        ("199.50", SEK, "200"),
        ("199.49", SEK, "199"),
        ("79.2000", "NOK", "79"),
        ("0.50", "DKK", "1"),
        ("199.50", EUR, "199.50"),
    ],
)
def test_round_to_whole_kronor_rounds_kronor_lists_half_up_and_leaves_others(
    before: str, currency: str, after: str
) -> None:
    round_to_whole_kronor = load_transform("transforms.prices.round_to_whole_kronor")
    record = round_to_whole_kronor(price(before, currency, [["10", before]]), context("prices"))
    assert (record["price"], record["volume"]) == (after, [["10", after]])


def test_round_to_whole_kronor_leaves_a_missing_price_to_the_checks() -> None:
    round_to_whole_kronor = load_transform("transforms.prices.round_to_whole_kronor")
    assert round_to_whole_kronor(price(None), context("prices"))["price"] is None


def test_sku_prefix_map_goes_each_way_and_skips_another_shops_articles() -> None:
    mapping = load_transform("transforms.sku.SkuPrefixMap")(starweb="WEB-", mamut="M-")
    product = {"product_id": 1, "variants": [{"sku": "WEB-1-S"}, {"sku": "WEB-1-M"}]}
    assert [v["sku"] for v in mapping(product, context())["variants"]] == ["M-1-S", "M-1-M"]
    family = {"key": "M-1", "variants": [{"sku": "M-1-S"}]}
    mapped = mapping(family, context(job="products_to_starweb"))
    assert mapped["key"] == "M-1" and mapped["variants"] == [{"sku": "WEB-1-S"}]  # the family keeps its key
    stock = mapping({"sku": "M-9", "target": "variant"}, context("stock", job="stock_to_starweb"))
    assert stock["sku"] == "WEB-9"
    skipped = mapping({"sku": "OTHER-9", "target": "variant"}, context("stock", job="stock_to_starweb"))
    assert isinstance(skipped, Skip) and "OTHER-9" in skipped.reason
    order = {"order_id": 5, "lines": [{"sku": "WEB-1-S"}, {"sku": "GIFT"}, {"sku": None}]}
    assert [line["sku"] for line in mapping(order, context("orders", job="orders_to_mamut"))["lines"]] == [
        "M-1-S",
        "GIFT",
        None,
    ]  # lines outside the scheme stay as they are


def test_skip_skus_matches_shell_patterns_without_regard_to_case() -> None:
    SkipSkus = load_transform("transforms.skip.SkipSkus")  # noqa: N806 - the class, by its own name
    skip = SkipSkus("test-*", "*-DEMO")
    assert isinstance(skip({"sku": "TEST-1", "target": "variant"}, context("stock")), Skip)
    assert isinstance(skip({"key": "K-1", "variants": [{"sku": "k-1-demo"}]}, context()), Skip)
    kept = {"key": "K-1", "variants": [{"sku": "K-1-S"}]}
    assert skip(kept, context()) == kept
    with pytest.raises(ValueError, match="at least one pattern"):
        SkipSkus()


def order_record(delivery: bool = True) -> dict[str, Any]:
    address = {
        "company": None,
        "first_name": "Ada",
        "last_name": "Ek",
        "street": "Storgatan 1",
        "zip": "41109",
        "city": "Göteborg",
        "country": "SE",
        "phone": None,
        "reference": None,
    }
    return {"order_id": 1001, "invoice_address": dict(address), "delivery_address": dict(address) if delivery else None}


def test_custom_info_becomes_your_reference_on_the_delivery_address_else_the_invoice_address() -> None:
    custom_info_to_your_reference = load_transform("transforms.fields.custom_info_to_your_reference")
    source = {"orderId": 1001, "originalCustomerCustomInfo1": "  PO-4711 "}
    with_delivery = custom_info_to_your_reference(order_record(), context("orders", source=source))
    assert with_delivery["delivery_address"]["reference"] == "PO-4711"
    invoice_only = custom_info_to_your_reference(order_record(delivery=False), context("orders", source=source))
    assert invoice_only["invoice_address"]["reference"] == "PO-4711"
    untouched = custom_info_to_your_reference(order_record(), context("orders", source={"orderId": 1001}))
    assert untouched == order_record()
    too_long = custom_info_to_your_reference(
        order_record(), context("orders", source={"originalCustomerCustomInfo1": "x" * 101})
    )
    assert isinstance(too_long, Reject) and "101 characters" in too_long.reason


# ------------------------------------------------------------------------------------------------- in the jobs


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[MamutGateway]:
    with fresh_mock_database("sqlite", tmp_path) as odbc:
        mamut = MamutGateway(odbc, SchemaMap.load())
        try:
            yield mamut
        finally:
            mamut.close()


@pytest.fixture
def make_ctx(sandbox: Any, gateway: MamutGateway, staging_store: StagingStore) -> Callable[..., JobContext]:
    def make(transforms: dict[str, Any], flow: str = "ecom", **params: Any) -> JobContext:
        settings = shop_with(transforms, flow, orders_to_mamut={"eligible_statuses": ELIGIBLE})
        return sandbox_job_context(settings, sandbox, staging_store, gateway, params)

    return make


def mamut_skus(gateway: MamutGateway) -> set[str]:
    return {row["sku"] for row in ProductRepository(gateway).iter_articles()}


def variant_skus(sandbox: Any, product_id: int) -> set[str]:
    return {variant["sku"] for variant in sandbox.state.list_variants(product_id)}


def test_a_failing_transform_quarantines_exactly_the_records_it_failed_on(
    make_ctx, sandbox, gateway, staging_store
) -> None:
    path = f"{HERE}.fail_on_odd_product"
    products = sandbox.state.product_ids()
    odd = {product_id for product_id in products if product_id % 2}
    assert odd and odd != set(products)

    result = products_to_mamut.run(make_ctx({"products": {"after_mapping": [path]}}))

    quarantined = {entry.key: entry.reasons for entry in staging_store.open_quarantine("demo", "product")}
    assert set(quarantined) == {str(product_id) for product_id in odd}
    assert all(
        reasons == [{"check": path, "reason": f"raised ValueError: odd product {key} is not wanted"}]
        for key, reasons in quarantined.items()
    )
    assert (result["quarantined"], result["loaded"], result["read"]) == (
        len(odd),
        len(products) - len(odd),
        len(products),
    )
    landed = mamut_skus(gateway)
    assert all(variant_skus(sandbox, pid) <= landed for pid in products if pid not in odd)
    assert not any(variant_skus(sandbox, pid) & landed for pid in odd)

    fixed = products_to_mamut.run(make_ctx({}))  # the transform is fixed (here: removed); the re-check loads them
    assert fixed["loaded"] == len(odd) and staging_store.open_quarantine("demo", "product") == []


def test_a_rejecting_transform_before_load_quarantines_on_load_and_the_rest_lands(
    make_ctx, sandbox, gateway, staging_store
) -> None:
    path = f"{HERE}.reject_foreign_currency"
    products_to_mamut.run(make_ctx({}))

    result = orders_to_mamut.run(
        make_ctx({"orders": {"before_load": [path]}, "customers": {"after_mapping": [f"{HERE}.shout_customer_email"]}})
    )

    foreign = {str(oid) for oid, order in eligible_orders(sandbox).items() if order["currencyCode"] != SEK}
    quarantined = {entry.key: entry.reasons for entry in staging_store.open_quarantine("demo", "order")}
    assert foreign and foreign <= set(quarantined)
    assert all(
        quarantined[key][0]["check"] == path and "orders go by hand" in quarantined[key][0]["reason"] for key in foreign
    )
    assert result["failed"] == len(foreign) and result["loaded"] > 0
    with gateway.transaction() as tx:
        emails = {row["email"] for row in tx.select("contact", ["email"]) if row["email"]}
    assert emails and all(email == email.upper() for email in emails)  # the customers' own hook point ran


def test_skip_by_sku_pattern_counts_skipped_and_closes_an_open_quarantine_entry(
    make_ctx, sandbox, gateway, staging_store
) -> None:
    test_article = sandbox.state.add_product(
        {  # the space in its SKU fails the checks
            "languages": [{"langCode": "sv", "name": "Testartikel"}],
            "variants": [{"sku": "TEST-1 NY", "attributeValueLinks": []}],
        }
    )
    key = str(test_article["productId"])
    products_to_mamut.run(make_ctx({}))
    assert [entry.key for entry in staging_store.open_quarantine("demo", "product")] == [key]

    skip = {"products": {"after_mapping": ["transforms.skip.skip_test_articles"]}}
    result = products_to_mamut.run(make_ctx(skip))

    assert (result["skipped"], result["quarantined"], result["loaded"]) == (1, 0, 0)
    assert staging_store.open_quarantine("demo", "product") == []  # leaving it out is now intended
    assert "TEST-1 NY" not in mamut_skus(gateway)


def test_a_dry_run_shows_the_records_after_transforms_and_writes_nothing(
    make_ctx, sandbox, gateway, staging_store, caplog
) -> None:
    prefix = {"products": {"after_mapping": ["transforms.sku.web_articles_prefixed_w"]}}
    caplog.set_level(logging.INFO, logger="starmamut.transforms")

    result = products_to_mamut.run(make_ctx(prefix, dry_run=True))

    product_id = sandbox.state.product_ids()[0]
    shown = [
        r.getMessage()
        for r in caplog.records
        if r.getMessage().startswith(f"dry run: shop demo: products {product_id} after after_mapping")
    ]
    assert len(shown) == 1
    assert all(f'"sku": "W-{sku}"' in shown[0] for sku in variant_skus(sandbox, product_id))
    assert mamut_skus(gateway) == set() and staging_store.open_quarantine("demo") == []
    assert result["would_create_articles"] > 0


def test_prices_after_sku_mapping_and_rounding_land_once_and_the_ledger_holds_what_was_sent(
    make_ctx, sandbox, gateway, staging_store
) -> None:
    state = sandbox.state
    shop_skus = sorted(sku for product_id in state.product_ids() for sku in variant_skus(sandbox, product_id))[:2]
    prices = [Decimal("99.50"), Decimal("123.4500")]
    with gateway.transaction() as tx:
        tx.insert_many(
            "product",
            [
                {"sku": f"W-{sku}", "name": sku, "vat_code": 1, "price_out": value}
                for sku, value in zip(shop_skus, prices, strict=True)
            ]
            + [{"sku": "ANNAN-1", "name": "Annan butiks artikel", "vat_code": 1, "price_out": Decimal(10)}],
        )
    transforms = {
        "prices": {
            "after_mapping": ["transforms.sku.web_articles_prefixed_w", "transforms.prices.round_to_whole_kronor"]
        }
    }

    first = prices_to_starweb.run(make_ctx(transforms, flow="erp"))

    shown = {sku: state.price(*state.find_variant(sku), 1)["priceExVat"] for sku in shop_skus}
    assert shown == {shop_skus[0]: 100, shop_skus[1]: 123}
    assert (first["loaded"], first["skipped"], first["quarantined"]) == (2, 1, 0)
    assert staging_store.get_ledger("demo", "price", shop_skus) == {
        (shop_skus[0], "pricelist:1"): "100",
        (shop_skus[1], "pricelist:1"): "123",
    }
    sandbox.reset_requests()
    second = prices_to_starweb.run(make_ctx(transforms, flow="erp"))
    assert sandbox.write_requests() == [] and second["changed"] == 0 and second["unchanged"] == 2


def test_stock_changed_before_load_is_sent_once_and_compared_as_sent(make_ctx, sandbox, gateway) -> None:
    state = sandbox.state
    sku = sorted(sku for product_id in state.product_ids() for sku in variant_skus(sandbox, product_id))[0]
    with gateway.transaction() as tx:
        tx.insert("product", {"sku": sku, "name": sku, "vat_code": 1, "price_out": Decimal(10)})
        (product,) = tx.select("product", ["product_key"], where={"sku": sku})
        tx.insert(
            "product_stock",
            {
                "product_key": product["product_key"],
                "warehouse_id": 1,
                "qty_in_stock": Decimal(25),
                "qty_reserved": Decimal(0),
                "qty_ordered": 0,
            },
        )
    cap = {"stock": {"before_load": [f"{HERE}.at_most_ten_in_stock"]}}

    first = stock_to_starweb.run(make_ctx(cap, flow="erp"))

    assert state.variant(*state.find_variant(sku))["stockQuantity"] == 10
    assert first["loaded"] == 1
    sandbox.reset_requests()
    second = stock_to_starweb.run(make_ctx(cap, flow="erp"))
    assert sandbox.write_requests() == [] and second["loaded"] == 0


def test_a_shop_whose_transform_cannot_be_loaded_is_left_out_when_the_dags_are_parsed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The DAG file loads every shop's transforms at parse time: a typo is the file's import error in the UI,
    naming the shop, the hook and the path, before any run; the other shops' DAGs still load."""
    from airflow.dag_processing.dagbag import DagBag

    config = yaml.safe_load((REPO_ROOT / "config" / "examples" / "three_shops.yaml").read_text(encoding="utf-8"))
    config["shops"]["kombo"]["transforms"] = {"orders": {"after_mapping": ["transforms.fields.no_such_transform"]}}
    path = tmp_path / "shops.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    monkeypatch.setenv("STARMAMUT_CONFIG", str(path))

    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))

    (message,) = bag.import_errors.values()
    assert (
        "shop 'kombo': DAGs not built: TransformError: shop kombo: transforms.orders.after_mapping: "
        "transforms.fields.no_such_transform: module 'transforms.fields' has no 'no_such_transform'"
    ) in message
    assert not any(dag_id.startswith("kombo__") for dag_id in bag.dag_ids)
    assert any(dag_id.startswith("webshop__") for dag_id in bag.dag_ids)
    assert any(dag_id.startswith("grossist__") for dag_id in bag.dag_ids)
