"""DAG integrity over the whole dags/ folder: every generated DAG imports and carries the conventions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT

DAGS = REPO_ROOT / "dags"

THREE_SHOPS = {
    "version": 1,
    "mamut": {"conn_id": "mamut_default", "vat_codes": {25: 1}},
    "shops": {
        "se": {
            "name": "Sverige",
            "flow": "ecom",
            "starweb_conn_id": "starweb_se",
            "extra_jobs": ["order_status_to_starweb"],
        },
        "no": {
            "name": "Norge",
            "flow": "combo",
            "starweb_conn_id": "starweb_no",
            "schedules": {"products_to_mamut": "15 * * * *"},
        },
        "b2b": {"name": "Grossist", "flow": "erp", "starweb_conn_id": "starweb_b2b"},
    },
}


def dagbag(monkeypatch: pytest.MonkeyPatch, config: Path | None = None):
    from airflow.dag_processing.dagbag import DagBag

    if config:
        monkeypatch.setenv("STARMAMUT_CONFIG", str(config))
    return DagBag(dag_folder=str(DAGS))


@pytest.fixture
def three_shop_config(tmp_path: Path) -> Path:
    path = tmp_path / "shops.yaml"
    path.write_text(yaml.safe_dump(THREE_SHOPS), encoding="utf-8")
    return path


def test_shipped_config_generates_the_demo_dag_without_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STARMAMUT_CONFIG", raising=False)
    bag = dagbag(monkeypatch)
    assert bag.import_errors == {}
    assert sorted(bag.dag_ids) == [
        "demo__daily_report",
        "demo__initial_product_sync",
        "demo__orders_to_mamut",
        "demo__products_to_mamut",
    ]


def test_every_dag_follows_the_conventions(monkeypatch: pytest.MonkeyPatch, three_shop_config: Path) -> None:
    bag = dagbag(monkeypatch, three_shop_config)
    assert bag.import_errors == {}
    # erp shops do not run products_to_mamut (Mamut governs their articles); every flow transfers orders;
    # an ecom shop reports order status only when it turns the job on
    assert sorted(bag.dag_ids) == [
        "b2b__daily_report",
        "b2b__initial_product_sync",
        "b2b__order_status_to_starweb",
        "b2b__orders_to_mamut",
        "b2b__prices_to_starweb",
        "b2b__products_to_starweb",
        "b2b__stock_to_starweb",
        "no__daily_report",
        "no__initial_product_sync",
        "no__order_status_to_starweb",
        "no__orders_to_mamut",
        "no__prices_to_starweb",
        "no__products_to_mamut",
        "no__stock_to_starweb",
        "se__daily_report",
        "se__initial_product_sync",
        "se__order_status_to_starweb",
        "se__orders_to_mamut",
        "se__products_to_mamut",
    ]
    for dag_id, dag in bag.dags.items():
        shop, _, job = dag_id.partition("__")
        if job in ("initial_product_sync", "daily_report"):
            continue  # their own shapes: test_migration_dags_are_manual_chunked_and_pooled, test_daily_report_dags
        assert dag.is_paused_upon_creation is True  # unpausing is the operator's act (README "Shadow mode")
        assert f"shop:{shop}" in dag.tags and f"job:{job}" in dag.tags
        assert any(tag.startswith("flow:") for tag in dag.tags)
        assert dag.doc_md and job in dag.doc_md
        assert dag.max_active_runs == 1
        assert dag.catchup is False
        assert set(dag.params) >= {"dry_run", "full_refresh"}
        assert all(f"`{name}`" in dag.doc_md for name in dag.params)
        assert [t.task_id for t in dag.topological_sort()] == ["extract", "validate", "load", "report"]
        for task in dag.tasks:
            assert task.retries >= 1 and task.retry_exponential_backoff
        assert dag.get_task("extract").pool == f"starweb_{shop}"
        assert dag.get_task("load").pool == f"starweb_{shop}"
    assert bag.dags["no__products_to_mamut"].schedule == "15 * * * *"
    assert bag.dags["se__products_to_mamut"].schedule == "@hourly"
    assert bag.dags["se__orders_to_mamut"].schedule == "*/5 * * * *"
    assert "since" in bag.dags["se__orders_to_mamut"].params and "since" not in bag.dags["se__products_to_mamut"].params


def test_migration_dags_are_manual_chunked_and_pooled(monkeypatch: pytest.MonkeyPatch, three_shop_config: Path) -> None:
    bag = dagbag(monkeypatch, three_shop_config)
    assert bag.import_errors == {}
    for shop in ("se", "no", "b2b"):
        dag = bag.dags[f"{shop}__initial_product_sync"]
        assert dag.schedule is None and dag.max_active_runs == 1 and dag.catchup is False
        assert f"shop:{shop}" in dag.tags and "job:initial_product_sync" in dag.tags
        assert [t.task_id for t in dag.topological_sort()] == [
            "start",
            "extract",
            "migrate_chunk",
            "push_prices",
            "push_stock",
            "report",
        ]
        assert set(dag.params) == {
            "direction",
            "dry_run",
            "skus",
            "chunk_size",
            "on_conflict",
            "include_prices",
            "include_price_lists",
            "include_stock",
            "restart",
        }
        assert all(f"`{name}`" in dag.doc_md for name in dag.params)
        assert dag.get_task("migrate_chunk").is_mapped and not dag.get_task("extract").is_mapped
        for task_id in ("extract", "migrate_chunk", "push_prices", "push_stock"):
            assert dag.get_task(task_id).pool == f"starweb_{shop}"
        for task in dag.tasks:
            assert task.retries >= 1
    # The default direction follows who governs the articles.
    assert bag.dags["b2b__initial_product_sync"].params["direction"] == "mamut_to_starweb"
    assert bag.dags["se__initial_product_sync"].params["direction"] == "starweb_to_mamut"


def test_daily_report_dags(monkeypatch: pytest.MonkeyPatch, three_shop_config: Path) -> None:
    """One per shop: one task, daily at 06:00 UTC unless the shop's alerts say otherwise, paused when created."""
    bag = dagbag(monkeypatch, three_shop_config)
    assert bag.import_errors == {}
    for shop in ("se", "no", "b2b"):
        dag = bag.dags[f"{shop}__daily_report"]
        assert [task.task_id for task in dag.tasks] == ["report"]
        assert dag.schedule == "0 6 * * *" and dag.catchup is False and dag.is_paused_upon_creation is True
        assert f"shop:{shop}" in dag.tags and "job:daily_report" in dag.tags
        assert set(dag.params) == {"day"} and "`day`" in dag.doc_md


