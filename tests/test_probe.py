"""`probe`: a Mamut company database checked against the schema map before the first sync, writing nothing.

Real mock databases over ODBC are damaged the ways a real install differs (a table missing, columns missing or
renamed, other types, a login that may not read a table) and the report must name exactly those.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyodbc
import pytest

from starmamut.cli import main
from starmamut.mamut.gateway import MamutGateway
from starmamut.mamut.schema_map import SchemaMap
from starmamut.probe import ProbeReport, format_report, probe
from tests.fixtures.databases import PG_HOST, PG_USER, postgres_odbc_string
from tests.fixtures.mamut import MAMUT_BACKENDS, MamutTestDatabase, fresh_mock_database

SECRET = "probe-s3cret-" + uuid.uuid4().hex[:8]


def run_probe(odbc: str) -> ProbeReport:
    with MamutGateway(odbc, SchemaMap.load()) as gateway:
        return probe(gateway)


def alter(odbc: str, *statements: str) -> None:
    """Damage a mock the way a real install differs from the map (test set-up only, never the code under test)."""
    connection = pyodbc.connect(odbc, autocommit=True)
    try:
        for statement in statements:
            connection.execute(statement)
    finally:
        connection.close()


def errors_by_place(report: ProbeReport) -> dict[tuple[str, str | None], str]:
    return {
        (finding.table.logical, finding.column.logical if finding.column else None): finding.message
        for finding in report.errors
    }


def test_the_full_mock_fits_the_map(mamut_db: MamutTestDatabase) -> None:
    report = run_probe(mamut_db.odbc)

    assert report.findings == ()
    assert report.ready
    schema_map = SchemaMap.load()
    assert report.tables_checked == len(schema_map.tables)
    assert report.change_timestamps == {
        table.logical: "EDITDATE" for table in schema_map.tables if "edit_date" in table.all_columns
    }
    assert format_report(report).endswith("Ready: the schema map fits this database.")


@pytest.mark.parametrize("backend", MAMUT_BACKENDS)
def test_the_report_says_where_the_exchange_rate_goes_and_that_it_must_be_checked(backend: str, tmp_path: Path) -> None:
    """EXCHANGERATE is our proposal: even when the database has it, a person must confirm place and form."""
    with fresh_mock_database(backend, tmp_path) as odbc:
        proposed = run_probe(odbc)
        without = SchemaMap.load(overrides={"tables": {"order": {"columns": {"exchange_rate": None}}}})
        with MamutGateway(odbc, without) as gateway:
            unmapped = probe(gateway)

    assert proposed.ready and proposed.exchange_rate_column == "G_ORDER.EXCHANGERATE"
    text = format_report(proposed)
    assert (
        "Exchange rate of foreign-currency orders: written to G_ORDER.EXCHANGERATE (order.exchange_rate), a "
        "column this project proposed, not one seen in a real install."
    ) in text
    assert "map order.exchange_rate to that column (or to null), and set mamut.exchange_rate" in text
    assert unmapped.exchange_rate_column is None
    assert "not written (order.exchange_rate is mapped to null)" in format_report(unmapped)


@pytest.mark.parametrize("backend", MAMUT_BACKENDS)
def test_the_report_lists_the_helpful_unique_indexes_found_and_missing_without_calling_them_errors(
    backend: str, tmp_path: Path
) -> None:
    with fresh_mock_database(backend, tmp_path) as odbc:
        complete = run_probe(odbc)
        alter(odbc, "DROP INDEX UX_G_ORDER_EXTERNALID", "DROP INDEX UX_G_CONTAC_CUSTID")
        damaged = run_probe(odbc)

    def found(report: ProbeReport) -> dict[str, str | None]:
        return {check.column: check.index and check.index.upper() for check in report.unique_indexes}

    assert found(complete) == {
        "G_ORDER.EXTERNALID": "UX_G_ORDER_EXTERNALID",
        "G_ORDER.ORDERID": "UX_G_ORDER_ORDERID",
        "G_CONTAC.CUSTID": "UX_G_CONTAC_CUSTID",
        "G_PROD.PRODID": "UX_G_PROD_PRODID",
    }
    assert found(damaged) == {**found(complete), "G_ORDER.EXTERNALID": None, "G_CONTAC.CUSTID": None}
    assert damaged.ready  # defence in depth, not a requirement
    text = format_report(damaged)
    assert "correctness does not need them" in text
    assert "  missing  G_ORDER.EXTERNALID: adding one would make sure the same web order can never become two" in text
    assert "  present  G_ORDER.ORDERID (index " in text and "two orders can never share an order number" in text
    assert "  missing  G_CONTAC.CUSTID: " in text and "  present  G_PROD.PRODID (index " in text


@pytest.mark.parametrize("backend", MAMUT_BACKENDS)
def test_missing_tables_and_columns_are_named_with_what_to_map(backend: str, tmp_path: Path) -> None:
    with fresh_mock_database(backend, tmp_path) as odbc:
        alter(
            odbc,
            "DROP TABLE G_DISCOUNT",
            "ALTER TABLE G_PROD DROP COLUMN EANCODE",
            "ALTER TABLE G_PROD RENAME COLUMN PRICEOUT TO PRICE_OUT",
            "ALTER TABLE G_CONTAC DROP COLUMN EMAIL",
        )
        report = run_probe(odbc)

    errors = errors_by_place(report)
    assert set(errors) == {("discount", None), ("product", "ean"), ("product", "price_out"), ("contact", "email")}
    assert errors[("discount", None)].startswith("table G_DISCOUNT not found")
    assert errors[("product", "ean")].startswith("column EANCODE not found in G_PROD;")
    assert "optional: map it to null" in errors[("product", "ean")]
    assert errors[("product", "price_out")].upper().endswith("G_PROD HAS PRICE_OUT — IS THAT IT?")
    assert errors[("contact", "email")].endswith("no column with a similar name")
    assert report.warnings == [] and not report.ready
    assert report.change_timestamps["discount"] is None and report.change_timestamps["product"] == "EDITDATE"
    text = format_report(report)
    assert "Must be mapped or fixed before the first sync (4):" in text
    assert text.split("replace CHANGE_ME):\n")[1].upper() == (
        "TABLES:\n"
        "  PRODUCT:\n    COLUMNS:\n      EAN: NULL\n      PRICE_OUT: PRICE_OUT\n"
        "  DISCOUNT:\n    NAME: CHANGE_ME\n"
        "  CONTACT:\n    COLUMNS:\n      EMAIL: CHANGE_ME"
    )


@pytest.mark.postgres
def test_types_sizes_and_not_null_columns_that_do_not_fit(tmp_path: Path) -> None:
    with fresh_mock_database("postgres", tmp_path) as odbc:
        alter(
            odbc,
            "ALTER TABLE G_ORDERL ALTER COLUMN PRICE TYPE VARCHAR(30)",
            "ALTER TABLE G_PROD ALTER COLUMN DESCRIPTION TYPE VARCHAR(100)",
            "ALTER TABLE G_PRODSTOCK ALTER COLUMN QTYSTOCK TYPE NUMERIC(15,1)",
            "ALTER TABLE G_ORDER ALTER COLUMN EDITDATE TYPE DATE",
            "ALTER TABLE G_PROD ALTER COLUMN UNIT SET NOT NULL",
            "ALTER TABLE G_CONTAC ADD COLUMN REGION INTEGER NOT NULL",
        )
        report = run_probe(odbc)

    assert errors_by_place(report) == {
        ("order_line", "price"): "is varchar in the database, which cannot hold the map's decimal(19,4): "
        "map another column"
    }
    warnings = {(w.table.logical, w.column.logical if w.column else None): w.message for w in report.warnings}
    assert warnings == {
        ("product", "name"): "holds at most 100 characters, the map allows 200: longer values are rejected "
        "when written",
        ("product_stock", "qty_in_stock"): "keeps 1 decimals, the map 3: values are rounded when written",
        ("order", "edit_date"): "is date in the database: the time of day is lost, so changes within a day are not "
        "told apart",
        ("product", "unit"): "is NOT NULL without a default, but the integration may leave it empty",
        ("contact", None): "column(s) region are NOT NULL without a default and not in the map: rows the "
        "integration inserts into this table are rejected unless the database fills them",
    }
    assert report.change_timestamps["order"] == "EDITDATE"  # usable, with the warning above


@pytest.fixture
def read_only_login(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A PostgreSQL mock and a login that may SELECT every table but G_DISCOUNT, and write nothing."""
    login = f"probe_reader_{uuid.uuid4().hex[:8]}"
    with fresh_mock_database("postgres", tmp_path) as odbc:
        alter(
            odbc,
            f"CREATE ROLE {login} LOGIN",
            f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {login}",
            f"REVOKE SELECT ON G_DISCOUNT FROM {login}",
        )
        try:
            yield odbc, login
        finally:
            alter(odbc, f"DROP OWNED BY {login}")
    alter(postgres_odbc_string("postgres"), f"DROP ROLE IF EXISTS {login}")


