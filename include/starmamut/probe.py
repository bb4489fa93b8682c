"""Check a real Mamut company database against the schema map before the first sync, writing nothing.

Mamut's schema is undocumented and differs between installs, so before the first sync an operator needs to
know which logical tables and columns the database lacks, which types would not hold what the integration
reads or writes, and which tables carry a change timestamp for incremental reads. :func:`probe` answers
from the database's own ODBC catalog (SQLTables/SQLColumns, portable across SQL Server, PostgreSQL and
SQLite) and then selects every mapped column with ``WHERE 1 = 0`` to prove the login may read it; it never
reads or writes a row. :func:`format_report` turns the answer into text with the start of an override file.

It lists which of the unique indexes that back up the integration's own locking the install has (order external
number, order number, customer number, article number): correctness does not need them, as every writer that
checks for a row or allocates a number holds an app lock the database grants, but where they exist the database
itself refuses a duplicate that some other writer (a person's import, another integration) might make.

It also says where foreign-currency orders put their exchange rate: ``order.exchange_rate`` is a column this
project proposed, not one seen in a real install, so the operator must find the install's own place and form.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from starmamut.mamut.gateway import CatalogColumn, CatalogKind, MamutError, MamutGateway, MamutTransaction
from starmamut.mamut.schema_map import ColumnSpec, SchemaMap, TableSpec, TypeKind

Level = Literal["error", "warning"]
CHANGE_TIMESTAMP = "edit_date"
"""The logical column incremental reads use as a table's change timestamp."""
UNKNOWN_NAME = "CHANGE_ME"
"""What the override template writes where the probe found no likely name."""

# Catalog kinds that hold what a mapped type holds (the gateway converts between them on every backend).
_COMPATIBLE: dict[TypeKind, frozenset[CatalogKind]] = {
    "int": frozenset({"int"}),
    "text": frozenset({"text"}),
    "decimal": frozenset({"decimal", "int", "float"}),
    "bit": frozenset({"bit", "int"}),
    "datetime": frozenset({"datetime", "date"}),
    "date": frozenset({"date", "datetime"}),
}


@dataclass(frozen=True)
class Finding:
    """One thing to map or check; ``override`` is the value the override file needs, if any."""

    level: Level
    table: TableSpec
    column: ColumnSpec | None
    message: str
    override: str | None = None

    @property
    def where(self) -> str:
        return self.column.label if self.column is not None else self.table.label


@dataclass(frozen=True)
class HelpfulIndex:
    """A unique index that adds a second net under the app locks, and what it adds."""

    table: str  # logical names
    column: str
    adds: str


HELPFUL_INDEXES = (
    HelpfulIndex("order", "external_id", "the same web order can never become two Mamut orders"),
    HelpfulIndex("order", "order_number", "two orders can never share an order number"),
    HelpfulIndex("contact", "customer_number", "two customers can never share a customer number"),
    HelpfulIndex("product", "sku", "two articles can never share an article number"),
)


@dataclass(frozen=True)
class IndexCheck:
    """Whether the database has a helpful unique index (``index`` names it; None when it has none)."""

    helpful: HelpfulIndex
    column: str  # TABLE.COLUMN as the database names it
    index: str | None
    problem: str | None = None  # why the catalog could not say


@dataclass(frozen=True)
class ProbeReport:
    """What :func:`probe` found, per logical table and column of the schema map."""

    dbms: str
    database: str
    tables_checked: int
    columns_checked: int
    findings: tuple[Finding, ...]
    change_timestamps: dict[str, str | None]
    """Logical table -> physical change-timestamp column; None where none is mapped or it cannot be read."""
    exchange_rate_column: str | None
    """``TABLE.COLUMN`` foreign-currency orders write their exchange rate to; None where the map has none."""
    unique_indexes: tuple[IndexCheck, ...] = ()
    """The helpful unique indexes of mapped columns of tables the database has, found or not."""

    @property
    def errors(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.level == "warning"]

    @property
    def ready(self) -> bool:
        """True when nothing must be mapped or fixed before the first sync."""
        return not self.errors


