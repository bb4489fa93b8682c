"""What every sync job shares: run parameters, the job's resources, and the quality gate."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from starmamut.config import Settings, ShopConfig
from starmamut.mamut.gateway import MamutGateway
from starmamut.staging.store import StagingStore
from starmamut.starweb.client import StarwebClient

T = TypeVar("T")
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

    @classmethod
    def from_mapping(cls, params: Mapping[str, Any] | None) -> RunParams:
        params = params or {}
        since = params.get("since") or None
        if isinstance(since, str):
            since = datetime.fromisoformat(since)
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        return cls(
            dry_run=bool(params.get("dry_run", False)),
            full_refresh=bool(params.get("full_refresh", False)),
            resync_ids=tuple(int(item) for item in params.get("resync_ids") or ()),
            skus=tuple(str(item) for item in params.get("skus") or ()),
            since=since,
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


def format_report(title: str, counts: Mapping[str, Any]) -> str:
    """A small aligned table for the task log, readable by whoever is paged."""
    width = max(len(key) for key in counts) if counts else 0
    lines = [title] + [f"  {key.ljust(width)}  {value}" for key, value in counts.items()]
    return "\n".join(lines)


def close_batch(ctx: JobContext, batch_id: str, job: str, counts: dict[str, Any]) -> dict[str, Any]:
    """Record the batch's counts and log them as a table; the counts are the report task's result."""
    ctx.store.finish_batch(batch_id, "dry_run" if ctx.params.dry_run else "done", counts)
    log.info("%s", format_report(f"shop {ctx.shop.id} · {job} · batch {batch_id}", counts))
    return counts


def run_steps(steps: Any, ctx: JobContext) -> dict[str, Any]:
    """A job's four steps in one process (CLI, benchmarks, tests); the DAG runs them as separate tasks."""
    extracted = steps.extract(ctx)
    validated = steps.validate(ctx, extracted["batch_id"])
    loaded = steps.load(ctx, extracted["batch_id"])
    return steps.report(ctx, extracted["batch_id"], extracted, validated, loaded)


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


def apply_verdicts(ctx: JobContext, batch_id: str, entity: str, keys: Iterable[str],
                   reasons: Mapping[str, Reasons], *, threshold: float, noun: str) -> dict[str, int]:
    """Mark each staged record valid or quarantined, quarantine the failures (not in a dry run), and stop the
    batch when the failing share passes the threshold: a flood of bad records means something upstream broke.

    The share is measured on records not in quarantine already: held records are re-read every run to see
    whether they were fixed, and a batch in which they are all there is must not fail for them again.
    """
    keys = list(keys)
    held = {entry.key for entry in ctx.store.open_quarantine(ctx.shop.id, entity)}
    ctx.store.set_verdicts(batch_id, entity, {
        key: ("quarantined", reasons_text(reasons[key])) if key in reasons else ("valid", None) for key in keys
    })
    for key, record_reasons in reasons.items():
        log.warning("shop %s: %s %s quarantined: %s", ctx.shop.id, noun, key, reasons_text(record_reasons))
        if not ctx.params.dry_run:
            ctx.store.quarantine(ctx.shop.id, entity, key, list(record_reasons), batch_id)
    fresh = [key for key in keys if key not in held]
    failed = sum(1 for key in fresh if key in reasons)
    if fresh and failed / len(fresh) > threshold:
        raise QualityGateFailed(
            f"shop {ctx.shop.id}: {failed} of {len(fresh)} {noun}s failed their checks, more than the threshold "
            f"{threshold:.0%}; nothing was loaded. See the quarantine for the reasons."
        )
    return {"valid": len(keys) - len(reasons), "quarantined": len(reasons)}


def quarantine_on_load(ctx: JobContext, batch_id: str, entity: str, key: str, check: str, reason: str) -> None:
    """A record that passed the checks but could not be written: quarantine it and go on with the batch."""
    log.warning("shop %s: %s %s quarantined on load: %s", ctx.shop.id, entity, key, reason)
    if not ctx.params.dry_run:
        ctx.store.quarantine(ctx.shop.id, entity, key, [{"check": check, "reason": reason}], batch_id)
