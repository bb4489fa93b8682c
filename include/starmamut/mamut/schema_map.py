"""Logical → physical names (and types) of the Mamut company database, in one place.

Real Mamut installs differ and most of the schema is unverified (see default_schema_map.yaml), so
the code only ever speaks logical names (``product.sku``) and this map turns them into physical ones
(``G_PROD.PRODID``). An install overrides names in a small YAML file or dict without code changes;
a column the install lacks may be mapped to ``null`` where the YAML marks it ``optional: true``.

The column types also decide how values cross the driver boundary, identically on every backend:

- ``decimal(p,s)`` → :class:`~decimal.Decimal` quantised to ``s`` places (the SQLite3 ODBC driver
  returns floats, psqlODBC and SQL Server return Decimals);
- ``bit`` → ``bool`` in Python, sent as 0/1 ints (PostgreSQL mock columns are SMALLINT);
- ``datetime`` → naive :class:`~datetime.datetime` on the install's wall clock (``mamut.timezone``: Mamut stamps
  EDITDATE in the server's local time), truncated to whole seconds (aware values are converted; SQL Server
  ``datetime`` and SQLite cannot hold microseconds exactly); :meth:`ColumnSpec.to_utc` and
  :meth:`ColumnSpec.since_param` cross between those and the UTC instants the jobs keep;
- ``nvarchar(n)``/``char(n)`` → ``str``, at most ``n`` characters on write (SQLite would not check).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import yaml

DEFAULT_SCHEMA_MAP_PATH = Path(__file__).with_name("default_schema_map.yaml")

_COLUMN_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TABLE_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_TYPE_PATTERN = re.compile(r"^(int|bit|datetime|date|nvarchar\((\d+)\)|char\((\d+)\)|decimal\((\d+),\s*(\d+)\))$")

LONGEST_CLOCK_SHIFT = dt.timedelta(hours=2)
"""Clocks go back by at most this much at once (one hour in Europe; two covers historical double summer time)."""

TypeKind = Literal["int", "text", "decimal", "bit", "datetime", "date"]


class SchemaMapError(LookupError):
    """A logical name is unknown or unmapped, or a schema map file/override is malformed."""


@dataclass(frozen=True)
class SqlType:
    """A column type in T-SQL vocabulary, parsed once so conversions need no string checks."""

    declared: str
    kind: TypeKind
    length: int | None = None
    precision: int | None = None
    scale: int | None = None

    @classmethod
    def parse(cls, declared: str) -> SqlType:
        match = _TYPE_PATTERN.match(declared.strip().lower())
        if not match:
            raise SchemaMapError(
                f"unsupported column type {declared!r} (use int, bit, datetime, date, nvarchar(n), char(n), "
                "decimal(p,s))"
            )
        text = match.group(1)
        if match.group(2) or match.group(3):
            return cls(text, "text", length=int(match.group(2) or match.group(3)))
        if match.group(4):
            return cls(text, "decimal", precision=int(match.group(4)), scale=int(match.group(5)))
        kind: TypeKind = text  # type: ignore[assignment]  # int, bit, datetime, date
        return cls(text, kind)


@dataclass(frozen=True)
class ColumnSpec:
    """One logical column: its physical name (None = absent in this install) and its type."""

    table: str
    logical: str
    physical: str | None
    sql_type: SqlType
    nullable: bool = False
    default: int | str | None = None
    identity: bool = False
    optional: bool = False
    timezone: dt.tzinfo = dt.UTC  # the wall clock of a datetime column (the install's mamut.timezone)

    @property
    def present(self) -> bool:
        return self.physical is not None

    @property
    def sql_name(self) -> str:
        """The physical name for SQL text (TableSpec.column already rejects absent columns)."""
        if self.physical is None:
            raise SchemaMapError(f"column {self.label} is mapped to null: this install does not have it")
        return self.physical

    @property
    def label(self) -> str:
        """How errors name the column: logical and physical, so both the code and the DBA recognise it."""
        return f"{self.table}.{self.logical} ({self.physical or 'not mapped'})"

    def from_db(self, raw: Any) -> Any:
        """Normalise a value read from any backend to its canonical Python type (lenient: no range checks)."""
        if raw is None:
            return None
        kind = self.sql_type.kind
        if kind == "decimal":
            number = Decimal(repr(raw)) if isinstance(raw, float) else Decimal(str(raw))
            return number.quantize(Decimal(1).scaleb(-(self.sql_type.scale or 0)), rounding=ROUND_HALF_UP)
        if kind == "bit":
            return bool(int(raw))
        if kind == "int":
            return int(raw)
        if kind == "datetime":
            return raw if isinstance(raw, dt.datetime) else dt.datetime.fromisoformat(str(raw))
        if kind == "date":
            if isinstance(raw, dt.datetime):
                return raw.date()
            return raw if isinstance(raw, dt.date) else dt.date.fromisoformat(str(raw))
        return raw if isinstance(raw, str) else str(raw)

    def canonical(self, value: Any, *, strict: bool = True) -> Any:
        """The value as it will be stored and read back; ``strict`` also checks length, digits and NULL.

        Raises ValueError naming the column for a value the column cannot hold.
        """
        if value is None:
            if strict and not self.nullable and not self.identity:
                raise ValueError(f"{self.label} cannot be empty")
            return None
        kind = self.sql_type.kind
        if kind == "text":
            if not isinstance(value, str):
                raise ValueError(f"{self.label} takes text, got {type(value).__name__}")
            if strict and self.sql_type.length is not None and len(value) > self.sql_type.length:
                raise ValueError(
                    f"{self.label} takes at most {self.sql_type.length} characters, got {len(value)}: {value[:60]!r}"
                )
            return value
        if kind == "decimal":
            return self._canonical_decimal(value, strict=strict)
        if kind == "bit":
            if isinstance(value, bool) or value in (0, 1):
                return bool(value)
            raise ValueError(f"{self.label} takes a boolean, got {value!r}")
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{self.label} takes an integer, got {value!r}")
            return value
        if kind == "datetime":
            if not isinstance(value, dt.datetime):
                raise ValueError(f"{self.label} takes a datetime, got {value!r}")
            if value.tzinfo is not None:
                value = value.astimezone(self.timezone).replace(tzinfo=None)
            return value.replace(microsecond=0)
        if isinstance(value, dt.datetime):
            return value.date()
        if not isinstance(value, dt.date):
            raise ValueError(f"{self.label} takes a date, got {value!r}")
        return value

    def to_param(self, value: Any, *, strict: bool = True) -> Any:
        """The canonical value in the shape every driver accepts as a ``?`` parameter (bools as 0/1)."""
        canonical = self.canonical(value, strict=strict)
        return int(canonical) if isinstance(canonical, bool) else canonical

    def to_utc(self, wall_clock: dt.datetime | None) -> dt.datetime | None:
        """A value read from this datetime column as an aware UTC instant. A wall-clock time in the hour the
        clocks go back happens twice; the earlier instant is taken, so a watermark from it never passes a change."""
        if wall_clock is None or wall_clock.tzinfo is not None:
            return None if wall_clock is None else wall_clock.astimezone(dt.UTC)
        return wall_clock.replace(tzinfo=self.timezone, fold=0).astimezone(dt.UTC)

    def since_param(self, moment: dt.datetime) -> Any:
        """The parameter of ``column >= ?`` that finds every row stamped at or after the instant ``moment``.

        Rows carry wall-clock times: when the clocks go back in the hours after ``moment``, rows written after
        the change carry wall-clock times earlier than ``moment``'s, so the bound moves back by the shift.
        """
        wall_clock = self.canonical(moment, strict=False)
        if moment.tzinfo is not None:
            later = moment + LONGEST_CLOCK_SHIFT
            offset_then, offset_later = (instant.astimezone(self.timezone).utcoffset() for instant in (moment, later))
            assert offset_then is not None and offset_later is not None  # a time in a named zone has an offset
            shift = offset_then - offset_later
            if shift > dt.timedelta(0):
                wall_clock -= shift
        return self.to_param(wall_clock, strict=False)

    def _canonical_decimal(self, value: Any, *, strict: bool) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, (Decimal, int, float)):
            raise ValueError(f"{self.label} takes a number, got {value!r}")
        try:
            number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
            scale = self.sql_type.scale or 0
            quantised = number.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)
        except InvalidOperation:
            raise ValueError(f"{self.label} takes a finite number, got {value!r}") from None
        if not quantised.is_finite():
            raise ValueError(f"{self.label} takes a finite number, got {value!r}")
        integer_digits = (self.sql_type.precision or 0) - scale
        if strict and abs(quantised) >= Decimal(10) ** integer_digits:
            raise ValueError(f"{self.label} holds at most {integer_digits} digits before the point, got {value}")
        return quantised


@dataclass(frozen=True)
class TableSpec:
    """One logical table with its physical name, columns and (mock) constraints."""

    logical: str
    physical: str
    all_columns: Mapping[str, ColumnSpec]
    primary_key: tuple[str, ...]
    unique: tuple[tuple[str, ...], ...]
    indexes: tuple[tuple[str, ...], ...]
    foreign_keys: Mapping[str, tuple[str, str]]

    @property
    def label(self) -> str:
        return f"{self.logical} ({self.physical})"

    def column(self, logical: str) -> ColumnSpec:
        """The mapped column; raises SchemaMapError if the name is unknown or mapped to null here."""
        spec = self.all_columns.get(logical)
        if spec is None:
            known = ", ".join(sorted(self.all_columns))
            raise SchemaMapError(f"unknown column {logical!r} of table {self.label}; known columns: {known}")
        if not spec.present:
            raise SchemaMapError(f"column {spec.label} is mapped to null: this install does not have it")
        return spec

    def has(self, logical: str) -> bool:
        """True if the column is known and present in this install (optional columns may be absent)."""
        spec = self.all_columns.get(logical)
        if spec is None:
            raise SchemaMapError(f"unknown column {logical!r} of table {self.label}")
        return spec.present

    @property
    def columns(self) -> tuple[ColumnSpec, ...]:
        """The columns present in this install, in declaration order."""
        return tuple(spec for spec in self.all_columns.values() if spec.present)


class SchemaMap:
    """Immutable map of every Mamut table the project touches; build it with :meth:`load`."""

    def __init__(self, tables: Mapping[str, TableSpec]) -> None:
        self._tables = MappingProxyType(dict(tables))

    @classmethod
    def load(
        cls, path: str | Path | None = None, overrides: Mapping[str, Any] | None = None, *, timezone: dt.tzinfo = dt.UTC
    ) -> SchemaMap:
        """The default map, then the install's override file at ``path``, then ``overrides`` on top;
        ``timezone`` is the wall clock the install's datetime columns hold (``mamut.timezone``).

        Both override layers have the shape
        ``{"tables": {table: {"name": ..., "columns": {column: name | None}}}}`` and may only rename
        what the default map knows: a typo is an error, not a silent no-op.
        """
        with DEFAULT_SCHEMA_MAP_PATH.open(encoding="utf-8") as handle:
            document = yaml.safe_load(handle)
        tables = _parse_default(document)
        if path is not None:
            with Path(path).open(encoding="utf-8") as handle:
                tables = _apply_overrides(tables, yaml.safe_load(handle) or {}, source=str(path))
        if overrides:
            tables = _apply_overrides(tables, overrides, source="overrides")
        schema_map = cls({name: _on_wall_clock(table, timezone) for name, table in tables.items()})
        schema_map._check_constraints()
        return schema_map

    def table(self, logical: str) -> TableSpec:
        spec = self._tables.get(logical)
        if spec is None:
            raise SchemaMapError(f"unknown table {logical!r}; known tables: {', '.join(sorted(self._tables))}")
        return spec

    @property
    def tables(self) -> tuple[TableSpec, ...]:
        """Every table in declaration order (parents before children, as the DDL needs)."""
        return tuple(self._tables.values())

    def _check_constraints(self) -> None:
        """Keys, indexes and foreign keys must name known columns; keys must stay mapped."""
        for table in self._tables.values():
            for name in table.primary_key:
                if not table.has(name):
                    raise SchemaMapError(f"primary key column {table.logical}.{name} cannot be mapped to null")
            for columns in table.unique + table.indexes:
                for name in columns:
                    table.has(name)
            for column, (target_table, target_column) in table.foreign_keys.items():
                table.has(column)
                self.table(target_table).has(target_column)

    def __repr__(self) -> str:
        return f"SchemaMap({', '.join(t.label for t in self._tables.values())})"


def _on_wall_clock(table: TableSpec, timezone: dt.tzinfo) -> TableSpec:
    columns = {name: replace(column, timezone=timezone) for name, column in table.all_columns.items()}
    return replace(table, all_columns=MappingProxyType(columns))


def _parse_default(document: Mapping[str, Any]) -> dict[str, TableSpec]:
    tables: dict[str, TableSpec] = {}
    for logical, body in document["tables"].items():
        physical = _checked_table_name(logical, body["name"])
        columns: dict[str, ColumnSpec] = {}
        for column, spec in body["columns"].items():
            columns[column] = ColumnSpec(
                table=logical,
                logical=column,
                physical=_checked_column_name(logical, column, spec["name"]),
                sql_type=SqlType.parse(str(spec["type"])),
                nullable=bool(spec.get("nullable", False)),
                default=spec.get("default"),
                identity=bool(spec.get("identity", False)),
                optional=bool(spec.get("optional", False)),
            )
        foreign_keys = {
            column: tuple(str(target).split(".", 1)) for column, target in (body.get("foreign_keys") or {}).items()
        }
        tables[logical] = TableSpec(
            logical=logical,
            physical=physical,
            all_columns=MappingProxyType(columns),
            primary_key=tuple(body.get("primary_key") or ()),
            unique=tuple(tuple(cols) for cols in body.get("unique") or ()),
            indexes=tuple(tuple(cols) for cols in body.get("indexes") or ()),
            foreign_keys=MappingProxyType(foreign_keys),  # type: ignore[arg-type]
        )
    return tables


def _apply_overrides(tables: dict[str, TableSpec], document: Any, *, source: str) -> dict[str, TableSpec]:
    if not isinstance(document, Mapping) or set(document) - {"tables"}:
        raise SchemaMapError(f"schema map {source}: expected a mapping with a single key 'tables'")
    result = dict(tables)
    for logical, body in (document.get("tables") or {}).items():
        if logical not in result:
            raise SchemaMapError(
                f"schema map {source}: unknown table {logical!r}; known tables: {', '.join(sorted(result))}"
            )
        if not isinstance(body, Mapping) or set(body) - {"name", "columns"}:
            raise SchemaMapError(f"schema map {source}: table {logical!r} takes only 'name' and 'columns'")
        table = result[logical]
        physical = _checked_table_name(logical, body["name"]) if "name" in body else table.physical
        columns = dict(table.all_columns)
        for column, new_name in (body.get("columns") or {}).items():
            spec = columns.get(column)
            if spec is None:
                known = ", ".join(sorted(columns))
                raise SchemaMapError(
                    f"schema map {source}: unknown column {column!r} of table {logical!r}; known columns: {known}"
                )
            if new_name is None and not spec.optional:
                raise SchemaMapError(
                    f"schema map {source}: column {logical}.{column} is required and cannot be mapped to null"
                )
            physical_column = None if new_name is None else _checked_column_name(logical, column, new_name)
            columns[column] = ColumnSpec(
                table=spec.table,
                logical=spec.logical,
                physical=physical_column,
                sql_type=spec.sql_type,
                nullable=spec.nullable,
                default=spec.default,
                identity=spec.identity,
                optional=spec.optional,
            )
        result[logical] = TableSpec(
            logical=logical,
            physical=physical,
            all_columns=MappingProxyType(columns),
            primary_key=table.primary_key,
            unique=table.unique,
            indexes=table.indexes,
            foreign_keys=table.foreign_keys,
        )
    return result


def _checked_table_name(logical: str, physical: Any) -> str:
    """Physical names go into SQL text unquoted: only plain (optionally schema-qualified) identifiers pass."""
    if not isinstance(physical, str) or not _TABLE_IDENTIFIER.match(physical):
        raise SchemaMapError(
            f"table {logical!r}: {physical!r} is not a plain SQL identifier such as G_PROD or dbo.G_PROD"
        )
    return physical


def _checked_column_name(table: str, logical: str, physical: Any) -> str:
    if not isinstance(physical, str) or not _COLUMN_IDENTIFIER.match(physical):
        raise SchemaMapError(f"column {table}.{logical}: {physical!r} is not a plain SQL identifier such as PRODID")
    return physical