@pytest.mark.postgres
def test_a_read_only_login_can_probe_and_a_table_it_may_not_read_is_named(read_only_login) -> None:
    odbc, login = read_only_login
    report = run_probe(odbc.replace(f"Uid={PG_USER};", f"Uid={login};"))

    assert list(errors_by_place(report)) == [("discount", None)]
    assert report.errors[0].message.startswith("cannot be read with this login: Mamut select on discount")
    assert "permission denied" in report.errors[0].message


# --- the command line --------------------------------------------------------------------------------


def test_probe_command_exit_codes_follow_the_verdict(tmp_path: Path, capsys) -> None:
    with fresh_mock_database("sqlite", tmp_path) as odbc:
        assert main(["probe", "--odbc", odbc, "--schema-map", str(write_override(tmp_path, {}))]) == 0
        assert "Ready: the schema map fits this database." in capsys.readouterr().out

        alter(odbc, "DROP TABLE G_DISCOUNT")
        assert main(["probe", "--odbc", odbc, "--schema-map", str(write_override(tmp_path, {}))]) == 1
        assert "discount (G_DISCOUNT): table G_DISCOUNT not found" in capsys.readouterr().out


def test_probe_command_reads_the_configs_connection_and_schema_map(
    shop_config, tmp_path: Path, monkeypatch, capsys
) -> None:
    with fresh_mock_database("sqlite", tmp_path) as odbc:
        alter(odbc, "ALTER TABLE G_STORE RENAME TO LAGER")
        write_override(tmp_path, {"warehouse": {"name": "LAGER"}})
        shop_config(
            {
                "version": 1,
                "shops": {},
                "mamut": {"conn_id": "mamut_erp", "schema_map": "override.yaml", "vat_codes": {25: 1}},
            }
        )
        monkeypatch.setenv(
            "AIRFLOW_CONN_MAMUT_ERP",
            json.dumps({"conn_type": "mamut_odbc", "password": SECRET, "extra": {"odbc_connection_string": odbc}}),
        )

        assert main(["probe"]) == 0

    assert "Ready" in capsys.readouterr().out


@pytest.mark.postgres
def test_probe_command_reports_an_unreachable_database_without_the_password(capsys) -> None:
    odbc = f"DRIVER={{PostgreSQL Unicode}};Server={PG_HOST};Port=1;Database=mamut;Uid=reader;Pwd={SECRET};"

    assert main(["probe", "--odbc", odbc]) == 2

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("probe: Mamut connect failed") and SECRET not in captured.err


def test_probe_command_names_a_missing_connection(shop_config, capsys) -> None:
    shop_config({"version": 1, "shops": {}, "mamut": {"conn_id": "mamut_nowhere", "vat_codes": {25: 1}}})

    assert main(["probe"]) == 2

    assert capsys.readouterr().err.startswith("probe: Connection 'mamut_nowhere': ")


def write_override(directory: Path, tables: dict[str, object]) -> Path:
    path = directory / "override.yaml"
    path.write_text(json.dumps({"tables": tables}))
    return path
