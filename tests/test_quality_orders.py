"""The order checks: each fails exactly the orders it should, with a reason that names the value."""

from __future__ import annotations

import pandas as pd
import pytest

from starmamut.quality.orders import ORDER_COLUMNS, order_checks
from starmamut.quality.runner import validate_rows

# The spec's OrderModel example: 622.4 ex VAT + 155.6 VAT = 778 to pay, in 3 charged rows.
GOOD = {
    "row_key": "1",
    "tolerance": 0.03,
    "net_sum": 622.4,
    "total_amount": 622.4,
    "net_excess": -0.03,
    "vat_sum": 155.6,
    "total_vat": 155.6,
    "vat_excess": -0.03,
    "gross_sum": 778.0,
    "amount_to_pay": 778.0,
    "gross_excess": -0.03,
    "unitemised": 0.0,
    "has_invoice_address": True,
    "has_delivery_address": True,
    "currency": "SEK",
    "currency_known": True,
    "line_count": 2,
    "min_quantity": 1.0,
    "email": "åsa@example.se",
    "unknown_skus": None,
}


def run(rows: list[dict], *, quarantine_unknown_skus: bool = True):
    frame = pd.DataFrame(rows, columns=list(ORDER_COLUMNS))
    return validate_rows(
        frame,
        order_checks(quarantine_unknown_skus=quarantine_unknown_skus),
        key_column="row_key",
        suite_name="orders_test",
    )


@pytest.mark.parametrize(
    ("change", "check", "reason"),
    [
        (
            {"total_amount": 700.0, "net_excess": 77.57},
            "totals_net",
            "lines + shipping + fee ex VAT: 622.40, but totalAmount is 700.00 (+77.60, more than the tolerance 0.03)",
        ),
        (
            {"total_vat": 150.0, "vat_excess": 5.57},
            "totals_vat",
            "VAT of lines + shipping + fee: 155.60, but totalVat is 150.00 (-5.60, more than the tolerance 0.03)",
        ),
        (
            {"total_vat": None, "vat_excess": float("inf"), "unitemised": None},
            "totals_vat",
            "VAT of lines + shipping + fee: 155.60, but the order has no totalVat",
        ),
        (
            {"amount_to_pay": 778.5, "gross_excess": 0.47, "unitemised": 0.5},
            "totals_to_pay",
            "incl. VAT: 778.00, but amountToPay is 778.50 (+0.50, more than the tolerance 0.03); amountToPay is "
            "totalAmount + totalVat +0.50: an amount no order row shows (a gift card, a rounding?)",
        ),
        ({"has_invoice_address": False}, "invoice_address_present", "no invoice address"),
        ({"has_delivery_address": False}, "delivery_address_present", "no delivery address"),
        ({"currency": "XYZ", "currency_known": False}, "currency_known", "'XYZ'"),
        ({"line_count": 0, "min_quantity": None}, "has_lines", "no item lines"),
        ({"min_quantity": 0.0}, "quantities_positive", "quantity 0"),
        ({"email": None}, "email_present", "e-mail is missing"),
        ({"email": "asa.example.se"}, "email_well_formed", "'asa.example.se'"),
        ({"unknown_skus": "BOK-1, X"}, "skus_known", "BOK-1, X"),
    ],
)
def test_each_check_fails_only_its_order(change: dict, check: str, reason: str) -> None:
    report = run([GOOD, {**GOOD, "row_key": "2", **change}])
    assert set(report.failures) == {"2"}
    (failure,) = report.failures["2"]
    assert failure.check == check and reason in failure.reason


def test_unknown_skus_pass_when_the_shop_makes_free_text_lines() -> None:
    report = run([{**GOOD, "unknown_skus": "BOK-1"}], quarantine_unknown_skus=False)
    assert report.failures == {}


def test_an_amount_to_pay_that_only_disagrees_with_the_rows_names_no_unitemised_amount() -> None:
    """amountToPay = totalAmount + totalVat, but both totals are off the rows: the reasons name each sum."""
    wrong = {**GOOD, "total_amount": 600.0, "net_excess": 22.37, "amount_to_pay": 755.6, "gross_excess": 22.37}
    (net, to_pay) = run([wrong]).failures["1"]
    assert (net.check, to_pay.check) == ("totals_net", "totals_to_pay")
    assert to_pay.reason == (
        "lines + shipping + fee incl. VAT: 778.00, but amountToPay is 755.60 (-22.40, more than the tolerance 0.03)"
    )