def probe(gateway: MamutGateway) -> ProbeReport:
    """Compare every table and column of the gateway's schema map with the database; reads metadata only."""
    schema_map = gateway.schema_map
    with gateway.transaction() as transaction:
        all_tables = [name for _schema, name in transaction.table_names()]
        catalog = transaction.catalog(schema_map.tables)
        dbms, database = transaction.dbms, transaction.database
        unique_indexes = _unique_indexes(transaction, schema_map, catalog)
    findings: list[Finding] = []
    for table in schema_map.tables:
        columns = catalog[table.physical]
        if columns is None:
            findings.append(_missing_table(table, all_tables))
            continue
        table_findings = _table_findings(table, columns)
        findings.extend(table_findings)
        if not any(finding.level == "error" for finding in table_findings):
            # The names fit: prove the login may read them (a permission problem shows only here).
            findings.extend(
                Finding("error", table, None, f"cannot be read with this login: {problem}")
                for problem in gateway.verify_schema([table])
            )
    return ProbeReport(
        dbms=dbms,
        database=database,
        tables_checked=len(schema_map.tables),
        columns_checked=sum(len(table.columns) for table in schema_map.tables),
        findings=tuple(findings),
        change_timestamps=_change_timestamps(schema_map.tables, findings),
        exchange_rate_column=_exchange_rate_column(schema_map),
        unique_indexes=unique_indexes,
    )


def _unique_indexes(
    transaction: MamutTransaction, schema_map: SchemaMap, catalog: dict[str, tuple[CatalogColumn, ...] | None]
) -> tuple[IndexCheck, ...]:
    """Each helpful index whose table the database has and whose column the map maps: found by name, or None."""
    checks: list[IndexCheck] = []
    for helpful in HELPFUL_INDEXES:
        table = schema_map.table(helpful.table)
        if catalog[table.physical] is None or not table.has(helpful.column):
            continue
        column = table.column(helpful.column).sql_name
        try:
            indexes = transaction.unique_indexes(table)
        except MamutError as exc:
            checks.append(IndexCheck(helpful, f"{table.physical}.{column}", None, problem=str(exc)))
            continue
        found = sorted(name for name, columns in indexes.items() if columns == (column.lower(),))
        checks.append(IndexCheck(helpful, f"{table.physical}.{column}", found[0] if found else None))
    return tuple(checks)


def _exchange_rate_column(schema_map: SchemaMap) -> str | None:
    """Where order.exchange_rate (our proposal, unverified in real installs) is mapped, if anywhere."""
    table = schema_map.table("order")
    column = table.all_columns["exchange_rate"]
    return None if column.physical is None else f"{table.physical}.{column.physical}"


def _change_timestamps(tables: Sequence[TableSpec], findings: Sequence[Finding]) -> dict[str, str | None]:
    """Per table with a change-timestamp column in the map: its physical name if the database has it usable."""
    failed = {
        finding.table.logical
        for finding in findings
        if finding.level == "error" and (finding.column is None or finding.column.logical == CHANGE_TIMESTAMP)
    }
    return {
        table.logical: None if table.logical in failed else table.all_columns[CHANGE_TIMESTAMP].physical
        for table in tables
        if CHANGE_TIMESTAMP in table.all_columns
    }


def _missing_table(table: TableSpec, all_tables: Sequence[str]) -> Finding:
    bare_name = table.physical.rpartition(".")[2]
    guess = _closest(bare_name, all_tables)
    hint = f"; the database has {guess} — is that it?" if guess else "; no table with a similar name"
    return Finding("error", table, None, f"table {table.physical} not found{hint}", override=guess or UNKNOWN_NAME)


