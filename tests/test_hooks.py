"""The `starweb` and `mamut_odbc` connection types: registered with Airflow, and their tests tell a person what
is wrong without showing a secret.

Connections are tested the way Airflow's UI and REST API do it: the Connection travels as an
``AIRFLOW_CONN_<ID>`` URI, Airflow looks its hook up by connection type and calls ``test_connection()``.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from starmamut.airflow_hooks import MamutHook, StarwebHook
from starmamut.mamut.gateway import MamutGateway
from starmamut.starweb.client import StarwebClient
from tests.fixtures.databases import PG_HOST, PG_PORT, require_postgres
from tests.fixtures.mamut import MamutTestDatabase, fresh_mock_database
from tests.test_demo import free_port

SECRET = "hook-s3cret-" + uuid.uuid4().hex[:8]
CONFIG = {
    "version": 1,
    "mamut": {"conn_id": "mamut_default", "vat_codes": {25: 1}},
    "shops": {"demo": {"name": "Demo", "flow": "ecom", "starweb_conn_id": "starweb_demo"}},
}


def connection_test(monkeypatch: pytest.MonkeyPatch, **fields: Any) -> tuple[bool, str]:
    """Test a Connection as Airflow's API does: exported as a URI, its hook found by type, then tested."""
    from airflow.models import Connection

    conn_id = "hooktest_" + uuid.uuid4().hex[:8]
    connection = Connection(conn_id=conn_id, **fields)
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", connection.get_uri())
    ok, message = connection.test_connection()
    assert SECRET not in message
    return ok, message


@pytest.fixture(autouse=True)
def config(shop_config) -> None:
    shop_config(CONFIG)


def test_both_connection_types_are_registered_with_their_form() -> None:
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    providers = ProvidersManager()  # the UI's view: form fields and widgets
    hooks = ProvidersManagerTaskRuntime().hooks  # the tasks' view: which hook serves each connection type
    starweb, mamut = hooks["starweb"], hooks["mamut_odbc"]
    assert (starweb.hook_class_name, starweb.connection_testable) == ("starmamut.airflow_hooks.StarwebHook", True)
    assert (mamut.hook_class_name, mamut.connection_testable) == ("starmamut.airflow_hooks.MamutHook", True)
    assert providers.field_behaviours["starweb"]["relabeling"]["password"] == "Client secret"
    assert "host" in providers.field_behaviours["mamut_odbc"]["hidden_fields"]
    assert "extra__mamut_odbc__odbc_connection_string" in providers.connection_form_widgets


# --- Starweb -----------------------------------------------------------------------------------------


def starweb_fields(sandbox: Any, **overrides: Any) -> dict[str, Any]:
    return {
        "conn_type": "starweb",
        "host": sandbox.base_url,
        "login": sandbox.client_id,
        "password": sandbox.client_secret,
        **overrides,
    }


def test_starweb_connection_test_obtains_a_token_and_names_the_shop(sandbox, monkeypatch) -> None:
    ok, message = connection_test(monkeypatch, **starweb_fields(sandbox))

    assert ok, message
    shop = sandbox.state.shop()
    assert message == f"Connected to Starweb shop {shop['name']!r} ({shop['idCode']}) as {sandbox.client_id!r}"


def test_starweb_connection_test_explains_a_wrong_secret(sandbox, monkeypatch) -> None:
    ok, message = connection_test(monkeypatch, **starweb_fields(sandbox, password=SECRET))

    assert not ok
    assert message.startswith(f"Starweb refused the credentials of client {sandbox.client_id!r}: ")


def test_starweb_connection_test_explains_an_unreachable_host(monkeypatch) -> None:
    base_url = f"http://127.0.0.1:{free_port()}/api/v2"
    ok, message = connection_test(monkeypatch, conn_type="starweb", host=base_url, login="partner.app", password=SECRET)

    assert not ok
    assert message.startswith(f"Could not reach Starweb at {base_url}: ")


