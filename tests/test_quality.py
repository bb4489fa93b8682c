"""Row-level product checks run through real Great Expectations on the pinned pandas line.

GX is imported once per session (on the first validation); each validation after that takes
tens of milliseconds, so one batch per case is affordable.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
import pytest

from starmamut.quality import (
    PRODUCT_COLUMNS,
    CheckCouldNotRun,
    Failure,
    RowCheck,
    ValidationReport,
    product_checks,
    validate_rows,
)
from starmamut.quality.products import gtin_check_digit
from starmamut.quality.runner import import_great_expectations

SHOP_VAT_RATES = (25.0, 12.0, 6.0, 0.0)
CHECKS = product_checks(allowed_vat_rates=SHOP_VAT_RATES)


def clean_rows() -> list[dict[str, Any]]:
    """Three valid variant rows: a plain product, a variant with two axes, one without an EAN."""
    return [
        {"row_key": "r1", "product_key": "p1", "sku": "TSHIRT-001", "name": "T-shirt",
         "price": 199.0, "vat_rate": 25.0, "axis_count": 0.0, "ean": "4006381333931"},
        {"row_key": "r2", "product_key": "p2", "sku": "JAM_BLUE.1", "name": "Blåbärssylt från Öland",
         "price": 0.0, "vat_rate": 12.0, "axis_count": 2.0, "ean": "96385074"},
        {"row_key": "r3", "product_key": "p3", "sku": "book-3", "name": "Bok",
         "price": 89.5, "vat_rate": 6.0, "axis_count": 1.0, "ean": None},
    ]  # fmt: skip


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(PRODUCT_COLUMNS))


def validate(rows: list[dict[str, Any]], checks: list[RowCheck] = CHECKS) -> ValidationReport:
    return validate_rows(frame(rows), checks, key_column="row_key", suite_name="products")


def test_clean_batch_passes_every_check() -> None:
    report = validate(clean_rows())

    assert report.failures == {}
    assert report.rows == 3
    assert report.checks_run == len(CHECKS) == 13


def test_great_expectations_keeps_its_set_up_chatter_out_of_the_task_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    validate(clean_rows())

    assert [
        record.getMessage()
        for record in caplog.records
        if record.name.startswith("great_expectations") and record.levelno < logging.WARNING
    ] == []


# (check, field set on row r2, bad value, expected reason or its start)
FAILING_CASES = [
    ("sku_present", "sku", None, "SKU is missing"),
    ("sku_is_text", "sku", 12345, "SKU 12345 is int, not text"),
    ("sku_allowed_characters", "sku", "ABC 1!",
     "SKU 'ABC 1!' has characters other than A-Z a-z 0-9 . _ -"),
    ("sku_allowed_characters", "sku", "SKÅP-1", "SKU 'SKÅP-1' has characters other than"),
    ("sku_allowed_characters", "sku", "ABC\n", "SKU 'ABC\\n' has characters other than"),
    ("sku_allowed_characters", "sku", "", "SKU is empty"),
    ("sku_max_length", "sku", "A" * 41,
     f"SKU '{'A' * 41}' is 41 characters long; at most 40 are allowed"),
    ("name_present", "name", None, "name is missing"),
    ("name_not_blank", "name", " \t ", "name ' \\t ' is blank"),
    ("price_present", "price", None, "price is missing"),
    ("price_not_negative", "price", -0.5, "price -0.5 is negative"),
    ("vat_rate_allowed", "vat_rate", 24.0,
     "VAT rate 24 % is not one of this shop's rates (0, 6, 12, 25)"),
    ("axis_count_within_limit", "axis_count", 3.0,
     "3 variant axes; Mamut allows at most 2 variant axes"),
    ("ean_format", "ean", "12345", "EAN '12345' is not 8 or 13 digits"),
    ("ean_format", "ean", "400638133393X", "EAN '400638133393X' is not 8 or 13 digits"),
    ("ean_check_digit", "ean", "4006381333932",
     "EAN '4006381333932' ends in check digit 2, but its digits give 1"),
    ("ean_check_digit", "ean", "96385075", "EAN '96385075' ends in check digit 5, but its digits give 4"),
]  # fmt: skip


@pytest.mark.parametrize(("check", "field", "bad_value", "reason"), FAILING_CASES)
def test_each_check_fails_exactly_the_bad_row_with_a_reason_naming_the_value(
    check: str, field: str, bad_value: Any, reason: str
) -> None:
    rows = clean_rows()
    rows[1][field] = bad_value

    report = validate(rows)

    assert set(report.failures) == {"r2"}
    [failure] = report.failures["r2"]
    assert failure.check == check
    assert failure.reason.startswith(reason)


def test_every_check_has_a_failing_case() -> None:
    """A new check without a case in FAILING_CASES (or the duplicate test) is caught here."""
    covered = {case[0] for case in FAILING_CASES} | {"sku_unique"}
    assert covered == {check.name for check in CHECKS}


def test_several_failures_on_one_row_are_all_reported_in_check_order() -> None:
    rows = clean_rows()
    rows[0].update(sku="bad sku", name=None, price=-1.0, vat_rate=99.0, axis_count=3.0, ean="123")

    report = validate(rows)

    assert report.failures == {
        "r1": [
            Failure("sku_allowed_characters", "SKU 'bad sku' has characters other than A-Z a-z 0-9 . _ -"),
            Failure("name_present", "name is missing"),
            Failure("price_not_negative", "price -1 is negative"),
            Failure("vat_rate_allowed", "VAT rate 99 % is not one of this shop's rates (0, 6, 12, 25)"),
            Failure("axis_count_within_limit", "3 variant axes; Mamut allows at most 2 variant axes"),
            Failure("ean_format", "EAN '123' is not 8 or 13 digits"),
        ]
    }


def test_every_row_sharing_a_duplicate_sku_fails() -> None:
    rows = clean_rows() + [dict(clean_rows()[0], row_key="r4"), dict(clean_rows()[0], row_key="r5")]

    report = validate(rows)

    assert report.failed_keys == {"r1", "r4", "r5"}
    for key in ("r1", "r4", "r5"):
        assert report.failures[key] == [
            Failure("sku_unique", "SKU 'TSHIRT-001' is used by more than one variant in this batch")
        ]


def test_missing_optional_values_pass_and_missing_skus_are_not_duplicates() -> None:
    """No EAN at all, no VAT rate (Starweb: the shop default) and two rows without SKU."""
    rows = clean_rows()
    for row in rows:
        row.update(ean=None, vat_rate=None)
    rows[0]["sku"] = None
    rows[2]["sku"] = None

    report = validate(rows)

    assert report.failures == {
        "r1": [Failure("sku_present", "SKU is missing")],
        "r3": [Failure("sku_present", "SKU is missing")],
    }


def test_names_with_swedish_letters_pass() -> None:
    rows = clean_rows()
    for row, name in zip(rows, ("Åkerbär", "Smörgåsbord ÄÖÜ", "Fisk & skaldjur – räkor"), strict=True):
        row["name"] = name

    assert validate(rows).failures == {}


def test_type_list_expectation_passes_string_columns_on_the_pinned_pandas() -> None:
    """ExpectColumnValuesToBeInTypeList checks each value only for object columns (pandas 2)."""
    assert int(pd.__version__.split(".")[0]) == 2, (
        f"pandas {pd.__version__}: pandas 3 stores strings in a string dtype, and GX 1.24's "
        "ExpectColumnValuesToBeInTypeList then fails every string column; requirements pin pandas 2.3.3"
    )
    string_rows = frame(clean_rows())
    assert string_rows["sku"].dtype == object
    sku_is_text = [check for check in CHECKS if check.name == "sku_is_text"]

    report = validate_rows(string_rows, sku_is_text, key_column="row_key", suite_name="types")

    assert report.failures == {}
    assert report.checks_run == 1


def test_a_column_level_verdict_fails_every_row() -> None:
    """All-integer SKUs give an int64 column: GX judges the dtype, not rows, so no row passes."""
    rows = clean_rows()
    for number, row in enumerate(rows):
        row["sku"] = 1000 + number
    sku_is_text = [check for check in CHECKS if check.name == "sku_is_text"]

    report = validate(rows, sku_is_text)

    assert report.failures["r3"] == [Failure("sku_is_text", "SKU 1002 is int, not text")]
    assert report.failed_keys == {"r1", "r2", "r3"}


def test_every_failing_row_is_reported_beyond_the_partial_list() -> None:
    """GX's partial lists stop at 20 values; quarantine needs every failing row."""
    rows = [dict(clean_rows()[0], row_key=f"k{number}", sku=f"BAD SKU {number}") for number in range(250)]

    report = validate(rows)

    assert report.failed_keys == {f"k{number}" for number in range(250)}


