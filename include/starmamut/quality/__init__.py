"""Row-level data quality: Great Expectations checks whose failures are attributed to staged rows."""

from starmamut.quality.products import PRODUCT_COLUMNS, product_checks
from starmamut.quality.runner import (
    CheckCouldNotRun,
    Failure,
    RowCheck,
    ValidationReport,
    validate_rows,
)

__all__ = [
    "PRODUCT_COLUMNS",
    "CheckCouldNotRun",
    "Failure",
    "RowCheck",
    "ValidationReport",
    "product_checks",
    "validate_rows",
]
