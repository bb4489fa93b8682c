"""One DAG per shop × job, generated from config/shops.yaml. Wiring only: the work lives in include/starmamut.

A config error names the file, shop and field and shows as this file's import error in the UI; a shop whose
config or DAGs are bad is left out and reported that way while the other shops' DAGs still load.
Heavy modules (pandas, Great Expectations, the clients) are imported inside the tasks, not at parse time.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param, get_current_context, task

from starmamut.alerts import failure_callbacks
from starmamut.config import ShopConfig, config_path, load_settings_by_shop
from starmamut.jobs.registry import DAILY_REPORT, MIGRATION, JobSpec, dag_id, jobs_for_shop
from starmamut.transforms import check_shop_transforms

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
    "accept_quarantine": Param(
        False,
        type="boolean",
        description="Release a batch stopped at the quality gate: keep its failing records quarantined, load the rest.",
    ),
    "on_conflict": Param(
        "quarantine",
        enum=["quarantine", "link_and_skip", "overwrite", "report_only"],
        description="A family whose one shop product has other SKUs or axes: quarantine it, link "
        "it and write nothing, overwrite the product, or only list it.",
    ),
}


def _default_args(shop: ShopConfig, job: str) -> dict[str, Any]:
    """Retries, and the shop's failure alert (alerts.py) when it has a channel for one."""
    return {**DEFAULT_ARGS, "on_failure_callback": failure_callbacks(shop, job)}


def _tags(shop: ShopConfig, job: str) -> list[str]:
    return [f"shop:{shop.id}", f"flow:{shop.flow}", f"job:{job}", *([] if shop.live else ["shadow-mode"])]


def _mode(shop: ShopConfig) -> str:
    """The DAG docs' line on shadow mode: what a run of this shop writes."""
    if shop.live:
        return "The shop is **live**: runs write (a manual run with `dry_run` writes nothing)."
    return (
        "**Shadow mode:** the shop is not live (`live: false` in the config), so every run, scheduled or "
        "manual, is a dry run: it records what it would write and writes nothing. Arm it with `live: true`."
    )


def _doc(shop: ShopConfig, job: JobSpec) -> str:
    return f"""### {job.name} · {shop.name} (`{shop.id}`, flow `{shop.flow}`)

{job.summary}

{_mode(shop)}

**Tasks:** `extract` (Starweb → staging batch) → `validate` (Great Expectations; failing records are
quarantined with a reason) → `load` (only new or changed records, idempotent) → `report` (counts).

**Manual run options:** {", ".join(f"`{name}` ({PARAMS[name].description})" for name in job.params)}

Starweb Connection `{shop.starweb_conn_id}` · budget {shop.request_budget_per_minute} requests/min · pool `{shop.pool}`.
"""


def _steps(job: JobSpec) -> Any:
    """The job's class from the registry, imported inside the task (heavy imports stay out of DAG parsing)."""
    return job.steps()


def _run(job: JobSpec, step: str, shop_id: str, *args: Any) -> Any:
    """One step of a job inside a task; a failure names the shop and its Connections."""
    from starmamut.airflow_adapter import errors_name_the_shop, job_context
    from starmamut.jobs.common import run_step

    with errors_name_the_shop(shop_id):
        return run_step(_steps(job), step, job_context(shop_id, get_current_context()["params"]), *args)


def _report(job: str, shop_id: str, run: Any, batch_id: str) -> Any:
    """The report step, then the shop's open quarantine recorded on the batch and an alert when it grew."""
    from starmamut.airflow_adapter import errors_name_the_shop, job_context
    from starmamut.alerts import after_report

    result = run()
    context = get_current_context()
    with errors_name_the_shop(shop_id):
        ctx = job_context(shop_id, context["params"])
        after_report(ctx.shop, job, ctx.store, batch_id, context)
    return result


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
        is_paused_upon_creation=True,
        default_args=_default_args(shop, job.name),
        params={name: PARAMS[name] for name in job.params},
        tags=_tags(shop, job.name),
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
            return _report(
                job.name,
                shop.id,
                lambda: _run(job, "report", shop.id, extracted["batch_id"], extracted, validated, loaded),
                extracted["batch_id"],
            )

        extracted = extract()
        validated = validate(extracted)
        loaded = load(extracted, validated)
        report(extracted, validated, loaded)
    return dag


