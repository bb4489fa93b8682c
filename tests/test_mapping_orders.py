"""Starweb order → staged record → Mamut order and customer, as pure functions."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from starmamut.mapping.orders import (
    computed_total,
    mamut_customer,
    mamut_order,
    normalise_order,
    order_check_row,
)
from starmamut.mapping.products import MappingError

VAT_CODES = {25.0: 1, 12.0: 2, 6.0: 3, 0.0: 4}
ADDRESS = {"firstName": "Åsa", "lastName": "Öberg", "address": "Storgatan 1", "postalCode": "111 22",
           "city": "Stockholm", "countryCode": "SE", "phoneNo": "08-123"}


def order(**fields):
    base = {
        "orderId": 1042, "createdAt": "2026-11-26T10:15:00+01:00", "statusId": 1, "customerId": 7,
        "currencyCode": "SEK", "currencyExchangeRate": 1, "discountCode": "SOMMAR",
        "originalCustomerEmail": " asa@example.se ",
        "items": {"data": [
            {"itemId": 1, "sku": "LEK-1001", "description": "Trähäst", "quantity": 2, "unitPrice": 100.0,
             "vatRate": 25, "discount": 10, "discountType": "percent"},
            {"itemId": 2, "sku": "BOK-1", "description": "Bok", "quantity": 1, "unitPrice": 200.0,
             "vatRate": 6, "discount": 20, "discountType": "amount"},
        ]},
        "addresses": {"data": {"customerInvoice": ADDRESS, "customerDelivery": {**ADDRESS, "address": "Gränd 2"}}},
        "customer": {"data": {"customerId": 7, "type": "person", "email": "old@example.se"}},
        "shippingMethodName": "PostNord", "shippingCost": 49.0, "shippingVatRate": 25,
        "paymentMethodName": "Faktura", "paymentFee": 29.0, "paymentVatRate": 25,
    }
    record = normalise_order({**base, **fields})
    record["total_amount"] = fields.get("totalAmount", float(computed_total(record)))
    return record


def test_normalise_flattens_addresses_customer_and_lines() -> None:
    record = order()
    assert record["customer"] == {"starweb_id": 7, "type": "person", "email": "asa@example.se", "org_no": None,
                                  "vat_no": None}
    assert record["invoice_address"]["street"] == "Storgatan 1"
    assert record["delivery_address"]["street"] == "Gränd 2"
    assert [line["sku"] for line in record["lines"]] == ["LEK-1001", "BOK-1"]


def test_total_with_percent_and_amount_discounts_shipping_and_fee() -> None:
    record = order()
    # (2*100*0.9)*1.25 + (200-20)*1.06 + 49*1.25 + 29*1.25
    assert computed_total(record) == Decimal("225") + Decimal("190.8") + Decimal("61.25") + Decimal("36.25")


def test_check_row_flags_a_total_that_does_not_reconcile_and_unknown_skus() -> None:
    row = order_check_row(order(totalAmount=600.0), tolerance_per_line=0.01, known_skus={"LEK-1001"},
                          known_currencies={"SEK"})
    assert row["total_excess"] > 0 and row["total_difference"] == pytest.approx(600 - 513.3)
    assert row["unknown_skus"] == "BOK-1"
    fine = order_check_row(order(), tolerance_per_line=0.01, known_skus={"LEK-1001", "BOK-1"},
                           known_currencies={"SEK"})
    assert fine["total_excess"] <= 0 and fine["unknown_skus"] is None and fine["currency_known"]


def test_mamut_order_lines_discount_line_shipping_fee_and_free_text() -> None:
    mapped = mamut_order(order(), shop_id="demo", document="invoice", vat_codes=VAT_CODES,
                         known_skus={"LEK-1001"}, shipping_sku="FRAKT", payment_fee_sku="AVGIFT")
    assert mapped.external_id == "demo:1042" and mapped.document == "invoice"
    assert mapped.order_date == date(2026, 11, 26)
    assert mapped.reference == "Starweb 1042 · rabattkod SOMMAR"
    described = [(line.sku, line.quantity, line.unit_price, line.discount_pct, line.vat_code) for line in mapped.lines]
    assert described == [
        ("LEK-1001", Decimal(2), Decimal("100.0"), Decimal(10), 1),
        (None, Decimal(1), Decimal("200.0"), Decimal(0), 3),      # unknown SKU: a free-text line
        (None, Decimal(1), Decimal("-20"), Decimal(0), 3),        # the amount discount as its own line
        ("FRAKT", Decimal(1), Decimal("49.0"), Decimal(0), 1),
        ("AVGIFT", Decimal(1), Decimal("29.0"), Decimal(0), 1),
    ]
    assert mapped.lines[1].description == "BOK-1 Bok"
    assert mapped.problems() == []


def test_export_order_with_zero_vat_maps_to_the_zero_code() -> None:
    record = order(items={"data": [{"sku": "A", "description": "a", "quantity": 1, "unitPrice": 10, "vatRate": 0}]},
                   shippingVatRate=0, paymentFee=0, currencyCode="NOK", currencyExchangeRate=0.97)
    mapped = mamut_order(record, shop_id="no", document="order", vat_codes=VAT_CODES, known_skus={"A"},
                         shipping_sku="FRAKT", payment_fee_sku="AVGIFT")
    assert {line.vat_code for line in mapped.lines} == {4}
    assert [line.sku for line in mapped.lines] == ["A", "FRAKT"]  # no fee line for a zero fee
    assert (mapped.currency, mapped.exchange_rate) == ("NOK", Decimal("0.97"))


def test_unknown_vat_rate_names_the_order_and_field() -> None:
    with pytest.raises(MappingError, match=r"order 1042: field 'shipping.vat_rate': VAT rate 21"):
        mamut_order(order(shippingVatRate=21), shop_id="demo", document="order", vat_codes=VAT_CODES,
                    known_skus=set(), shipping_sku="FRAKT", payment_fee_sku="AVGIFT")


def test_company_buyer_is_named_by_company_and_guest_has_no_external_id() -> None:
    company = order(addresses={"data": {"customerInvoice": {**ADDRESS, "companyName": "Lekbolaget AB"}}},
                    originalCustomerVatNo="SE556677889901", originalCustomerNationalIdNo="556677-8899")
    customer = mamut_customer(company, shop_id="demo")
    assert (customer.name, customer.is_company, customer.vat_no, customer.org_no) == (
        "Lekbolaget AB", True, "SE556677889901", "556677-8899")
    assert customer.external_id == "demo:7" and customer.delivery_address is None
    guest = mamut_customer(order(customerId=None, customer=None), shop_id="demo")
    assert (guest.name, guest.external_id, guest.starweb_customer_id) == ("Åsa Öberg", None, None)


def test_order_without_invoice_address_cannot_map_a_customer() -> None:
    with pytest.raises(MappingError, match="order 1042: field 'invoice_address'"):
        mamut_customer(order(addresses={"data": {}}), shop_id="demo")
