"""pyodbc gateway to the Mamut company database: parameterised SQL in logical names, one dialect.

The SQL is a portable subset that runs unchanged on SQL Server (production), PostgreSQL and SQLite
(mock): ``?`` markers, plain SELECT/INSERT/UPDATE, no MERGE/RETURNING/OUTPUT/TOP/LIMIT and no server
clock functions. Callers pass timestamps themselves as naive UTC datetimes (aware ones are converted;
see :mod:`starmamut.mamut.schema_map` for every type rule) and booleans travel as 0/1 ints.

Physical names come from the :class:`~starmamut.mamut.schema_map.SchemaMap`, which only admits plain
identifiers, so identifiers can be written into SQL text while every value goes in as a parameter.

Writers that check whether a row exists and then insert it, or allocate a number as MAX + 1, do both under an
application lock the database grants (:meth:`MamutTransaction.lock`, or ``transaction(locks=...)``), so two
writers never interleave, whatever unique indexes a real install has or lacks.

Driver errors are re-raised as :class:`MamutError` naming the operation and table, with the
connection string's password removed wherever it could appear (the original pyodbc exception is
not chained, because tracebacks of chained exceptions end up in task logs).
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, Literal

import pyodbc

from starmamut.mamut.schema_map import ColumnSpec, SchemaMap, TableSpec

MAX_PARAMS_PER_STATEMENT = 500
"""Upper bound of ``?`` markers per statement: far below SQL Server's 2100, fine for every driver."""
MAX_PARAMS_PER_BULK = 1000
"""Upper bound of ``?`` markers in one multi-row INSERT (:meth:`MamutTransaction.insert_many`): under SQL Server's
2100 and SQLite's 999 of old builds."""

_TRANSIENT = ("08", "40", "HYT00", "HYT01")  # SQLSTATE classes and codes a retry may cure
_SECRET_KEYS = frozenset({"pwd", "password"})
_SECRET_PATTERN = re.compile(r"(?i)\b(pwd|password)\s*=\s*(\{(?:[^}]|\}\})*\}|[^;\s]*)")
REDACTED = "***"
_ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z_][A-Za-z0-9_]*))?\}")

MSSQL_APP_LOCK = (
    # With autocommit off the SQL Server drivers run in implicit-transaction mode, where a SELECT from a table
    # opens the transaction and EXEC does not; the lock is owned by the transaction, so one must be open first.
    "DECLARE @result INT; "
    "SELECT @result = COUNT(*) FROM {table} WHERE 1 = 0; "
    "EXEC @result = sp_getapplock @Resource = ?, @LockMode = 'Exclusive', @LockOwner = 'Transaction', "
    "@LockTimeout = ?; "
    "SELECT @result"
)
"""The SQL Server app lock: sp_getapplock's return code is 0 or 1 when granted, negative when not."""
# The key columns of a unique index in pg_indexes.indexdef ("CREATE UNIQUE INDEX ux ON public.t USING btree (a, b)").
_PG_UNIQUE_INDEX = re.compile(r"(?i)^CREATE UNIQUE INDEX .*? USING \w+ \(([^)]*)\)")
_round_trips_lock = threading.Lock()
_round_trips_in_process = 0


def process_round_trips() -> int:
    """Round trips to Mamut by every gateway of this process so far: a job step takes the difference around its
    work (each ``open_mamut()`` may be a gateway of its own), see :attr:`MamutGateway.round_trips`."""
    return _round_trips_in_process


_APPLOCK_REFUSALS = {
    -1: "the wait timed out",
    -2: "the wait was cancelled",
    -3: "this session was chosen as a deadlock victim",
}


def app_lock_name(table: TableSpec) -> str:
    """The name of a table's app lock: the same in every process and on every backend."""
    return f"starmamut:{table.logical}"


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for a PostgreSQL advisory lock (which takes a bigint) named ``name``; Python's
    own hash() differs between processes, so a digest is used."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class MamutError(RuntimeError):
    """A Mamut database operation failed; the message never contains the connection password."""

    def __init__(
        self, message: str, *, operation: str | None = None, table: str | None = None, sqlstate: str | None = None
    ) -> None:
        super().__init__(message)
        self.operation = operation
        self.table = table
        self.sqlstate = sqlstate  # the driver's SQLSTATE when the database refused a statement

    @property
    def transient(self) -> bool:
        """A fault of the connection or the moment, which a retry may cure: no statement was refused (connecting,
        committing), a connection exception (SQLSTATE class 08), a timeout (HYT00/HYT01) or a rolled-back
        transaction (class 40: deadlock victim, serialization failure)."""
        return self.sqlstate is None or self.operation in ("connect", "commit") or self.sqlstate.startswith(_TRANSIENT)


