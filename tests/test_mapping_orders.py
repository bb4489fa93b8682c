"""Starweb order → staged record → Mamut order and customer, as pure functions."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from starmamut.mamut.documents import ExchangeRateConvention, MamutAddress
from starmamut.mapping.orders import (
    OrderSums,
    mamut_customer,
    mamut_order,
    normalise_order,
    order_check_row,
    order_sums,
)
from starmamut.mapping.products import MappingError

VAT_CODES = {25.0: 1, 12.0: 2, 6.0: 3, 0.0: 4}
PER_FOREIGN = ExchangeRateConvention(direction="base_per_foreign", unit=1)
ADDRESS = {
    "firstName": "Åsa",
    "lastName": "Öberg",
    "address": "Storgatan 1",
    "postalCode": "111 22",
    "city": "Stockholm",
    "countryCode": "SE",
    "phoneNo": "08-123",
}


def order(**fields):
    base = {
        "orderId": 1042,
        "createdAt": "2026-11-26T10:15:00+01:00",
        "statusId": 1,
        "customerId": 7,
        "currencyCode": "SEK",
        "baseCurrencyCode": "SEK",
        "currencyExchangeRate": 1,
        "currencyPrecision": 2,
        "discountCode": "SOMMAR",
        "originalCustomerEmail": " asa@example.se ",
        "items": {
            "data": [
                {
                    "itemId": 1,
                    "sku": "LEK-1001",
                    "description": "Trähäst",
                    "quantity": 2,
                    "unitPrice": 100.0,
                    "vatRate": 25,
                    "discount": 10,
                    "discountType": "percent",
                },
                {
                    "itemId": 2,
                    "sku": "BOK-1",
                    "description": "Bok",
                    "quantity": 1,
                    "unitPrice": 200.0,
                    "vatRate": 6,
                    "discount": 20,
                    "discountType": "amount",
                },
            ]
        },
        "addresses": {"data": {"customerInvoice": ADDRESS, "customerDelivery": {**ADDRESS, "address": "Gränd 2"}}},
        "customer": {"data": {"customerId": 7, "type": "person", "email": "old@example.se"}},
        "shippingMethodName": "PostNord",
        "shippingCost": 49.0,
        "shippingVatRate": 25,
        "paymentMethodName": "Faktura",
        "paymentFee": 29.0,
        "paymentVatRate": 25,
    }
    record = normalise_order({**base, **fields})
    sums = order_sums(record)  # the shop's totals as the spec defines them, unless a test gives its own
    record["total_amount"] = fields.get("totalAmount", float(sums.net))
    record["total_vat"] = fields.get("totalVat", float(sums.vat))
    record["amount_to_pay"] = fields.get("amountToPay", float(sums.gross))
    return record


def check_row(record: dict, tolerance_per_line: float = 0.01) -> dict:
    return order_check_row(
        record,
        tolerance_per_line=tolerance_per_line,
        known_skus={"LEK-1001", "BOK-1", "A"},
        known_currencies={"SEK", "EUR", "NOK"},
    )


def map_order(record: dict, rates: ExchangeRateConvention = PER_FOREIGN, known_skus: set[str] | None = None):
    return mamut_order(
        record,
        shop_id="demo",
        document="order",
        vat_codes=VAT_CODES,
        known_skus={"LEK-1001"} if known_skus is None else known_skus,
        shipping_sku="FRAKT",
        payment_fee_sku="AVGIFT",
        rates=rates,
    )


def test_normalise_flattens_addresses_customer_and_lines() -> None:
    record = order()
    assert record["customer"] == {
        "starweb_id": 7,
        "type": "person",
        "email": "asa@example.se",
        "org_no": None,
        "vat_no": None,
    }
    assert record["invoice_address"]["street"] == "Storgatan 1"
    assert record["delivery_address"]["street"] == "Gränd 2"
    assert [line["sku"] for line in record["lines"]] == ["LEK-1001", "BOK-1"]


def test_sums_with_percent_and_amount_discounts_shipping_and_fee() -> None:
    # ex VAT: 2*100*0.9 + (200-20) + 49 + 29; VAT: 180*0.25 + 180*0.06 + 49*0.25 + 29*0.25
    assert order_sums(order()) == OrderSums(net=Decimal("438"), vat=Decimal("75.3"), rows=4)
    assert order_sums(order()).gross == Decimal("513.3")


def spec_example(**fields) -> dict:
    """An order with the totals of the spec's OrderModel example: 622.4 ex VAT + 155.6 VAT = 778 to pay."""
    example = {"totalAmount": 622.4, "totalVat": 155.6, "amountToPay": 778.0}
    return order(
        items={"data": [{"sku": "A", "description": "a", "quantity": 1, "unitPrice": 576.0, "vatRate": 25}]},
        shippingCost=23.2,
        shippingVatRate=25,
        paymentFee=23.2,
        paymentVatRate=25,
        **{**example, **fields},
    )


