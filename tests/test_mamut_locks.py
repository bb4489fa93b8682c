"""Mamut writes under an application lock the database grants, so no unique index is needed for correctness.

The mock has unique indexes on EXTERNALID, ORDERID, CUSTID and PRODID (default_schema_map.yaml: they "describe the
mock"); a real install may lack them. Here they are dropped, and several writers with connections of their own
write the same orders (each with a new customer), or the same article family, at once on PostgreSQL. With the app
locks nothing is doubled and every number is distinct; the same run with the locks switched off (the gateway's
private ``_app_locks`` hook) doubles rows, which shows the test really races. Every INSERT is delayed a little so
the gap between a writer's lookup and its insert is wide enough to race in every run.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlglot

from starmamut.mamut.gateway import (
    MSSQL_APP_LOCK,
    MamutError,
    MamutGateway,
    MamutTransaction,
    _ConnectionInfo,
    advisory_key,
    app_lock_name,
)
from starmamut.mamut.products import ProductRepository
from starmamut.mamut.schema_map import SchemaMap
from starmamut_devtools.mamut_mock import demo_families
from tests.fixtures.mamut import fresh_mock_database
from tests.test_mamut_customers import T1, private_buyer, rows
from tests.test_mamut_orders import create, web_order
from tests.test_tsql_dialect import tsql_problems

WRITERS = 3
ORDERS = 4
INSERT_DELAY_SECONDS = 0.05


def drop_unique_indexes(gateway: MamutGateway) -> list[str]:
    """Drop the mock's unique indexes on the order, contact and product tables (a real install may not have them)."""
    dropped = []
    with gateway.transaction() as transaction:
        for table in ("order", "contact", "product"):
            for name in transaction.unique_indexes(gateway.schema_map.table(table)):
                if name.lower().startswith("ux_"):
                    transaction.execute_ddl(f"DROP INDEX {name}")
                    dropped.append(name.lower())
    return dropped