def connection_string_secrets(odbc_connection_string: str) -> tuple[str, ...]:
    """The password values of an ODBC connection string, raw (braced) and unescaped, longest first."""
    secrets: set[str] = set()
    for key, value, raw in _connection_string_pairs(odbc_connection_string):
        if key.lower() in _SECRET_KEYS:
            secrets.update(candidate for candidate in (value, raw.strip()) if candidate)
    return tuple(sorted(secrets, key=len, reverse=True))


def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every known secret and every ``PWD=…``/``Password=…`` value replaced by ``***``."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return _SECRET_PATTERN.sub(lambda match: f"{match.group(1)}={REDACTED}", text)


def _connection_string_pairs(odbc_connection_string: str) -> list[tuple[str, str, str]]:
    """(key, value, raw value) triples; values in braces may hold ``;`` and escape ``}`` as ``}}``."""
    text = odbc_connection_string
    pairs: list[tuple[str, str, str]] = []
    position = 0
    while position < len(text):
        equals = text.find("=", position)
        if equals < 0:
            break
        key = text[position:equals].strip()
        start = equals + 1
        while start < len(text) and text[start] == " ":
            start += 1
        if start < len(text) and text[start] == "{":
            cursor, chars = start + 1, []
            while cursor < len(text):
                if text[cursor] == "}":
                    if text[cursor + 1 : cursor + 2] == "}":
                        chars.append("}")
                        cursor += 2
                        continue
                    break
                chars.append(text[cursor])
                cursor += 1
            pairs.append((key, "".join(chars), text[start : cursor + 1]))
            semicolon = text.find(";", cursor)
        else:
            semicolon = text.find(";", start)
            end = len(text) if semicolon < 0 else semicolon
            pairs.append((key, text[start:end].strip(), text[start:end]))
        position = len(text) if semicolon < 0 else semicolon + 1
    return pairs


@dataclass(frozen=True)
class _ConnectionInfo:
    backend: str  # "sqlite", "postgres", "mssql" or the DBMS name as reported
    dbms: str
    fast_executemany: bool
    database: str  # the database the session is in (a file path on SQLite)
    user: str  # the login as the server sees it ("" where the driver has no notion of one)


CatalogKind = Literal["int", "text", "decimal", "float", "bit", "datetime", "date", "other"]

# ODBC SQL type codes (sql.h / sqlext.h); any other, e.g. SQL Server's datetimeoffset (-155), is "other".
_KIND_BY_ODBC_TYPE: dict[int, CatalogKind] = {
    1: "text",
    12: "text",
    -1: "text",
    -8: "text",
    -9: "text",
    -10: "text",
    2: "decimal",
    3: "decimal",
    4: "int",
    5: "int",
    -5: "int",
    -6: "int",
    6: "float",
    7: "float",
    8: "float",
    -7: "bit",
    9: "date",
    91: "date",
    11: "datetime",
    93: "datetime",
}
_DECLARED_SIZE = re.compile(r"\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)")


@dataclass(frozen=True)
class CatalogColumn:
    """A column as the database's own ODBC catalog (SQLColumns) describes it, alike on every driver.

    ``size`` is the length in characters for text and the precision for numbers, ``scale`` the digits
    after the point; both None where the type has none or the driver does not say.
    """

    name: str
    type_name: str
    kind: CatalogKind
    size: int | None
    scale: int | None
    nullable: bool
    has_default: bool

    @classmethod
    def from_catalog_row(cls, row: Any) -> CatalogColumn:
        """Normalise one SQLColumns row; SQLite's driver reports NUMERIC(p,s) as DOUBLE with bogus sizes,
        so a size declared in the type name wins over the reported one."""
        type_name = str(row.type_name or "")
        kind = _KIND_BY_ODBC_TYPE.get(int(row.data_type), "other")
        declared = _DECLARED_SIZE.search(type_name)
        if kind == "float" and type_name.upper().startswith(("NUMERIC", "DECIMAL")):
            kind = "decimal"
        if declared:
            size, scale = int(declared.group(1)), int(declared.group(2) or 0)
        else:
            size = int(row.column_size) if row.column_size is not None else None
            scale = int(row.decimal_digits) if row.decimal_digits is not None else None
        if kind not in ("decimal", "float"):
            scale = None
        if kind not in ("text", "decimal", "float"):
            size = None
        default = row.column_def
        return cls(
            name=str(row.column_name),
            type_name=type_name,
            kind=kind,
            size=size,
            scale=scale,
            nullable=bool(row.nullable),
            has_default=default is not None and str(default).strip().upper() not in ("", "NULL"),
        )


