"""The variant-row checks for Mamut articles going to Starweb: one row per Starweb variant (its SKU).

The SKU, name and EAN rules are the skeleton's (``quality.products``), reused as they are; the rest guard
what Starweb refuses: a SKU that differs from another only in letter case, names longer than its fields,
a VAT code without a rate, and variants the shop could not tell apart (missing or repeated axis values).
"""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType

from starmamut.mapping.catalogue import ATTRIBUTE_NAME_MAX_LENGTH, PRODUCT_NAME_MAX_LENGTH, STARWEB_SKU_MAX_LENGTH
from starmamut.quality.products import format_number, product_checks
from starmamut.quality.runner import RowCheck, import_great_expectations

CATALOGUE_COLUMNS = (
    "row_key",
    "product_key",
    "sku",
    "sku_folded",
    "name",
    "vat_code",
    "ean",
    "weight",
    "missing_axes",
    "combination",
    "axis_1",
    "axis_2",
    "value_1",
    "value_2",
)

# The skeleton's checks that apply unchanged to Mamut articles (its price, VAT-rate and axis-count checks
# do not: prices are another job's, VAT comes as a code, and Mamut allows two axes by construction).
_SHARED_CHECKS = (
    "sku_present",
    "sku_is_text",
    "sku_allowed_characters",
    "sku_max_length",
    "name_present",
    "name_not_blank",
    "ean_format",
    "ean_check_digit",
)


def catalogue_checks(*, vat_codes: Iterable[int]) -> list[RowCheck]:
    """The checks a staged article row must pass before it is sent to Starweb.

    ``vat_codes`` are the Mamut VAT codes the config gives a rate for. Missing optional values (EAN, weight,
    axes) pass; the value checks skip them.
    """
    codes = sorted({int(code) for code in vat_codes})
    if not codes:
        raise ValueError("vat_codes is empty: every article would fail")

    def expectations() -> ModuleType:
        return import_great_expectations().expectations

    shared = {
        check.name: check
        for check in product_checks(allowed_vat_rates=[0], sku_max_length=STARWEB_SKU_MAX_LENGTH)
        if check.name in _SHARED_CHECKS
    }
    code_list = ", ".join(str(code) for code in codes)
    checks = [
        shared["sku_present"],
        shared["sku_is_text"],
        shared["sku_allowed_characters"],
        shared["sku_max_length"],
        RowCheck(
            name="sku_unique_ignoring_case",
            expectation=lambda: expectations().ExpectColumnValuesToBeUnique(column="sku_folded"),
            describe=lambda row: (
                f"SKU {row['sku']!r} is used by more than one article in this batch "
                "(Starweb does not tell upper and lower case apart)"
            ),
        ),
        shared["name_present"],
        shared["name_not_blank"],
        RowCheck(
            name="name_max_length",
            expectation=lambda: expectations().ExpectColumnValueLengthsToBeBetween(
                column="name", max_value=PRODUCT_NAME_MAX_LENGTH
            ),
            describe=lambda row: (
                f"name is {len(str(row['name']))} characters long; Starweb allows {PRODUCT_NAME_MAX_LENGTH}"
            ),
        ),
        RowCheck(
            name="vat_code_known",
            expectation=lambda: expectations().ExpectColumnValuesToBeInSet(column="vat_code", value_set=codes),
            describe=lambda row: (
                f"VAT code {format_number(row['vat_code'])} has no VAT rate in the config (known codes: {code_list})"
            ),
        ),
        shared["ean_format"],
        shared["ean_check_digit"],
        RowCheck(
            name="weight_not_negative",
            expectation=lambda: expectations().ExpectColumnValuesToBeBetween(column="weight", min_value=0),
            describe=lambda row: f"weight {format_number(row['weight'])} kg is negative",
        ),
        RowCheck(
            name="variant_values_complete",
            expectation=lambda: expectations().ExpectColumnValuesToBeNull(column="missing_axes"),
            describe=lambda row: f"variant {row['sku']} has no value for {row['missing_axes']}",
        ),
        RowCheck(
            name="variant_values_distinct",
            expectation=lambda: expectations().ExpectColumnValuesToBeUnique(column="combination"),
            describe=lambda row: (
                f"variant {row['sku']} has the same axis values as another variant of {row['product_key']}"
            ),
        ),
    ]
    for column, what in (("axis_1", "axis"), ("axis_2", "axis"), ("value_1", "value"), ("value_2", "value")):
        checks.append(_name_length_check(column, what))
    return checks


def _name_length_check(column: str, what: str) -> RowCheck:
    """Starweb's attribute and attribute value names hold 50 characters."""
    return RowCheck(
        name=f"{column}_max_length",
        expectation=lambda: import_great_expectations().expectations.ExpectColumnValueLengthsToBeBetween(
            column=column, max_value=ATTRIBUTE_NAME_MAX_LENGTH
        ),
        describe=lambda row: (
            f"variant {what} name {row[column]!r} is {len(str(row[column]))} characters long; "
            f"Starweb allows {ATTRIBUTE_NAME_MAX_LENGTH}"
        ),
    )
