"""Airflow Connections → clients: the conventions the README documents, and secrets kept out of errors."""

from __future__ import annotations

import json

import pytest

from starmamut import airflow_adapter


def set_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, **fields) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


def test_starweb_credentials_from_host_login_password(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(
        monkeypatch,
        "starweb_x",
        conn_type="http",
        host="https://x.starwebserver.se/api/v2/",
        login="partner.app",
        password="s3cr3t-value",
    )
    credentials = airflow_adapter.starweb_credentials("starweb_x")
    assert credentials.base_url == "https://x.starwebserver.se/api/v2"
    assert credentials.client_id == "partner.app"
    assert "s3cr3t-value" not in repr(credentials) and "s3cr3t-value" not in str(credentials)


def test_starweb_base_url_in_extra_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(
        monkeypatch,
        "starweb_y",
        conn_type="http",
        host="ignored",
        login="id",
        password="pw",
        extra={"base_url": "http://127.0.0.1:8765/api/v2"},
    )
    assert airflow_adapter.starweb_credentials("starweb_y").base_url == "http://127.0.0.1:8765/api/v2"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"conn_type": "http", "host": "x.starwebserver.se", "login": "id", "password": "pw"}, "base_url"),
        ({"conn_type": "http", "host": "https://x/api/v2", "password": "topsecret"}, "login (client id)"),
    ],
)
def test_incomplete_starweb_connection_is_a_clear_error(monkeypatch, fields, message) -> None:
    set_conn(monkeypatch, "starweb_bad", **fields)
    with pytest.raises(ValueError, match=r"Connection 'starweb_bad'") as raised:
        airflow_adapter.starweb_credentials("starweb_bad")
    assert message in str(raised.value)
    assert "topsecret" not in str(raised.value)


def test_mamut_odbc_string_adds_login_and_braced_password(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(
        monkeypatch,
        "mamut_x",
        conn_type="odbc",
        login="reader",
        password="p;w}d",
        extra={"odbc_connection_string": "DRIVER={FreeTDS};Server=mamut;Port=1433;Database=MAMUT_001;"},
    )
    odbc = airflow_adapter.mamut_odbc_string("mamut_x")
    assert odbc == "DRIVER={FreeTDS};Server=mamut;Port=1433;Database=MAMUT_001;UID=reader;PWD={p;w}}d};"


def test_mamut_connection_without_odbc_string_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, "mamut_y", conn_type="odbc", password="hidden-pw")
    with pytest.raises(ValueError, match="odbc_connection_string") as raised:
        airflow_adapter.mamut_odbc_string("mamut_y")
    assert "hidden-pw" not in str(raised.value)


def test_staging_url_defaults_to_sqlite_beside_airflow_home(monkeypatch, tmp_path) -> None:
    from starmamut.config import Settings

    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    settings = Settings.model_validate({"version": 1, "mamut": {"vat_codes": {25: 1}}, "shops": {}})
    assert airflow_adapter.staging_url(settings) == f"sqlite:///{tmp_path / 'starmamut_staging.db'}"
