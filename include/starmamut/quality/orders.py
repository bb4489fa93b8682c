"""The order-row checks for web orders going Starweb → Mamut: one row per order (see mapping.orders)."""

from __future__ import annotations

from types import ModuleType

from starmamut.quality.runner import RowCheck, import_great_expectations

ORDER_COLUMNS = ("row_key", "total_amount", "total_difference", "total_excess", "has_invoice_address",
                 "has_delivery_address", "currency", "currency_known", "line_count", "min_quantity", "email",
                 "unknown_skus")
# Deliberately loose (what a shop accepts at checkout), strict enough to catch typos like a missing '@'.
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}\Z"


def order_checks(*, quarantine_unknown_skus: bool) -> list[RowCheck]:
    """The checks a staged order must pass before it is written to Mamut."""

    def expectations() -> ModuleType:
        return import_great_expectations().expectations

    checks = [
        RowCheck(
            name="totals_reconcile",
            expectation=lambda: expectations().ExpectColumnValuesToBeBetween(column="total_excess", max_value=0),
            describe=lambda row: (
                f"lines + shipping + fee (with VAT) differ from the order total {row['total_amount']} by "
                f"{row['total_difference']:.2f}, more than the rounding tolerance"
            ),
        ),
        RowCheck(
            name="invoice_address_present",
            expectation=lambda: expectations().ExpectColumnValuesToBeInSet(column="has_invoice_address",
                                                                           value_set=[True]),
            describe=lambda row: "the order has no invoice address",
        ),
        RowCheck(
            name="delivery_address_present",
            expectation=lambda: expectations().ExpectColumnValuesToBeInSet(column="has_delivery_address",
                                                                           value_set=[True]),
            describe=lambda row: "the order has no delivery address",
        ),
        RowCheck(
            name="currency_known",
            expectation=lambda: expectations().ExpectColumnValuesToBeInSet(column="currency_known",
                                                                           value_set=[True]),
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
                column="min_quantity", min_value=0, strict_min=True),
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
        checks.append(RowCheck(
            name="skus_known",
            expectation=lambda: expectations().ExpectColumnValuesToBeNull(column="unknown_skus"),
            describe=lambda row: f"SKU(s) {row['unknown_skus']} are not articles in Mamut",
        ))
    return checks
