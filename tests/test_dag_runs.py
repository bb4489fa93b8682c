"""The shops' DAGs run by Airflow (``dag.test()``), on every staging × Mamut backend.

Connections come from AIRFLOW_CONN_* variables exactly as in production, the DAG is parsed from dags/ with the
test's config, and the result is read back from Mamut and from staging.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from starmamut.mamut.catalogue import CatalogueReader
from starmamut.mamut.gateway import MamutGateway
from starmamut.mamut.schema_map import SchemaMap
from starmamut.staging.store import StagingStore
from tests.fixtures.airflow import mamut_connection, run_dag, starweb_connection
from tests.fixtures.mamut import fresh_mock_database
from tests.fixtures.staging import staging_url_for
from tests.test_orders_to_mamut import eligible_orders, mamut_orders
from tests.test_products_to_mamut import expected_mamut_skus, mamut_rows

BACKENDS = [
    ("sqlite", "sqlite"),
    pytest.param(("postgres", "sqlite"), marks=pytest.mark.postgres),
    pytest.param(("sqlite", "postgres"), marks=pytest.mark.postgres),
    pytest.param(("postgres", "postgres"), marks=pytest.mark.postgres),
]

CONFIG = {
    "version": 1,
    "staging_conn_id": "starmamut_staging",
    "mamut": {"conn_id": "mamut_default", "vat_codes": {25: 1, 12: 2, 6: 3, 0: 4, 25.5: 5}},
    "shops": {
        "demo": {
            "name": "Demo",
            "flow": "ecom",
            "starweb_conn_id": "starweb_demo",
            "live": True,
            "orders_to_mamut": {"eligible_statuses": ["created", "picking", "completed", 5, 6]},
            "extra_jobs": ["order_status_to_starweb"],
        },
        "b2b": {"name": "Grossist", "flow": "erp", "starweb_conn_id": "starweb_demo", "live": True},
    },
}


@pytest.fixture(params=BACKENDS, ids=lambda p: f"mamut-{p[0]}-staging-{p[1]}")
def wired(
    request, sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shop_config, airflow_db
) -> Iterator[dict[str, Any]]:
    mamut_backend, staging_backend = request.param
    with fresh_mock_database(mamut_backend, tmp_path, seed="demo") as odbc:
        urls = staging_url_for(staging_backend, tmp_path)
        staging_url = next(urls)
        shop_config(CONFIG)
        monkeypatch.setenv(
            "AIRFLOW_CONN_STARWEB_DEMO", starweb_connection(sandbox.base_url, sandbox.client_id, sandbox.client_secret)
        )
        monkeypatch.setenv("AIRFLOW_CONN_MAMUT_DEFAULT", mamut_connection(odbc))
        monkeypatch.setenv(
            "AIRFLOW_CONN_STARMAMUT_STAGING",
            json.dumps({"conn_type": "generic", "extra": {"sqlalchemy_url": staging_url}}),
        )
        gateway = MamutGateway(odbc, SchemaMap.load())
        store = StagingStore.from_url(staging_url)
        try:
            yield {"gateway": gateway, "store": store}
        finally:
            gateway.close()
            store.close()
            urls.close()


@pytest.mark.slow
def test_dag_loads_the_demo_shop_then_changes_nothing(wired, sandbox) -> None:
    mamut_demo = set(mamut_rows(wired["gateway"]))  # the Mamut demo seed's own catalogue
    first = run_dag("demo__products_to_mamut")
    assert first.state == "success"
    assert set(mamut_rows(wired["gateway"])) == expected_mamut_skus(sandbox) | mamut_demo
    rows = mamut_rows(wired["gateway"])

    second = run_dag("demo__products_to_mamut")
    assert second.state == "success"
    assert mamut_rows(wired["gateway"]) == rows
    latest, previous = wired["store"].latest_batches("demo", limit=2)
    products = len(sandbox.state.product_ids())
    assert previous.counts["loaded"] == products and previous.counts["requests"] > 0
    assert latest.counts["unchanged"] == latest.counts["read"] and latest.counts["loaded"] == 0


@pytest.mark.slow
def test_dag_dry_run_param_writes_nothing(wired, sandbox) -> None:
    before = mamut_rows(wired["gateway"])
    run = run_dag("demo__products_to_mamut", {"dry_run": True})
    assert run.state == "success"
    assert mamut_rows(wired["gateway"]) == before
    (batch,) = wired["store"].latest_batches("demo")
    assert batch.status == "dry_run"
    assert batch.counts["would_create_articles"] == len(expected_mamut_skus(sandbox))


@pytest.mark.slow
def test_orders_dag_transfers_the_eligible_orders_once(wired, sandbox) -> None:
    assert run_dag("demo__products_to_mamut").state == "success"
    assert run_dag("demo__orders_to_mamut").state == "success"
    landed = mamut_orders(wired["gateway"])
    assert set(landed) == {f"demo:{order_id}" for order_id in eligible_orders(sandbox)}
    assert run_dag("demo__orders_to_mamut").state == "success"
    assert mamut_orders(wired["gateway"]) == landed


@pytest.mark.slow
def test_erp_shop_dag_publishes_mamut_articles_to_the_shop(wired, sandbox) -> None:
    assert run_dag("b2b__products_to_starweb").state == "success"
    mamut_skus = {
        article.sku
        for snapshot in CatalogueReader(wired["gateway"]).iter_families()
        for article in (snapshot.family.variants or (snapshot.family.main,))
    }
    assert mamut_skus and all(sandbox.state.find_variant(sku) for sku in mamut_skus)


@pytest.mark.slow
def test_erp_shop_prices_and_stock_dags_push_once_then_send_nothing(wired, sandbox) -> None:
    assert run_dag("b2b__products_to_starweb").state == "success"
    for job in ("prices_to_starweb", "stock_to_starweb"):
        assert run_dag(f"b2b__{job}").state == "success"
        (batch,) = wired["store"].latest_batches("b2b", job=job, limit=1)
        assert batch.counts["loaded"] > 0 and batch.counts["quarantined"] == 0
        sandbox.reset_requests()
        assert run_dag(f"b2b__{job}").state == "success"
        assert sandbox.write_requests() == []


@pytest.mark.slow
def test_order_status_dag_reports_what_happened_in_mamut_once(wired, sandbox) -> None:
    from datetime import UTC, datetime

    from starmamut_devtools.mamut_mock import progress_demo_orders

    assert run_dag("demo__products_to_mamut").state == "success"
    assert run_dag("demo__orders_to_mamut").state == "success"
    progressed = progress_demo_orders(wired["gateway"], "demo", now=datetime.now(UTC))
    assert progressed
    before = len(sandbox.state.status_changes)
    assert run_dag("demo__order_status_to_starweb").state == "success"
    reported = sandbox.state.status_changes[before:]
    assert reported and {change.order_id for change in reported} <= {int(e.split(":")[1]) for e in progressed}
    assert len({change.order_id for change in reported}) == len(reported)  # one status change per order
    assert run_dag("demo__order_status_to_starweb").state == "success"
    assert len(sandbox.state.status_changes) == before + len(reported)


def chunk_task_states(run: Any) -> list[str]:
    """The states of a migration run's mapped ``migrate_chunk`` tasks, one per chunk."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        instances = (
            session.query(TaskInstance)
            .filter(
                TaskInstance.dag_id == run.dag_id,
                TaskInstance.run_id == run.run_id,
                TaskInstance.task_id == "migrate_chunk",
            )
            .all()
        )
        return sorted(str(instance.state) for instance in instances)