MIGRATION_PARAMS = {
    "dry_run": Param(
        False, type="boolean", description="Report exactly what would be created, linked and skipped; write nothing."
    ),
    "skus": Param([], type="array", description="Only the product families holding these article numbers."),
    "chunk_size": Param(
        500,
        type="integer",
        minimum=1,
        maximum=10_000,
        description="Product families per chunk task (each chunk is retried on its own).",
    ),
    "on_conflict": Param(
        "link_and_skip",
        enum=["link_and_skip", "overwrite", "report_only"],
        description="A product the target already has (same SKUs): link it and leave it, "
        "link it and overwrite it, or only list it.",
    ),
    "include_prices": Param(True, type="boolean", description="Move the base price."),
    "include_price_lists": Param(True, type="boolean", description="Move the mapped price lists."),
    "include_stock": Param(True, type="boolean", description="Move stock and stock status."),
    "restart": Param(
        False,
        type="boolean",
        description="Start over instead of resuming an unfinished run with "
        "the same options (what it moved is found linked).",
    ),
}


def _migration_doc(shop: ShopConfig) -> str:
    return f"""### {MIGRATION} · {shop.name} (`{shop.id}`)

Moves the whole product catalogue once, when a shop or an ERP is first connected: `starweb_to_mamut` (a new
ERP) or `mamut_to_starweb` (a new shop), matching on article number (SKU). Manual only.

**Tasks:** `start` (resumes the unfinished run with the same options, if any) → `extract` (source catalogue →
staging, both sides' SKUs indexed; Starweb → Mamut it also loads each chunk as soon as its pages are read) →
`migrate_chunk` × N (checks, matching, load of what is left; each chunk retried on its own)
→ `push_prices`, `push_stock` (Mamut → Starweb only) → `report` (counts, conflicts, quarantined families with
reasons, requests; the report file's path is in the task log).

**Trigger again to resume** a run that failed or was stopped: nothing is duplicated or started over.

**Options:** `direction` (which side is the source), {
        ", ".join(f"`{name}` ({param.description})" for name, param in MIGRATION_PARAMS.items())
    }

{_mode(shop)}

Starweb Connection `{shop.starweb_conn_id}` · budget {shop.request_budget_per_minute} requests/min · pool `{shop.pool}`.
"""


def _migrate(step: str, shop_id: str, *args: Any) -> Any:
    """One step of the migration inside a task; a failure names the shop and its Connections."""
    from starmamut.airflow_adapter import errors_name_the_shop, job_context
    from starmamut.jobs import initial_product_sync as migration

    params = get_current_context()["params"]
    with errors_name_the_shop(shop_id):
        return getattr(migration, step)(
            job_context(shop_id, params), migration.MigrationOptions.from_mapping(params), *args
        )


def migration_dag(shop: ShopConfig) -> DAG:
    """start → extract → migrate_chunk (one mapped task per chunk) → push_prices → push_stock → report."""
    default_direction = "mamut_to_starweb" if shop.flow == "erp" else "starweb_to_mamut"
    with DAG(
        dag_id=dag_id(shop.id, MIGRATION),
        description="Initial product migration in either direction, resumable and chunked.",
        doc_md=_migration_doc(shop),
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,
        is_paused_upon_creation=True,
        default_args=_default_args(shop, MIGRATION),
        params={
            "direction": Param(
                default_direction,
                enum=["starweb_to_mamut", "mamut_to_starweb"],
                description="Which side holds the catalogue to move.",
            ),
            **MIGRATION_PARAMS,
        },
        tags=_tags(shop, MIGRATION),
    ) as dag:

        @task
        def start() -> dict[str, Any]:
            return _migrate("start", shop.id)

        @task(pool=shop.pool)
        def extract(started: dict[str, Any]) -> list[dict[str, Any]]:
            return _migrate("extract", shop.id, started["batch_id"])

        # One chunk at a time: each holds the shop's product, price and stock leases while it runs.
        @task(pool=shop.pool, map_index_template="{{ chunk_label }}", max_active_tis_per_dagrun=1)
        def migrate_chunk(chunk: dict[str, Any]) -> dict[str, Any]:
            get_current_context()["chunk_label"] = (  # type: ignore[typeddict-unknown-key]
                f"chunk {chunk['index'] + 1}/{chunk['chunks']}: {chunk['first']} … {chunk['last']}"
            )
            return _migrate("migrate_chunk", shop.id, chunk)

        @task(pool=shop.pool)
        def push_prices(chunks: list[dict[str, Any]]) -> dict[str, Any]:
            return _migrate("push_values", shop.id, "prices")

        @task(pool=shop.pool)
        def push_stock(prices: dict[str, Any]) -> dict[str, Any]:
            return _migrate("push_values", shop.id, "stock")

        @task
        def report(
            started: dict[str, Any], chunks: list[dict[str, Any]], prices: dict[str, Any], stock: dict[str, Any]
        ) -> dict[str, Any]:
            # By index, not by iterating: Airflow ends an iteration by asking for one result past the last, and
            # logs that miss as "[error] XCom not found" in an otherwise clean task log.
            results = [chunks[index] for index in range(len(chunks))]
            return _report(
                MIGRATION,
                shop.id,
                lambda: _migrate("report", shop.id, started["batch_id"], results, [prices, stock]),
                started["batch_id"],
            )

        started = start()
        chunks = migrate_chunk.expand(chunk=extract(started))
        prices = push_prices(chunks)
        stock = push_stock(prices)
        report(started, chunks, prices, stock)
    return dag