def test_a_row_with_several_failures_is_one_failing_row() -> None:
    rows = clean_rows() + [dict(clean_rows()[2], row_key="r4", sku="book-4")]
    rows[0].update(price=None, name=" ")

    report = validate(rows)

    assert len(report.failures["r1"]) == 2
    assert report.failed_keys == {"r1"} and report.rows == 4  # the gate counts one failing record of four


def test_empty_batch_gives_an_empty_report_without_building_expectations() -> None:
    def must_not_build() -> Any:
        pytest.fail("an empty batch must not reach Great Expectations")

    never_run = RowCheck(name="never", expectation=must_not_build, describe=lambda row: "")

    report = validate_rows(frame([]), [never_run], key_column="row_key", suite_name="empty")

    assert report == ValidationReport(failures={}, rows=0, checks_run=0)


def test_rows_are_reported_by_key_whatever_the_frame_index() -> None:
    rows = clean_rows()
    rows[2]["price"] = -3.0
    shuffled = frame(rows).set_axis([7, 7, 3])

    report = validate_rows(shuffled, CHECKS, key_column="row_key", suite_name="products")

    assert report.failed_keys == {"r3"}


def test_keys_that_cannot_identify_rows_are_refused() -> None:
    rows = clean_rows()
    rows[2]["row_key"] = "r1"
    with pytest.raises(ValueError, match=r"repeats keys \['r1'\]"):
        validate(rows)

    rows[2]["row_key"] = None
    with pytest.raises(ValueError, match="empty on 1 row"):
        validate(rows)