@pytest.mark.slow
def test_migration_dag_moves_the_shop_catalogue_in_mapped_chunks_then_changes_nothing(wired, sandbox, capfd) -> None:
    mamut_demo = set(mamut_rows(wired["gateway"]))
    products = len(sandbox.state.product_ids())
    first = run_dag("demo__initial_product_sync", {"direction": "starweb_to_mamut", "chunk_size": 4})
    assert first.state == "success"
    assert "XCom not found" not in capfd.readouterr().out  # report reads the chunks' results by index
    assert chunk_task_states(first) == ["success"] * -(-products // 4)  # one task per chunk of 4 families
    assert set(mamut_rows(wired["gateway"])) == expected_mamut_skus(sandbox) | mamut_demo
    rows = mamut_rows(wired["gateway"])
    (batch,) = wired["store"].latest_batches("demo", job="initial_product_sync", limit=1)
    assert batch.status == "done" and batch.counts["families"] == products
    assert Path(batch.counts["report_file"]).is_file()

    sandbox.reset_requests()
    second = run_dag("demo__initial_product_sync", {"direction": "starweb_to_mamut", "chunk_size": 4})
    assert second.state == "success"
    assert mamut_rows(wired["gateway"]) == rows
    latest = wired["store"].latest_batches("demo", job="initial_product_sync", limit=1)[0]
    assert latest.counts["unchanged"] == products
    assert sandbox.write_requests() == []


@pytest.mark.slow
def test_migration_dag_publishes_mamut_articles_to_the_shop(wired, sandbox) -> None:
    run = run_dag("b2b__initial_product_sync", {"direction": "mamut_to_starweb", "chunk_size": 3})
    assert run.state == "success"
    mamut_skus = {
        article.sku
        for snapshot in CatalogueReader(wired["gateway"]).iter_families()
        for article in (snapshot.family.variants or (snapshot.family.main,))
    }
    (batch,) = wired["store"].latest_batches("b2b", job="initial_product_sync", limit=1)
    assert (
        batch.counts["created"]
        == batch.counts["families"]
        == len(list(CatalogueReader(wired["gateway"]).iter_families()))
    )
    assert {sku for sku in mamut_skus if not sandbox.state.find_variant(sku)} == set()
    assert wired["store"].open_quarantine("b2b") == []
