"""The order-row checks for web orders going Starweb → Mamut: one row per order (see mapping.orders).

The rows (items, shipping, fee) must add up to each of the spec's totals within the tolerance: ex VAT to
``totalAmount``, their VAT to ``totalVat``, incl. VAT to ``amountToPay``. A failure names the sum, what
the rows give, what the order says and the difference.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

from starmamut.quality.runner import RowCheck, import_great_expectations

ORDER_COLUMNS = (
    "row_key",
    "tolerance",
    "net_sum",
    "total_amount",
    "net_excess",
    "vat_sum",
    "total_vat",
    "vat_excess",
    "gross_sum",
    "amount_to_pay",
    "gross_excess",
    "unitemised",
    "has_invoice_address",
    "has_delivery_address",
    "currency",
    "currency_known",
    "line_count",
    "min_quantity",
    "email",
    "unknown_skus",
)
# Deliberately loose (what a shop accepts at checkout), strict enough to catch typos like a missing '@'.
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}\Z"


def order_checks(*, quarantine_unknown_skus: bool) -> list[RowCheck]:
    """The checks a staged order must pass before it is written to Mamut."""

    def expectations() -> ModuleType:
        return import_great_expectations().expectations

    def totals_check(name: str, prefix: str, what: str, field: str, field_column: str) -> RowCheck:
        def describe(row: dict[str, Any]) -> str:
            reason = _sum_differs(what, row[f"{prefix}_sum"], field, row[field_column], row["tolerance"])
            return reason + _unitemised(row) if field == "amountToPay" else reason

        return RowCheck(
            name=name,
            expectation=lambda: expectations().ExpectColumnValuesToBeBetween(column=f"{prefix}_excess", max_value=0),
            describe=describe,
        )

    checks = [
        totals_check("totals_net", "net", "lines + shipping + fee ex VAT", "totalAmount", "total_amount"),
        totals_check("totals_vat", "vat", "VAT of lines + shipping + fee", "totalVat", "total_vat"),
        totals_check("totals_to_pay", "gross", "lines + shipping + fee incl. VAT", "amountToPay", "amount_to_pay"),
        RowCheck(
            name="invoice_address_present",
            expectation=lambda: expectations().ExpectColumnValuesToBeInSet(
                column="has_invoice_address", value_set=[True]
            ),
            describe=lambda row: "the order has no invoice address",
        ),
        RowCheck(
            name="delivery_address_present",
            expectation=lambda: expectations().ExpectColumnValuesToBeInSet(
                column="has_delivery_address", value_set=[True]
            ),
            describe=lambda row: "the order has no delivery address",
        ),
        RowCheck(
            name="currency_known",
            expectation=lambda: expectations().ExpectColumnValuesToBeInSet(column="currency_known", value_set=[True]),
            describe=lambda row: f"currency {row['currency']!r} is not a currency in Mamut",
        ),
        RowCheck(
            name="has_lines",
            expectation=lambda: expectations().ExpectColumnValuesToBeBetween(column="line_count", min_value=1),
            describe=lambda row: "the order has no item lines",
        ),
        RowCheck(
            name="quantities_positive",
            expectation=lambda: expectations().ExpectColumnValuesToBeBetween(
                column="min_quantity", min_value=0, strict_min=True
            ),
            describe=lambda row: f"a line has quantity {row['min_quantity']:g}; quantities must be positive",
        ),
        RowCheck(
            name="email_present",
            expectation=lambda: expectations().ExpectColumnValuesToNotBeNull(column="email"),
            describe=lambda row: "the buyer's e-mail is missing",
        ),
        RowCheck(
            name="email_well_formed",
            expectation=lambda: expectations().ExpectColumnValuesToMatchRegex(column="email", regex=EMAIL_PATTERN),
            describe=lambda row: f"e-mail {row['email']!r} is not a well-formed address",
        ),
    ]
    if quarantine_unknown_skus:
        checks.append(
            RowCheck(
                name="skus_known",
                expectation=lambda: expectations().ExpectColumnValuesToBeNull(column="unknown_skus"),
                describe=lambda row: f"SKU(s) {row['unknown_skus']} are not articles in Mamut",
            )
        )
    return checks


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _sum_differs(what: str, rows_give: float, field: str, order_says: Any, tolerance: float) -> str:
    """E.g. "lines + shipping + fee ex VAT: 513.30, but totalAmount is 600.00 (+86.70, more than ...)"."""
    if _missing(order_says):
        return f"{what}: {rows_give:.2f}, but the order has no {field}"
    return (
        f"{what}: {rows_give:.2f}, but {field} is {order_says:.2f} "
        f"({order_says - rows_give:+.2f}, more than the tolerance {tolerance:.2f})"
    )


def _unitemised(row: dict[str, Any]) -> str:
    """Names an amount the spec does not model: amountToPay beyond totalAmount + totalVat."""
    unitemised = row["unitemised"]
    if _missing(unitemised) or abs(unitemised) <= row["tolerance"]:
        return ""
    return (
        f"; amountToPay is totalAmount + totalVat {unitemised:+.2f}: an amount no order row shows "
        "(a gift card, a rounding?)"
    )
