"""What every sync job shares: run parameters, the job's resources, and the quality gate."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar

from starmamut.catalogue_conflicts import ON_CONFLICT, OnConflict
from starmamut.config import Settings, ShopConfig
from starmamut.jobs.registry import JOBS
from starmamut.mamut.gateway import MamutGateway
from starmamut.mapping.products import MappingError
from starmamut.staging.store import StagingStore
from starmamut.starweb.client import StarwebClient
from starmamut.starweb.errors import StarwebNotFound

T = TypeVar("T")
P = ParamSpec("P")
log = logging.getLogger(__name__)


class QualityGateFailed(RuntimeError):
    """Too large a share of a batch failed its checks: something upstream is wrong, stop before loading."""


@dataclass(frozen=True)
class RunParams:
    """Manual-trigger options (Airflow Params); scheduled runs use the defaults."""

    dry_run: bool = False
    full_refresh: bool = False
    resync_ids: tuple[int, ...] = ()
    skus: tuple[str, ...] = ()
    since: datetime | None = None
    accept_quarantine: bool = False
    on_conflict: OnConflict = "quarantine"  # products_to_starweb: a family whose one shop product differs from it
    shadow: bool = False  # a dry run because the shop is not live (shadow mode), whatever the Params said

    def for_shop(self, live: bool) -> RunParams:
        """These options as a shop allows them: a shop that is not live (shadow mode) only ever dry-runs."""
        return self if live else replace(self, dry_run=True, shadow=True)

    @property
    def dry_run_label(self) -> str:
        """How reports and logs name a dry run ('' for a live run)."""
        if not self.dry_run:
            return ""
        return "DRY RUN (shadow mode: shop not live)" if self.shadow else "DRY RUN"

    @property
    def reads_everything(self) -> bool:
        """A live run over the whole shop: the only kind whose read may move a watermark. A run limited to
        ids, SKUs or a start date reads part of the source, so moving the mark would pass over the rest."""
        return not (self.dry_run or self.resync_ids or self.skus or self.since)

    @classmethod
    def from_mapping(cls, params: Mapping[str, Any] | None) -> RunParams:
        params = params or {}
        since = params.get("since") or None
        if isinstance(since, str):
            since = datetime.fromisoformat(since)
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        on_conflict = params.get("on_conflict") or "quarantine"
        if on_conflict not in ON_CONFLICT:
            raise ValueError(f"Param 'on_conflict': expected one of {', '.join(ON_CONFLICT)}, got {on_conflict!r}")
        return cls(
            dry_run=bool(params.get("dry_run", False)),
            full_refresh=bool(params.get("full_refresh", False)),
            resync_ids=tuple(int(item) for item in params.get("resync_ids") or ()),
            skus=tuple(str(item) for item in params.get("skus") or ()),
            since=since,
            accept_quarantine=bool(params.get("accept_quarantine", False)),
            on_conflict=on_conflict,
        )


@dataclass
class JobContext:
    """Everything a job step needs, passed in (never looked up deep inside), so tests build it directly."""

    settings: Settings
    shop: ShopConfig
    store: StagingStore
    open_starweb: Callable[[], AbstractContextManager[StarwebClient]]
    open_mamut: Callable[[], MamutGateway]
    params: RunParams = field(default_factory=RunParams)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


def format_report(title: str, counts: Mapping[str, Any], params: RunParams | None = None) -> str:
    """A small aligned table for the task log, readable by whoever is paged; a dry run says so in its title."""
    label = params.dry_run_label if params is not None else ""
    width = max(len(key) for key in counts) if counts else 0
    lines = [f"{label} · {title}" if label else title] + [
        f"  {key.ljust(width)}  {value}" for key, value in counts.items()
    ]
    return "\n".join(lines)


def close_batch(ctx: JobContext, batch_id: str, job: str, counts: dict[str, Any]) -> dict[str, Any]:
    """Record the batch's counts and log them as a table; the counts are the report task's result."""
    ctx.store.finish_batch(batch_id, "dry_run" if ctx.params.dry_run else "done", counts)
    log.info("%s", format_report(f"shop {ctx.shop.id} · {job} · batch {batch_id}", counts, ctx.params))
    return counts


def job_name(steps: Any) -> str:
    """The registered name of a job given as a :class:`~starmamut.jobs.base.Job` (its ``name``) or a module."""
    name = getattr(steps, "name", None)
    return name if isinstance(name, str) else steps.__name__.rpartition(".")[2]


def run_step(steps: Any, name: str, ctx: JobContext, *args: Any) -> Any:
    """Run one step of a job (a task runs exactly one); a batch stopped at the gate is never loaded, and a load
    holds the shop's leases on what the job writes (see :func:`holding_leases`)."""
    if name == "load":
        batch = ctx.store.get_batch(args[0])
        if batch.status == GATE_STOPPED:
            raise QualityGateFailed(
                f"shop {ctx.shop.id}: batch {batch.batch_id} was stopped at the quality gate and is not loaded; "
                "fix the quarantined records, raise the threshold, or trigger with accept_quarantine: true"
            )
        with holding_leases(ctx, JOBS[job_name(steps)].writes) as leased:
            return steps.load(leased, *args)
    return getattr(steps, name)(ctx, *args)


