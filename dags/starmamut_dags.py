"""One DAG per shop × job, generated from config/shops.yaml. Wiring only: the work lives in include/starmamut.

A config error raises here with the file, shop and field, so it shows as this file's import error in the UI.
Heavy modules (pandas, Great Expectations, the clients) are imported inside the tasks, not at parse time.
"""

from __future__ import annotations

import importlib
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param, get_current_context, task

from starmamut.config import ShopConfig, load_settings
from starmamut.jobs.registry import JobSpec, dag_id, jobs_for_shop

DEFAULT_ARGS = {
    "owner": "starmamut",
    "retries": 3,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=15),
}

PARAMS = {
    "dry_run": Param(False, type="boolean", description="Read, stage, validate and report; write nothing."),
    "full_refresh": Param(False, type="boolean", description="Ignore the watermark and the change ledger."),
    "resync_ids": Param([], type="array", description="Starweb ids to re-sync (only these are read)."),
    "skus": Param([], type="array", description="Article numbers to sync (only these are read)."),
    "since": Param("", type="string", description="Read from this date/time (ISO 8601) instead of the watermark."),
}


def _doc(shop: ShopConfig, job: JobSpec) -> str:
    return f"""### {job.name} · {shop.name} (`{shop.id}`, flow `{shop.flow}`)

{job.summary}

**Tasks:** `extract` (Starweb → staging batch) → `validate` (Great Expectations; failing records are
quarantined with a reason) → `load` (only new or changed records, idempotent) → `report` (counts).

**Manual run options:** {", ".join(f"`{name}` ({PARAMS[name].description})" for name in job.params)}

Starweb Connection `{shop.starweb_conn_id}` · budget {shop.request_budget_per_minute} requests/min · pool `{shop.pool}`.
"""


def _steps(job: JobSpec) -> Any:
    """The job's engine module, imported inside the task (heavy imports stay out of DAG parsing)."""
    return importlib.import_module(job.module)


def _run(job: JobSpec, step: str, shop_id: str, *args: Any) -> Any:
    """One step of a job inside a task; a failure names the shop and its Connections."""
    from starmamut.airflow_adapter import errors_name_the_shop, job_context

    with errors_name_the_shop(shop_id):
        return getattr(_steps(job), step)(job_context(shop_id, get_current_context()["params"]), *args)


def job_dag(shop: ShopConfig, job: JobSpec) -> DAG:
    """extract → validate → load → report; the steps that call Starweb run in the shop's pool."""
    with DAG(
        dag_id=dag_id(shop.id, job.name),
        description=job.summary,
        doc_md=_doc(shop, job),
        schedule=shop.schedule_for(job.name),
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        params={name: PARAMS[name] for name in job.params},
        tags=[f"shop:{shop.id}", f"flow:{shop.flow}", f"job:{job.name}"],
    ) as dag:

        @task(pool=shop.pool)
        def extract() -> dict[str, Any]:
            return _run(job, "extract", shop.id)

        @task
        def validate(extracted: dict[str, Any]) -> dict[str, Any]:
            return _run(job, "validate", shop.id, extracted["batch_id"])

        @task(pool=shop.pool)
        def load(extracted: dict[str, Any], validated: dict[str, Any]) -> dict[str, Any]:
            return _run(job, "load", shop.id, extracted["batch_id"])

        @task
        def report(extracted: dict[str, Any], validated: dict[str, Any], loaded: dict[str, Any]) -> dict[str, Any]:
            return _run(job, "report", shop.id, extracted["batch_id"], extracted, validated, loaded)

        extracted = extract()
        validated = validate(extracted)
        loaded = load(extracted, validated)
        report(extracted, validated, loaded)
    return dag


for _shop in load_settings().shops:
    for _job in jobs_for_shop(_shop.flow, _shop.extra_jobs):
        _dag = job_dag(_shop, _job)
        globals()[_dag.dag_id] = _dag
