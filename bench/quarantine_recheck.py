"""Benchmark: what re-reading the open quarantine costs orders_to_mamut, in requests per open entry.

The demo shop's orders go to a Mamut mock without the articles, with ``unknown_sku: quarantine``, so every
eligible order is quarantined. Then three runs with nothing new in the shop: one with those entries open, one
after the articles are created in Mamut (the entries heal), one with nothing held. The extra requests per open
entry are (requests with K open − requests with none) / K; the rule is at most one.

    .venv/bin/python bench/quarantine_recheck.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "include"))
sys.path.insert(0, str(REPO / "devtools"))  # starmamut_devtools: the sandbox and the Mamut mock

from starmamut.config import Settings  # noqa: E402
from starmamut.jobs import orders_to_mamut, products_to_mamut  # noqa: E402
from starmamut.jobs.common import JobContext, RunParams  # noqa: E402
from starmamut.mamut.gateway import MamutGateway  # noqa: E402
from starmamut.mamut.schema_map import SchemaMap  # noqa: E402
from starmamut.staging.store import StagingStore  # noqa: E402
from starmamut.starweb.client import StarwebClient, StarwebCredentials  # noqa: E402
from starmamut_devtools.mamut_mock import create_mock_company_database, sqlite_odbc_string  # noqa: E402
from starmamut_devtools.sandbox import start_sandbox  # noqa: E402

SETTINGS = {
    "version": 1,
    "mamut": {"vat_codes": {25: 1, 12: 2, 6: 3, 0: 4, 25.5: 5}},
    "shops": {
        "demo": {
            "name": "Demo",
            "flow": "ecom",
            "starweb_conn_id": "unused",
            "orders_to_mamut": {
                "eligible_statuses": ["created", "picking", "completed", 5, 6],
                "unknown_sku": "quarantine",
                "quarantine_threshold": 1.0,
            },
        }
    },
}


def main() -> None:
    settings = Settings.model_validate(SETTINGS)
    with tempfile.TemporaryDirectory() as tmp, start_sandbox(seed="demo") as sandbox:
        odbc = sqlite_odbc_string(Path(tmp) / "mamut.db")
        create_mock_company_database(odbc, seed="reference")
        gateway = MamutGateway(odbc, SchemaMap.load())
        store = StagingStore.from_url(f"sqlite:///{Path(tmp) / 'staging.db'}")
        store.migrate()
        credentials = StarwebCredentials(sandbox.base_url, sandbox.client_id, sandbox.client_secret)

        def ctx() -> JobContext:
            return JobContext(
                settings=settings,
                shop=settings.shop("demo"),
                store=store,
                open_starweb=lambda: StarwebClient(credentials),
                open_mamut=lambda: gateway,
                params=RunParams(),
            )

        def run() -> dict[str, Any]:
            return orders_to_mamut.run(ctx())

        first = run()
        held = len(store.open_quarantine("demo", orders_to_mamut.ENTITY))
        with_held = run()
        products_to_mamut.run(ctx())  # the articles appear in Mamut: the held orders can go through
        healing = run()
        none_held = run()
        gateway.close()
    extra = (with_held["requests"] - none_held["requests"]) / held if held else 0.0
    print(f"orders read: {first['read']}, quarantined on the first run: {held}")
    print(
        f"requests, nothing new in the shop: {with_held['requests']} with {held} open entries, "
        f"{none_held['requests']} with none ({healing['loaded']} orders healed and loaded in between)"
    )
    print(f"extra requests per open entry: {extra:.2f} (at most 1)")


if __name__ == "__main__":
    main()