def test_the_spec_examples_totals_reconcile_ex_vat_vat_and_to_pay() -> None:
    row = check_row(spec_example())
    assert (row["net_sum"], row["vat_sum"], row["gross_sum"]) == (622.4, 155.6, 778.0)
    assert row["net_excess"] <= 0 and row["vat_excess"] <= 0 and row["gross_excess"] <= 0
    assert row["unitemised"] == 0


def test_each_total_that_does_not_reconcile_is_flagged_on_its_own() -> None:
    wrong_net = check_row(spec_example(totalAmount=700.0))
    assert wrong_net["net_excess"] > 0 and wrong_net["vat_excess"] <= 0 and wrong_net["gross_excess"] <= 0
    wrong_vat = check_row(spec_example(totalVat=150.0))
    assert wrong_vat["vat_excess"] == pytest.approx(5.6 - 0.03) and wrong_vat["net_excess"] <= 0
    no_vat = check_row(spec_example(totalVat=None))
    assert no_vat["vat_excess"] == float("inf") and no_vat["total_vat"] is None and no_vat["unitemised"] is None


def test_an_amount_the_spec_does_not_model_fails_the_amount_to_pay() -> None:
    """A gift card of 100 paid part of the order: the rows and totalAmount + totalVat say 778, amountToPay 678."""
    gift_card = check_row(spec_example(amountToPay=678.0))
    assert gift_card["net_excess"] <= 0 and gift_card["vat_excess"] <= 0
    assert gift_card["gross_excess"] > 0 and gift_card["unitemised"] == pytest.approx(-100)


def test_zero_vat_export_order_reconciles_with_equal_amount_and_amount_to_pay() -> None:
    export = order(
        items={"data": [{"sku": "A", "description": "a", "quantity": 2, "unitPrice": 440.3, "vatRate": 0}]},
        shippingCost=99.0,
        shippingVatRate=0,
        paymentFee=0,
        currencyCode="NOK",
        currencyExchangeRate=0.97,
        totalAmount=979.6,
        totalVat=0.0,
        amountToPay=979.6,
    )
    row = check_row(export)
    assert row["vat_sum"] == 0 and max(row["net_excess"], row["vat_excess"], row["gross_excess"]) <= 0
    assert map_order(export).total_incl_vat == Decimal("979.60")


def test_tolerance_is_per_charged_row_and_at_least_one_unit_of_the_currencys_last_decimal() -> None:
    assert check_row(order(), tolerance_per_line=0.02)["tolerance"] == pytest.approx(0.08)  # 2 items, shipping, fee
    whole_units = order(
        currencyPrecision=0,
        items={"data": [{"sku": "A", "description": "a", "quantity": 1, "unitPrice": 99.6, "vatRate": 25}]},
        shippingCost=0,
        paymentFee=0,
        totalAmount=100.0,
        totalVat=25.0,
        amountToPay=125.0,
    )  # rounded per row
    row = check_row(whole_units)
    assert row["tolerance"] == 1.0 and max(row["net_excess"], row["vat_excess"], row["gross_excess"]) <= 0


def test_check_row_flags_unknown_skus() -> None:
    row = order_check_row(order(), tolerance_per_line=0.01, known_skus={"LEK-1001"}, known_currencies={"SEK"})
    assert row["unknown_skus"] == "BOK-1" and row["currency_known"]


def test_mamut_order_lines_discount_line_shipping_fee_and_free_text() -> None:
    mapped = mamut_order(
        order(),
        shop_id="demo",
        document="invoice",
        vat_codes=VAT_CODES,
        known_skus={"LEK-1001"},
        shipping_sku="FRAKT",
        payment_fee_sku="AVGIFT",
        rates=PER_FOREIGN,
    )
    assert mapped.external_id == "demo:1042" and mapped.document == "invoice"
    assert mapped.order_date == date(2026, 11, 26)
    assert mapped.reference == "Starweb 1042 · rabattkod SOMMAR"
    described = [(line.sku, line.quantity, line.unit_price, line.discount_pct, line.vat_code) for line in mapped.lines]
    assert described == [
        ("LEK-1001", Decimal(2), Decimal("100.0"), Decimal(10), 1),
        (None, Decimal(1), Decimal("200.0"), Decimal(0), 3),  # unknown SKU: a free-text line
        (None, Decimal(1), Decimal("-20"), Decimal(0), 3),  # the amount discount as its own line
        ("FRAKT", Decimal(1), Decimal("49.0"), Decimal(0), 1),
        ("AVGIFT", Decimal(1), Decimal("29.0"), Decimal(0), 1),
    ]
    assert mapped.lines[1].description == "BOK-1 Bok"
    assert mapped.problems() == []