def test_bad_config_is_an_import_error_naming_the_field(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    broken = dict(THREE_SHOPS, shops={"se": {"name": "Sverige", "flow": "ecom"}})
    path = tmp_path / "shops.yaml"
    path.write_text(yaml.safe_dump(broken), encoding="utf-8")
    bag = dagbag(monkeypatch, path)
    assert bag.dag_ids == []
    (message,) = bag.import_errors.values()
    assert "shop 'se': field 'starweb_conn_id'" in message


def test_parsing_imports_no_heavy_modules() -> None:
    """Great Expectations, pandas, ODBC and the Starweb client load inside tasks, never at parse time."""
    code = (
        "import runpy, sys; runpy.run_path(sys.argv[1]);"
        "heavy = ('great_expectations', 'pandas', 'pyodbc', 'starmamut.starweb.client');"
        "heavy = sorted(m for m in heavy if m in sys.modules);"
        "print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(DAGS / "starmamut_dags.py")],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "include")},
    )
    assert out.stdout.strip().splitlines()[-1:] in ([""], []), out.stdout


def test_an_optional_job_outside_its_flows_is_a_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = dict(THREE_SHOPS, shops={"no": dict(THREE_SHOPS["shops"]["no"], extra_jobs=["products_to_mamut"])})
    path = tmp_path / "shops.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    (message,) = dagbag(monkeypatch, path).import_errors.values()
    assert "shop 'no'" in message and "'products_to_mamut' is not an optional job of flow 'combo'" in message


def test_a_bad_shop_is_an_import_error_and_hides_no_other_shop(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """One shop's bad cron string names the file, shop and job; the other shops' DAGs still load."""
    config = yaml.safe_load(yaml.safe_dump(THREE_SHOPS))
    config["shops"]["no"]["schedules"] = {"products_to_mamut": "61 * * * *"}
    path = tmp_path / "shops.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    bag = dagbag(monkeypatch, path)
    (message,) = bag.import_errors.values()
    assert f"{path}: shop 'no': field 'schedules.products_to_mamut': " in message
    assert "'61 * * * *'" in message
    assert not any(dag_id.startswith("no__") for dag_id in bag.dag_ids)
    assert "starmamut__unbuildable_shops" not in bag.dag_ids
    assert {"se__orders_to_mamut", "se__initial_product_sync", "b2b__stock_to_starweb"} <= set(bag.dag_ids)


def test_a_shop_whose_dags_fail_to_build_hides_no_other_shop(
    monkeypatch: pytest.MonkeyPatch, three_shop_config: Path
) -> None:
    """An exception while building one shop's DAGs is reported with the shop; the others load."""
    from starmamut.jobs import registry

    real_jobs_for_shop = registry.jobs_for_shop

    def jobs_for_shop(flow: str, extra_jobs: list[str]):
        if flow == "erp":
            raise RuntimeError("boom while building")
        return real_jobs_for_shop(flow, extra_jobs)

    monkeypatch.setattr(registry, "jobs_for_shop", jobs_for_shop)  # the DAG file imports it when the bag loads
    bag = dagbag(monkeypatch, three_shop_config)
    (message,) = bag.import_errors.values()
    assert "shop 'b2b': DAGs not built: RuntimeError: boom while building" in message
    assert not any(dag_id.startswith("b2b__") for dag_id in bag.dag_ids)
    assert {"se__orders_to_mamut", "no__prices_to_starweb", "no__initial_product_sync"} <= set(bag.dag_ids)