def test_starweb_connection_test_names_a_missing_field(sandbox, monkeypatch) -> None:
    ok, message = connection_test(monkeypatch, conn_type="starweb", host=sandbox.base_url, password=SECRET)

    assert not ok
    assert message.endswith("login (client id) and password (client secret) are required")


def test_starweb_hook_hands_out_the_engine_client(sandbox, monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_STARWEB_DEMO", json.dumps(starweb_fields(sandbox)))

    with StarwebHook("starweb_demo").get_conn(max_concurrency=2) as client:
        assert isinstance(client, StarwebClient)
        assert client.get_shop()["idCode"] == sandbox.state.shop()["idCode"]
        assert sandbox.client_secret not in repr(client)


# --- Mamut -------------------------------------------------------------------------------------------


def mamut_fields(odbc: str, **overrides: Any) -> dict[str, Any]:
    return {"conn_type": "mamut_odbc", "extra": json.dumps({"odbc_connection_string": odbc}), **overrides}


def test_mamut_connection_test_reaches_the_company_database(mamut_db: MamutTestDatabase, monkeypatch) -> None:
    ok, message = connection_test(monkeypatch, **mamut_fields(mamut_db.odbc))

    assert ok, message
    database = mamut_db.odbc.split("Database=")[1].split(";")[0]
    assert f"database {database!r}; table product (G_PROD) answers" in message


@pytest.mark.postgres
def test_mamut_connection_test_explains_a_login_the_server_refuses(monkeypatch) -> None:
    require_postgres()
    odbc = f"DRIVER={{PostgreSQL Unicode}};Server={PG_HOST};Port={PG_PORT};Database=postgres;"
    ok, message = connection_test(monkeypatch, **mamut_fields(odbc, login="no_such_login", password=SECRET))

    assert not ok
    assert message.startswith("Mamut connect failed") and 'role "no_such_login" does not exist' in message
    assert "PWD=***" in message


@pytest.mark.postgres
def test_mamut_connection_test_explains_an_unreachable_host(monkeypatch) -> None:
    require_postgres()
    odbc = f"DRIVER={{PostgreSQL Unicode}};Server={PG_HOST};Port={free_port()};Database=mamut;"
    ok, message = connection_test(monkeypatch, **mamut_fields(odbc, login="starmamut", password=SECRET))

    assert not ok
    assert message.startswith("Mamut connect failed") and "Connection refused" in message


def test_mamut_connection_test_explains_a_database_without_mamut_tables(tmp_path: Path, monkeypatch) -> None:
    with fresh_mock_database("sqlite", tmp_path, seed=None) as empty:
        ok, message = connection_test(monkeypatch, **mamut_fields(empty, password=SECRET))

    assert not ok
    assert message.startswith("Mamut select on product (G_PROD) failed:")


def test_mamut_connection_test_names_a_missing_connection_string(monkeypatch) -> None:
    ok, message = connection_test(monkeypatch, conn_type="mamut_odbc", login="starmamut", password=SECRET)

    assert not ok
    assert "set extra 'odbc_connection_string'" in message


def test_mamut_hook_uses_the_configs_schema_map(shop_config, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "mamut-names.yaml").write_text("tables:\n  product:\n    name: ARTIKEL\n")
    shop_config({**CONFIG, "mamut": {**CONFIG["mamut"], "schema_map": "mamut-names.yaml"}})
    with fresh_mock_database("sqlite", tmp_path) as odbc:
        monkeypatch.setenv("AIRFLOW_CONN_MAMUT_DEFAULT", json.dumps(mamut_fields(odbc, password=SECRET)))

        with MamutHook().get_conn() as gateway:
            assert isinstance(gateway, MamutGateway)
            assert gateway.schema_map.table("product").physical == "ARTIKEL"
            assert SECRET not in repr(gateway)
            ok, message = MamutHook().test_connection()

    assert not ok
    assert message.startswith("Mamut select on product (ARTIKEL) failed:")
