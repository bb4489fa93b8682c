"""orders_to_mamut end to end: sandbox orders over loopback, Mamut mock over ODBC, real staging.

Expected results are derived from the sandbox's own orders (status, payment, items), not written by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

from starmamut.config import Settings
from starmamut.failpoints import SimulatedCrash
from starmamut.jobs import orders_to_mamut, products_to_mamut
from starmamut.jobs.common import JobContext
from starmamut.mamut.orders import OrderRepository
from starmamut.staging.store import StagingStore
from tests.fixtures.jobs import sandbox_job_context

ELIGIBLE = ["created", "picking", "completed", 5, 6]


def settings_for(**orders: Any) -> Settings:
    shop = {"name": "Demo", "flow": "ecom", "starweb_conn_id": "unused",
            "orders_to_mamut": {"eligible_statuses": ELIGIBLE, **orders}}
    return Settings.model_validate({
        "version": 1,
        "mamut": {"vat_codes": {25: 1, 12: 2, 6: 3, 0: 4, 25.5: 5}},
        "shops": {"demo": shop, "other": dict(shop, name="Other")},
    })


@pytest.fixture
def make_ctx(sandbox: Any, mamut_db: Any, staging_store: StagingStore) -> Iterator[Callable[..., JobContext]]:
    def make(shop: str = "demo", orders: dict[str, Any] | None = None, **params: Any) -> JobContext:
        return sandbox_job_context(settings_for(**(orders or {})), sandbox, staging_store, mamut_db.gateway, params,
                                   shop=shop)

    products_to_mamut.run(make())  # the catalogue first, so order lines find their articles
    yield make


def eligible_orders(sandbox: Any) -> dict[int, dict[str, Any]]:
    state = sandbox.state
    statuses = {state.order_status_id(code) for code in ELIGIBLE if isinstance(code, str)} | {5, 6}
    orders = {oid: state.order(oid, includes=("items",)) for oid in state.order_ids()}
    return {oid: o for oid, o in orders.items() if o["statusId"] in statuses and o["isComplete"]}


def mamut_orders(gateway: Any, prefix: str = "demo:") -> dict[str, dict[str, Any]]:
    orders = list(OrderRepository(gateway).iter_orders_with_lines(prefix))
    assert len(orders) == len({o["external_id"] for o in orders}), "an external id occurs twice in Mamut"
    return {o["external_id"]: o for o in orders}


def test_demo_orders_land_with_lines_totals_and_no_duplicate_customers(make_ctx, sandbox, mamut_db):
    result = orders_to_mamut.run(make_ctx())

    expected = eligible_orders(sandbox)
    landed = mamut_orders(mamut_db.gateway)
    assert set(landed) == {f"demo:{oid}" for oid in expected}
    assert result["loaded"] == len(expected) and result["quarantined"] == 0
    for oid, order in expected.items():
        mamut = landed[f"demo:{oid}"]
        assert mamut["total_gross"] == Decimal(str(order["totalAmount"])).quantize(Decimal("0.01"))
        item_skus = [item["sku"] for item in order["items"]["data"]]
        assert [line["sku"] for line in mamut["lines"] if line["sku"] not in (None, "FRAKT", "AVGIFT")] == item_skus
        extra = (order["shippingCost"] > 0) + (order["paymentFee"] > 0) + sum(
            1 for item in order["items"]["data"] if item["discountType"] == "amount" and item["discount"])
        assert len(mamut["lines"]) == len(item_skus) + extra
    # one Mamut customer per distinct buyer: the returning customer and the company's two orders share one
    with mamut_db.gateway.transaction() as tx:
        contacts = tx.select("contact", ["contact_key", "email"])
    buyers = {(o.get("customerId") or o["originalCustomerEmail"].lower()) for o in expected.values()}
    assert len(contacts) == len(buyers) == result["customers_created"]
    by_customer: dict[Any, set[int]] = {}
    for oid, order in expected.items():
        by_customer.setdefault(order.get("customerId"), set()).add(landed[f"demo:{oid}"]["contact_key"])
    assert all(len(keys) == 1 for cid, keys in by_customer.items() if cid is not None)
    assert any(len([o for o in expected.values() if o.get("customerId") == cid]) > 1 for cid in by_customer)


def test_export_foreign_currency_and_b2b_orders(make_ctx, sandbox, mamut_db):
    orders_to_mamut.run(make_ctx())
    landed = mamut_orders(mamut_db.gateway)
    state = sandbox.state
    norway = next(o for o in eligible_orders(sandbox).values() if o["currencyCode"] == "NOK")
    assert {line["vat_code"] for line in landed[f"demo:{norway['orderId']}"]["lines"]} == {4}
    euro = next(o for o in eligible_orders(sandbox).values() if o["currencyCode"] == "EUR")
    assert landed[f"demo:{euro['orderId']}"]["exchange_rate"] == Decimal(str(euro["currencyExchangeRate"]))
    company = next(o for o in eligible_orders(sandbox).values() if o.get("originalCustomerVatNo"))
    with mamut_db.gateway.transaction() as tx:
        (contact,) = tx.select("contact", ["name", "vat_number", "org_number"],
                               where={"contact_key": landed[f"demo:{company['orderId']}"]["contact_key"]})
    customer = state.customer(company["customerId"])
    assert contact["vat_number"] == customer["vatNo"] and contact["name"].endswith("AB")


def test_reruns_and_overlapping_windows_change_nothing(make_ctx, mamut_db):
    orders_to_mamut.run(make_ctx())
    before = mamut_orders(mamut_db.gateway)
    again = orders_to_mamut.run(make_ctx())
    overlapping = orders_to_mamut.run(make_ctx(since="2020-01-01T00:00:00+00:00"))
    assert again["loaded"] == overlapping["loaded"] == 0
    assert overlapping["already_transferred"] == len(before)
    assert mamut_orders(mamut_db.gateway) == before


@pytest.mark.parametrize("failpoint", ["orders_to_mamut.after_mamut_commit@2", "orders_to_mamut.after_write_back@2"])
def test_crash_mid_load_then_retry_creates_no_duplicate(make_ctx, sandbox, mamut_db, staging_store, monkeypatch,
                                                        failpoint):
    ctx = make_ctx()
    extracted = orders_to_mamut.extract(ctx)
    orders_to_mamut.validate(ctx, extracted["batch_id"])
    monkeypatch.setenv("STARMAMUT_FAILPOINT", failpoint)
    with pytest.raises(SimulatedCrash):
        orders_to_mamut.load(ctx, extracted["batch_id"])
    monkeypatch.delenv("STARMAMUT_FAILPOINT")
    orders_to_mamut.load(ctx, extracted["batch_id"])  # the Airflow retry

    landed = mamut_orders(mamut_db.gateway)
    assert set(landed) == {f"demo:{oid}" for oid in eligible_orders(sandbox)}
    for external_id, order in landed.items():
        starweb = sandbox.state.order(int(external_id.split(":")[1]))
        assert starweb["externalId"] == str(order["order_number"])
    assert orders_to_mamut.run(make_ctx())["loaded"] == 0


def test_write_back_sends_exactly_the_configured_fields(make_ctx, sandbox, mamut_db):
    sandbox.reset_requests()
    orders_to_mamut.run(make_ctx(orders={"document": "invoice", "status_after_transfer": "picking"}))
    picking = sandbox.state.order_status_id("picking")
    patches = [r for r in sandbox.write_requests() if r.method == "PATCH" and r.path.startswith("/orders/")]
    landed = mamut_orders(mamut_db.gateway)
    assert len(patches) == len(landed)
    for patch in patches:
        invoice_no = landed[f"demo:{patch.path.rsplit('/', 1)[1]}"]["invoice_number"]
        assert patch.body == {"externalId": str(invoice_no), "externalIdType": "mamut_invoice", "statusId": picking,
                              "onOrderStatusChangeSendEmail": False, "onOrderStatusChangeProcessPayment": False}
    changes = [c for c in sandbox.state.status_changes if c.to_status_id == picking]
    assert changes and not any(c.send_email or c.process_payment for c in changes)


def test_bad_orders_are_quarantined_then_go_through_once_fixed(make_ctx, sandbox, mamut_db, staging_store):
    state = sandbox.state
    template = state.order(min(eligible_orders(sandbox)), includes=("items", "addresses"))
    items = [{key: item[key] for key in ("sku", "description", "quantity", "unitPrice", "vatRate")}
             for item in template["items"]["data"]]
    base = {"statusId": template["statusId"], "currencyCode": "SEK", "originalCustomerEmail": "ny@example.se",
            "isComplete": True, "items": items, "addresses": template["addresses"]["data"]}
    unknown_sku = state.add_order({**base, "items": [dict(items[0], sku="FINNS-INTE")]})
    wrong_total = state.add_order(base, total_override=1.0)
    no_address = state.add_order({**base, "addresses": {}})
    bad = {str(o["orderId"]) for o in (unknown_sku, wrong_total, no_address)}

    result = orders_to_mamut.run(make_ctx(orders={"unknown_sku": "quarantine"}))

    quarantined = {entry.key: " ".join(r["reason"] for r in entry.reasons)
                   for entry in staging_store.open_quarantine("demo", "order")}
    assert set(quarantined) == bad and result["quarantined"] == 3
    assert "FINNS-INTE" in quarantined[str(unknown_sku["orderId"])]
    assert "order total" in quarantined[str(wrong_total["orderId"])]
    assert "address" in quarantined[str(no_address["orderId"])]
    assert not bad & {key.split(":")[1] for key in mamut_orders(mamut_db.gateway)}

    state.update_order(unknown_sku["orderId"], {"items": items})
    state.update_order(wrong_total["orderId"], {"items": items})  # recomputes the total
    state.update_order(no_address["orderId"], {"addresses": template["addresses"]["data"]})
    fixed = orders_to_mamut.run(make_ctx(orders={"unknown_sku": "quarantine"}))

    assert fixed["loaded"] == 3 and staging_store.open_quarantine("demo", "order") == []
    assert {f"demo:{key}" for key in bad} <= set(mamut_orders(mamut_db.gateway))


def test_an_order_that_becomes_eligible_later_is_picked_up(make_ctx, sandbox, mamut_db):
    state = sandbox.state
    unpaid = next(oid for oid in state.order_ids() if not state.order(oid)["isComplete"])
    canceled = state.order_status_id("canceled")
    parked = next(oid for oid in state.order_ids() if state.order(oid)["statusId"] == canceled)
    orders_to_mamut.run(make_ctx())
    assert not {f"demo:{unpaid}", f"demo:{parked}"} & set(mamut_orders(mamut_db.gateway))

    state.mark_payment_complete(unpaid)
    state.set_order_status(parked, "created", send_email=False)
    later = orders_to_mamut.run(make_ctx())

    assert later["loaded"] == 2
    assert {f"demo:{unpaid}", f"demo:{parked}"} <= set(mamut_orders(mamut_db.gateway))


def test_two_shops_with_the_same_order_ids_never_collide(make_ctx, sandbox, mamut_db):
    orders_to_mamut.run(make_ctx("demo"))
    orders_to_mamut.run(make_ctx("other"))
    demo, other = mamut_orders(mamut_db.gateway, "demo:"), mamut_orders(mamut_db.gateway, "other:")
    assert {k.split(":")[1] for k in demo} == {k.split(":")[1] for k in other} != set()
    assert {o["order_number"] for o in demo.values()}.isdisjoint(o["order_number"] for o in other.values())


def test_dry_run_writes_nothing_anywhere(make_ctx, sandbox, mamut_db, staging_store):
    sandbox.reset_requests()
    result = orders_to_mamut.run(make_ctx(dry_run=True))
    assert mamut_orders(mamut_db.gateway) == {}
    assert result["would_create"] == len(eligible_orders(sandbox))
    assert sandbox.write_requests() == []
    assert staging_store.get_watermark("demo", orders_to_mamut.JOB) is None


def test_an_unknown_status_in_the_config_names_shop_and_status(make_ctx):
    with pytest.raises(orders_to_mamut.UnknownOrderStatus, match=r"shop demo: order status 'shipped'"):
        orders_to_mamut.run(make_ctx(orders={"eligible_statuses": ["created", "shipped"]}))


def test_resync_by_id_repairs_a_write_back_removed_by_hand_without_a_second_order(make_ctx, sandbox, mamut_db):
    orders_to_mamut.run(make_ctx())
    order_id = min(eligible_orders(sandbox))
    number = mamut_orders(mamut_db.gateway)[f"demo:{order_id}"]["order_number"]
    sandbox.state.update_order(order_id, {"externalId": ""})
    assert orders_to_mamut.run(make_ctx())["written_back"] == 0  # a normal run trusts its ledger
    resynced = orders_to_mamut.run(make_ctx(resync_ids=[order_id]))
    assert (resynced["loaded"], resynced["written_back"]) == (0, 1)
    assert sandbox.state.order(order_id)["externalId"] == str(number)
    assert len(mamut_orders(mamut_db.gateway)) == len(eligible_orders(sandbox))