def test_a_check_on_a_missing_column_raises_naming_the_check() -> None:
    gx = import_great_expectations()
    colour_present = RowCheck(
        name="colour_present",
        expectation=lambda: gx.expectations.ExpectColumnValuesToNotBeNull(column="colour"),
        describe=lambda row: "colour is missing",
    )

    with pytest.raises(CheckCouldNotRun, match=r"'colour_present' could not run: .*colour"):
        validate(clean_rows(), [colour_present])


def test_checks_must_have_distinct_names_and_expectations() -> None:
    sku_present = CHECKS[0]
    with pytest.raises(ValueError, match="two checks are named 'sku_present'"):
        validate(clean_rows(), [sku_present, sku_present])

    renamed = RowCheck("sku_given", sku_present.expectation, sku_present.describe)
    with pytest.raises(ValueError, match="'sku_given' builds the same expectation"):
        validate(clean_rows(), [sku_present, renamed])


def test_product_checks_refuse_settings_that_would_fail_every_row() -> None:
    with pytest.raises(ValueError, match="allowed_vat_rates is empty"):
        product_checks(allowed_vat_rates=[])


@pytest.mark.parametrize("gtin", ["4006381333931", "96385074", "5901234123457", "73513537"])
def test_gtin_check_digit_matches_published_examples(gtin: str) -> None:
    assert gtin_check_digit(gtin[:-1]) == int(gtin[-1])
