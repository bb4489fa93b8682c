"""The Mamut gateway and schema map against real mock databases (SQLite3 ODBC and psqlODBC)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from starmamut.mamut.gateway import (
    MAX_PARAMS_PER_STATEMENT,
    MamutError,
    MamutGateway,
    connection_string_secrets,
    process_round_trips,
    redact,
)
from starmamut.mamut.schema_map import SchemaMap, SchemaMapError
from starmamut_devtools.mamut_mock import create_mock_company_database, render_ddl, sqlite_odbc_string
from tests.fixtures.databases import PG_HOST, PG_PORT, require_postgres
from tests.fixtures.mamut import MAMUT_BACKENDS, MamutTestDatabase, fresh_mock_database

SECRET = "Hemlig-Lösen_7f3b"
NOW = dt.datetime(2026, 3, 14, 9, 26, 53)


def product_row(sku: str, **values: object) -> dict[str, object]:
    return {"sku": sku, "name": f"Artikel {sku}", "vat_code": 1, "price_out": Decimal("10.00"), **values}


# --- schema map -------------------------------------------------------------------------------


def test_default_map_names_the_seen_mamut_tables_and_the_invented_variant_axes() -> None:
    schema_map = SchemaMap.load()
    product = schema_map.table("product")
    assert product.physical == "G_PROD"
    assert product.column("product_key").physical == "PK_PRODID"
    assert product.column("sku").physical == "PRODID"
    assert product.column("variant_axis_1").physical == "VARIANTAXIS1"
    assert schema_map.table("order_line").column("order_key").physical == "LINKID"


def test_unknown_logical_names_raise_errors_naming_table_and_column() -> None:
    schema_map = SchemaMap.load()
    with pytest.raises(SchemaMapError, match=r"unknown table 'produkt'.*known tables: .*product"):
        schema_map.table("produkt")
    with pytest.raises(SchemaMapError, match=r"unknown column 'colour' of table product \(G_PROD\)"):
        schema_map.table("product").column("colour")
    with pytest.raises(SchemaMapError, match=r"overrides: unknown column 'colour' of table 'product'"):
        SchemaMap.load(overrides={"tables": {"product": {"columns": {"colour": "FARG"}}}})
    with pytest.raises(SchemaMapError, match=r"overrides: unknown table 'artikel'"):
        SchemaMap.load(overrides={"tables": {"artikel": {"name": "ART"}}})


def test_only_optional_columns_may_be_mapped_to_null_and_absent_ones_cannot_be_used() -> None:
    with pytest.raises(SchemaMapError, match=r"product\.sku is required and cannot be mapped to null"):
        SchemaMap.load(overrides={"tables": {"product": {"columns": {"sku": None}}}})
    schema_map = SchemaMap.load(overrides={"tables": {"product": {"columns": {"edit_date": None}}}})
    product = schema_map.table("product")
    assert not product.has("edit_date")
    assert "EDITDATE" not in [column.physical for column in product.columns]
    with pytest.raises(SchemaMapError, match=r"product\.edit_date \(not mapped\) is mapped to null"):
        product.column("edit_date")


def test_physical_names_must_be_plain_identifiers() -> None:
    with pytest.raises(SchemaMapError, match="not a plain SQL identifier"):
        SchemaMap.load(overrides={"tables": {"product": {"name": "G_PROD; DROP TABLE G_ORDER"}}})
    with pytest.raises(SchemaMapError, match="not a plain SQL identifier"):
        SchemaMap.load(overrides={"tables": {"product": {"columns": {"sku": "PROD ID"}}}})
    schema_map = SchemaMap.load(overrides={"tables": {"product": {"name": "dbo.G_PROD"}}})
    assert schema_map.table("product").physical == "dbo.G_PROD"


def test_override_file_is_layered_over_defaults_then_dict_overrides(tmp_path: Path) -> None:
    override_file = tmp_path / "install.yaml"
    override_file.write_text(
        "tables:\n  product:\n    columns:\n      ean: EAN13\n      sku: ARTNR\n", encoding="utf-8"
    )
    schema_map = SchemaMap.load(override_file, {"tables": {"product": {"columns": {"sku": "ARTNO"}}}})
    product = schema_map.table("product")
    assert product.column("ean").physical == "EAN13"
    assert product.column("sku").physical == "ARTNO"
    assert product.column("name").physical == "DESCRIPTION"


# --- secrets ----------------------------------------------------------------------------------


def test_connection_string_secrets_understand_braces_and_both_key_spellings() -> None:
    odbc = "DRIVER={ODBC Driver 18 for SQL Server};Server=db\\MAMUT;UID=sync;PWD={se;cr}}et};Encrypt=yes"
    assert "se;cr}et" in connection_string_secrets(odbc)
    assert "{se;cr}}et}" in connection_string_secrets(odbc)
    assert connection_string_secrets("Driver=x;password = abc ;Uid=u") == ("abc",)
    message = redact("login failed for PWD={se;cr}}et} using se;cr}et", connection_string_secrets(odbc))
    assert "se;cr" not in message and message.count("***") == 2
    assert redact("echo Password=other;x", ()) == "echo Password=***;x"


@pytest.mark.postgres
def test_password_never_appears_in_errors_or_repr_for_an_unreachable_server() -> None:
    require_postgres()
    odbc = f"DRIVER={{PostgreSQL Unicode}};Server={PG_HOST};Port=1;Database=mamut;Uid=sync;Pwd={SECRET};"
    gateway = MamutGateway(odbc, SchemaMap.load(), timeout_seconds=3)
    with pytest.raises(MamutError) as caught, gateway.transaction():
        pass
    message = str(caught.value)
    assert caught.value.operation == "connect"
    assert "Connection refused" in message or "failed" in message
    assert SECRET not in message and "Pwd=***" in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert SECRET not in repr(gateway)
    ok, status = gateway.test_connection()
    assert not ok and SECRET not in status and "port 1" in status


@pytest.mark.postgres
def test_driver_message_that_echoes_the_secret_is_redacted() -> None:
    require_postgres()
    # The server names the missing database in its error; here that name is the password itself.
    odbc = f"DRIVER={{PostgreSQL Unicode}};Server={PG_HOST};Port={PG_PORT};Database={SECRET};Uid=postgres;Pwd={SECRET};"
    ok, status = MamutGateway(odbc, SchemaMap.load(), timeout_seconds=3).test_connection()
    assert not ok
    assert SECRET not in status
    assert 'database "***" does not exist' in status


# --- round trips on both backends -------------------------------------------------------------


def test_insert_select_update_round_trip_keeps_swedish_text_decimals_and_types(
    mamut_db: MamutTestDatabase,
) -> None:
    name = "Blåbärssylt Östgöta – ÅÄÖ åäö é"
    aware_now = dt.datetime(2026, 3, 14, 10, 26, 53, 987654, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    with mamut_db.gateway.transaction() as tx:
        tx.insert(
            "product",
            product_row(
                "SYLT-ÅÄÖ",
                name=name,
                price_out=Decimal("1234.5678"),
                weight=Decimal("0.125"),
                inactive=True,
                use_store=False,
                unit="burk",
                edit_date=aware_now,
            ),
        )
    with mamut_db.gateway.transaction() as tx:
        [row] = tx.select(
            "product",
            ["sku", "name", "price_out", "weight", "inactive", "use_store", "unit", "edit_date", "ean"],
            where={"sku": "SYLT-ÅÄÖ"},
        )
    assert row == {
        "sku": "SYLT-ÅÄÖ",
        "name": name,
        "price_out": Decimal("1234.5678"),
        "weight": Decimal("0.125"),
        "inactive": True,
        "use_store": False,
        "unit": "burk",
        "edit_date": NOW,  # aware 10:26:53+01:00 stored as naive UTC, whole seconds
        "ean": None,
    }
    assert type(row["price_out"]) is Decimal and str(row["price_out"]) == "1234.5678"
    assert str(row["weight"]) == "0.125"

    with mamut_db.gateway.transaction() as tx:
        changed = tx.update("product", {"price_out": Decimal("19.99"), "name": "Sylt"}, where={"sku": "SYLT-ÅÄÖ"})
        untouched = tx.update("product", {"name": "x"}, where={"sku": "NO-SUCH-SKU"})
        [row] = tx.select("product", ["name", "price_out"], where={"sku": "SYLT-ÅÄÖ"})
    assert (changed, untouched) == (1, 0)
    assert row == {"name": "Sylt", "price_out": Decimal("19.9900")}


def test_where_null_and_where_in_combine(mamut_db: MamutTestDatabase) -> None:
    with mamut_db.gateway.transaction() as tx:
        tx.insert("product", product_row("MAIN"))
        [main] = tx.select("product", ["product_key"], where={"sku": "MAIN"})
        tx.insert_many(
            "product",
            [product_row(f"MAIN-{n}", main_product_key=main["product_key"]) for n in (1, 2, 3)],
        )
        tx.insert("product", product_row("SOLO", vat_code=2))
    with mamut_db.gateway.transaction() as tx:
        unlinked = tx.select("product", ["sku"], where={"main_product_key": None})
        picked = tx.select(
            "product",
            ["sku"],
            where={"main_product_key": main["product_key"]},
            where_in=("sku", ["MAIN-1", "MAIN-3", "SOLO", "MAIN-1"]),
        )
        nothing = tx.select("product", ["sku"], where_in=("sku", []))
    assert sorted(row["sku"] for row in unlinked) == ["MAIN", "SOLO"]
    assert sorted(row["sku"] for row in picked) == ["MAIN-1", "MAIN-3"]
    assert nothing == []


def test_long_in_lists_are_split_into_statements_within_the_parameter_budget(
    mamut_db: MamutTestDatabase,
) -> None:
    skus = [f"BULK-{n:05d}" for n in range(1200)]
    with mamut_db.gateway.transaction() as tx:
        tx.insert_many("product", [product_row(sku, price_out=Decimal(n) / 100) for n, sku in enumerate(skus)])
    before = mamut_db.gateway.statements_executed
    with mamut_db.gateway.transaction() as tx:
        rows = tx.select("product", ["sku", "price_out"], where={"vat_code": 1}, where_in=("sku", [*skus, "MISSING"]))
    statements = mamut_db.gateway.statements_executed - before
    per_statement = MAX_PARAMS_PER_STATEMENT - 1  # one marker goes to vat_code
    assert statements == -(-1201 // per_statement) == 3
    assert len(rows) == 1200
    assert {row["sku"]: row["price_out"] for row in rows}["BULK-01199"] == Decimal("11.9900")


def test_round_trips_count_statements_commits_rollbacks_and_an_executemany_by_the_driver(
    mamut_db: MamutTestDatabase,
) -> None:
    gateway = mamut_db.gateway
    before, in_process = gateway.round_trips, process_round_trips()
    with gateway.transaction() as tx:
        tx.insert_many("product", [product_row(f"TRIP-{n}") for n in range(10)])
        tx.select("product", ["sku"], where={"sku": "TRIP-1"})
    assert gateway.round_trips - before == 1 + 1 + 1  # one multi-row insert, select, commit
    with pytest.raises(RuntimeError), gateway.transaction() as tx:
        tx.select("product", ["sku"], where={"sku": "TRIP-1"})
        raise RuntimeError("roll back")
    assert gateway.round_trips - before == 3 + 2  # + select, rollback
    assert process_round_trips() - in_process == gateway.round_trips - before


def test_iter_rows_streams_in_the_requested_order(mamut_db: MamutTestDatabase) -> None:
    with mamut_db.gateway.transaction() as tx:
        tx.insert_many("product", [product_row(f"S-{n:02d}", vat_code=n % 3 + 1) for n in range(25)])
        rows = list(tx.iter_rows("product", ["sku", "vat_code"], order_by=["vat_code", "sku"], batch_size=4))
    assert len(rows) == 25
    assert rows == sorted(rows, key=lambda row: (row["vat_code"], row["sku"]))
    assert rows[0] == {"sku": "S-00", "vat_code": 1} and rows[-1] == {"sku": "S-23", "vat_code": 3}


def test_an_exception_inside_the_transaction_rolls_everything_back(mamut_db: MamutTestDatabase) -> None:
    with pytest.raises(RuntimeError, match="crash after two inserts"), mamut_db.gateway.transaction() as tx:
        tx.insert("product", product_row("ROLLBACK-1"))
        tx.insert("warehouse", {"warehouse_id": 9, "description": "Lager Malmö"})
        raise RuntimeError("crash after two inserts")
    with mamut_db.gateway.transaction() as tx:
        assert tx.select("product", ["sku"], where={"sku": "ROLLBACK-1"}) == []
        assert tx.select("warehouse", ["warehouse_id"], where={"warehouse_id": 9}) == []
    with pytest.raises(MamutError, match="transaction already ended"):
        tx.select("product", ["sku"])


def test_driver_errors_become_mamut_errors_naming_operation_and_table(mamut_db: MamutTestDatabase) -> None:
    with mamut_db.gateway.transaction() as tx:
        tx.insert("product", product_row("DUP"))
    with pytest.raises(MamutError) as caught, mamut_db.gateway.transaction() as tx:
        tx.insert("product", product_row("DUP"))
    assert caught.value.operation == "insert" and caught.value.table == "product"
    assert str(caught.value).startswith("Mamut insert on product (G_PROD) failed: ")
    assert "unique" in str(caught.value).lower()
    with mamut_db.gateway.transaction() as tx:  # the gateway is usable after the failure
        assert len(tx.select("product", ["sku"], where={"sku": "DUP"})) == 1


def test_values_a_column_cannot_hold_are_refused_before_reaching_the_database(
    mamut_db: MamutTestDatabase,
) -> None:
    with (
        pytest.raises(MamutError, match=r"product\.name \(DESCRIPTION\) takes at most 200 characters, got 201"),
        mamut_db.gateway.transaction() as tx,
    ):
        tx.insert("product", product_row("LONG", name="å" * 201))
    with (
        pytest.raises(MamutError, match=r"product\.weight \(WEIGHT\) holds at most 9 digits before the point"),
        mamut_db.gateway.transaction() as tx,
    ):
        tx.insert("product", product_row("HEAVY", weight=Decimal("1234567890")))
    with (
        pytest.raises(MamutError, match=r"missing required column\(s\) vat_code"),
        mamut_db.gateway.transaction() as tx,
    ):
        tx.insert("product", {"sku": "NOVAT", "name": "Utan moms"})
    with pytest.raises(ValueError, match="needs a where clause"), mamut_db.gateway.transaction() as tx:
        tx.update("product", {"name": "alla"}, where={})
    with mamut_db.gateway.transaction() as tx:
        assert tx.select("product", ["sku"], where_in=("sku", ["LONG", "HEAVY", "NOVAT"])) == []


def test_unknown_names_in_statements_raise_schema_map_errors(mamut_db: MamutTestDatabase) -> None:
    with mamut_db.gateway.transaction() as tx:
        with pytest.raises(SchemaMapError, match="unknown table 'products'"):
            tx.select("products", ["sku"])
        with pytest.raises(SchemaMapError, match=r"unknown column 'colour' of table product \(G_PROD\)"):
            tx.insert("product", product_row("X", colour="Röd"))


def test_test_connection_reports_success_and_a_missing_product_table(
    mamut_db: MamutTestDatabase, tmp_path: Path
) -> None:
    ok, message = mamut_db.gateway.test_connection()
    assert ok, message
    assert "G_PROD" in message and ("SQLite" in message or "PostgreSQL" in message)
    with (
        fresh_mock_database(mamut_db.backend, tmp_path, seed=None) as empty,
        MamutGateway(empty, SchemaMap.load()) as gateway,
    ):
        ok, message = gateway.test_connection()
    assert not ok
    assert message.startswith("Mamut select on product (G_PROD) failed:")


def test_verify_schema_finds_names_that_do_not_exist_in_the_database(mamut_db: MamutTestDatabase) -> None:
    assert mamut_db.gateway.verify_schema() == []
    wrong = SchemaMap.load(overrides={"tables": {"warehouse": {"columns": {"description": "STORENAME"}}}})
    with MamutGateway(mamut_db.odbc, wrong) as gateway:
        problems = gateway.verify_schema()
    assert len(problems) == 1
    assert "warehouse (G_STORE)" in problems[0] and "STORENAME".lower() in problems[0].lower()


# --- mock database ----------------------------------------------------------------------------


def test_reference_seed_and_repeated_creation_are_idempotent(mamut_db: MamutTestDatabase) -> None:
    create_mock_company_database(mamut_db.odbc, seed="reference")
    create_mock_company_database(mamut_db.odbc)
    with mamut_db.gateway.transaction() as tx:
        currencies = tx.select("currency", ["currency_id", "iso_code"])
        warehouses = tx.select("warehouse", ["warehouse_id", "description"])
        price_lists = tx.select("price_list", ["name", "currency_id", "incl_vat"])
        statuses = tx.select("order_status", ["status_id", "is_open", "is_invoiced"])
    assert sorted((row["currency_id"], row["iso_code"]) for row in currencies) == [
        (1, "SEK"),
        (2, "EUR"),
        (3, "NOK"),
    ]
    assert sorted((row["warehouse_id"], row["description"]) for row in warehouses) == [
        (1, "Huvudlager"),
        (2, "Butik Göteborg"),
    ]
    assert sorted(row["name"] for row in price_lists) == ["Euro EUR", "Standard SEK", "Återförsäljare SEK"]
    assert {row["name"]: row["currency_id"] for row in price_lists}["Euro EUR"] == 2
    assert {row["status_id"]: row["is_open"] for row in statuses}[5200] is True
    assert len(statuses) == 9


@pytest.mark.parametrize("backend", MAMUT_BACKENDS)
def test_mock_tables_follow_an_overridden_schema_map(backend: str, tmp_path: Path) -> None:
    renamed = SchemaMap.load(
        overrides={"tables": {"warehouse": {"name": "LAGER", "columns": {"description": "BENAMNING"}}}}
    )
    with fresh_mock_database(backend, tmp_path, schema_map=renamed) as odbc:
        with MamutGateway(odbc, renamed) as gateway, gateway.transaction() as tx:
            names = {row["description"] for row in tx.select("warehouse", ["description"])}
        with MamutGateway(odbc, SchemaMap.load()) as default_gateway:
            problems = default_gateway.verify_schema()
    assert names == {"Huvudlager", "Butik Göteborg"}
    assert len(problems) == 1 and "warehouse (G_STORE)" in problems[0]


def test_reference_tsql_ddl_writes_down_the_sql_server_shape() -> None:
    ddl = "\n".join(render_ddl(SchemaMap.load(), "mssql"))
    assert "PK_PRODID int IDENTITY(1,1) NOT NULL" in ddl
    assert "USESTORE bit DEFAULT 1 NOT NULL" in ddl
    assert "VARIANTAXIS1 nvarchar(50) NULL" in ddl
    assert "CREATE UNIQUE INDEX UX_G_ORDER_EXTERNALID ON G_ORDER (EXTERNALID) WHERE EXTERNALID IS NOT NULL" in ddl
    assert "IF NOT EXISTS" not in ddl and "GETDATE()" not in ddl


def test_sqlite_odbc_string_refuses_paths_the_driver_cannot_parse(tmp_path: Path) -> None:
    assert sqlite_odbc_string(tmp_path / "a b.db") == (
        f"DRIVER={{SQLite3}};Database={tmp_path / 'a b.db'};FKSupport=1;Timeout=10000"
    )
    with pytest.raises(ValueError, match="cannot open a path containing"):
        sqlite_odbc_string(tmp_path / "a;b.db")


def test_mock_refuses_an_unknown_seed_name_before_connecting(tmp_path: Path) -> None:
    target = tmp_path / "never.db"
    with pytest.raises(ValueError, match="unknown seed 'full'; choose one of reference, demo"):
        create_mock_company_database(sqlite_odbc_string(target), seed="full")
    assert not target.exists()
