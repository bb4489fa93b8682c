"""The benchmarks' latency proxy (devtools latency_proxy): the PostgreSQL Mamut mock at LAN distance.

Every statement through the proxy pays the delay both ways, and the proxy's count of turns agrees with the
gateway's count of round trips, once psqlODBC binds parameters itself (``UseServerSidePrepare=0``; with server-side
prepare it spends five round trips on each statement that has parameters, where SQL Server's driver spends one).
"""

from __future__ import annotations

import time
from pathlib import Path

from starmamut.mamut.gateway import MamutGateway
from starmamut.mamut.schema_map import SchemaMap
from starmamut_devtools.latency_proxy import latency_proxy, read_stats
from starmamut_devtools.mamut_mock import create_mock_company_database
from tests.fixtures.databases import PG_HOST, PG_PORT, PG_USER, fresh_postgres_database

DELAY_MS = 5.0  # large against scheduling noise on a loaded machine


def test_each_round_trip_pays_the_delay_both_ways_and_is_counted_as_the_gateway_counts_it(tmp_path: Path) -> None:
    stats_path = tmp_path / "proxy.json"
    with fresh_postgres_database("latency_proxy") as database:
        create_mock_company_database(
            f"DRIVER={{PostgreSQL Unicode}};Server={PG_HOST};Port={PG_PORT};Database={database};Uid={PG_USER};"
        )
        with latency_proxy((PG_HOST, PG_PORT), DELAY_MS, stats_path) as (host, port):
            odbc = (
                f"DRIVER={{PostgreSQL Unicode}};Server={host};Port={port};Database={database};Uid={PG_USER};"
                "UseServerSidePrepare=0;"  # else psqlODBC spends 5 round trips on a statement with parameters
            )
            gateway = MamutGateway(odbc, SchemaMap.load())
            with gateway.transaction() as tx:  # connects (not counted by the gateway)
                tx.select("warehouse", ["warehouse_id"])
            time.sleep(1.5)
            before_proxy, before_gateway = read_stats(stats_path)["round_trips"], gateway.round_trips
            started = time.monotonic()
            with gateway.transaction() as tx:
                for _ in range(10):
                    tx.select("warehouse", ["warehouse_id"])
                tx.insert_many("warehouse", [{"warehouse_id": 100 + n, "description": f"W{n}"} for n in range(50)])
            elapsed = time.monotonic() - started
            trips = gateway.round_trips - before_gateway
            time.sleep(1.5)
            proxied = read_stats(stats_path)["round_trips"] - before_proxy
            gateway.close()
    assert trips == 10 + 1 + 1  # selects, one multi-row insert, commit
    assert proxied == trips, "the proxy sees as many turns as the gateway counts"
    assert elapsed >= trips * 2 * DELAY_MS / 1000, "every turn paid the delay both ways"
