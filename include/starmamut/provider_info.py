"""What Airflow learns about this project as a provider (entry point ``apache_airflow_provider`` in
pyproject.toml): the ``starweb`` and ``mamut_odbc`` connection types, their hooks and their UI form.

Airflow calls :func:`get_provider_info` in every process that lists providers, so this module imports nothing:
the hooks themselves are imported only when a connection of their type is used.
"""

from __future__ import annotations

from typing import Any

PACKAGE_NAME = "starmamut"


def get_provider_info() -> dict[str, Any]:
    """The provider description in the shape of Airflow's provider_info.schema.json."""
    return {
        "package-name": PACKAGE_NAME,
        "name": "Starweb and Mamut (starmamut)",
        "description": "Connections to Starweb web shops and to the Mamut One Enterprise company database.",
        "connection-types": [
            {
                "connection-type": "starweb",
                "hook-class-name": "starmamut.airflow_hooks.StarwebHook",
                "hook-name": "Starweb",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "extra"],
                    "relabeling": {"host": "API base URL", "login": "Client ID", "password": "Client secret"},
                    "placeholders": {"host": "https://myshop.starwebserver.se/api/v2", "login": "partner.app"},
                },
            },
            {
                "connection-type": "mamut_odbc",
                "hook-class-name": "starmamut.airflow_hooks.MamutHook",
                "hook-name": "Mamut One Enterprise (ODBC)",
                "conn-fields": {
                    "odbc_connection_string": {
                        "label": "ODBC connection string",
                        "description": "Without UID/PWD: login and password are added from the fields above.",
                        "schema": {"type": ["string", "null"]},
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "schema", "port", "extra"],
                    "relabeling": {"login": "SQL login", "password": "SQL password"},
                    "placeholders": {
                        "login": "starmamut",
                        "odbc_connection_string": (
                            "DRIVER={FreeTDS};Server=mamut-host;Port=1433;Database=<company db>;TDS_Version=7.4"
                        ),
                    },
                },
            },
        ],
    }
