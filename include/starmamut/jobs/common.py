"""What every sync job shares: run parameters, the job's resources, and the quality gate."""

from __future__ import annotations

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
