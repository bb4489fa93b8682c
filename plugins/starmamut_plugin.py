"""The Starmamut plugin: Airflow loads this file from the plugins folder and registers what it names.

* the Starmamut view, a FastAPI app mounted at ``/starmamut`` in the API server, shown in the UI's navigation as
  "Starmamut" (an external view opened inside the UI);
* a root middleware that lets the Connections page's Test button test saved ``starweb`` and ``mamut_odbc``
  Connections (it drops the ``port: 0`` the UI sends for their hidden port).

All of it lives in the engine (``include/starmamut/operator_view``); this file only registers it.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from starmamut.operator_view.app import MOUNT, create_app
from starmamut.operator_view.connection_test import ConnectionTestPortMiddleware


class StarmamutPlugin(AirflowPlugin):
    name = "starmamut"
    fastapi_apps = [{"app": create_app(), "url_prefix": MOUNT, "name": "Starmamut"}]
    fastapi_root_middlewares = [
        {"middleware": ConnectionTestPortMiddleware, "name": "Starmamut: test saved Starweb/Mamut connections"}
    ]
    external_views = [
        {
            "name": "Starmamut",
            "href": MOUNT.lstrip("/") + "/",
            "url_route": "starmamut",
            "destination": "nav",
            "icon": MOUNT.lstrip("/") + "/icon.svg",
        }
    ]
