"""The order checks: each fails exactly the orders it should, with a reason that names the value."""

from __future__ import annotations

import pandas as pd
import pytest

from starmamut.quality.orders import ORDER_COLUMNS, order_checks
from starmamut.quality.runner import validate_rows

GOOD = {"row_key": "1", "total_amount": 513.3, "total_difference": 0.0, "total_excess": -0.05,
        "has_invoice_address": True, "has_delivery_address": True, "currency": "SEK", "currency_known": True,
        "line_count": 2, "min_quantity": 1.0, "email": "åsa@example.se", "unknown_skus": None}


def run(rows: list[dict], *, quarantine_unknown_skus: bool = True):
    frame = pd.DataFrame(rows, columns=list(ORDER_COLUMNS))
    return validate_rows(frame, order_checks(quarantine_unknown_skus=quarantine_unknown_skus),
                         key_column="row_key", suite_name="orders_test")


@pytest.mark.parametrize(
    ("change", "check", "reason"),
    [
        ({"total_difference": 86.7, "total_excess": 86.68}, "totals_reconcile", "by 86.70"),
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
