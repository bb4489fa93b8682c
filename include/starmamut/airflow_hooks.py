"""Airflow hooks for the two systems, so a Connection of type ``starweb`` or ``mamut_odbc`` can be tested
from the UI's Test button, the REST API (``POST /api/v2/connections/test``) or ``airflow connections test``.

Airflow finds them through this project's provider entry point (:mod:`starmamut.provider_info`). Each hook
reads its Connection the one way the DAGs do (:mod:`starmamut.airflow_adapter`) and hands out the engine's
own client. ``test_connection`` returns ``(ok, message)`` and never raises: Airflow shows a raised
exception's text verbatim, so every failure is turned into a message that holds no secret.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook

from starmamut.airflow_adapter import configured_schema_map, mamut_odbc_string, starweb_credentials
from starmamut.config import ConfigError, load_settings
from starmamut.mamut.gateway import MamutGateway
from starmamut.mamut.schema_map import SchemaMap, SchemaMapError
from starmamut.starweb.client import StarwebClient, StarwebCredentials

TEST_TIMEOUT_SECONDS = 10
"""A test answers while the person waits: one retry and short timeouts, not a task's patience."""


class StarwebHook(BaseHook):
    """A Starweb shop's API: host = API base URL (``https://<shop>.starwebserver.se/api/v2``),
    login = client id, password = client secret."""

    conn_name_attr = "starweb_conn_id"
    default_conn_name = "starweb_default"
    conn_type = "starweb"
    hook_name = "Starweb"

    def __init__(self, starweb_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.starweb_conn_id = starweb_conn_id

    def get_credentials(self) -> StarwebCredentials:
        """Base URL and client credentials; ValueError naming the Connection and field when one is missing."""
        return starweb_credentials(self.starweb_conn_id)

    def get_conn(self, **client_options: Any) -> StarwebClient:
        """A new client (the caller closes it); options go to :class:`StarwebClient` (pacer, max_concurrency, …)."""
        return StarwebClient(self.get_credentials(), **client_options)

    def test_connection(self) -> tuple[bool, str]:
        """Obtain a token and read the shop's name."""
        try:
            client = self.get_conn(max_retries=1, timeout=TEST_TIMEOUT_SECONDS, backoff_base=0.2)
        except ValueError as exc:
            return False, str(exc)
        with client:
            return client.test_connection()


class MamutHook(BaseHook):
    """The Mamut company database over ODBC: extra ``odbc_connection_string`` (driver, server, port, database,
    or ``DSN=…``), login and password as the SQL login. Tables and columns follow the config's schema map."""

    conn_name_attr = "mamut_conn_id"
    default_conn_name = "mamut_default"
    conn_type = "mamut_odbc"
    hook_name = "Mamut One Enterprise (ODBC)"

    def __init__(
        self, mamut_conn_id: str = default_conn_name, schema_map: SchemaMap | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.mamut_conn_id = mamut_conn_id
        self._schema_map = schema_map

    def get_conn(self, *, timeout_seconds: int = 30) -> MamutGateway:
        """A gateway on the company database (the caller closes it)."""
        schema_map = self._schema_map or configured_schema_map(load_settings())
        return MamutGateway(mamut_odbc_string(self.mamut_conn_id), schema_map, timeout_seconds=timeout_seconds)

    def test_connection(self) -> tuple[bool, str]:
        """Log in, land in the configured company database and find the product table with every mapped column."""
        try:
            gateway = self.get_conn(timeout_seconds=TEST_TIMEOUT_SECONDS)
        except (ValueError, ConfigError, SchemaMapError) as exc:
            return False, str(exc)
        with gateway:
            return gateway.test_connection()