@contextmanager
def holding_leases(ctx: JobContext, entities: Iterable[str]) -> Iterator[JobContext]:
    """Hold the shop's load lease of each entity (see :meth:`StagingStore.lease`) and yield a context whose
    Starweb clients and Mamut gateways check them right before every write request and every commit, so a loader
    that lost a lease to another stops before its next write instead of writing twice.

    Taken in name order, so two loaders wanting overlapping sets never each hold what the other waits for.
    """
    settings = ctx.settings.lease
    with ExitStack() as stack:
        leases = [
            stack.enter_context(
                ctx.store.lease(ctx.shop.id, entity, ttl=settings.ttl_seconds, wait=settings.wait_seconds)
            )
            for entity in sorted(set(entities))
        ]

        def check() -> None:
            for lease in leases:
                lease.check()

        @contextmanager
        def open_starweb() -> Iterator[StarwebClient]:
            with ctx.open_starweb() as client:
                previous, client.write_guard = client.write_guard, check
                try:
                    yield client
                finally:
                    client.write_guard = previous

        def open_mamut() -> MamutGateway:
            gateway = ctx.open_mamut()
            stack.callback(setattr, gateway, "commit_guard", gateway.commit_guard)  # a shared gateway is restored
            gateway.commit_guard = check
            return gateway

        yield replace(ctx, open_starweb=open_starweb, open_mamut=open_mamut)


def holds_leases(
    *entities: str,
) -> Callable[[Callable[Concatenate[JobContext, P], T]], Callable[Concatenate[JobContext, P], T]]:
    """Decorate a step (its first argument the JobContext) to run under :func:`holding_leases` of ``entities``."""

    def decorate(step: Callable[Concatenate[JobContext, P], T]) -> Callable[Concatenate[JobContext, P], T]:
        @functools.wraps(step)
        def leased_step(ctx: JobContext, *args: P.args, **kwargs: P.kwargs) -> T:
            with holding_leases(ctx, entities) as leased:
                return step(leased, *args, **kwargs)

        return leased_step

    return decorate


def run_steps(steps: Any, ctx: JobContext) -> dict[str, Any]:
    """A job's four steps in one process (CLI, benchmarks, tests); the DAG runs them as separate tasks."""
    extracted = run_step(steps, "extract", ctx)
    batch_id = extracted["batch_id"]
    validated = run_step(steps, "validate", ctx, batch_id)
    loaded = run_step(steps, "load", ctx, batch_id)
    return run_step(steps, "report", ctx, batch_id, extracted, validated, loaded)


CLOCK_READING_ACCURACY = timedelta(seconds=5)
"""How well a clock comparison through the whole-second ``Date`` header can be trusted."""


def check_clock(client: StarwebClient, overlap_minutes: float) -> None:
    """Stop before reading by time when this worker's clock and Starweb's differ by more than half the overlap
    window: a watermark taken from a clock that far off would pass over records changed in the gap."""
    client.check_clock(max(timedelta(minutes=overlap_minutes) / 2, CLOCK_READING_ACCURACY))


def advance_watermark(ctx: JobContext, job: str, value: datetime) -> bool:
    """Move the job's watermark, only after a complete live read (see :attr:`RunParams.reads_everything`)."""
    if not ctx.params.reads_everything:
        log.info(
            "shop %s: %s watermark stays where it was: this run read only part of the source or was a dry run",
            ctx.shop.id,
            job,
        )
        return False
    ctx.store.set_watermark(ctx.shop.id, job, value)
    return True


def variant_ref(product_id: int | str, variant_id: int | str) -> str:
    """The id-map ``starweb_id`` of a variant: Starweb addresses variants under their product."""
    return f"{product_id}:{variant_id}"


def parse_variant_ref(ref: str) -> tuple[int, int]:
    product_id, _, variant_id = ref.partition(":")
    return int(product_id), int(variant_id)


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of at most ``size`` items, so a step can batch its lookups without holding everything."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


Reasons = list[dict[str, str]]
"""Why a record failed: ``[{"check": <name>, "reason": <human text>}, ...]``."""


def reasons_text(reasons: Reasons) -> str:
    return "; ".join(reason["reason"] for reason in reasons)


GATE_STOPPED = "stopped"
"""Status of a batch the quality gate stopped: it is never loaded (see :func:`run_step`)."""


