"""The variant-row checks for products going Starweb → Mamut: one row per Starweb variant (its SKU)."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pandas as pd

from starmamut.quality.runner import RowCheck, import_great_expectations

if TYPE_CHECKING:
    from great_expectations.expectations import Expectation

PRODUCT_COLUMNS = ("row_key", "product_key", "sku", "name", "price", "vat_rate", "axis_count", "ean")

# Starweb's filterSku pattern. `\Z` rather than `$`: GX matches with re.search, where `$` also
# matches before a trailing newline, so "ABC\n" would pass.
SKU_PATTERN = r"^[A-Za-z0-9._-]+\Z"
# EAN-8 or EAN-13; [0-9] rather than \d, which also matches non-ASCII digits.
EAN_PATTERN = r"^(?:[0-9]{8}|[0-9]{13})\Z"
_GTIN_CHECK_DIGIT_METRIC = "column_values.starmamut_valid_gtin_check_digit"


def product_checks(
    *, allowed_vat_rates: Iterable[float], max_axes: int = 2, sku_max_length: int = 40
) -> list[RowCheck]:
    """The checks a staged product variant row must pass before it is loaded into Mamut.

    Missing values fail only the checks that require the field (sku, name, price); the value
    checks (characters, range, set, EAN) skip missing values, so a row without an EAN is fine
    and a missing SKU is reported once, as missing. A missing vat_rate passes: in Starweb it
    means "use the shop's default rate".
    """
    vat_rates = sorted({float(rate) for rate in allowed_vat_rates})
    if not vat_rates:
        raise ValueError("allowed_vat_rates is empty: every product with a VAT rate would fail")
    if max_axes < 0:
        raise ValueError(f"max_axes must be 0 or more, got {max_axes}")
    if sku_max_length < 1:
        raise ValueError(f"sku_max_length must be 1 or more, got {sku_max_length}")

    def expectations() -> ModuleType:
        return import_great_expectations().expectations

    allowed_characters = "A-Z a-z 0-9 . _ -"
    vat_rate_list = ", ".join(format_number(rate) for rate in vat_rates)
    return [
        RowCheck(
            name="sku_present",
            expectation=lambda: expectations().ExpectColumnValuesToNotBeNull(column="sku"),
            describe=lambda row: "SKU is missing",
        ),
        RowCheck(
            # Row-level on pandas 2 (object column: each value's type is checked); on pandas 3
            # string columns get a string dtype and this expectation fails them all.
            name="sku_is_text",
            expectation=lambda: expectations().ExpectColumnValuesToBeInTypeList(column="sku", type_list=["str"]),
            describe=lambda row: f"SKU {row['sku']!r} is {type(row['sku']).__name__}, not text",
        ),
        RowCheck(
            name="sku_unique",
            expectation=lambda: expectations().ExpectColumnValuesToBeUnique(column="sku"),
            describe=lambda row: f"SKU {row['sku']!r} is used by more than one variant in this batch",
        ),
        RowCheck(
            name="sku_allowed_characters",
            expectation=lambda: expectations().ExpectColumnValuesToMatchRegex(column="sku", regex=SKU_PATTERN),
            describe=lambda row: (
                f"SKU {row['sku']!r} has characters other than {allowed_characters}" if row["sku"] else "SKU is empty"
            ),
        ),
        RowCheck(
            name="sku_max_length",
            expectation=lambda: expectations().ExpectColumnValueLengthsToBeBetween(
                column="sku", max_value=sku_max_length
            ),
            describe=lambda row: (
                f"SKU {row['sku']!r} is {len(str(row['sku']))} characters long; at most {sku_max_length} are allowed"
            ),
        ),
        RowCheck(
            name="name_present",
            expectation=lambda: expectations().ExpectColumnValuesToNotBeNull(column="name"),
            describe=lambda row: "name is missing",
        ),
        RowCheck(
            name="name_not_blank",
            expectation=lambda: expectations().ExpectColumnValuesToMatchRegex(column="name", regex=r"\S"),
            describe=lambda row: f"name {row['name']!r} is blank",
        ),
        RowCheck(
            name="price_present",
            expectation=lambda: expectations().ExpectColumnValuesToNotBeNull(column="price"),
            describe=lambda row: "price is missing",
        ),
        RowCheck(
            name="price_not_negative",
            expectation=lambda: expectations().ExpectColumnValuesToBeBetween(column="price", min_value=0),
            describe=lambda row: f"price {format_number(row['price'])} is negative",
        ),
        RowCheck(
            name="vat_rate_allowed",
            expectation=lambda: expectations().ExpectColumnValuesToBeInSet(column="vat_rate", value_set=vat_rates),
            describe=lambda row: (
                f"VAT rate {format_number(row['vat_rate'])} % is not one of this shop's rates ({vat_rate_list})"
            ),
        ),
        RowCheck(
            name="axis_count_within_limit",
            expectation=lambda: expectations().ExpectColumnValuesToBeBetween(column="axis_count", max_value=max_axes),
            describe=lambda row: (
                f"{format_number(row['axis_count'])} variant axes; Mamut allows at most {max_axes} variant axes"
            ),
        ),
        RowCheck(
            name="ean_format",
            expectation=lambda: expectations().ExpectColumnValuesToMatchRegex(column="ean", regex=EAN_PATTERN),
            describe=lambda row: f"EAN {row['ean']!r} is not 8 or 13 digits",
        ),
        RowCheck(
            name="ean_check_digit",
            expectation=lambda: _gtin_check_digit_expectation_type()(column="ean"),
            describe=lambda row: (
                f"EAN {row['ean']!r} ends in check digit {str(row['ean'])[-1]}, "
                f"but its digits give {gtin_check_digit(str(row['ean'])[:-1])}"
            ),
        ),
    ]


def gtin_check_digit(body: str) -> int:
    """The GS1 check digit for a GTIN without its last digit (weights 3, 1, 3, … from the right)."""
    total = sum(int(digit) * (3 if position % 2 == 0 else 1) for position, digit in enumerate(reversed(body)))
    return -total % 10


def _check_digit_valid_or_not_an_ean(value: Any) -> bool:
    """True unless ``value`` is 8 or 13 digits with a wrong check digit; ean_format owns the rest."""
    text = str(value)
    if len(text) not in (8, 13) or not (text.isascii() and text.isdigit()):
        return True
    return gtin_check_digit(text[:-1]) == int(text[-1])


@cache
def _gtin_check_digit_expectation_type() -> type[Expectation]:
    """A custom GX expectation for the EAN check digit, defined once, on first use (GX is lazy)."""
    import_great_expectations()
    from great_expectations.execution_engine import PandasExecutionEngine
    from great_expectations.expectations.expectation import ColumnMapExpectation
    from great_expectations.expectations.metrics.map_metric_provider import (
        ColumnMapMetricProvider,
        column_condition_partial,
    )

    class ColumnValuesHaveValidGtinCheckDigit(ColumnMapMetricProvider):
        """Registers the metric with GX when the class is created."""

        condition_metric_name = _GTIN_CHECK_DIGIT_METRIC

        @column_condition_partial(engine=PandasExecutionEngine)
        def _pandas(cls, column: pd.Series, **kwargs: Any) -> pd.Series:
            return column.map(_check_digit_valid_or_not_an_ean)

    class ExpectColumnValuesToHaveValidGtinCheckDigit(ColumnMapExpectation):
        """Expect EAN-8/EAN-13 values to carry the right GS1 check digit (pandas only)."""

        map_metric = _GTIN_CHECK_DIGIT_METRIC
        success_keys = ("mostly",)

    return ExpectColumnValuesToHaveValidGtinCheckDigit


def format_number(value: Any) -> str:
    """A number as a shop owner writes it: 25 rather than 25.0, -0.5 as is."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
