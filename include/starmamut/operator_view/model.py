"""What the Starmamut view shows and what its actions do, on the staging store and the config alone.

Nothing here imports Airflow: who may see or act on a DAG is asked through :class:`Permissions`, and starting a
DAG run is left to the caller (see :mod:`starmamut.operator_view.app`), so all of it is tested without a server.

* **Runs.** Per shop × job, the newest staging batches: status, dry run or not, counts, requests used (when the
  job recorded them), and a dry run's would-be writes (``planned``); a shop not live is marked as in shadow mode.
  A batch the quality gate stopped shows its staged verdicts, and can be released.
* **Quarantine.** Every open entry with its checks and reasons, first and last seen, the batch (and job) that
  last saw it and the record as it was staged there (secret-looking fields masked).
* **Actions.** Re-sync selected records (one DAG run per job, with ``resync_ids`` or ``skus``), dismiss with a note
  (kept on the entry: who, when, why), release a stopped batch (a run with ``accept_quarantine``).
* **Migration reports.** The ``initial_product_sync`` batches with their counts and report file.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from starmamut.config import Settings, ShopConfig
from starmamut.jobs.registry import JOBS, MIGRATION, dag_id, jobs_for_shop
from starmamut.staging.store import Batch, QuarantineEntry, StagingStore, UnknownBatchError

GATE_STOPPED = "stopped"  # starmamut.jobs.common.GATE_STOPPED (not imported: that module pulls in the clients)
RUNS_PER_JOB = 5
DISMISSED_SHOWN = 20
MASK = "***"
SECRET_FIELD = re.compile(r"pass(word)?|secret|token|api[_-]?key|authori[sz]ation|credential|^pwd$", re.IGNORECASE)
"""Field names whose values are never shown, wherever they sit in a staged record."""

RESYNC_BY_ENTITY: dict[str, tuple[str, str]] = {
    "product": ("products_to_mamut", "resync_ids"),
    "order": ("orders_to_mamut", "resync_ids"),
    "order_status": ("order_status_to_starweb", "resync_ids"),
    "article": ("products_to_starweb", "skus"),
    "price": ("prices_to_starweb", "skus"),
    "stock": ("stock_to_starweb", "skus"),
}
"""Quarantine entity -> the job that re-reads such a record, and the Param that names it (the jobs' ENTITY)."""

COUNT_ORDER = (
    "read",
    "changed",
    "valid",
    "loaded",
    "unchanged",
    "skipped",
    "quarantined",
    "failed",
    "would_write",
    "would_create",
)
"""Counts shown first, in this order; the rest follow as the job recorded them."""
REQUEST_COUNTS = ("requests", "requests_this_run")


class Permissions(Protocol):
    """What the signed-in user may do with a DAG (Airflow's auth manager answers in the app)."""

    def may_read(self, dag_id: str) -> bool: ...

    def may_trigger(self, dag_id: str) -> bool: ...


class ActionRefused(Exception):
    """An action the user may not take, or one that does not apply (the message says which and why)."""


@dataclass(frozen=True)
class Selection:
    """One quarantine entry picked on the page: shop, entity and key."""

    shop: str
    entity: str
    key: str

    def encode(self) -> str:
        return json.dumps([self.shop, self.entity, self.key], ensure_ascii=False)

    @classmethod
    def decode(cls, value: str) -> Selection:
        try:
            shop, entity, key = json.loads(value)
        except (ValueError, TypeError) as exc:
            raise ActionRefused(f"not a quarantine entry: {value!r}") from exc
        return cls(str(shop), str(entity), str(key))


@dataclass(frozen=True)
class TriggerPlan:
    """A DAG run to start: which DAG, with which conf, and a line for the audit trail."""

    dag_id: str
    conf: dict[str, Any]
    what: str


@dataclass(frozen=True)
class RunRow:
    batch: Batch
    counts: list[tuple[str, Any]]
    requests: int | None
    releasable: bool
    planned: list[str] = field(default_factory=list)  # a dry run's would-be writes


@dataclass(frozen=True)
class JobRuns:
    shop: str
    job: str
    dag_id: str
    runs: list[RunRow]
    may_trigger: bool


@dataclass(frozen=True)
class QuarantineRow:
    entry: QuarantineEntry
    job: str | None  # the job of the batch that last saw it
    dag_id: str | None
    payload: Any  # the record as staged in that batch (secrets masked), None when not staged there
    resync: TriggerPlan | None  # None: this record cannot be re-synced by id (the reason is in resync_note)
    resync_note: str
    may_act: bool

    @property
    def selection(self) -> str:
        return Selection(self.entry.shop, self.entry.entity, self.entry.key).encode()

    @property
    def payload_json(self) -> str:
        return json.dumps(self.payload, ensure_ascii=False, indent=2, sort_keys=True, default=str)


@dataclass(frozen=True)
class MigrationReport:
    batch: Batch
    direction: str
    path: Path | None  # the report file, when the batch names one
    readable: bool  # the file is on this server's disk


@dataclass
class ShopView:
    shop: ShopConfig
    jobs: list[JobRuns] = field(default_factory=list)
    quarantine: list[QuarantineRow] = field(default_factory=list)
    dismissed: list[QuarantineEntry] = field(default_factory=list)
    migrations: list[MigrationReport] = field(default_factory=list)

    @property
    def may_act(self) -> bool:
        return any(job.may_trigger for job in self.jobs) or any(row.may_act for row in self.quarantine)


def mask_secrets(value: Any) -> Any:
    """The value with every field whose name looks like a secret replaced by ``***`` (at any depth)."""
    if isinstance(value, Mapping):
        return {
            key: MASK if isinstance(key, str) and SECRET_FIELD.search(key) else mask_secrets(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [mask_secrets(item) for item in value]
    return value


def shop_dag_ids(shop: ShopConfig) -> list[str]:
    return [dag_id(shop.id, spec.name) for spec in jobs_for_shop(shop.flow, shop.extra_jobs)] + [
        dag_id(shop.id, MIGRATION)
    ]


def visible_shops(settings: Settings, permissions: Permissions) -> list[ShopConfig]:
    """The shops with at least one DAG the user may read."""
    return [shop for shop in settings.shops if any(permissions.may_read(dag) for dag in shop_dag_ids(shop))]


def _ordered_counts(counts: Mapping[str, Any]) -> list[tuple[str, Any]]:
    shown = [(name, counts[name]) for name in COUNT_ORDER if name in counts]
    rest = [
        (name, value)
        for name, value in counts.items()
        if name not in COUNT_ORDER and name not in REQUEST_COUNTS and name != "report_file"
        if not isinstance(value, Mapping | list)
    ]
    return shown + rest


def _requests(counts: Mapping[str, Any]) -> int | None:
    for name in REQUEST_COUNTS:
        value = counts.get(name)
        if isinstance(value, int):
            return value
    return None


def run_row(store: StagingStore, batch: Batch, *, latest: bool) -> RunRow:
    counts: Mapping[str, Any] = batch.counts
    if batch.status == GATE_STOPPED:  # the gate stopped it before the report: its verdicts are the counts
        counts = {**store.count_staged(batch.batch_id, batch.entity), **batch.counts}
    releasable = latest and batch.status == GATE_STOPPED and "accept_quarantine" in JOBS[batch.job].params
    planned = counts.get("planned") if batch.dry_run else None
    return RunRow(
        batch=batch,
        counts=_ordered_counts(counts),
        requests=_requests(counts),
        releasable=releasable,
        planned=[str(entry) for entry in planned] if isinstance(planned, list) else [],
    )


def job_runs(store: StagingStore, shop: ShopConfig, permissions: Permissions, limit: int) -> list[JobRuns]:
    result = []
    for spec in jobs_for_shop(shop.flow, shop.extra_jobs):
        dag = dag_id(shop.id, spec.name)
        if not permissions.may_read(dag):
            continue
        batches = store.latest_batches(shop.id, spec.name, limit=limit)
        result.append(
            JobRuns(
                shop=shop.id,
                job=spec.name,
                dag_id=dag,
                runs=[run_row(store, batch, latest=index == 0) for index, batch in enumerate(batches)],
                may_trigger=permissions.may_trigger(dag),
            )
        )
    return result


def resync_plan(shop: ShopConfig, entity: str, keys: Sequence[str]) -> tuple[TriggerPlan | None, str]:
    """The run that re-reads these records of one entity by id, or None and why not."""
    target = RESYNC_BY_ENTITY.get(entity)
    if target is None:
        return None, f"{entity} records are not re-read by id: fix them at the source, the next run reads them"
    job, param = target
    if job not in {spec.name for spec in jobs_for_shop(shop.flow, shop.extra_jobs)}:
        return None, f"shop {shop.id} does not run {job}"
    values: list[Any] = []
    for key in keys:
        if param == "resync_ids":
            if not key.isdigit():
                return None, f"{entity} {key!r} has no Starweb id to re-read"
            values.append(int(key))
        else:  # price and stock keys are "<sku>@<target>"; article keys are the SKU
            values.append(key.rpartition("@")[0] if entity in ("price", "stock") and "@" in key else key)
    values = list(dict.fromkeys(values))
    what = f"re-sync {entity} {', '.join(map(str, values))}"
    return TriggerPlan(dag_id=dag_id(shop.id, job), conf={param: values}, what=what), f"{param}: {values}"


def _batches(store: StagingStore, batch_ids: Iterable[str]) -> dict[str, Batch]:
    found = {}
    for batch_id in set(batch_ids):
        try:
            found[batch_id] = store.get_batch(batch_id)
        except UnknownBatchError:
            continue
    return found


def staged_payload(store: StagingStore, entry: QuarantineEntry) -> Any:
    try:
        row = next(
            iter(store.iter_staged(entry.batch_id, entry.entity, chunk_size=1, key_range=(entry.key, entry.key)))
        )
    except (StopIteration, UnknownBatchError):
        return None
    return mask_secrets(row.payload)


def quarantine_rows(store: StagingStore, shop: ShopConfig, permissions: Permissions) -> list[QuarantineRow]:
    entries = store.open_quarantine(shop.id)
    batches = _batches(store, (entry.batch_id for entry in entries))
    rows = []
    for entry in entries:
        batch = batches.get(entry.batch_id)
        dag = dag_id(shop.id, batch.job) if batch else None
        resync, note = resync_plan(shop, entry.entity, [entry.key])
        governing = dag or (resync.dag_id if resync else None)
        if governing is None or not permissions.may_read(governing):
            continue
        rows.append(
            QuarantineRow(
                entry=entry,
                job=batch.job if batch else None,
                dag_id=dag,
                payload=staged_payload(store, entry),
                resync=resync,
                resync_note=note,
                may_act=permissions.may_trigger(governing),
            )
        )
    return rows


def migration_reports(store: StagingStore, shop: ShopConfig, permissions: Permissions) -> list[MigrationReport]:
    if not permissions.may_read(dag_id(shop.id, MIGRATION)):
        return []
    reports = []
    for batch in store.latest_batches(shop.id, MIGRATION, limit=20):
        named = batch.counts.get("report_file")
        path = Path(named) if isinstance(named, str) and named else None
        direction = str(batch.counts.get("direction") or batch.entity)
        reports.append(MigrationReport(batch, direction, path, readable=bool(path and path.is_file())))
    return reports


def overview(
    settings: Settings, store: StagingStore, permissions: Permissions, runs_per_job: int = RUNS_PER_JOB
) -> list[ShopView]:
    """Everything the page shows, for the shops and DAGs the user may read."""
    views = []
    for shop in visible_shops(settings, permissions):
        view = ShopView(shop=shop)
        view.jobs = job_runs(store, shop, permissions, runs_per_job)
        view.quarantine = quarantine_rows(store, shop, permissions)
        view.dismissed = [
            entry
            for entry in store.dismissed_quarantine(shop.id, limit=DISMISSED_SHOWN)
            if (dag := _governing_dag(store, shop, entry)) is None or permissions.may_read(dag)
        ]
        view.migrations = migration_reports(store, shop, permissions)
        views.append(view)
    return views


def _governing_dag(store: StagingStore, shop: ShopConfig, entry: QuarantineEntry) -> str | None:
    """The DAG whose permissions govern an entry: the job of the batch that last saw it (else its re-sync job)."""
    batches = _batches(store, [entry.batch_id])
    if entry.batch_id in batches:
        return dag_id(shop.id, batches[entry.batch_id].job)
    plan, _ = resync_plan(shop, entry.entity, [entry.key])
    return plan.dag_id if plan else None


def _open_entries(store: StagingStore, settings: Settings, selections: Sequence[Selection]) -> list[QuarantineEntry]:
    """The open entries selected; an entry closed since the page was drawn is an error naming it."""
    if not selections:
        raise ActionRefused("select at least one quarantined record")
    entries = []
    by_shop: dict[str, dict[tuple[str, str], QuarantineEntry]] = {}
    for selection in selections:
        if selection.shop not in {shop.id for shop in settings.shops}:
            raise ActionRefused(f"no shop {selection.shop!r} in the config")
        if selection.shop not in by_shop:
            by_shop[selection.shop] = {(e.entity, e.key): e for e in store.open_quarantine(selection.shop)}
        entry = by_shop[selection.shop].get((selection.entity, selection.key))
        if entry is None:
            raise ActionRefused(
                f"shop {selection.shop}: {selection.entity} {selection.key!r} is no longer in the open quarantine"
            )
        entries.append(entry)
    return entries


def plan_resync(
    settings: Settings, store: StagingStore, permissions: Permissions, selections: Sequence[Selection]
) -> list[TriggerPlan]:
    """One run per job, naming every selected record of it; refused whole if any record cannot be re-synced."""
    grouped: dict[tuple[str, str], list[str]] = defaultdict(list)
    for entry in _open_entries(store, settings, selections):
        grouped[(entry.shop, entry.entity)].append(entry.key)
    plans: dict[str, TriggerPlan] = {}
    for (shop_id, entity), keys in grouped.items():
        plan, why_not = resync_plan(settings.shop(shop_id), entity, keys)
        if plan is None:
            raise ActionRefused(f"shop {shop_id}: {why_not}")
        if not permissions.may_trigger(plan.dag_id):
            raise ActionRefused(f"you may not trigger {plan.dag_id}")
        if plan.dag_id in plans:  # two entities of one job cannot happen today; merge to be safe
            merged = plans[plan.dag_id]
            conf = {name: merged.conf.get(name, []) + values for name, values in plan.conf.items()}
            plan = TriggerPlan(plan.dag_id, {**merged.conf, **conf}, f"{merged.what}; {plan.what}")
        plans[plan.dag_id] = plan
    return list(plans.values())


def dismiss(
    settings: Settings,
    store: StagingStore,
    permissions: Permissions,
    selections: Sequence[Selection],
    *,
    by: str,
    note: str,
) -> list[QuarantineEntry]:
    """Close the selected entries with who and why; all or nothing. Returns the entries dismissed."""
    if not note.strip():
        raise ActionRefused("a dismissal needs a note saying why")
    entries = _open_entries(store, settings, selections)
    for entry in entries:
        dag = _governing_dag(store, settings.shop(entry.shop), entry)
        if dag is None or not permissions.may_trigger(dag):
            raise ActionRefused(f"you may not act on {dag or entry.shop + ' ' + entry.entity}")
    grouped: dict[tuple[str, str], list[str]] = defaultdict(list)
    for entry in entries:
        grouped[(entry.shop, entry.entity)].append(entry.key)
    for (shop_id, entity), keys in grouped.items():
        store.dismiss_quarantine(shop_id, entity, keys, by=by, note=note)
    return entries


def plan_release(settings: Settings, store: StagingStore, permissions: Permissions, batch_id: str) -> TriggerPlan:
    """A run with ``accept_quarantine`` for the job of a stopped batch (its newest batch)."""
    try:
        batch = store.get_batch(batch_id)
    except UnknownBatchError as exc:
        raise ActionRefused(f"no staging batch {batch_id!r}") from exc
    if batch.shop not in {shop.id for shop in settings.shops}:
        raise ActionRefused(f"no shop {batch.shop!r} in the config")
    if batch.status != GATE_STOPPED:
        raise ActionRefused(f"batch {batch_id} is {batch.status}, not stopped at the quality gate")
    if batch.job not in JOBS or "accept_quarantine" not in JOBS[batch.job].params:
        raise ActionRefused(f"{batch.job} has no accept_quarantine option")
    newest = store.latest_batches(batch.shop, batch.job, limit=1)
    if newest and newest[0].batch_id != batch_id:
        raise ActionRefused(f"batch {batch_id} is not the newest of {batch.job}: a later run has read the shop again")
    dag = dag_id(batch.shop, batch.job)
    if not permissions.may_trigger(dag):
        raise ActionRefused(f"you may not trigger {dag}")
    return TriggerPlan(dag_id=dag, conf={"accept_quarantine": True}, what=f"release stopped batch {batch_id}")
