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
from tests.test_mamut_customers import customer_card

ELIGIBLE = ["created", "picking", "completed", 5, 6]


def settings_for(mamut: dict[str, Any] | None = None, **orders: Any) -> Settings:
    shop = {
        "name": "Demo",
        "flow": "ecom",
        "starweb_conn_id": "unused",
        "orders_to_mamut": {"eligible_statuses": ELIGIBLE, **orders},
    }
    return Settings.model_validate(
        {
            "version": 1,
            "mamut": {"vat_codes": {25: 1, 12: 2, 6: 3, 0: 4, 25.5: 5}, **(mamut or {})},
            "shops": {"demo": shop, "other": dict(shop, name="Other")},
        }
    )


@pytest.fixture
def make_ctx(sandbox: Any, mamut_db: Any, staging_store: StagingStore) -> Iterator[Callable[..., JobContext]]:
    def make(
        shop: str = "demo", orders: dict[str, Any] | None = None, mamut: dict[str, Any] | None = None, **params: Any
    ) -> JobContext:
        return sandbox_job_context(
            settings_for(mamut, **(orders or {})), sandbox, staging_store, mamut_db.gateway, params, shop=shop
        )

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
        assert mamut["total_gross"] == Decimal(str(order["amountToPay"])).quantize(Decimal("0.01"))
        item_skus = [item["sku"] for item in order["items"]["data"]]
        assert [line["sku"] for line in mamut["lines"] if line["sku"] not in (None, "FRAKT", "AVGIFT")] == item_skus
        extra = (
            (order["shippingCost"] > 0)
            + (order["paymentFee"] > 0)
            + sum(1 for item in order["items"]["data"] if item["discountType"] == "amount" and item["discount"])
        )
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
    assert landed[f"demo:{euro['orderId']}"]["exchange_rate"] == sek_per(euro, unit=1)
    company = next(o for o in eligible_orders(sandbox).values() if o.get("originalCustomerVatNo"))
    with mamut_db.gateway.transaction() as tx:
        (contact,) = tx.select(
            "contact",
            ["name", "vat_number", "org_number"],
            where={"contact_key": landed[f"demo:{company['orderId']}"]["contact_key"]},
        )
    customer = state.customer(company["customerId"])
    assert contact["vat_number"] == customer["vatNo"] and contact["name"].endswith("AB")


def sek_per(order: dict[str, Any], *, unit: int) -> Decimal:
    """The Starweb order's rate (order currency per 1 SEK) as SEK per ``unit`` units, as EXCHANGERATE holds it."""
    return (unit / Decimal(str(order["currencyExchangeRate"]))).quantize(Decimal("0.000001"))


@pytest.mark.parametrize(
    ("exchange_rate", "expected"),
    [
        ({}, lambda order: sek_per(order, unit=1)),  # the default: SEK per 1 EUR / NOK (≈ 11.49 per EUR)
        ({"unit": 100}, lambda order: sek_per(order, unit=100)),
        ({"direction": "foreign_per_base", "unit": 1}, lambda order: Decimal(str(order["currencyExchangeRate"]))),
    ],
)
def test_exchange_rates_land_in_the_configured_direction_and_unit(make_ctx, sandbox, mamut_db, exchange_rate, expected):
    orders_to_mamut.run(make_ctx(mamut={"exchange_rate": exchange_rate}))
    landed = mamut_orders(mamut_db.gateway)
    by_currency: dict[str, set[Decimal]] = {}
    for oid, order in eligible_orders(sandbox).items():
        rate = landed[f"demo:{oid}"]["exchange_rate"]
        by_currency.setdefault(order["currencyCode"], set()).add(rate)
        if order["currencyCode"] != "SEK":
            assert rate == expected(order), (order["currencyCode"], rate)
    assert {"EUR", "NOK"} <= set(by_currency) and by_currency["SEK"] == {Decimal(1)}  # base currency: 1 always


def test_an_orders_own_addresses_land_on_the_order_and_leave_the_customer_alone(make_ctx, sandbox, mamut_db):
    """A guest using a returning customer's e-mail, and that customer sending a gift: the customer stays as it was."""
    orders_to_mamut.run(make_ctx())
    card = customer_card(mamut_db.gateway)
    guest_order, gift_order = _guest_and_gift_orders(sandbox)

    later = orders_to_mamut.run(make_ctx())

    assert later["loaded"] == 2 and later["customers_created"] == 0
    assert customer_card(mamut_db.gateway) == card
    landed = mamut_orders(mamut_db.gateway)
    guest, gift = landed[f"demo:{guest_order['orderId']}"], landed[f"demo:{gift_order['orderId']}"]
    assert (guest["contact_name"], guest["delivery_address"]) == (
        "Okänd Gäst",
        "Okänd Gäst\nGästvägen 1\n753 20 Uppsala\nSE",
    )
    assert gift["delivery_address"] == "Mormor Berg\nFjällvägen 9\n981 31 Kiruna\nSE"
    assert guest["contact_key"] == gift["contact_key"]  # both belong to the returning customer


def test_update_customer_from_order_writes_each_orders_buyer_over_the_customer(make_ctx, sandbox, mamut_db):
    orders_to_mamut.run(make_ctx())
    _, gift_order = _guest_and_gift_orders(sandbox)

    orders_to_mamut.run(make_ctx(orders={"update_customer_from_order": True}))

    contact_key = mamut_orders(mamut_db.gateway)[f"demo:{gift_order['orderId']}"]["contact_key"]
    with mamut_db.gateway.transaction() as tx:
        streets = {
            row["address_type"]: row["street"]
            for row in tx.select("address", ["address_type", "street"], where={"source_key": contact_key})
        }
    assert streets[3] == "Fjällvägen 9"