def test_the_mamut_total_incl_vat_is_amount_to_pay() -> None:
    assert map_order(spec_example()).total_incl_vat == Decimal("778.00")  # not totalAmount, 622.4 ex VAT


def test_export_order_with_zero_vat_maps_to_the_zero_code() -> None:
    record = order(
        items={"data": [{"sku": "A", "description": "a", "quantity": 1, "unitPrice": 10, "vatRate": 0}]},
        shippingVatRate=0,
        paymentFee=0,
        currencyCode="NOK",
        currencyExchangeRate=0.97,
    )
    mapped = map_order(record, known_skus={"A"})
    assert {line.vat_code for line in mapped.lines} == {4}
    assert [line.sku for line in mapped.lines] == ["A", "FRAKT"]  # no fee line for a zero fee
    assert mapped.currency == "NOK"


@pytest.mark.parametrize(
    ("direction", "unit", "eur", "nok"),
    [
        ("base_per_foreign", 1, Decimal("11.5207"), Decimal("1.0309")),  # SEK per EUR, per NOK
        ("base_per_foreign", 100, Decimal("1152.0737"), Decimal("103.0928")),  # SEK per 100 EUR, per 100 NOK
        ("foreign_per_base", 1, Decimal("0.0868"), Decimal("0.97")),  # as Starweb sends it
        ("foreign_per_base", 100, Decimal("8.68"), Decimal("97")),
    ],
)
def test_exchange_rates_are_written_in_mamuts_direction_and_unit(direction, unit, eur, nok) -> None:
    """Starweb's currencyExchangeRate is order currency per 1 SEK (0.0868 EUR; 0.97 NOK in the spec's example)."""
    rates = ExchangeRateConvention(direction=direction, unit=unit)
    for currency, starweb_rate, expected in (("EUR", 0.0868, eur), ("NOK", 0.97, nok)):
        mapped = map_order(order(currencyCode=currency, currencyExchangeRate=starweb_rate), rates)
        assert mapped.exchange_rate.quantize(Decimal("0.0001")) == expected, currency
    assert map_order(order(), rates).exchange_rate == 1  # an order in the base currency, whatever the form


def test_a_foreign_order_without_a_rate_names_the_field() -> None:
    with pytest.raises(MappingError, match=r"order 1042: field 'currencyExchangeRate': an order in EUR needs"):
        map_order(order(currencyCode="EUR", currencyExchangeRate=None))


def test_exchange_rate_convention_is_checked_when_built() -> None:
    with pytest.raises(ValueError, match="direction must be one of base_per_foreign, foreign_per_base"):
        ExchangeRateConvention(direction="sek_per_eur", unit=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unit must be 1 or 100"):
        ExchangeRateConvention(direction="base_per_foreign", unit=10)  # type: ignore[arg-type]


def test_the_order_keeps_its_own_invoice_and_delivery_address() -> None:
    gift = {
        "firstName": "Mormor",
        "lastName": "Berg",
        "address": "Fjällvägen 9",
        "postalCode": "981 31",
        "city": "Kiruna",
        "countryCode": "SE",
    }
    mapped = map_order(order(addresses={"data": {"customerInvoice": ADDRESS, "customerDelivery": gift}}))
    assert mapped.invoice_address == MamutAddress("Åsa Öberg", "Storgatan 1", "111 22", "Stockholm", "SE")
    assert mapped.delivery_address == MamutAddress("Mormor Berg", "Fjällvägen 9", "981 31", "Kiruna", "SE")


def test_unknown_vat_rate_names_the_order_and_field() -> None:
    with pytest.raises(MappingError, match=r"order 1042: field 'shipping.vat_rate': VAT rate 21"):
        map_order(order(shippingVatRate=21), known_skus=set())


def test_company_buyer_is_named_by_company_and_guest_has_no_external_id() -> None:
    company = order(
        addresses={"data": {"customerInvoice": {**ADDRESS, "companyName": "Lekbolaget AB"}}},
        originalCustomerVatNo="SE556677889901",
        originalCustomerNationalIdNo="556677-8899",
    )
    customer = mamut_customer(company, shop_id="demo")
    assert (customer.name, customer.is_company, customer.vat_no, customer.org_no) == (
        "Lekbolaget AB",
        True,
        "SE556677889901",
        "556677-8899",
    )
    assert customer.external_id == "demo:7" and customer.delivery_address is None
    guest = mamut_customer(order(customerId=None, customer=None), shop_id="demo")
    assert (guest.name, guest.external_id, guest.starweb_customer_id) == ("Åsa Öberg", None, None)


def test_order_without_invoice_address_cannot_map_a_customer() -> None:
    with pytest.raises(MappingError, match="order 1042: field 'invoice_address'"):
        mamut_customer(order(addresses={"data": {}}), shop_id="demo")