def _table_findings(table: TableSpec, columns: Sequence[CatalogColumn]) -> list[Finding]:
    by_name = {column.name.lower(): column for column in columns}
    mapped = {column.sql_name.lower() for column in table.columns}
    unmapped = [column.name for column in columns if column.name.lower() not in mapped]
    findings: list[Finding] = []
    for spec in table.columns:
        found = by_name.get(spec.sql_name.lower())
        if found is None:
            findings.append(_missing_column(table, spec, unmapped))
        else:
            findings.extend(_column_findings(table, spec, found))
    required_unknown = [
        column.name
        for column in columns
        if column.name.lower() not in mapped and not column.nullable and not column.has_default
    ]
    if required_unknown:
        findings.append(
            Finding(
                "warning",
                table,
                None,
                f"column(s) {', '.join(required_unknown)} are NOT NULL without a default and not in the map: "
                "rows the integration inserts into this table are rejected unless the database fills them",
            )
        )
    return findings


def _missing_column(table: TableSpec, spec: ColumnSpec, unmapped: Sequence[str]) -> Finding:
    guess = _closest(spec.sql_name, unmapped)
    found = f"column {spec.sql_name} not found in {table.physical}"
    similar = f"; {table.physical} has {guess} — is that it?" if guess else ""
    if spec.optional:
        return Finding(
            "error",
            table,
            spec,
            f"{found}{similar}; optional: map it to null if this install has no such column",
            override=guess or "null",
        )
    return Finding(
        "error", table, spec, f"{found}{similar or '; no column with a similar name'}", override=guess or UNKNOWN_NAME
    )


def _column_findings(table: TableSpec, spec: ColumnSpec, found: CatalogColumn) -> list[Finding]:
    wanted = spec.sql_type
    actual = f"{found.type_name} in the database"
    if found.kind not in _COMPATIBLE[wanted.kind] and not _whole_decimal(wanted.kind, found):
        return [
            Finding(
                "error", table, spec, f"is {actual}, which cannot hold the map's {wanted.declared}: map another column"
            )
        ]
    notes: list[str] = []
    if wanted.kind == "decimal" and found.kind == "int" and wanted.scale:
        notes.append(f"is {actual}: fractions of the map's {wanted.declared} are lost")
    elif wanted.kind == "decimal" and found.kind == "float":
        notes.append(f"is {actual}, an approximate type: values are rounded to {wanted.scale} decimals on reading")
    elif wanted.kind == "datetime" and found.kind == "date":
        notes.append(f"is {actual}: the time of day is lost, so changes within a day are not told apart")
    if wanted.kind == "text" and found.size and wanted.length and found.size < wanted.length:
        notes.append(
            f"holds at most {found.size} characters, the map allows {wanted.length}: "
            "longer values are rejected when written"
        )
    if wanted.kind == "decimal" and found.kind == "decimal" and found.size and found.scale is not None:
        map_digits = (wanted.precision or 0) - (wanted.scale or 0)
        if found.size - found.scale < map_digits:
            notes.append(f"holds {found.size - found.scale} digits before the point, the map up to {map_digits}")
        if found.scale < (wanted.scale or 0):
            notes.append(f"keeps {found.scale} decimals, the map {wanted.scale}: values are rounded when written")
    if spec.nullable and not found.nullable and not found.has_default:
        notes.append("is NOT NULL without a default, but the integration may leave it empty")
    return [Finding("warning", table, spec, note) for note in notes]


def _whole_decimal(kind: TypeKind, found: CatalogColumn) -> bool:
    """A key declared numeric(p,0) (common in SQL Server schemas) holds integers as well as int does."""
    return kind == "int" and found.kind == "decimal" and found.scale == 0


def _closest(name: str, candidates: Sequence[str]) -> str | None:
    """The candidate most like ``name`` (case-insensitively), if any is reasonably close."""
    by_lower = {candidate.lower(): candidate for candidate in candidates}
    matches = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.75)
    return by_lower[matches[0]] if matches else None


