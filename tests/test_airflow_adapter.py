"""Airflow Connections → clients: the conventions the README documents, and secrets kept out of errors."""

from __future__ import annotations

import json

import pytest

from starmamut import airflow_adapter
from starmamut.jobs.common import format_report


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


@pytest.mark.parametrize(
    ("live", "params", "dry_run", "label"),
    [
        (False, {}, True, "DRY RUN (shadow mode: shop not live)"),  # a scheduled run of a shop in shadow mode
        (False, {"dry_run": False, "resync_ids": [7]}, True, "DRY RUN (shadow mode: shop not live)"),
        (True, {}, False, ""),
        (True, {"dry_run": True}, True, "DRY RUN"),
    ],
)
def test_a_shop_that_is_not_live_only_ever_dry_runs(shop_config, monkeypatch, tmp_path, live, params, dry_run, label):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    shop = {"name": "Alpha", "flow": "ecom", "starweb_conn_id": "starweb_alpha", "live": live}
    shop_config({"version": 1, "mamut": {"vat_codes": {25: 1}}, "shops": {"alpha": shop}})
    ctx = airflow_adapter.job_context("alpha", params)
    assert (ctx.params.dry_run, ctx.params.dry_run_label) == (dry_run, label)
    assert ctx.params.resync_ids == tuple(params.get("resync_ids", ()))  # the other options stand
    title = format_report("shop alpha · products_to_mamut · batch b1", {"read": 3}, ctx.params).splitlines()[0]
    assert title == (f"{label} · " if label else "") + "shop alpha · products_to_mamut · batch b1"
