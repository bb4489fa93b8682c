"""Run row-level checks on a DataFrame with Great Expectations and say which rows failed and why.

Pure: a DataFrame goes in, a ValidationReport comes out; nothing is read or written. Great
Expectations is imported only when a non-empty batch is validated, because importing it costs
4-6 s and must never happen while Airflow parses DAG files.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from great_expectations.expectations import Expectation

# COMPLETE is the only format that lists every failing row; naming the key column makes GX report
# each failing row by its key, which stays correct whatever index the caller's frame carries.
_RESULT_FORMAT_BASE: dict[str, Any] = {"result_format": "COMPLETE", "return_unexpected_index_query": False}


@dataclass(frozen=True)
class RowCheck:
    """One named rule: a GX expectation plus how to explain a failing row to a shop owner."""

    name: str
    expectation: Callable[[], Expectation]
    describe: Callable[[dict[str, Any]], str]


@dataclass(frozen=True)
class Failure:
    """Why one row failed one check; stored in quarantine as it is."""

    check: str
    reason: str


@dataclass(frozen=True)
class ValidationReport:
    """The verdicts for one batch: failing rows by key, the rows checked and the checks run.

    The quality gate (the share of failing records against the shop's threshold) is decided in one place,
    :func:`starmamut.jobs.common.apply_verdicts`, on the staged records and their verdicts from here.
    """

    failures: dict[str, list[Failure]]
    rows: int
    checks_run: int

    @property
    def failed_keys(self) -> set[str]:
        """Keys of the rows to quarantine."""
        return set(self.failures)


class CheckCouldNotRun(RuntimeError):
    """A check raised inside Great Expectations (e.g. its column is missing): a bug, not bad data."""


def validate_rows(
    df: pd.DataFrame, checks: Sequence[RowCheck], *, key_column: str, suite_name: str
) -> ValidationReport:
    """Validate every row of ``df`` against ``checks`` and attribute each failure to a row key.

    Failures are listed per row in the order of ``checks``, and rows in the order of ``df``.
    An expectation that fails as a whole without naming rows (a column-level verdict, such as
    a column whose dtype is wrong) fails every row, since no row can then be trusted.
    """
    _require_distinct_check_names(checks)
    keys = _row_keys(df, key_column)
    if df.empty:
        return ValidationReport(failures={}, rows=0, checks_run=0)

    failing_keys_by_check = _run_suite(df.reset_index(drop=True), checks, key_column, suite_name)
    rows_by_key = _rows_by_key(df, keys)
    failures: dict[str, list[Failure]] = {}
    for key in keys:
        row_failures = [
            Failure(check=check.name, reason=check.describe(rows_by_key[key]))
            for check in checks
            if key in failing_keys_by_check[check.name]
        ]
        if row_failures:
            failures[key] = row_failures
    return ValidationReport(failures=failures, rows=len(keys), checks_run=len(checks))


def _require_distinct_check_names(checks: Sequence[RowCheck]) -> None:
    """Check names become quarantine reasons' ids, so two checks may not share one."""
    seen: set[str] = set()
    for check in checks:
        if check.name in seen:
            raise ValueError(f"two checks are named {check.name!r}; check names must be unique")
        seen.add(check.name)


def _row_keys(df: pd.DataFrame, key_column: str) -> list[str]:
    """The row keys as strings, refusing a batch whose keys cannot identify its rows."""
    if key_column not in df.columns:
        raise ValueError(f"key column {key_column!r} is not in the batch (columns: {list(df.columns)})")
    missing = df[key_column].isna()
    if missing.any():
        raise ValueError(f"key column {key_column!r} is empty on {int(missing.sum())} row(s)")
    keys = [str(key) for key in df[key_column]]
    key_series = pd.Series(keys)
    duplicates = sorted(key_series[key_series.duplicated()].unique())
    if duplicates:
        raise ValueError(f"key column {key_column!r} repeats keys {duplicates}; each row needs its own key")
    return keys


def _rows_by_key(df: pd.DataFrame, keys: list[str]) -> dict[str, dict[str, Any]]:
    """Rows as plain dicts for the describe callables, with None (not NaN) for a missing value."""
    as_objects = df.astype(object)
    records = as_objects.where(as_objects.notna(), None).to_dict("records")
    return dict(zip(keys, records, strict=True))


def _run_suite(
    frame: pd.DataFrame, checks: Sequence[RowCheck], key_column: str, suite_name: str
) -> dict[str, set[str]]:
    """Validate ``frame`` in a fresh ephemeral context; return the failing row keys per check name."""
    gx = import_great_expectations()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas(f"{suite_name}_source")
        .add_dataframe_asset(f"{suite_name}_rows")
        .add_batch_definition_whole_dataframe(f"{suite_name}_whole_batch")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    suite = context.suites.add(gx.ExpectationSuite(name=suite_name))
    check_by_expectation_id: dict[str, RowCheck] = {}
    for check in checks:
        added = suite.add_expectation(check.expectation())
        # A suite silently drops an expectation equal to one it holds: that would lose a check.
        if added.id is None or added.id in check_by_expectation_id:
            raise ValueError(f"check {check.name!r} builds the same expectation as an earlier check")
        check_by_expectation_id[added.id] = check

    result_format = {**_RESULT_FORMAT_BASE, "unexpected_index_column_names": [key_column]}
    suite_result = batch.validate(suite, result_format=result_format)

    all_keys = {str(key) for key in frame[key_column]}
    failing: dict[str, set[str]] = {check.name: set() for check in checks}
    for result in suite_result.results:
        check = check_by_expectation_id[result.expectation_config.id]
        errors = _exception_messages(result.exception_info)
        if errors:
            raise CheckCouldNotRun(f"check {check.name!r} could not run: {'; '.join(errors)}")
        if not result.success:
            failing[check.name] = _failing_keys(result.result, key_column, all_keys)
    return failing


def _failing_keys(result: Mapping[str, Any], key_column: str, all_keys: set[str]) -> set[str]:
    """Row keys from a failed expectation's COMPLETE result; all rows for a column-level verdict."""
    if "unexpected_index_list" not in result:
        return set(all_keys)
    return {str(entry[key_column]) for entry in result["unexpected_index_list"]}


def _exception_messages(exception_info: Mapping[str, Any] | None) -> list[str]:
    """Messages of exceptions GX caught; its info is flat or keyed by metric, depending on the path."""
    if not exception_info:
        return []
    entries = [exception_info] if "raised_exception" in exception_info else list(exception_info.values())
    return [
        str(entry.get("exception_message"))
        for entry in entries
        if isinstance(entry, Mapping) and entry.get("raised_exception")
    ]


def _quiet_great_expectations() -> None:
    """GX logs every context and data source it sets up (two thirds of a task log, none of it for the reader):
    its loggers stay at WARNING, including those its import gave a level of their own."""
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    for name, logger in logging.root.manager.loggerDict.items():
        if name.startswith("great_expectations.") and isinstance(logger, logging.Logger) and logger.level:
            logger.setLevel(max(logger.level, logging.WARNING))


def import_great_expectations() -> ModuleType:
    """Import GX on first use, with its usage analytics off (a sync task must not call home).

    Check builders call this too, so GX is never imported before a batch is validated.
    """
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    _quiet_great_expectations()  # its import logs too
    import great_expectations

    _quiet_great_expectations()  # the import set some of its loggers' own levels
    return great_expectations