def apply_verdicts(
    ctx: JobContext,
    batch_id: str,
    entity: str,
    keys: Iterable[str],
    reasons: Mapping[str, Reasons],
    *,
    threshold: float,
    noun: str,
) -> dict[str, int]:
    """Mark each staged record valid or quarantined, quarantine the failures (not in a dry run), and stop the
    batch when the failing share passes the threshold: a flood of bad records means something upstream broke.

    The share counts every record of the batch except those quarantined earlier and already let through
    (by a batch the gate passed, or by a person): one old bad record re-read every run must not fail every
    run, but the records of a stopped batch keep counting, so the task's retry, and every later run, stops
    again until a person fixes them, raises the threshold or triggers with ``accept_quarantine``.
    """
    keys = list(keys)
    accepted = {entry.key for entry in ctx.store.open_quarantine(ctx.shop.id, entity) if entry.accepted_at}
    ctx.store.set_verdicts(
        batch_id,
        entity,
        {key: ("quarantined", reasons_text(reasons[key])) if key in reasons else ("valid", None) for key in keys},
    )
    for key, record_reasons in reasons.items():
        log.warning("shop %s: %s %s quarantined: %s", ctx.shop.id, noun, key, reasons_text(record_reasons))
        if not ctx.params.dry_run:
            ctx.store.quarantine(ctx.shop.id, entity, key, list(record_reasons), batch_id, accepted=False)
    counted = [key for key in keys if key not in accepted]
    failed = sum(1 for key in counted if key in reasons)
    if counted and failed / len(counted) > threshold and not ctx.params.accept_quarantine:
        message = (
            f"shop {ctx.shop.id}: {failed} of {len(counted)} {noun}s failed their checks, more than the "
            f"threshold {threshold:.0%}; nothing was loaded. See the quarantine for the reasons; fix them, "
            "raise the threshold, or trigger with accept_quarantine: true to load the rest."
        )
        ctx.store.set_batch_status(batch_id, GATE_STOPPED)
        raise QualityGateFailed(message)
    if ctx.store.get_batch(batch_id).status == GATE_STOPPED:  # a retry let through (threshold raised, released)
        ctx.store.set_batch_status(batch_id, "running")
    if not ctx.params.dry_run:
        ctx.store.accept_quarantine(ctx.shop.id, entity, reasons)
    return {"valid": len(keys) - len(reasons), "quarantined": len(reasons)}


RECORD_ERRORS = (MappingError, ValueError, TypeError, KeyError, ArithmeticError, AttributeError)
"""What one record's own data can raise while it is read, checked or mapped: that record is quarantined with
the reason and the batch goes on. Anything else (a database or network fault) is systemic and fails the task."""


def record_problem(noun: str, key: str, exc: BaseException) -> str:
    """The quarantine reason for a record whose data could not be handled, naming the record and the field."""
    if isinstance(exc, MappingError):  # names the field; the record too, unless the message already does
        return str(exc) if str(exc).startswith(f"{noun} ") else f"{noun} {key}: {exc}"
    if isinstance(exc, KeyError):
        return f"{noun} {key}: field {exc.args[0]!r} is missing"
    return f"{noun} {key}: unreadable data ({type(exc).__name__}: {exc})"


def guard_record(noun: str, key: str, fn: Callable[[], T]) -> tuple[T | None, Reasons]:
    """``fn()`` for one record, or its reason when the record's own data makes it fail (see RECORD_ERRORS)."""
    try:
        return fn(), []
    except RECORD_ERRORS as exc:
        return None, [{"check": "readable", "reason": record_problem(noun, key, exc)}]


UNREADABLE = "unreadable"
"""Payload key of a staged record whose source could not be read: its reasons stand in for its fields, so the
checks quarantine it and the gate counts it like any failing record."""


def read_record(noun: str, key: str, key_field: str, build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The staged record ``build()`` makes of one source record, or, when that record's own data makes it fail,
    a stand-in holding only its key and the reasons (see :data:`UNREADABLE`)."""
    record, problems = guard_record(noun, key, build)
    return record if record is not None else {key_field: key, UNREADABLE: problems}


def reread_quarantined(ctx: JobContext, entity: str, seen: Collection[str], read: Callable[[str], T]) -> Iterator[T]:
    """Read again, by id, every open quarantine entry of ``entity`` not already read this run, so a record
    held for a cause since fixed on either side (an article created in Mamut, a field corrected in the shop)
    is checked again and heals. A record the source no longer has closes its entry. One read per entry."""
    for entry in ctx.store.open_quarantine(ctx.shop.id, entity):
        if entry.key in seen:
            continue
        try:
            yield read(entry.key)
        except StarwebNotFound:
            log.warning(
                "shop %s: %s %s no longer exists in Starweb; its quarantine entry is closed",
                ctx.shop.id,
                entity,
                entry.key,
            )
            if not ctx.params.dry_run:
                ctx.store.resolve_quarantine(ctx.shop.id, entity, [entry.key])


def quarantine_on_load(ctx: JobContext, batch_id: str, entity: str, key: str, check: str, reason: str) -> None:
    """A record that passed the checks but could not be written: quarantine it and go on with the batch."""
    log.warning("shop %s: %s %s quarantined on load: %s", ctx.shop.id, entity, key, reason)
    if not ctx.params.dry_run:
        ctx.store.quarantine(ctx.shop.id, entity, key, [{"check": check, "reason": reason}], batch_id)