class MamutGateway:
    """Opens transactions on the Mamut company database; reuses idle connections between them."""

    def __init__(self, odbc_connection_string: str, schema_map: SchemaMap, *, timeout_seconds: int = 30) -> None:
        self._connection_string = odbc_connection_string
        self._secrets = connection_string_secrets(odbc_connection_string)
        self.schema_map = schema_map
        self.timeout_seconds = timeout_seconds
        self._idle: list[tuple[pyodbc.Connection, _ConnectionInfo]] = []
        self._lock = threading.Lock()
        self._owner_pid = os.getpid()
        self._statements_executed = 0
        self._round_trips = 0
        self.commit_guard: Callable[[], None] | None = None
        """Called right before a transaction that wrote commits; raising rolls it back (a load step sets it to check
        the shop's lease, see jobs.common.holding_leases)."""
        self._app_locks = True  # tests switch the app locks off to show the race they prevent
        self.statement_observer: Callable[[str], None] | None = None
        """Called with the SQL text of every statement before it runs (``?`` markers, no values; an
        executemany once): a hook for tests, e.g. tests/test_tsql_dialect.py. None (the default) does nothing.
        The PostgreSQL-only session SET at connect time is not reported."""

    def __repr__(self) -> str:
        return f"MamutGateway({self.redact(self._connection_string)!r})"

    @property
    def statements_executed(self) -> int:
        """SQL statements run so far (each row of an insert_many counts as one): for reports and benchmarks."""
        return self._statements_executed

    @property
    def round_trips(self) -> int:
        """Requests sent to the server and waited for so far: each statement (a multi-row INSERT of insert_many
        too, or its one parameter array on SQL Server's Microsoft driver), commit and rollback is one. Connecting is
        not counted (connections are reused). Across a LAN each costs the network's round-trip time, whatever the
        statement does; the benchmarks check the count against a proxy's (devtools latency_proxy)."""
        return self._round_trips

    def redact(self, text: str) -> str:
        return redact(text, self._secrets)

    @contextmanager
    def transaction(self, *, locks: Sequence[str] = ()) -> Iterator[MamutTransaction]:
        """One connection, autocommit off: commit when the block ends, roll back if it raises.

        ``locks`` names logical tables whose app lock (:meth:`MamutTransaction.lock`) the transaction takes first,
        in name order, and holds to its end.
        """
        connection, info = self._acquire()
        transaction = MamutTransaction(self, connection, info)
        try:
            for table in sorted(set(locks)):
                transaction.lock(table)
            yield transaction
            if transaction._wrote and self.commit_guard is not None:
                self.commit_guard()
        except BaseException:
            transaction._active = False
            self._rollback_and_release(connection, info)
            raise
        transaction._active = False
        self._count_round_trips(1)
        try:
            connection.commit()
        except pyodbc.Error as exc:
            _close_quietly(connection)
            raise self._driver_error("commit", None, exc) from None
        self._release(connection, info)

    def test_connection(self) -> tuple[bool, str]:
        """Connect and check that the product table answers with every mapped column; never raises.

        The message names the login and the database the session landed in, so a connection string
        that reaches the wrong company database is seen at once.
        """
        product = self.schema_map.table("product")
        try:
            with self.transaction() as transaction:
                transaction._probe(product)
                info = transaction._info
        except MamutError as exc:
            return False, str(exc)
        login = f" as {info.user!r}" if info.user else ""
        return True, self.redact(
            f"connected to {info.dbms}{login}, database {info.database!r}; table {product.label} answers"
        )

    def verify_schema(self, tables: Sequence[TableSpec] | None = None) -> list[str]:
        """Problems found selecting every mapped column of ``tables`` (default: all) without reading rows.

        An empty list means the map's names fit this database and the login may read those tables.
        """
        problems: list[str] = []
        for table in self.schema_map.tables if tables is None else tables:
            try:
                with self.transaction() as transaction:
                    transaction._probe(table)
            except MamutError as exc:
                problems.append(str(exc))
        return problems

    def close(self) -> None:
        """Close idle connections (a transaction in progress keeps its own until it ends)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for connection, _info in idle:
            _close_quietly(connection)

    def __enter__(self) -> MamutGateway:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _acquire(self) -> tuple[pyodbc.Connection, _ConnectionInfo]:
        with self._lock:
            if self._owner_pid != os.getpid():
                # Forked child: the parent's sockets are not ours to use or close.
                self._idle, self._owner_pid = [], os.getpid()
            if self._idle:
                return self._idle.pop()
        return self._connect()

    def _connect(self) -> tuple[pyodbc.Connection, _ConnectionInfo]:
        try:
            connection = pyodbc.connect(self._connection_string, autocommit=False, timeout=self.timeout_seconds)
        except pyodbc.Error as exc:
            raise self._driver_error("connect", None, exc) from None
        try:
            info = _describe(connection)
            self._set_statement_timeout(connection, info)
        except pyodbc.Error as exc:
            _close_quietly(connection)
            raise self._driver_error("connect", None, exc) from None
        return connection, info

    def _set_statement_timeout(self, connection: pyodbc.Connection, info: _ConnectionInfo) -> None:
        """SQL Server and SQLite take the ODBC query timeout; psqlODBC rejects it: PostgreSQL gets a SET."""
        if info.backend == "postgres":
            connection.execute(f"SET statement_timeout = {int(self.timeout_seconds) * 1000}")
            connection.commit()
        else:
            connection.timeout = self.timeout_seconds

    def _release(self, connection: pyodbc.Connection, info: _ConnectionInfo) -> None:
        with self._lock:
            if self._owner_pid == os.getpid():
                self._idle.append((connection, info))
                return
        _close_quietly(connection)

    def _rollback_and_release(self, connection: pyodbc.Connection, info: _ConnectionInfo) -> None:
        self._count_round_trips(1)
        try:
            connection.rollback()
        except pyodbc.Error:
            _close_quietly(connection)  # a connection that cannot roll back is not reused
            return
        self._release(connection, info)

    def _driver_error(self, operation: str, table: TableSpec | None, exc: pyodbc.Error) -> MamutError:
        driver_message = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
        target = f" on {table.label}" if table is not None else ""
        where = "" if table is not None else f" ({self.redact(self._connection_string)})"
        message = f"Mamut {operation}{target} failed{where}: {driver_message}"
        sqlstate = str(exc.args[0]) if len(exc.args) > 1 else None
        return MamutError(
            self.redact(message), operation=operation, table=table.logical if table else None, sqlstate=sqlstate
        )

    def _count_statements(self, count: int, sql: str) -> None:
        with self._lock:
            self._statements_executed += count
        self._count_round_trips(1)
        if self.statement_observer is not None:
            self.statement_observer(sql)

    def _count_round_trips(self, count: int) -> None:
        global _round_trips_in_process
        with _round_trips_lock:
            self._round_trips += count
            _round_trips_in_process += count


def _describe(connection: pyodbc.Connection) -> _ConnectionInfo:
    dbms = str(connection.getinfo(pyodbc.SQL_DBMS_NAME))
    driver = str(connection.getinfo(pyodbc.SQL_DRIVER_NAME)).lower()
    lowered = dbms.lower()
    if "sqlite" in lowered:
        backend = "sqlite"
    elif "postgres" in lowered:
        backend = "postgres"
    elif "sql server" in lowered:
        backend = "mssql"
    else:
        backend = dbms
    # fast_executemany segfaults the SQLite3 driver and is unreliable on FreeTDS: only where it is proven.
    fast = backend == "postgres" or (backend == "mssql" and "msodbcsql" in driver)
    version = str(connection.getinfo(pyodbc.SQL_DBMS_VER))
    return _ConnectionInfo(
        backend=backend,
        dbms=f"{dbms} {version}",
        fast_executemany=fast,
        database=str(connection.getinfo(pyodbc.SQL_DATABASE_NAME) or ""),
        user=str(connection.getinfo(pyodbc.SQL_USER_NAME) or ""),
    )


def _close_quietly(connection: pyodbc.Connection) -> None:
    with suppress(pyodbc.Error):
        connection.close()


class MamutTransaction:
    """Statements inside one open transaction; tables and columns are given by logical name."""

    def __init__(self, gateway: MamutGateway, connection: pyodbc.Connection, info: _ConnectionInfo) -> None:
        self._gateway = gateway
        self._schema = gateway.schema_map
        self._connection = connection
        self._info = info
        self._active = True
        self._wrote = False
        self._locked: set[str] = set()

    @property
    def backend(self) -> str:
        """``sqlite``, ``postgres``, ``mssql`` or the DBMS name the driver reports."""
        return self._info.backend

    @property
    def dbms(self) -> str:
        return self._info.dbms

    @property
    def database(self) -> str:
        """The database this session is in, as the server names it (a file path on SQLite)."""
        return self._info.database

    def lock(self, table: str) -> None:
        """Hold an exclusive lock the database grants, named for the logical ``table``, until the transaction ends.

        A writer that checks whether a row exists (an order by external id, a customer by match key, an article
        by number) or allocates a number (MAX + 1) takes it before the check, so two writers never interleave and
        correctness never depends on unique indexes a real install may lack. SQL Server: ``sp_getapplock`` owned
        by the transaction, waiting up to the gateway's timeout; PostgreSQL: ``pg_advisory_xact_lock`` on a stable
        64-bit key of the name; SQLite: the database's one write lock, taken by a write that changes nothing. (The
        SQLite ODBC driver opens each transaction itself with a deferred BEGIN, so ``BEGIN IMMEDIATE`` cannot be
        sent; the effect is the same, provided the lock comes first in the transaction, as ``locks`` does it.)
        """
        spec = self._schema.table(table)
        if not self._gateway._app_locks or table in self._locked:
            return
        name = app_lock_name(spec)
        if self.backend == "mssql":
            sql = MSSQL_APP_LOCK.format(table=spec.physical)
            code = self._first_value(
                spec, self._execute("lock", spec, sql, [name, self._gateway.timeout_seconds * 1000])
            )
            if code is None or int(code) < 0:
                refusal = _APPLOCK_REFUSALS.get(int(code) if code is not None else 0, "a parameter or call error")
                raise MamutError(
                    f"Mamut lock {name} not granted: {refusal} (sp_getapplock returned {code}; "
                    f"it waits up to {self._gateway.timeout_seconds} s)",
                    operation="lock",
                    table=spec.logical,
                )
        elif self.backend == "postgres":
            self._execute("lock", spec, "SELECT pg_advisory_xact_lock(?)", [advisory_key(name)]).fetchall()
        elif self.backend == "sqlite":
            if not self._locked:  # one write lock for the whole file: the first name takes it for all
                column = spec.columns[0].sql_name
                self._execute("lock", spec, f"UPDATE {spec.physical} SET {column} = {column} WHERE 1 = 0", [])
        else:
            raise MamutError(f"no application lock known for {self.dbms}", operation="lock", table=spec.logical)
        self._locked.add(table)

    def _first_value(self, spec: TableSpec, cursor: pyodbc.Cursor) -> Any:
        """The first value of a batch's first result set (SQL Server reports the statements before it as counts)."""
        try:
            while cursor.description is None:
                if not cursor.nextset():
                    return None
            row = cursor.fetchone()
        except pyodbc.Error as exc:
            raise self._gateway._driver_error("lock", spec, exc) from None
        return row[0] if row else None

    def unique_indexes(self, spec: TableSpec) -> dict[str, tuple[str, ...]]:
        """Name -> columns (lower case, in key order) of each unique index of the table, primary key included, from
        the database's own catalog: SQL Server ``sys.indexes``, PostgreSQL ``pg_indexes``, SQLite
        ``PRAGMA index_list``. Reads metadata only."""
        schema, _, name = spec.physical.rpartition(".")
        found: dict[str, list[str]] = {}
        if self.backend == "mssql":
            rows = self._execute(
                "catalog",
                spec,
                "SELECT i.name, c.name FROM sys.indexes i "
                "JOIN sys.index_columns ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id "
                "JOIN sys.columns c ON c.object_id = ic.object_id AND c.column_id = ic.column_id "
                "WHERE i.object_id = OBJECT_ID(?) AND i.is_unique = 1 AND ic.is_included_column = 0 "
                "ORDER BY i.name, ic.key_ordinal",
                [spec.physical],
            ).fetchall()
            for index, column in rows:
                found.setdefault(str(index), []).append(str(column).lower())
        elif self.backend == "postgres":
            rows = self._execute(
                "catalog",
                spec,
                "SELECT indexname, indexdef FROM pg_indexes WHERE LOWER(tablename) = LOWER(?)"
                + (" AND LOWER(schemaname) = LOWER(?)" if schema else ""),
                [name, schema] if schema else [name],
            ).fetchall()
            for index, definition in rows:
                columns = _PG_UNIQUE_INDEX.match(str(definition))
                if columns:
                    found[str(index)] = [part.strip().strip('"').lower() for part in columns.group(1).split(",")]
        elif self.backend == "sqlite":
            for row in self._execute("catalog", spec, f"PRAGMA index_list({name})", []).fetchall():
                if int(row[2]):
                    info = self._execute("catalog", spec, f"PRAGMA index_info({row[1]})", []).fetchall()
                    found[str(row[1])] = [str(column[2]).lower() for column in sorted(info, key=lambda r: r[0])]
        else:
            raise MamutError(f"no index catalog known for {self.dbms}", operation="catalog", table=spec.logical)
        return {index: tuple(columns) for index, columns in found.items()}

    def catalog(self, tables: Sequence[TableSpec]) -> dict[str, tuple[CatalogColumn, ...] | None]:
        """What the database's catalog says of each table's physical name: its columns, or None if no such
        table or view exists. Reads catalog metadata only (SQLTables/SQLColumns), never rows.

        Names match case-insensitively, as unquoted identifiers do in SQL Server, PostgreSQL and SQLite;
        an unqualified name matches in any schema, preferring the usual default one (dbo, public).
        """
        present: dict[str, list[tuple[str | None, str]]] = {}
        for found_schema, found_name in self.table_names():
            present.setdefault(found_name.lower(), []).append((found_schema, found_name))
        try:
            cursor = self._connection.cursor()
            result: dict[str, tuple[CatalogColumn, ...] | None] = {}
            for spec in tables:
                schema, _, name = spec.physical.rpartition(".")
                candidates = [
                    (found_schema, found_name)
                    for found_schema, found_name in present.get(name.lower(), [])
                    if not schema or (found_schema or "").lower() == schema.lower()
                ]
                if not candidates:
                    result[spec.physical] = None
                    continue
                candidates.sort(key=lambda candidate: (candidate[0] or "").lower() not in ("", "dbo", "public"))
                found_schema, found_name = candidates[0]
                rows = cursor.columns(table=found_name, schema=found_schema).fetchall()
                result[spec.physical] = tuple(
                    CatalogColumn.from_catalog_row(row) for row in rows if str(row.table_name) == found_name
                )
        except pyodbc.Error as exc:
            raise self._catalog_error(exc) from None
        return result

    def table_names(self) -> list[tuple[str | None, str]]:
        """(schema, name) of every table and view the login can see, from the catalog (SQLTables)."""
        self._check_active()
        try:
            rows = self._connection.cursor().tables(tableType="TABLE,VIEW").fetchall()
        except pyodbc.Error as exc:
            raise self._catalog_error(exc) from None
        return [(row.table_schem, str(row.table_name)) for row in rows]

    def _catalog_error(self, exc: pyodbc.Error) -> MamutError:
        driver_message = exc.args[1] if len(exc.args) > 1 else exc
        return MamutError(self._gateway.redact(f"Mamut catalog read failed: {driver_message}"), operation="catalog")

    def select(
        self,
        table: str,
        columns: Sequence[str],
        where: Mapping[str, Any] | None = None,
        where_in: tuple[str, Sequence[Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """Rows as dicts keyed by the requested logical names, values normalised by column type.

        ``where`` compares with ``=`` (``None`` means IS NULL); ``where_in`` adds ``column IN (...)``,
        split into several statements so none carries more than MAX_PARAMS_PER_STATEMENT markers.
        An empty ``where_in`` list matches nothing and runs no statement.
        """
        spec = self._schema.table(table)
        selected = self._columns(spec, columns)
        base = f"SELECT {', '.join(c.sql_name for c in selected)} FROM {spec.physical}"
        where_sql, where_params = self._where(spec, where or {})
        if where_in is None:
            return self._fetch_all(spec, selected, base + where_sql, where_params)
        in_column = spec.column(where_in[0])
        values = list(dict.fromkeys(in_column.to_param(v, strict=False) for v in where_in[1] if v is not None))
        chunk_size = MAX_PARAMS_PER_STATEMENT - len(where_params)
        joiner = " AND " if where_sql else " WHERE "
        rows: list[dict[str, Any]] = []
        for start in range(0, len(values), chunk_size):
            chunk = values[start : start + chunk_size]
            markers = ", ".join("?" * len(chunk))
            sql = f"{base}{where_sql}{joiner}{in_column.sql_name} IN ({markers})"
            rows.extend(self._fetch_all(spec, selected, sql, [*where_params, *chunk]))
        return rows

    def iter_rows(
        self,
        table: str,
        columns: Sequence[str],
        where: Mapping[str, Any] | None = None,
        *,
        order_by: Sequence[str] = (),
        batch_size: int = 1000,
    ) -> Iterator[dict[str, Any]]:
        """Like :meth:`select` but streamed in batches, optionally ordered: for full scans of big tables."""
        spec = self._schema.table(table)
        selected = self._columns(spec, columns)
        where_sql, params = self._where(spec, where or {})
        order_sql = ""
        if order_by:
            order_sql = " ORDER BY " + ", ".join(spec.column(name).sql_name for name in order_by)
        sql = f"SELECT {', '.join(c.sql_name for c in selected)} FROM {spec.physical}{where_sql}{order_sql}"
        cursor = self._execute("select", spec, sql, params)
        yield from self._stream(spec, cursor, [(column.logical, column) for column in selected], batch_size)

    def iter_query(
        self,
        tables: Mapping[str, str],
        select: Mapping[str, str],
        body: str,
        params: Sequence[Any] = (),
        *,
        batch_size: int = 1000,
    ) -> Iterator[dict[str, Any]]:
        """Stream a SELECT over several tables (joins, sub-queries, GROUP BY, ORDER BY) in logical names.

        ``tables`` maps SQL aliases to logical tables (the first one names the query in errors);
        ``select`` maps result keys to ``"alias.column"`` and decides how each value is typed; ``body``
        is the SQL after the select list, starting with FROM, where ``{alias}`` stands for the aliased
        table (``G_PROD p``) and ``{alias.column}`` for a qualified column (``p.PRODID``). The body is
        written by code, never built from input: every value goes in ``params`` behind a ``?`` marker
        (convert with :meth:`ColumnSpec.to_param`). Columns mapped to null raise SchemaMapError.
        """
        specs = {alias: self._schema.table(logical) for alias, logical in tables.items()}
        for alias in specs:
            if not _ALIAS.match(alias):
                raise ValueError(f"table alias {alias!r} is not a plain SQL identifier")
        if not specs or not select:
            raise ValueError("iter_query needs at least one table and one selected column")

        def qualified(reference: str) -> tuple[str, ColumnSpec]:
            alias, _, logical = reference.partition(".")
            if alias not in specs:
                raise ValueError(f"{reference!r} names alias {alias!r}; known aliases: {', '.join(specs)}")
            column = specs[alias].column(logical)
            return f"{alias}.{column.sql_name}", column

        def placeholder(match: re.Match[str]) -> str:
            if match.group(2) is None:
                alias = match.group(1)
                if alias not in specs:
                    raise ValueError(f"{{{alias}}} names an unknown alias; known aliases: {', '.join(specs)}")
                return f"{specs[alias].physical} {alias}"
            return qualified(f"{match.group(1)}.{match.group(2)}")[0]

        resolved = _PLACEHOLDER.sub(placeholder, body)
        if "{" in resolved or "}" in resolved:
            raise ValueError(f"query body has a malformed placeholder: {body!r}")
        selected = [(key, *qualified(reference)) for key, reference in select.items()]
        sql = f"SELECT {', '.join(name for _key, name, _column in selected)} {resolved}"
        spec = next(iter(specs.values()))
        cursor = self._execute("select", spec, sql, params)
        yield from self._stream(spec, cursor, [(key, column) for key, _name, column in selected], batch_size)

    def _stream(
        self,
        spec: TableSpec,
        cursor: pyodbc.Cursor,
        columns: Sequence[tuple[str, ColumnSpec]],
        batch_size: int,
    ) -> Iterator[dict[str, Any]]:
        """Fetch ``batch_size`` rows at a time, each as a dict of typed values under the given keys."""
        while True:
            try:
                batch = cursor.fetchmany(batch_size)
            except pyodbc.Error as exc:
                raise self._gateway._driver_error("select", spec, exc) from None
            if not batch:
                return
            for row in batch:
                yield {key: column.from_db(value) for (key, column), value in zip(columns, row, strict=True)}

    def insert(self, table: str, values: Mapping[str, Any]) -> None:
        """Insert one row; identity keys are left to the database (read them back by a natural key)."""
        spec = self._schema.table(table)
        columns, params = self._row_params(spec, values, operation="insert")
        sql = self._insert_sql(spec, columns)
        self._execute("insert", spec, sql, params)

    def insert_many(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert rows that share the same columns in as few round trips as the driver allows (bulk loads)."""
        if not rows:
            return
        spec = self._schema.table(table)
        names = list(rows[0])
        columns, _ = self._row_params(spec, rows[0], operation="insert")  # the columns and required ones, once
        param_rows: list[list[Any]] = []
        for index, row in enumerate(rows):
            if list(row) != names:
                raise ValueError(f"insert_many on {spec.label}: row {index} has columns {list(row)}, expected {names}")
            param_rows.append(self._params(spec, columns, row, operation="insert"))
        self._check_active()
        self._wrote = True
        if self._info.backend == "mssql" and self._info.fast_executemany:
            # Microsoft's driver sends the rows as one parameter array: one round trip for all of them.
            sql = self._insert_sql(spec, columns)
            cursor = self._connection.cursor()
            cursor.fast_executemany = True
            self._gateway._count_statements(len(param_rows), sql)
            try:
                cursor.executemany(sql, param_rows)
            except pyodbc.Error as exc:
                raise self._gateway._driver_error("insert", spec, exc) from None
            return
        # Elsewhere an executemany is a round trip per row (psqlODBC too): multi-row VALUES lists instead, each
        # within MAX_PARAMS_PER_BULK markers and SQL Server's 1000 rows per VALUES list.
        per_statement = max(1, min(1000, MAX_PARAMS_PER_BULK // len(columns)))
        for start in range(0, len(param_rows), per_statement):
            chunk = param_rows[start : start + per_statement]
            sql = self._insert_sql(spec, columns, rows=len(chunk))
            self._gateway._count_statements(len(chunk), sql)
            try:
                self._connection.execute(sql, *(value for row in chunk for value in row))
            except pyodbc.Error as exc:
                raise self._gateway._driver_error("insert", spec, exc) from None

    def update(self, table: str, values: Mapping[str, Any], where: Mapping[str, Any]) -> int:
        """Update the rows matching ``where`` (required, so a whole table is never rewritten by mistake)."""
        spec = self._schema.table(table)
        if not where:
            raise ValueError(f"update of {spec.label} needs a where clause")
        columns, params = self._row_params(spec, values, operation="update", check_required=False)
        where_sql, where_params = self._where(spec, where)
        assignments = ", ".join(f"{column.sql_name} = ?" for column in columns)
        cursor = self._execute(
            "update", spec, f"UPDATE {spec.physical} SET {assignments}{where_sql}", [*params, *where_params]
        )
        return int(cursor.rowcount)

    def execute_ddl(self, statement: str) -> None:
        """Run schema DDL written by this project (mock creation, test set-up); never built from input."""
        self._check_active()
        self._gateway._count_statements(1, statement)
        try:
            self._connection.execute(statement)
        except pyodbc.Error as exc:
            raise MamutError(
                self._gateway.redact(f"Mamut DDL failed: {exc.args[1] if len(exc.args) > 1 else exc}"),
                operation="ddl",
            ) from None

    def _probe(self, spec: TableSpec) -> None:
        """Select every mapped column of a table without reading rows: fails if any name is wrong."""
        columns = ", ".join(column.sql_name for column in spec.columns)
        self._execute("select", spec, f"SELECT {columns} FROM {spec.physical} WHERE 1 = 0", []).fetchall()

    def _columns(self, spec: TableSpec, names: Sequence[str]) -> list[ColumnSpec]:
        if isinstance(names, str) or not names:
            raise ValueError(f"select from {spec.label} needs a non-empty list of column names")
        return [spec.column(name) for name in names]

    def _where(self, spec: TableSpec, where: Mapping[str, Any]) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for name, value in where.items():
            column = spec.column(name)
            if value is None:
                clauses.append(f"{column.sql_name} IS NULL")
            else:
                clauses.append(f"{column.sql_name} = ?")
                params.append(column.to_param(value, strict=False))
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def _row_params(
        self, spec: TableSpec, values: Mapping[str, Any], *, operation: str, check_required: bool = True
    ) -> tuple[list[ColumnSpec], list[Any]]:
        if not values:
            raise ValueError(f"{operation} on {spec.label} needs at least one column value")
        columns = [spec.column(name) for name in values]
        if check_required:
            missing = [
                column.logical
                for column in spec.columns
                if not (column.nullable or column.identity or column.default is not None or column.logical in values)
            ]
            if missing:
                raise MamutError(
                    f"Mamut {operation} on {spec.label}: missing required column(s) {', '.join(missing)}",
                    operation=operation,
                    table=spec.logical,
                )
        return columns, self._params(spec, columns, values, operation=operation)

    @staticmethod
    def _params(
        spec: TableSpec, columns: Sequence[ColumnSpec], values: Mapping[str, Any], *, operation: str
    ) -> list[Any]:
        try:
            return [column.to_param(values[column.logical]) for column in columns]
        except ValueError as exc:
            raise MamutError(
                f"Mamut {operation} on {spec.label}: {exc}", operation=operation, table=spec.logical
            ) from None

    @staticmethod
    def _insert_sql(spec: TableSpec, columns: Sequence[ColumnSpec], *, rows: int = 1) -> str:
        names = ", ".join(column.sql_name for column in columns)
        row = f"({', '.join('?' * len(columns))})"
        return f"INSERT INTO {spec.physical} ({names}) VALUES {', '.join([row] * rows)}"

    def _fetch_all(
        self, spec: TableSpec, selected: Sequence[ColumnSpec], sql: str, params: Sequence[Any]
    ) -> list[dict[str, Any]]:
        cursor = self._execute("select", spec, sql, params)
        try:
            raw_rows = cursor.fetchall()
        except pyodbc.Error as exc:
            raise self._gateway._driver_error("select", spec, exc) from None
        return [
            {column.logical: column.from_db(value) for column, value in zip(selected, row, strict=True)}
            for row in raw_rows
        ]

    def _execute(self, operation: str, spec: TableSpec, sql: str, params: Sequence[Any]) -> pyodbc.Cursor:
        self._check_active()
        self._wrote |= operation in ("insert", "update")
        self._gateway._count_statements(1, sql)
        try:
            return self._connection.execute(sql, *params)
        except pyodbc.Error as exc:
            raise self._gateway._driver_error(operation, spec, exc) from None

    def _check_active(self) -> None:
        if not self._active:
            raise MamutError("Mamut transaction already ended: statements must run inside the with-block")