def _daily_report_doc(shop: ShopConfig) -> str:
    alerts = shop.alerts
    channels = ", ".join(alerts.channels) or "none (the report is only stored)"
    return f"""### {DAILY_REPORT} · {shop.name} (`{shop.id}`)

Yesterday's runs per job (runs, their statuses, their counts added up) and the open quarantine, as a Markdown
file under `reports/{shop.id}/` in the Airflow home (`$STARMAMUT_REPORTS_DIR` if set), sent to the shop's
alert channels: {channels}. "Yesterday" is the day before the run's date on the Mamut clock
(`mamut.timezone`); trigger with `day` (YYYY-MM-DD) for another day.

{_mode(shop)}
"""


def daily_report_dag(shop: ShopConfig) -> DAG:
    """One task: build yesterday's report for the shop, store it, send it (alerts.py)."""
    with DAG(
        dag_id=dag_id(shop.id, DAILY_REPORT),
        description="Yesterday's runs per job and the open quarantine, stored and sent to the shop's alerts.",
        doc_md=_daily_report_doc(shop),
        schedule=shop.alerts.daily_report,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,
        is_paused_upon_creation=True,
        default_args=_default_args(shop, DAILY_REPORT),
        params={
            "day": Param(
                "",
                type="string",
                description="The day to report (YYYY-MM-DD); empty = the day before the run's date.",
            )
        },
        tags=_tags(shop, DAILY_REPORT),
    ) as dag:

        @task
        def report() -> dict[str, Any]:
            from zoneinfo import ZoneInfo

            from starmamut.airflow_adapter import errors_name_the_shop, job_context
            from starmamut.alerts import report_day, run_daily_report

            context = get_current_context()
            with errors_name_the_shop(shop.id):
                ctx = job_context(shop.id)
                day = report_day(
                    context.get("logical_date"),
                    context["params"].get("day"),
                    ZoneInfo(ctx.settings.mamut.timezone),
                )
                return run_daily_report(ctx.settings, ctx.shop, ctx.store, day, context)

        report()
    return dag


def unbuildable_shops_dag(errors: dict[str, str]) -> DAG:
    """A stand-in DAG that fails Airflow's per-DAG validation with every bad shop's error.

    Raising at module level would drop the good shops' DAGs with the bad one (Airflow keeps nothing from a file
    that raises). A DAG whose ``validate()`` raises is the one per-DAG failure Airflow records as this file's
    import error while it still loads the file's other DAGs.
    """
    message = "\n".join(errors[shop_id] for shop_id in sorted(errors))

    class UnbuildableShops(DAG):
        def validate(self) -> None:
            raise ValueError(f"shops left out: {', '.join(sorted(errors))}\n{message}")

    return UnbuildableShops(dag_id="starmamut__unbuildable_shops", schedule=None, description=message[:200])


def _build_all() -> dict[str, DAG]:
    """Every good shop's DAGs; a shop whose config or DAGs cannot be built is reported, not fatal to the rest."""
    path = config_path()
    settings, errors = load_settings_by_shop(path)
    dags: dict[str, DAG] = {}
    for shop in settings.shops:
        try:
            check_shop_transforms(shop)  # a transform that cannot be loaded leaves the shop out, named in the UI
            built = [job_dag(shop, job) for job in jobs_for_shop(shop.flow, shop.extra_jobs)]
            built.append(migration_dag(shop))
            built.append(daily_report_dag(shop))
        except Exception as exc:
            errors[shop.id] = f"{path}: shop {shop.id!r}: DAGs not built: {type(exc).__name__}: {exc}"
            continue
        dags.update((dag.dag_id, dag) for dag in built)
    if errors:
        dags["starmamut__unbuildable_shops"] = unbuildable_shops_dag(errors)
    return dags


globals().update(_build_all())