def format_report(report: ProbeReport) -> str:
    """The report for a person: what must be mapped, what to check, change timestamps, an override to start from."""
    lines = [
        f"Mamut company database: {report.dbms}, database {report.database!r}",
        f"Checked {report.tables_checked} tables and {report.columns_checked} columns of the schema map "
        "(catalog and empty selects only; nothing was written).",
    ]
    if report.errors:
        lines += ["", f"Must be mapped or fixed before the first sync ({len(report.errors)}):"]
        lines += [f"  {finding.where}: {finding.message}" for finding in report.errors]
    if report.warnings:
        lines += ["", f"Worth checking ({len(report.warnings)}):"]
        lines += [f"  {finding.where}: {finding.message}" for finding in report.warnings]
    with_timestamp = [f"{table} ({column})" for table, column in report.change_timestamps.items() if column]
    without = [table for table, column in report.change_timestamps.items() if not column]
    lines += ["", "Change timestamps (incremental reads): " + (", ".join(with_timestamp) or "none")]
    if without:
        lines.append("No usable change timestamp (full scans compared by content hash): " + ", ".join(without))
    lines += ["", _exchange_rate_note(report.exchange_rate_column)]
    if report.unique_indexes:
        lines += ["", _unique_index_notes(report.unique_indexes)]
    if report.ready:
        lines += ["", "Ready: the schema map fits this database."]
    else:
        lines += [
            "",
            "Start of an override file (name it in config as mamut.schema_map; check every guessed name, "
            f"replace {UNKNOWN_NAME}):",
            override_template(report.errors),
        ]
    return "\n".join(lines)


def _unique_index_notes(checks: Sequence[IndexCheck]) -> str:
    """Which helpful unique indexes exist, and that correctness does not need them."""
    lines = [
        "Unique indexes that back up the app locks (defence in depth: every writer of the integration checks for a "
        "row and allocates numbers under an app lock the database grants, so correctness does not need them; where "
        "they exist, the database itself refuses a duplicate from any writer):"
    ]
    for check in checks:
        if check.problem is not None:
            state = f"unknown  {check.column}: the catalog could not be read ({check.problem})"
        elif check.index is not None:
            state = f"present  {check.column} (index {check.index}): {check.helpful.adds}"
        else:
            state = f"missing  {check.column}: adding one would make sure {check.helpful.adds}"
        lines.append(f"  {state}")
    return "\n".join(lines)


def _exchange_rate_note(column: str | None) -> str:
    """Where foreign-currency orders keep their rate, and that a person must confirm it for this install."""
    if column is None:
        return (
            "Exchange rate of foreign-currency orders: not written (order.exchange_rate is mapped to null), "
            "so Mamut holds no rate for them: check how this install converts them."
        )
    return (
        f"Exchange rate of foreign-currency orders: written to {column} (order.exchange_rate), a column "
        "this project proposed, not one seen in a real install. Check where this install keeps an order's "
        "rate and in which form, map order.exchange_rate to that column (or to null), and set "
        "mamut.exchange_rate: direction (base_per_foreign | foreign_per_base) and unit (1 | 100)."
    )


def override_template(findings: Sequence[Finding]) -> str:
    """Schema-map override YAML with one entry per finding that names a table or column to map."""
    tables: dict[str, tuple[str | None, list[str]]] = {}
    for finding in findings:
        if finding.override is None:
            continue
        name, columns = tables.get(finding.table.logical, (None, []))
        if finding.column is None:
            name = finding.override
        else:
            columns.append(f"      {finding.column.logical}: {finding.override}")
        tables[finding.table.logical] = (name, columns)
    lines = ["tables:"]
    for table, (name, columns) in tables.items():
        lines.append(f"  {table}:")
        if name is not None:
            lines.append(f"    name: {name}")
        if columns:
            lines += ["    columns:", *columns]
    return "\n".join(lines)