def write_at_once(odbc: str, write: Callable[[MamutGateway], None], *, app_locks: bool) -> list[BaseException]:
    """``write`` run by WRITERS threads at once, each on a gateway (connections) of its own; the errors raised."""
    barrier = threading.Barrier(WRITERS)
    errors: list[BaseException] = []

    def writer() -> None:
        gateway = MamutGateway(odbc, SchemaMap.load())
        gateway._app_locks = app_locks
        gateway.statement_observer = lambda sql: time.sleep(INSERT_DELAY_SECONDS) if sql.startswith("INSERT") else None
        try:
            barrier.wait()
            write(gateway)
        except BaseException as exc:
            errors.append(exc)
        finally:
            gateway.close()

    threads = [threading.Thread(target=writer) for _ in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors


def write_orders_of_new_customers(gateway: MamutGateway) -> None:
    for number in range(ORDERS):
        buyer = private_buyer(
            name=f"Kund {number}",
            email=f"kund{number}@example.se",
            external_id=f"a:{900 + number}",
            starweb_customer_id=900 + number,
            org_no=None,
        )
        create(gateway, web_order(f"a:{5000 + number}"), buyer)


def doubled(values: list[Any]) -> dict[Any, int]:
    return {value: count for value, count in Counter(values).items() if count > 1}


def all_orders(gateway: MamutGateway) -> list[dict[str, Any]]:
    return rows(gateway, "order", ["external_id", "order_number"])


def order_and_customer_doubles(gateway: MamutGateway) -> dict[str, dict[Any, int]]:
    orders = all_orders(gateway)
    customers = rows(gateway, "contact", ["customer_number", "external_id"])
    return {
        "order external id": doubled([order["external_id"] for order in orders]),
        "order number": doubled([order["order_number"] for order in orders]),
        "customer external id": doubled([customer["external_id"] for customer in customers]),
        "customer number": doubled([customer["customer_number"] for customer in customers]),
    }


@pytest.mark.postgres
@pytest.mark.parametrize("app_locks", [True, False], ids=["locked", "unlocked-shows-the-race"])
def test_writers_at_once_without_unique_indexes_double_no_order_customer_or_number(
    app_locks: bool, tmp_path: Path
) -> None:
    with fresh_mock_database("postgres", tmp_path) as odbc, MamutGateway(odbc, SchemaMap.load()) as gateway:
        assert set(drop_unique_indexes(gateway)) >= {
            "ux_g_order_externalid",
            "ux_g_order_orderid",
            "ux_g_contac_custid",
            "ux_g_prod_prodid",
        }
        errors = write_at_once(odbc, write_orders_of_new_customers, app_locks=app_locks)
        doubles = order_and_customer_doubles(gateway)

        if app_locks:
            assert errors == []
            assert doubles == dict.fromkeys(doubles, {})
            assert len(all_orders(gateway)) == ORDERS
            assert len(rows(gateway, "contact", ["contact_key"])) == ORDERS
        else:
            assert any(doubles.values()), "the writers did not race: the test would prove nothing"


@pytest.mark.postgres
@pytest.mark.parametrize("app_locks", [True, False], ids=["locked", "unlocked-shows-the-race"])
def test_writers_at_once_without_a_unique_article_number_write_each_article_once(
    app_locks: bool, tmp_path: Path
) -> None:
    family = next(family for family in demo_families() if family.variants)

    def upsert(gateway: MamutGateway) -> None:
        ProductRepository(gateway).upsert_family(family, update_price=True, now=T1)

    with fresh_mock_database("postgres", tmp_path) as odbc, MamutGateway(odbc, SchemaMap.load()) as gateway:
        drop_unique_indexes(gateway)
        errors = write_at_once(odbc, upsert, app_locks=app_locks)
        skus = [row["sku"] for row in rows(gateway, "product", ["sku"])]

        if app_locks:
            assert errors == []
            assert sorted(skus) == sorted(family.skus)
        else:
            assert doubled(skus), "the writers did not race: the test would prove nothing"


def test_the_app_lock_waits_for_the_holder_on_every_backend(mamut_db: Any) -> None:
    """A second transaction asking for a held lock gets it only once the holder's transaction ended."""
    events: list[tuple[str, float]] = []
    other = MamutGateway(mamut_db.odbc, SchemaMap.load())

    def second() -> None:
        with other.transaction(locks=["order"]):
            events.append(("second locked", time.monotonic()))

    try:
        with mamut_db.gateway.transaction(locks=["order", "contact"]):
            waiter = threading.Thread(target=second)
            waiter.start()
            time.sleep(1)
            events.append(("first ends", time.monotonic()))
        waiter.join(30)
    finally:
        other.close()
    assert [name for name, _ in events] == ["first ends", "second locked"]


# ----------------------------------------------------------------------------------------------- SQL Server


class _FakeCursor:
    """What pyodbc gives back for the app-lock batch on SQL Server: a row count first, then ``SELECT @result``."""

    def __init__(self, code: int) -> None:
        self.description: tuple[Any, ...] | None = None
        self._code = code

    def nextset(self) -> bool:
        self.description = (("result",),)
        return True

    def fetchone(self) -> tuple[int]:
        return (self._code,)


class _FakeConnection:
    def __init__(self, code: int) -> None:
        self.code = code
        self.executed: list[tuple[str, tuple[Any, ...]]] = []

    def execute(self, sql: str, *params: Any) -> _FakeCursor:
        self.executed.append((sql, params))
        return _FakeCursor(self.code)


def mssql_transaction(code: int) -> tuple[MamutTransaction, _FakeConnection]:
    gateway = MamutGateway("DRIVER={ODBC Driver 18 for SQL Server};Server=mamut;PWD=x", SchemaMap.load())
    info = _ConnectionInfo(
        backend="mssql", dbms="Microsoft SQL Server 13", fast_executemany=False, database="m", user=""
    )
    connection = _FakeConnection(code)
    return MamutTransaction(gateway, connection, info), connection  # type: ignore[arg-type]


@pytest.mark.parametrize("code", [0, 1])
def test_sql_server_takes_sp_getapplock_owned_by_the_transaction_and_accepts_a_grant(code: int) -> None:
    transaction, connection = mssql_transaction(code)
    transaction.lock("order")
    transaction.lock("order")  # once per transaction and name
    [(sql, params)] = connection.executed
    assert "EXEC @result = sp_getapplock @Resource = ?, @LockMode = 'Exclusive', @LockOwner = 'Transaction'" in sql
    assert params == ("starmamut:order", 30_000)


@pytest.mark.parametrize(
    ("code", "says"), [(-1, "wait timed out"), (-3, "deadlock victim"), (-999, "parameter or call error")]
)
def test_sql_server_refusing_the_app_lock_is_an_error_naming_it(code: int, says: str) -> None:
    transaction, _connection = mssql_transaction(code)
    with pytest.raises(MamutError, match=f"Mamut lock starmamut:order not granted: .*{says}.* returned {code}"):
        transaction.lock("order")


def test_the_sql_server_lock_batch_is_t_sql() -> None:
    batch = MSSQL_APP_LOCK.format(table=SchemaMap.load().table("order").physical)
    statements = [statement.strip() for statement in batch.split(";") if statement.strip()]
    assert [type(sqlglot.parse_one(statement, read="tsql")).__name__ for statement in statements] == [
        "Declare",
        "Select",
        "Execute",
        "Select",
    ]
    assert {statement: tsql_problems(statement) for statement in statements} == dict.fromkeys(statements, [])


def test_advisory_lock_keys_never_change_between_releases() -> None:
    """Two versions of the integration running side by side must lock the same key for the same name."""
    assert app_lock_name(SchemaMap.load().table("order")) == "starmamut:order"
    assert advisory_key("starmamut:order") == advisory_key("starmamut:order") == -5478845054234550950
