"""The sandbox's orders, customers and order statuses behave the way the order jobs will rely on.

Seeds, the ``/orders`` filters (created-after boundary, status, unpaid orders, text), sorting and
pagination, computed totals (discounts, VAT 0, foreign currency, rounding), the status-change log with
its e-mail and payment switches, the payment-status rule, the externalId write-back, customers, the
test helpers and UTF-8. Expected money values are worked out by hand in the comments.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from starmamut_devtools.sandbox import Sandbox, SandboxState, start_sandbox
from starmamut_devtools.sandbox.demo_data import (
    BACKORDERED_STATUS_ID,
    CANCELED_STATUS_ID,
    COMPLETED_STATUS_ID,
    CREATED_STATUS_ID,
    INVOICE_PAYMENT_METHOD_ID,
    KLARNA_PAYMENT_METHOD_ID,
    PAID_STATUS_ID,
    PICKING_STATUS_ID,
    POSTNORD_TRACKER_TYPE,
    SHIPPED_STATUS_ID,
    SWISH_PAYMENT_METHOD_ID,
)
from starmamut_devtools.sandbox.errors import ApiError
from starmamut_devtools.sandbox.state import StatusChange
from starmamut_devtools.sandbox.validation import SHOP_TIMEZONE, format_timestamp
from tests.fixtures.sandbox import fetch_token

FIXED_NOW = datetime(2025, 6, 16, 12, 0, 0, tzinfo=SHOP_TIMEZONE)
_BUYER = {
    "firstName": "Örjan",
    "lastName": "Ågren",
    "address": "Älvgatan 3",
    "postalCode": "852 30",
    "city": "Sundsvall",
    "countryCode": "SE",
}


def _order_body(**overrides: Any) -> dict[str, Any]:
    """A complete SEK Klarna order with a reserved payment, one 25 % line of 100.00 ex VAT."""
    return {
        "statusId": CREATED_STATUS_ID,
        "paymentMethodId": KLARNA_PAYMENT_METHOD_ID,
        "paymentMethodName": "Klarna Checkout",
        "paymentStatus": "reserved",
        "originalCustomerEmail": "orjan.agren@example.se",
        "items": [{"sku": "LEK-1001", "description": "Trähäst Åke", "quantity": 1, "unitPrice": 100.0, "vatRate": 25}],
        "addresses": {"customerInvoice": _BUYER, "customerDelivery": _BUYER},
        **overrides,
    }


def _order_ids(client: httpx.Client, params: dict[str, str] | None = None) -> list[int]:
    """Every order id a client sees, walking pages until current_page reaches total_pages."""
    ids: list[int] = []
    page = 1
    while True:
        body = client.get("/orders", params={**(params or {}), "page": str(page)}).json()
        ids += [order["orderId"] for order in body["data"]]
        if page >= body["meta"]["pagination"]["total_pages"]:
            return ids
        page += 1


def _advance_clock(state: SandboxState, by: timedelta) -> datetime:
    later = state.clock() + by
    state.clock = lambda: later
    return later


# ---------------------------------------------------------------- seeds


def test_demo_seed_covers_every_order_case_the_transfer_must_handle() -> None:
    state = SandboxState("demo", clock=lambda: FIXED_NOW)
    orders = {order_id: state.order(order_id, ["items", "addresses", "status"]) for order_id in state.order_ids()}
    assert list(orders) == list(range(1001, 1011))
    created = [datetime.fromisoformat(order["createdAt"]) for order in orders.values()]
    assert all(FIXED_NOW - timedelta(days=10) < moment < FIXED_NOW for moment in created)
    assert all(datetime.fromisoformat(order["modifiedAt"]) < FIXED_NOW for order in orders.values())
    id_codes = {order["status"]["data"].get("idCode") for order in orders.values()}
    assert {"created", "picking", "completed", "canceled"} <= id_codes
    assert {order["currencyCode"] for order in orders.values()} == {"SEK", "EUR", "NOK"}
    guests = [order for order in orders.values() if "customerId" not in order]
    assert guests and all(order["originalCustomerEmail"] and order["addresses"]["data"] for order in guests)
    customer_orders = [order["customerId"] for order in orders.values() if "customerId" in order]
    assert any(customer_orders.count(customer_id) == 2 for customer_id in customer_orders)
    assert [order["orderId"] for order in orders.values() if not order["isComplete"]] == [1007]
    assert orders[1002]["originalCustomerVatNo"] == "SE556677889901"
    export = orders[1005]
    assert export["currencyCode"] == "NOK" and export["totalVat"] == 0.0 and export["shippingVatRate"] == 0.0
    assert all(item["vatRate"] == 0.0 for item in export["items"]["data"])
    discounted = orders[1004]
    assert discounted["discountCode"] == "SOMMAR10"
    assert {item["discountType"] for item in discounted["items"]["data"] if item["discount"]} == {"amount", "percent"}
    assert orders[1002]["paymentFee"] == 29.0 and orders[1002]["shippingCost"] == 149.0
    for order in orders.values():
        addresses = order["addresses"]["data"]
        assert {"customerInvoice", "customerDelivery", "originalInvoice", "originalDelivery"} <= set(addresses)
        assert all(state.find_variant(item["sku"]) is not None for item in order["items"]["data"])
    names = " ".join(a["firstName"] + a["lastName"] for o in orders.values() for a in o["addresses"]["data"].values())
    assert set("åäöÅÄÖ") & set(names)
    assert state.status_changes == []
    again = SandboxState("demo", clock=lambda: FIXED_NOW)
    assert [again.order(order_id, ["items", "addresses"]) for order_id in again.order_ids()] == [
        state.order(order_id, ["items", "addresses"]) for order_id in state.order_ids()
    ]


def test_demo_seed_lookups_and_customers() -> None:
    state = SandboxState("demo")
    statuses = {status["statusId"]: status for status in state.order_statuses()}
    assert [statuses[status_id].get("idCode") for status_id in range(1, 5)] == [
        "created",
        "picking",
        "completed",
        "canceled",
    ]
    custom = [statuses[status_id] for status_id in (PAID_STATUS_ID, SHIPPED_STATUS_ID, BACKORDERED_STATUS_ID)]
    assert all("idCode" not in status for status in custom)
    assert [status["languages"]["data"][0]["name"] for status in custom] == ["Betald", "Skickad", "Restnoterad"]
    assert {status["shouldSendEmail"] for status in custom} == {True, False}
    assert [method["idCode"] for method in state.payment_methods()] == ["klarna", "invoice", "swish"]
    assert [method["languages"]["data"][0]["name"] for method in state.shipping_methods()] == [
        "PostNord",
        "DHL",
        "Hämta i butik",
    ]
    assert {currency["code"]: currency["exchangeRate"] for currency in state.currencies()} == {
        "SEK": 1.0,
        "EUR": 0.087,
        "NOK": 0.98,
    }
    customers = [state.customer(customer_id, ["addresses"]) for customer_id in state.customer_ids()]
    company = next(customer for customer in customers if customer["type"] == "company")
    assert (company["vatNo"], company["nationalIdNo"]) == ("SE556677889901", "556677-8899")
    assert {customer["addresses"]["data"]["invoice"]["countryCode"] for customer in customers} == {"SE", "NO"}


def test_empty_seed_has_lookups_but_no_orders_or_customers() -> None:
    state = SandboxState("empty")
    assert state.order_ids() == [] and state.customer_ids() == []
    assert len(state.order_statuses()) == 7 and len(state.payment_methods()) == 3
    assert len(state.shipping_methods()) == 3 and len(state.currencies()) == 3
    assert state.add_order(_order_body())["orderId"] == 1001


# ---------------------------------------------------------------- filters, sorting, pages


def test_orders_created_after_is_inclusive_to_the_second(sandbox: Sandbox, sandbox_api: httpx.Client) -> None:
    at_ten = sandbox.state.add_order(_order_body(createdAt="2030-01-01T10:00:00+01:00"))["orderId"]
    sandbox.state.add_order(_order_body(createdAt="2030-01-01T10:00:01+01:00"))

    def after(moment: str) -> list[int]:
        return _order_ids(sandbox_api, {"ordersCreatedAfter": moment, "sortOrder": "ASC"})

    assert after("2030-01-01T10:00:00+01:00") == [at_ten, at_ten + 1]
    assert after("2030-01-01T09:00:00Z") == [at_ten, at_ten + 1]  # the same instant in UTC
    assert after("2030-01-01T10:00:00.900+01:00") == [at_ten, at_ten + 1]  # compared at whole seconds
    assert after("2030-01-01T10:00:01+01:00") == [at_ten + 1]
    before = {"ordersCreatedBefore": "2030-01-01T10:00:00+01:00", "ordersCreatedAfter": "2029-12-31T00:00:00+01:00"}
    assert _order_ids(sandbox_api, before) == [at_ten]


def test_unpaid_orders_only_with_include_non_complete_payments(sandbox: Sandbox, sandbox_api: httpx.Client) -> None:
    assert 1007 not in _order_ids(sandbox_api)
    assert 1007 in _order_ids(sandbox_api, {"includeNonCompletePayments": "true"})
    assert 1007 not in _order_ids(sandbox_api, {"includeNonCompletePayments": "false"})
    assert sandbox_api.get("/orders/1007").json()["data"]["isComplete"] is False
    completed = sandbox.state.mark_payment_complete(1007)
    assert (completed["isComplete"], completed["paymentStatus"]) == (True, "reserved")
    assert 1007 in _order_ids(sandbox_api)


def test_status_payment_and_text_filters(sandbox: Sandbox, sandbox_api: httpx.Client) -> None:
    assert _order_ids(sandbox_api, {"statusFilter": str(PICKING_STATUS_ID)}) == [1002]
    assert _order_ids(sandbox_api, {"statusFilter": str(PAID_STATUS_ID)}) == [1009]
    assert _order_ids(sandbox_api, {"statusFilter": "99"}) == []
    created = _order_ids(sandbox_api, {"statusFilter": str(CREATED_STATUS_ID), "includeNonCompletePayments": "true"})
    assert sorted(created) == [1003, 1005, 1006, 1007, 1010]
    assert sorted(_order_ids(sandbox_api, {"filterPaymentMethodId": str(INVOICE_PAYMENT_METHOD_ID)})) == [1002, 1010]
    assert sorted(_order_ids(sandbox_api, {"filterQuery": "åsa"})) == [1001, 1004]  # buyer name, any case
    assert _order_ids(sandbox_api, {"filterQuery": "kl-2101"}) == [1002]  # an item SKU
    assert _order_ids(sandbox_api, {"filterQuery": "lekhörnan", "statusFilter": "1"}) == [1010]


def test_sorting_by_modified_at_finds_recently_changed_orders(sandbox: Sandbox, sandbox_api: httpx.Client) -> None:
    assert _order_ids(sandbox_api) == [1010, 1009, 1008, 1006, 1005, 1004, 1003, 1002, 1001]  # orderId DESC
    _advance_clock(sandbox.state, timedelta(minutes=1))
    assert sandbox_api.patch("/orders/1001", json={"isRead": True}).status_code == 200
    by_modified = sandbox_api.get("/orders", params={"sortBy": "modifiedAt"}).json()["data"]
    assert by_modified[0]["orderId"] == 1001
    stamps = [datetime.fromisoformat(order["modifiedAt"]) for order in by_modified]
    assert stamps == sorted(stamps, reverse=True)
    ascending = _order_ids(sandbox_api, {"sortBy": "createdAt", "sortOrder": "ASC"})
    assert ascending == [1001, 1002, 1003, 1004, 1005, 1006, 1008, 1009, 1010]
    by_total = sandbox_api.get("/orders", params={"sortBy": "totalAmount", "sortOrder": "ASC"}).json()["data"]
    totals = [order["totalAmountInBaseCurrency"] for order in by_total]
    assert totals == sorted(totals)


def test_orders_and_customers_are_paged() -> None:
    with start_sandbox(per_page=4) as sandbox, httpx.Client(base_url=sandbox.base_url) as client:
        client.headers["Authorization"] = f"Bearer {fetch_token(sandbox, client)}"
        first = client.get("/orders").json()["meta"]["pagination"]
        assert first == {"current_page": 1, "per_page": 4, "total": 9, "count": 4, "total_pages": 3}
        assert len(client.get("/orders", params={"page": "3"}).json()["data"]) == 1
        every = _order_ids(client, {"includeNonCompletePayments": "true"})
        assert sorted(every) == sandbox.state.order_ids()
        customers = client.get("/customers", params={"includeWithoutAccount": "true"}).json()
        assert customers["meta"]["pagination"]["total"] == 4
        assert [customer["customerId"] for customer in customers["data"]] == [104, 103, 102, 101]


# ---------------------------------------------------------------- totals


def test_totals_ex_vat_vat_and_to_pay_with_percent_and_amount_discounts(sandbox: Sandbox) -> None:
    order = sandbox.state.add_order(
        _order_body(
            paymentFee=29.0,
            paymentVatRate=25,
            shippingCost=49.0,
            shippingVatRate=25,
            items=[
                # 100.00 × 3 less 10 % = 270.00 net, VAT 67.50
                {"sku": "A", "quantity": 3, "unitPrice": 100.0, "vatRate": 25, "discount": 10},
                # 49.90 × 2 less 20.00 once for the line = 79.80 net, VAT 9.576 → 9.58
                {"sku": "B", "quantity": 2, "unitPrice": 49.9, "vatRate": 12, "discount": 20, "discountType": "amount"},
                # 33.33 × 3 = 99.99 net, VAT 5.9994 → 6.00
                {"sku": "C", "quantity": 3, "unitPrice": 33.33, "vatRate": 6},
            ],
        )
    )
    # net 270 + 79.80 + 99.99 + shipping 49 + fee 29 = 527.79; VAT 67.50 + 9.58 + 6.00 + 12.25 + 7.25 = 102.58
    assert (order["totalAmount"], order["totalVat"], order["amountToPay"]) == (527.79, 102.58, 630.37)
    assert (order["totalAmountInBaseCurrency"], order["totalVatInBaseCurrency"]) == (527.79, 102.58)
    assert order["amountToPayInBaseCurrency"] == 630.37
    seeded = sandbox.state.order(1004)
    # 599.20 less 10 % = 539.28 (VAT 134.82); 183.20 × 2 less 50 = 316.40 (79.10); 79.20 × 3 = 237.60 (59.40);
    # shipping 49 (12.25): net 1142.28 + VAT 285.57 = 1427.85
    assert (seeded["totalAmount"], seeded["totalVat"], seeded["amountToPay"]) == (1142.28, 285.57, 1427.85)


def test_amount_discount_applies_once_per_line_whatever_the_quantity(sandbox: Sandbox) -> None:
    def total(quantity: int) -> float:
        line = {"quantity": quantity, "unitPrice": 50.0, "vatRate": 0, "discount": 20, "discountType": "amount"}
        return sandbox.state.add_order(_order_body(items=[line]))["totalAmount"]

    assert (total(1), total(4)) == (30.0, 180.0)


def test_foreign_currency_and_zero_vat_totals(sandbox: Sandbox) -> None:
    eur = sandbox.state.add_order(
        _order_body(
            currencyCode="EUR",
            shippingCost=9.9,
            shippingVatRate=25.5,
            items=[{"sku": "LEK-1002", "quantity": 3, "unitPrice": 10.99, "vatRate": 25.5}],
        )
    )
    # 32.97 net (VAT 8.40735 → 8.41) + shipping 9.90 (VAT 2.5245 → 2.52): 42.87 + 10.93 = 53.80; in SEK ÷ 0.087
    assert (eur["currencyExchangeRate"], eur["currencyPrecision"]) == (0.087, 2)
    assert (eur["totalAmount"], eur["totalVat"], eur["amountToPay"]) == (42.87, 10.93, 53.8)
    assert (eur["totalAmountInBaseCurrency"], eur["totalVatInBaseCurrency"]) == (492.76, 125.63)
    assert eur["amountToPayInBaseCurrency"] == 618.39
    nok = sandbox.state.add_order(
        _order_body(
            currencyCode="NOK",
            shippingCost=99.0,
            shippingVatRate=0,
            items=[{"sku": "KL-2002-104", "quantity": 1, "unitPrice": 880.6, "vatRate": 0}],
        )
    )
    assert (nok["totalAmount"], nok["totalVat"], nok["totalAmountInBaseCurrency"]) == (979.6, 0.0, 999.59)
    assert nok["amountToPay"] == 979.6  # 0 % VAT (export): amountToPay = totalAmount
    explicit_rate = sandbox.state.add_order(_order_body(currencyCode="EUR", currencyExchangeRate=0.1))
    assert (explicit_rate["totalAmountInBaseCurrency"], explicit_rate["amountToPayInBaseCurrency"]) == (1000.0, 1250.0)


def test_totals_round_half_up_to_the_currency_precision(sandbox: Sandbox) -> None:
    half_cent = sandbox.state.add_order(_order_body(items=[{"quantity": 1, "unitPrice": 0.125, "vatRate": 0}]))
    assert half_cent["totalAmount"] == 0.13
    whole_kronor = sandbox.state.add_order(
        _order_body(currencyPrecision=0, items=[{"quantity": 1, "unitPrice": 99.6, "vatRate": 25}])
    )
    assert (whole_kronor["totalAmount"], whole_kronor["totalVat"]) == (100.0, 25.0)  # net 99.6 → 100, VAT 25


def test_item_writes_recompute_totals_and_move_modified_at(sandbox: Sandbox, sandbox_api: httpx.Client) -> None:
    order = sandbox.state.add_order(_order_body())
    order_id, (item,) = order["orderId"], order["items"]["data"]
    assert order["totalAmount"] == 100.0
    later = _advance_clock(sandbox.state, timedelta(minutes=5))
    assert sandbox_api.patch(f"/orders/{order_id}/items/{item['itemId']}", json={"quantity": 2}).status_code == 200
    added = sandbox_api.post(f"/orders/{order_id}/items", json={"quantity": 1, "unitPrice": 10.0, "vatRate": 0})
    assert added.status_code == 201
    current = sandbox_api.get(f"/orders/{order_id}").json()["data"]
    assert (current["totalAmount"], current["amountToPay"], current["modifiedAt"]) == (
        210.0,
        260.0,
        format_timestamp(later),
    )
    assert sandbox_api.delete(f"/orders/{order_id}/items/{item['itemId']}").status_code == 204
    assert sandbox_api.get(f"/orders/{order_id}").json()["data"]["totalAmount"] == 10.0


def test_total_override_makes_an_order_whose_total_does_not_reconcile(sandbox: Sandbox) -> None:
    order = sandbox.state.add_order(_order_body(), total_override=130.0)
    assert (order["totalAmount"], order["totalVat"], order["amountToPay"]) == (130.0, 25.0, 155.0)
    line = order["items"]["data"][0]
    assert line["unitPrice"] * line["quantity"] == 100.0


def test_an_unitemised_amount_shows_only_in_amount_to_pay(sandbox: Sandbox) -> None:
    """A gift card of 25.00 paid part of the order: no row shows it, totalAmount + totalVat do not add up."""
    order = sandbox.state.add_order(_order_body(), unitemised_amount=-25.0)
    assert (order["totalAmount"], order["totalVat"], order["amountToPay"]) == (100.0, 25.0, 100.0)
    order_id = order["orderId"]
    sandbox.state.update_order(order_id, {"items": [{"quantity": 1, "unitPrice": 100.0, "vatRate": 25}]})
    assert sandbox.state.order(order_id)["amountToPay"] == 125.0  # new rows: the shop computes the totals again


# ---------------------------------------------------------------- status changes


def test_status_change_is_logged_with_its_switches_and_captures_the_payment(
    sandbox: Sandbox, sandbox_api: httpx.Client
) -> None:
    at = _advance_clock(sandbox.state, timedelta(minutes=2))
    body = {
        "statusId": COMPLETED_STATUS_ID,
        "onOrderStatusChangeSendEmail": False,
        "onOrderStatusChangeProcessPayment": True,
        "shippingTrackingNo": "00370798765432101234",
        "shippingTrackerType": POSTNORD_TRACKER_TYPE,
    }
    sandbox.reset_requests()
    response = sandbox_api.patch("/orders/1003", json=body)
    assert response.status_code == 200, response.text
    assert sandbox.state.status_changes == [
        StatusChange(
            order_id=1003,
            from_status_id=CREATED_STATUS_ID,
            to_status_id=COMPLETED_STATUS_ID,
            send_email=False,
            email_sent=False,
            process_payment=True,
            payment_status_before="reserved",
            payment_status_after="captured",
            tracking_no="00370798765432101234",
            tracker_type=POSTNORD_TRACKER_TYPE,
            at=at,
        )
    ]
    (recorded,) = sandbox.write_requests()
    assert (recorded.method, recorded.path, recorded.body) == ("PATCH", "/orders/1003", body)
    order = sandbox_api.get("/orders/1003").json()["data"]
    assert not {"onOrderStatusChangeSendEmail", "onOrderStatusChangeProcessPayment"} & set(order)
    assert (order["paymentStatus"], order["amountPaid"]) == ("captured", order["amountToPay"])
    assert order["shippingTrackingNo"] == "00370798765432101234" and order["modifiedAt"] == format_timestamp(at)


def test_email_follows_the_switch_the_order_setting_and_the_status(sandbox: Sandbox) -> None:
    order_id = sandbox.state.add_order(_order_body())["orderId"]
    sandbox.state.set_order_status(order_id, "picking")  # picking does not e-mail
    sandbox.state.set_order_status(order_id, "completed")  # completed does
    sandbox.state.update_order(order_id, {"statusId": SHIPPED_STATUS_ID, "sendEmailsOnStatusChange": False})
    sandbox.state.set_order_status(order_id, SHIPPED_STATUS_ID)  # same status: no change at all
    changes = sandbox.state.status_changes
    assert [(c.to_status_id, c.send_email, c.email_sent) for c in changes] == [
        (PICKING_STATUS_ID, True, False),
        (COMPLETED_STATUS_ID, True, True),
        (SHIPPED_STATUS_ID, True, False),
    ]
    assert sandbox.state.order(order_id)["sendEmailsOnStatusChange"] is False


@pytest.mark.parametrize(
    ("payment_method_id", "payment_status", "target", "process", "expected"),
    [
        (KLARNA_PAYMENT_METHOD_ID, "reserved", "completed", True, "captured"),
        (KLARNA_PAYMENT_METHOD_ID, "reserved", "canceled", True, "cancelled"),
        (KLARNA_PAYMENT_METHOD_ID, "reserved", "completed", False, "reserved"),
        (KLARNA_PAYMENT_METHOD_ID, "reserved", SHIPPED_STATUS_ID, True, "reserved"),
        (KLARNA_PAYMENT_METHOD_ID, "captured", "canceled", True, "captured"),
        (SWISH_PAYMENT_METHOD_ID, "paid", "canceled", True, "paid"),
        (INVOICE_PAYMENT_METHOD_ID, "", "completed", True, ""),
    ],
)
def test_payment_status_rule(
    payment_method_id: int, payment_status: str, target: int | str, process: bool, expected: str
) -> None:
    state = SandboxState("empty")
    order = state.add_order(_order_body(paymentMethodId=payment_method_id, paymentStatus=payment_status))
    changed = state.set_order_status(order["orderId"], target, process_payment=process)
    assert changed["paymentStatus"] == expected
    assert changed["amountPaid"] == (125.0 if (payment_status, expected) == ("reserved", "captured") else 0.0)
    (change,) = state.status_changes
    assert (change.process_payment, change.payment_status_after) == (process, expected)


def test_refused_patch_changes_nothing(sandbox: Sandbox, sandbox_api: httpx.Client) -> None:
    before = sandbox_api.get("/orders/1003").json()["data"]
    _advance_clock(sandbox.state, timedelta(minutes=1))
    refused = sandbox_api.patch("/orders/1003", json={"internalComment": "x", "statusId": 99})
    assert refused.status_code == 400
    assert "statusId" in refused.json()["error_description"] and "99" in refused.json()["error_description"]
    read_only = sandbox_api.patch("/orders/1003", json={"totalAmount": 1.0})
    assert read_only.status_code == 400 and "totalAmount: read-only" in read_only.json()["error_description"]
    null_customer = sandbox_api.patch("/orders/1003", json={"customerId": None})
    assert null_customer.status_code == 400 and "customerId" in null_customer.json()["error_description"]
    assert sandbox_api.get("/orders/1003").json()["data"] == before
    assert sandbox.state.status_changes == []


def test_status_changes_are_readable_from_another_process(sandbox: Sandbox) -> None:
    at = _advance_clock(sandbox.state, timedelta(minutes=1))
    sandbox.state.set_order_status(1005, "canceled", send_email=False)
    logged = httpx.get(f"{sandbox.admin_url}/status-changes").json()["data"]
    assert [(entry["order_id"], entry["to_status_id"], entry["payment_status_after"]) for entry in logged] == [
        (1005, CANCELED_STATUS_ID, "cancelled")
    ]
    assert logged[0]["at"] == format_timestamp(at)
    sandbox.reset()
    assert sandbox.state.status_changes == [] and sandbox.state.order(1005)["statusId"] == CREATED_STATUS_ID


# ---------------------------------------------------------------- write-back, guests, customers


def test_external_id_write_back_round_trip(sandbox: Sandbox, sandbox_api: httpx.Client) -> None:
    later = _advance_clock(sandbox.state, timedelta(minutes=3))
    written = sandbox_api.patch("/orders/1002", json={"externalId": "20045", "externalIdType": "Mamut"})
    assert written.status_code == 200
    assert (written.json()["data"]["externalId"], written.json()["data"]["externalIdType"]) == ("20045", "Mamut")
    listed = next(order for order in sandbox_api.get("/orders").json()["data"] if order["orderId"] == 1002)
    assert (listed["externalId"], listed["modifiedAt"]) == ("20045", format_timestamp(later))
    assert sandbox_api.put("/orders/1002", json={"statusId": PICKING_STATUS_ID}).json()["data"]["externalId"] == "20045"
    refused = sandbox_api.put("/orders/1002", json={"statusId": PICKING_STATUS_ID, "externalId": "1"})
    assert refused.status_code == 400 and "externalId" in refused.json()["error_description"]
    service = sandbox_api.put("/orders/1002/external-services/Mamut", json={"externalIdValue": "20045"})
    assert service.json()["data"] == {
        "serviceName": "Mamut",
        "externalIdValue": "20045",
        "agent": "",
        "readOnly": False,
    }


def test_guest_orders_carry_the_buyer_only_in_addresses_and_email(sandbox_api: httpx.Client) -> None:
    guest = sandbox_api.get("/orders/1006", params={"include": "customer,addresses"}).json()["data"]
    assert "customerId" not in guest and "customer" not in guest
    assert guest["originalCustomerEmail"] == "marta.lindqvist@example.se"
    assert guest["addresses"]["data"]["customerInvoice"]["firstName"] == "Märta"
    known = sandbox_api.get("/orders/1004", params={"include": "customer"}).json()["data"]
    assert known["customer"]["data"]["customerId"] == known["customerId"] == 101


def test_customers_filters_includes_and_unique_email(sandbox: Sandbox, sandbox_api: httpx.Client) -> None:
    assert [customer["customerId"] for customer in sandbox_api.get("/customers").json()["data"]] == [103, 102, 101]
    everyone = sandbox_api.get("/customers", params={"includeWithoutAccount": "true", "sortOrder": "ASC"}).json()
    assert [customer["customerId"] for customer in everyone["data"]] == [101, 102, 103, 104]
    since = format_timestamp(_advance_clock(sandbox.state, timedelta(minutes=1)))
    patched = sandbox_api.patch("/customers/103", json={"externalId": "K-3", "externalIdType": "Mamut"})
    assert patched.status_code == 200
    updated = sandbox_api.get("/customers", params={"updatedSince": since}).json()["data"]
    assert [customer["customerId"] for customer in updated] == [103]
    company = sandbox_api.get("/customers/102", params={"include": "addresses,externalServices"}).json()["data"]
    assert set(company["addresses"]["data"]) == {"invoice", "delivery"}
    assert company["addresses"]["data"]["invoice"]["companyName"] == "Lekhörnan i Västerås AB"
    assert company["externalServices"]["data"] == [{"serviceName": "Fortnox", "externalIdValue": "1042"}]
    assert company["pricelistId"] == 2 and company["approved"] is True
    duplicate = sandbox_api.post("/customers", json={"email": "Asa.Ekstrom@example.se"})
    assert duplicate.status_code == 400 and "customer 101" in duplicate.json()["error_description"]


def test_order_statuses_protect_the_standard_ones(sandbox: Sandbox, sandbox_api: httpx.Client) -> None:
    created = sandbox_api.post(
        "/order-statuses", json={"shouldSendEmail": False, "languages": {"data": [{"langCode": "sv", "name": "Åter"}]}}
    )
    assert created.status_code == 201
    status = created.json()["data"]
    assert "idCode" not in status and status["languages"]["data"] == [{"langCode": "sv", "name": "Åter"}]
    renamed = sandbox_api.patch(
        f"/order-statuses/{status['statusId']}", json={"languages": {"data": [{"langCode": "en", "name": "Back"}]}}
    )
    assert [language["name"] for language in renamed.json()["data"]["languages"]["data"]] == ["Åter", "Back"]
    assert sandbox_api.patch("/order-statuses/3", json={"shouldSendEmail": False}).status_code == 403
    assert sandbox_api.delete("/order-statuses/1").status_code == 403
    in_use = sandbox_api.delete(f"/order-statuses/{SHIPPED_STATUS_ID}")
    assert in_use.status_code == 403 and "1004" in in_use.json()["error_description"]
    assert sandbox.state.order_status(COMPLETED_STATUS_ID)["shouldSendEmail"] is True


# ---------------------------------------------------------------- helpers and UTF-8


def test_helpers_write_exactly_like_the_http_api(sandbox: Sandbox, sandbox_api: httpx.Client) -> None:
    over_http = sandbox_api.post("/orders", json=_order_body(createdAt="2030-02-01T08:00:00+01:00")).json()["data"]
    by_helper = sandbox.state.add_order(_order_body(createdAt="2030-02-01T08:00:00+01:00"))
    strip_ids = ("orderId", "items")
    assert {k: v for k, v in over_http.items() if k not in strip_ids} == {
        k: v for k, v in by_helper.items() if k not in strip_ids
    }
    assert sandbox_api.get(f"/orders/{by_helper['orderId']}").json()["data"] == sandbox.state.order(
        by_helper["orderId"]
    )
    sandbox.state.update_order(by_helper["orderId"], {"internalComment": "Ring kunden före leverans"})
    assert sandbox_api.get(f"/orders/{by_helper['orderId']}").json()["data"]["internalComment"].startswith("Ring")
    customer = sandbox.state.add_customer({"email": "ny@example.se"}, has_account=False)
    assert customer["customerId"] == 105
    assert 105 not in [c["customerId"] for c in sandbox_api.get("/customers").json()["data"]]
    sandbox.state.update_customer(105, {"customInfo1": "Gäst"})
    assert sandbox_api.get("/customers/105").json()["data"]["customInfo1"] == "Gäst"
    with pytest.raises(ApiError) as refused:
        sandbox.state.set_order_status(by_helper["orderId"], "shipped")
    assert refused.value.status == 404


def test_patch_with_items_replaces_them_and_addresses_merge(sandbox: Sandbox, sandbox_api: httpx.Client) -> None:
    replaced = sandbox_api.patch(
        "/orders/1006",
        json={
            "items": [{"sku": "LEK-1004", "quantity": 1, "unitPrice": 183.2, "vatRate": 25}],
            "addresses": {"customerDelivery": {"careOf": "Grannen"}},
        },
    )
    assert replaced.status_code == 200
    order = sandbox_api.get("/orders/1006", params={"include": "items,addresses"}).json()["data"]
    assert [item["sku"] for item in order["items"]["data"]] == ["LEK-1004"]
    delivery = order["addresses"]["data"]["customerDelivery"]
    assert (delivery["careOf"], delivery["firstName"]) == ("Grannen", "Märta")
    assert (order["totalAmount"], order["amountToPay"]) == (232.2, 290.25)  # (183.20 + shipping 49.00) × 1.25


def test_swedish_and_norwegian_letters_survive_a_round_trip(sandbox: Sandbox, sandbox_api: httpx.Client) -> None:
    buyer = {**_BUYER, "companyName": "Blåbärsgården Östra AB", "careOf": "Åse Bråthen (Ø)"}
    created = sandbox_api.post(
        "/orders",
        json=_order_body(internalComment="Lämna vid dörren, ring på klockan", addresses={"customerInvoice": buyer}),
    )
    order_id = created.json()["data"]["orderId"]
    fetched = sandbox_api.get(f"/orders/{order_id}", params={"include": "addresses,items"})
    assert "Blåbärsgården Östra AB".encode() in fetched.content  # sent as UTF-8, not \\u escapes
    order = json.loads(fetched.content.decode("utf-8"))["data"]
    assert order["addresses"]["data"]["customerInvoice"] == {
        **dict.fromkeys(order["addresses"]["data"]["customerInvoice"], ""),
        **buyer,
    }
    assert order["internalComment"] == "Lämna vid dörren, ring på klockan"
    assert order["items"]["data"][0]["description"] == "Trähäst Åke"
