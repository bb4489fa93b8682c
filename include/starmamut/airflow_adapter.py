"""The one engine module that touches Airflow: Connections in, a ready JobContext out.

Secrets are read here, handed to the clients that need them, and never logged or returned.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from starmamut.config import Settings, ShopConfig, config_path, load_settings
from starmamut.jobs.common import JobContext, RunParams
from starmamut.mamut.gateway import MamutGateway
from starmamut.mamut.schema_map import SchemaMap
from starmamut.staging.store import StagingStore, default_staging_url
from starmamut.starweb.client import StarwebClient, StarwebCredentials
from starmamut.starweb.ratelimit import pacer_from_url
from starmamut.starweb.token_cache import StagingTokenCache


def _connection(conn_id: str) -> Any:
    from airflow.sdk import Connection

    return Connection.get(conn_id)


def _extra(conn: Any) -> dict[str, Any]:
    extra = conn.extra or {}
    return json.loads(extra) if isinstance(extra, str) else dict(extra)


def airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow")


def starweb_credentials(conn_id: str) -> StarwebCredentials:
    """Base URL from extra ``base_url`` or the host (with scheme and /api/v2); client id/secret from login/password."""
    conn = _connection(conn_id)
    base_url = _extra(conn).get("base_url") or conn.host
    if not base_url or not str(base_url).startswith(("http://", "https://")):
        raise ValueError(
            f"Connection {conn_id!r}: set extra 'base_url' (or host) to the shop's API base, "
            "e.g. https://myshop.starwebserver.se/api/v2"
        )
    if not conn.login or not conn.password:
        raise ValueError(f"Connection {conn_id!r}: login (client id) and password (client secret) are required")
    return StarwebCredentials(base_url=str(base_url).rstrip("/"), client_id=conn.login, client_secret=conn.password)


def starweb_client(settings: Settings, shop: ShopConfig, store: StagingStore | None = None) -> StarwebClient:
    """A client paced under the shop's own budget, shared by every process running this shop's tasks; with
    ``store``, its access token is shared with them too (kept sealed in staging, see starweb/token_cache.py)."""
    pacer_url = settings.request_pacer_url or (airflow_home() / "starmamut-pacer").as_uri()
    pacer = pacer_from_url(pacer_url, shop.pacer_key, shop.request_budget_per_minute)
    credentials = starweb_credentials(shop.starweb_conn_id)
    tokens = None
    if store is not None:
        tokens = StagingTokenCache(store, shop.id, credentials.client_id, credentials.client_secret)
    return StarwebClient(credentials, pacer=pacer, max_concurrency=shop.max_concurrency, token_cache=tokens)


def mamut_odbc_string(conn_id: str) -> str:
    """The ODBC connection string from extra ``odbc_connection_string``, with login/password added as UID/PWD."""
    conn = _connection(conn_id)
    odbc = _extra(conn).get("odbc_connection_string")
    if not odbc:
        raise ValueError(f"Connection {conn_id!r}: set extra 'odbc_connection_string' (DRIVER=...;Server=...;...)")
    parts = [odbc.rstrip(";")]
    if conn.login:
        parts.append(f"UID={conn.login}")
    if conn.password:
        parts.append("PWD={" + conn.password.replace("}", "}}") + "}")
    return ";".join(parts) + ";"


def mamut_gateway(settings: Settings) -> MamutGateway:
    return MamutGateway(mamut_odbc_string(settings.mamut.conn_id), configured_schema_map(settings))


def configured_schema_map(settings: Settings) -> SchemaMap:
    """The install's schema map named by ``mamut.schema_map`` (the default map when unset)."""
    return _schema_map(settings.mamut.schema_map, settings.mamut.timezone)


@cache
def _schema_map(path: str | None, timezone: str) -> SchemaMap:
    """The install's schema map on the Mamut server's wall clock; a relative path is relative to the config file."""
    return SchemaMap.load(config_path().parent / path if path else None, timezone=ZoneInfo(timezone))


def staging_url(settings: Settings) -> str:
    if not settings.staging_conn_id:
        return default_staging_url(airflow_home())
    conn = _connection(settings.staging_conn_id)
    return _extra(conn).get("sqlalchemy_url") or conn.get_uri()


@cache
def _migrated_store(url: str) -> StagingStore:
    """One store per process, migrated once (a no-op after the first run)."""
    store = StagingStore.from_url(url)
    store.migrate()
    return store


def job_context(shop_id: str, params: Mapping[str, Any] | None = None) -> JobContext:
    """Build a job's context inside a running task from the config and the Airflow Connections it names.

    The one place shadow mode is enforced: a shop that is not ``live`` gets a dry run, whatever the Params say.
    """
    settings = load_settings()
    shop = settings.shop(shop_id)
    run_params = RunParams.from_mapping(params).for_shop(shop.live)
    store = _migrated_store(staging_url(settings))
    return JobContext(
        settings=settings,
        shop=shop,
        store=store,
        open_starweb=lambda: starweb_client(settings, shop, store),
        open_mamut=lambda: mamut_gateway(settings),
        params=run_params,
    )


@contextmanager
def errors_name_the_shop(shop_id: str) -> Iterator[None]:
    """Every error leaving a task names the shop and its Connections, so whoever is paged knows where to look."""
    try:
        yield
    except Exception as exc:
        settings = load_settings()
        shop = settings.shop(shop_id)
        exc.add_note(
            f"shop {shop.id} (flow {shop.flow}): Starweb Connection '{shop.starweb_conn_id}', "
            f"Mamut Connection '{settings.mamut.conn_id}'"
        )
        raise