def _guest_and_gift_orders(sandbox: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A guest order with a returning customer's e-mail, then that customer's order delivered elsewhere."""
    state = sandbox.state
    expected = eligible_orders(sandbox)
    returning = next(o for o in expected.values() if o.get("customerId") and o["currencyCode"] == "SEK")
    template = state.order(returning["orderId"], includes=("items", "addresses"))
    items = [
        {key: item[key] for key in ("sku", "description", "quantity", "unitPrice", "vatRate")}
        for item in template["items"]["data"]
    ]
    email = state.customer(returning["customerId"])["email"]
    stranger = {
        "firstName": "Okänd",
        "lastName": "Gäst",
        "address": "Gästvägen 1",
        "postalCode": "753 20",
        "city": "Uppsala",
        "countryCode": "SE",
    }
    gift = {
        "firstName": "Mormor",
        "lastName": "Berg",
        "address": "Fjällvägen 9",
        "postalCode": "981 31",
        "city": "Kiruna",
        "countryCode": "SE",
    }
    base = {"statusId": template["statusId"], "currencyCode": "SEK", "isComplete": True, "items": items}
    guest = state.add_order(
        {
            **base,
            "originalCustomerEmail": email.upper(),
            "addresses": {"customerInvoice": stranger, "customerDelivery": stranger},
        }
    )
    invoice = template["addresses"]["data"]["customerInvoice"]
    gift_order = state.add_order(
        {
            **base,
            "customerId": returning["customerId"],
            "originalCustomerEmail": email,
            "addresses": {"customerInvoice": invoice, "customerDelivery": gift},
        }
    )
    return guest, gift_order


def test_an_amount_no_order_row_shows_is_quarantined_with_its_reason(make_ctx, sandbox, mamut_db, staging_store):
    state = sandbox.state
    template = state.order(min(eligible_orders(sandbox)), includes=("items", "addresses"))
    items = [
        {key: item[key] for key in ("sku", "description", "quantity", "unitPrice", "vatRate")}
        for item in template["items"]["data"]
    ]
    gift_card = state.add_order(
        {
            "statusId": template["statusId"],
            "currencyCode": "SEK",
            "isComplete": True,
            "originalCustomerEmail": "presentkort@example.se",
            "items": items,
            "addresses": template["addresses"]["data"],
        },
        unitemised_amount=-100.0,
    )

    result = orders_to_mamut.run(make_ctx())

    (entry,) = staging_store.open_quarantine("demo", "order")
    assert entry.key == str(gift_card["orderId"]) and result["quarantined"] == 1
    (reason,) = [r["reason"] for r in entry.reasons]
    assert "but amountToPay is" in reason and "(-100.00, more than the tolerance" in reason
    assert "amountToPay is totalAmount + totalVat -100.00: an amount no order row shows (a gift card" in reason
    assert f"demo:{gift_card['orderId']}" not in mamut_orders(mamut_db.gateway)


def test_reruns_and_overlapping_windows_change_nothing(make_ctx, mamut_db):
    orders_to_mamut.run(make_ctx())
    before = mamut_orders(mamut_db.gateway)
    again = orders_to_mamut.run(make_ctx())
    overlapping = orders_to_mamut.run(make_ctx(since="2020-01-01T00:00:00+00:00"))
    assert again["loaded"] == overlapping["loaded"] == 0
    assert overlapping["already_transferred"] == len(before)
    assert mamut_orders(mamut_db.gateway) == before


@pytest.mark.parametrize("failpoint", ["orders_to_mamut.after_mamut_commit@2", "orders_to_mamut.after_write_back@2"])
def test_crash_mid_load_then_retry_creates_no_duplicate(
    make_ctx, sandbox, mamut_db, staging_store, monkeypatch, failpoint
):
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
        assert patch.body == {
            "externalId": str(invoice_no),
            "externalIdType": "mamut_invoice",
            "statusId": picking,
            "onOrderStatusChangeSendEmail": False,
            "onOrderStatusChangeProcessPayment": False,
        }
    changes = [c for c in sandbox.state.status_changes if c.to_status_id == picking]
    assert changes and not any(c.send_email or c.process_payment for c in changes)


def test_bad_orders_are_quarantined_then_go_through_once_fixed(make_ctx, sandbox, mamut_db, staging_store):
    state = sandbox.state
    template = state.order(min(eligible_orders(sandbox)), includes=("items", "addresses"))
    items = [
        {key: item[key] for key in ("sku", "description", "quantity", "unitPrice", "vatRate")}
        for item in template["items"]["data"]
    ]
    base = {
        "statusId": template["statusId"],
        "currencyCode": "SEK",
        "originalCustomerEmail": "ny@example.se",
        "isComplete": True,
        "items": items,
        "addresses": template["addresses"]["data"],
    }
    unknown_sku = state.add_order({**base, "items": [dict(items[0], sku="FINNS-INTE")]})
    wrong_total = state.add_order(base, total_override=1.0)
    no_address = state.add_order({**base, "addresses": {}})
    bad = {str(o["orderId"]) for o in (unknown_sku, wrong_total, no_address)}

    result = orders_to_mamut.run(make_ctx(orders={"unknown_sku": "quarantine"}))

    quarantined = {
        entry.key: " ".join(r["reason"] for r in entry.reasons)
        for entry in staging_store.open_quarantine("demo", "order")
    }
    assert set(quarantined) == bad and result["quarantined"] == 3
    assert "FINNS-INTE" in quarantined[str(unknown_sku["orderId"])]
    assert "but totalAmount is 1.00" in quarantined[str(wrong_total["orderId"])]
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
    assert result["would_write"] == len(eligible_orders(sandbox))
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
