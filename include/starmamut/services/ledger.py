"""Values Mamut governs (prices, stock) pushed to Starweb: only what differs from the ledger, as absolute values.

The engine behind ``prices_to_starweb`` and ``stock_to_starweb``: :class:`LedgerPush` is the :class:`~starmamut.
jobs.base.Job` both subclass. A subclass checks its mapping and opens Mamut (``open_extract``), maps every value to
a :class:`Desired` (SKU, target, canonical ledger value, record; ``desired``) and says how a value is checked
(``columns``, ``check_row``, ``checks``) and sent (``request``). Step by step:

* extract — keeps the values that differ from the ledger (every value on a full refresh; open quarantine
  entries too, so a fixed value is checked again), finds the Starweb variant of each SKU
  (:func:`~starmamut.services.binder.bind_variants_by_sku`) and stages them. A SKU the shop does not have is
  counted, not staged, and remembered (ledger dimension ``not_in_shop``): later runs look for it in the id map
  only, where the products jobs link new variants, instead of searching the shop every run.
* validate — the job's Great Expectations suite, ``CHECK_CHUNK`` values at a time; failing values are
  quarantined with their reasons, the rest load, unless the failure share passes the shop's threshold.
* load — compares with the ledger again (a retried load skips what the crashed one recorded), sends one request
  per value on the client's concurrent pool, and records the values Starweb accepted in the ledger
  ``LEDGER_FLUSH`` at a time (one staging transaction per group, not per value), the rest when the load ends,
  also when it fails. A crash loses at most the entries of the group not yet recorded (a killed process; a
  failing one records what completed before it stops): the retry sends those values again, which is harmless,
  as values are absolute. A value Starweb refuses (400/403/404) is quarantined with Starweb's reason; anything
  else (throttling or server errors past the client's retries) fails the task.
* report — the counts, requests included (the base's report).

Checks that concern the whole run (a mapped price list, stock location, stock status or warehouse that does
not exist, an inactive price list, a target mapped twice) are the jobs'; they raise
:class:`~starmamut.services.reference.ShopMappingError` before anything is staged or written.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

from starmamut.config import TransformEntity, TransformPoint
from starmamut.failpoints import failpoint
from starmamut.jobs.base import BatchCounts, Job, Outcome, Session
from starmamut.jobs.common import JobContext, Reasons, chunked, parse_variant_ref
from starmamut.mapping.prices_stock import PlannedRequest, row_key
from starmamut.quality.runner import RowCheck
from starmamut.services.binder import VARIANT, bind_variants_by_sku
from starmamut.services.reference import ShopMappingError
from starmamut.staging.store import Link, StagedRow
from starmamut.starweb.client import StarwebClient
from starmamut.starweb.errors import StarwebError
from starmamut.transforms import RecordTransforms

PRICE, STOCK = "price", "stock"  # entities (staging, quarantine, ledger dimension) of the two ledger pushes
LEDGER_CHUNK = 2000
# Ledger entries of accepted values recorded per staging transaction during a load: the most a killed load
# loses (those values are sent again by the retry, unchanged, so this bounds repeated requests, not correctness).
LEDGER_FLUSH = 50
# Ledger dimension remembering SKUs the shop did not have when searched (target "shop", value: when).
NOT_IN_SHOP = "not_in_shop"
LOAD_CHUNK = 500
CHECK_CHUNK = 5_000  # values per run of the Great Expectations suite (its results grow with the rows)
# Answers that refuse one value (bad value, forbidden target, variant or list gone): quarantine it, go on.
REFUSAL_STATUSES = frozenset({400, 403, 404})

log = logging.getLogger(__name__)

__all__ = [
    "CHECK_CHUNK",
    "LEDGER_CHUNK",
    "LEDGER_FLUSH",
    "LOAD_CHUNK",
    "NOT_IN_SHOP",
    "PRICE",
    "STOCK",
    "Desired",
    "LedgerPush",
    "ShopMappingError",
]


@dataclass(frozen=True)
class Desired:
    """What one Starweb target (price list, stock location, the variant) should hold for one SKU."""

    sku: str
    target: str
    value: str  # canonical ledger value; "" never matches the ledger, so such a value is always checked
    record: dict[str, Any]  # JSON-able fields the checks and the request need

    @property
    def key(self) -> str:
        return row_key(self.sku, self.target)


class LedgerPush(Job):
    """A job pushing values Mamut governs to Starweb against the ledger (see the module docstring).

    ``entity`` is the staging entity, the quarantine entity and the ledger dimension.
    """

    transform_entity: ClassVar[TransformEntity]  # the entity whose transforms the shop lists for this job
    columns: ClassVar[tuple[str, ...]]  # the check rows' columns
    detects_change = "extract"
    keeps_watermark = False
    check_chunk = CHECK_CHUNK
    load_chunk = LOAD_CHUNK
    compare_after_transforms = True  # a value a before_load transform changes is compared as sent
    details = ("not_in_shop",)

    # what a subclass says

    def desired(self, ctx: JobContext, session: Session) -> Iterator[Desired]:
        """Every value the shop should hold, mapped from Mamut (the session's mapping checked already)."""
        raise NotImplementedError

    def check_row(self, key: str, record: Mapping[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def checks(self) -> list[RowCheck]:
        raise NotImplementedError

    def request(self, record: Mapping[str, Any], variant: tuple[int, int], previous: str | None) -> PlannedRequest:
        """(staged record, (product id, variant id), last pushed value or None) → the request."""
        raise NotImplementedError

    def ledger_value(self, record: Mapping[str, Any]) -> str:
        """A record's canonical ledger value, recomputed after transforms have changed the record."""
        raise NotImplementedError

    # extract

    def stage_batch(
        self, ctx: JobContext, session: Session, batch_id: str, after_mapping: Any, counts: BatchCounts
    ) -> int:
        """Stage the values to push; returns how many were staged.

        Values whose SKU the id map places are staged chunk by chunk, so memory stays flat however large the
        catalogue; only the others are held until their SKUs are bound in one call, so the shop is searched at
        most once per run (a search may list the whole catalogue).
        """
        shop, store, full_refresh = ctx.shop.id, ctx.store, ctx.params.full_refresh
        recheck = {entry.key for entry in store.open_quarantine(shop, self.entity)}
        changed = 0
        unplaced: list[Desired] = []
        for chunk in chunked(self.desired(ctx, session), LEDGER_CHUNK):
            counts.read += len(chunk)
            if after_mapping:
                chunk = [kept for item in chunk if (kept := self._transformed(after_mapping, item)) is not None]
            ledger = {} if full_refresh else store.get_ledger(shop, self.entity, {item.sku for item in chunk})
            to_push = [
                item
                for item in chunk
                if full_refresh or item.key in recheck or ledger.get((item.sku, item.target)) != item.value
            ]
            changed += len(to_push)
            counts.unchanged += len(chunk) - len(to_push)
            placed = store.find_links_by_sku(shop, VARIANT, {item.sku for item in to_push})
            self._stage_placed(store, batch_id, to_push, placed)
            unplaced.extend(item for item in to_push if item.sku not in placed)
        links = self._bind(ctx, session.client, list(dict.fromkeys(item.sku for item in unplaced)))
        staged = changed - len(unplaced) + self._stage_placed(store, batch_id, unplaced, links)
        not_in_shop = sorted({item.sku for item in unplaced if item.sku not in links})
        if not_in_shop:
            log.info(
                "shop %s: %d Mamut article(s) have no variant in the shop and are left out, e.g. %s",
                shop,
                len(not_in_shop),
                ", ".join(not_in_shop[:10]),
            )
        counts.count("not_in_shop", len(not_in_shop))
        return staged

    def _stage_placed(self, store: Any, batch_id: str, items: Iterable[Desired], links: Mapping[str, Link]) -> int:
        """Stage the values whose SKU has a variant link, naming the variant; returns how many were staged."""
        return store.stage_rows(
            batch_id,
            self.entity,
            (
                StagedRow(
                    key=item.key,
                    payload={
                        **item.record,
                        "sku": item.sku,
                        "target": item.target,
                        "value": item.value,
                        "variant": links[item.sku].starweb_id,
                    },
                    content_hash=item.value,
                )
                for item in items
                if item.sku in links
            ),
        )

    def _transformed(self, after_mapping: RecordTransforms, item: Desired) -> Desired | None:
        """A desired value after the after_mapping transforms, its ledger value recomputed (a SKU mapped here is
        the one bound, compared and recorded)."""
        record = after_mapping.apply({**item.record, "sku": item.sku, "target": item.target})
        if record is None:
            return None
        sku, target = record.pop("sku"), record.pop("target")
        return Desired(sku=sku, target=target, value=self.ledger_value(record), record=record)

    def _bind(self, ctx: JobContext, client: StarwebClient, skus: list[str]) -> dict[str, Link]:
        """Variant links of ``skus``. A SKU the shop did not have when last searched is only looked for in the id
        map (where the products jobs link new variants), so Mamut articles the shop does not sell cost no shop
        search on every run; a full refresh searches the shop for them again."""
        shop, store = ctx.shop.id, ctx.store
        absent = set() if ctx.params.full_refresh else {sku for sku, _ in store.get_ledger(shop, NOT_IN_SHOP, skus)}
        links = bind_variants_by_sku(ctx, client, [sku for sku in skus if sku not in absent])
        links.update(store.find_links_by_sku(shop, VARIANT, absent))
        searched_in_vain = [sku for sku in skus if sku not in links and sku not in absent]
        if searched_in_vain and not ctx.params.dry_run:
            checked_at = ctx.clock().isoformat(timespec="seconds")
            store.set_ledger(shop, NOT_IN_SHOP, {(sku, "shop"): checked_at for sku in searched_in_vain})
        return links

    def transforms(self, ctx: JobContext, batch_id: str, point: TransformPoint) -> Any:
        """The shop's transforms of this job's values at one point; they see the staged record (with ``sku`` and
        ``target``; ``value`` follows from the rest), and ``target`` stays fixed."""
        transforms = RecordTransforms(
            ctx,
            batch_id,
            job=self.name,
            entity=self.transform_entity,
            point=point,
            staged_entity=self.entity,
            key=lambda record: row_key(record["sku"], record["target"]),
            fixed=("target",) if point == "after_mapping" else ("sku", "target", "variant"),
        )
        return transforms if point == "after_mapping" else _ValueTransforms(transforms, self.ledger_value)

    # validate

    def check(self, ctx: JobContext, batch_id: str, rows: list[StagedRow]) -> dict[str, Reasons]:
        import pandas as pd

        from starmamut.quality.runner import validate_rows

        report = validate_rows(
            pd.DataFrame([self.check_row(row.key, row.payload) for row in rows], columns=list(self.columns)),
            self.checks(),
            key_column="row_key",
            suite_name=f"{ctx.shop.id}_{self.name}_{batch_id}",
        )
        return {
            key: [{"check": failure.check, "reason": failure.reason} for failure in failures]
            for key, failures in report.failures.items()
        }

    # load

    def known_at_load(self, ctx: JobContext, session: Session, chunk: list[StagedRow]) -> dict[tuple[str, str], str]:
        return ctx.store.get_ledger(ctx.shop.id, self.entity, {row.payload["sku"] for row in chunk})

    def unchanged(self, ctx: JobContext, known: dict[tuple[str, str], str], row: StagedRow) -> bool:
        previous = known.get((row.payload["sku"], row.payload["target"]))
        return previous == row.payload["value"] and not ctx.params.full_refresh

    @contextmanager
    def open_load(self, ctx: JobContext, batch_id: str, before_load: Any) -> Iterator[Session]:
        """Starweb, and the ledger entries of accepted values, recorded a group at a time (:class:`_Ledger`):
        what remains is recorded when the load ends, also when it fails, before the failure goes on."""
        with self.starweb_session(ctx) as session:
            ledger = _Ledger(ctx.store, ctx.shop.id, self.entity)
            try:
                yield _Pushing(client=session.client, concurrent=session.concurrent, ledger=ledger)
            except BaseException:
                ledger.flush_after_failure()
                raise
            ledger.flush()

    def write_one(self, ctx: JobContext, session: Session, known: Any, row: StagedRow) -> Outcome:
        """One write, then its ledger entry (recorded with its group); Starweb's refusal of this one value
        quarantines it."""
        assert isinstance(session, _Pushing)
        payload = row.payload
        request = self.request(
            payload, parse_variant_ref(payload["variant"]), known.get((payload["sku"], payload["target"]))
        )
        if ctx.params.dry_run:
            log.info("dry run: would send %s", request.describe())
            return Outcome(counted=None, would_write=True, planned=[request.describe()])
        client = session.client
        try:
            if request.method == "PUT":
                client.put(request.path, request.body)
            else:
                client.patch(request.path, request.body)
        except StarwebError as exc:
            if exc.status in REFUSAL_STATUSES:
                said = exc.error_description or exc.error or exc.status
                return Outcome.refused("starweb_accepts", f"Starweb refused {request.describe()}: {said}")
            raise
        failpoint(f"{self.name}.after_request")
        session.ledger.add((payload["sku"], payload["target"]), payload["value"])
        return Outcome()

    def after_load(self, ctx: JobContext, batch_id: str, session: Session, counts: BatchCounts) -> None:
        stats = session.client.stats.as_dict()
        counts.write_requests = stats["requests_sent"] - stats["token_fetches"]


class _Ledger:
    """Ledger entries of the values Starweb accepted in one load, recorded ``size`` at a time.

    One staging transaction per group instead of one per value. Bounded: at most ``size`` entries wait (plus
    those of the requests in flight), so a load killed outright loses at most that many, and its retry sends
    those values again with the same content (idempotent: values are absolute). Thread-safe: the load's
    requests run on the client's pool, and whichever adds the group's last entry records the group.
    """

    def __init__(self, store: Any, shop: str, dimension: str, size: int = LEDGER_FLUSH) -> None:
        self._store = store
        self._shop = shop
        self._dimension = dimension
        self._size = size
        self._lock = threading.Lock()
        self._waiting: dict[tuple[str, str], str] = {}

    def add(self, key: tuple[str, str], value: str) -> None:
        with self._lock:
            self._waiting[key] = value
            if len(self._waiting) < self._size:
                return
        self.flush()

    def flush(self) -> None:
        """Record every waiting entry in one staging transaction; a failed write keeps them waiting (and fails)."""
        with self._lock:
            entries, self._waiting = self._waiting, {}
        if not entries:
            return
        try:
            self._store.set_ledger(self._shop, self._dimension, entries)
        except BaseException:
            with self._lock:
                self._waiting = {**entries, **self._waiting}
            raise

    def flush_after_failure(self) -> None:
        """The load failed: record what completed before it, without hiding the failure (a lost lease fences
        this write too, so nothing is recorded then; the entries are only logged as lost)."""
        try:
            self.flush()
        except Exception as error:
            log.warning(
                "shop %s: could not record %d %s ledger entr(ies) of values already sent (%s: %s); "
                "the next run sends them again",
                self._shop,
                len(self._waiting),
                self._dimension,
                type(error).__name__,
                error,
            )


@dataclass(kw_only=True)
class _Pushing(Session):
    """The load's session: Starweb, and the ledger entries waiting to be recorded."""

    ledger: _Ledger


class _ValueTransforms:
    """The before_load transforms of a staged value: they see it without ``value``, which follows from the rest
    (recomputed, so a value a transform changes is compared with the ledger as it is sent)."""

    def __init__(self, transforms: RecordTransforms, ledger_value: Any) -> None:
        self._transforms = transforms
        self._ledger_value = ledger_value

    def __bool__(self) -> bool:
        return bool(self._transforms)

    def apply(self, record: dict[str, Any], *, source: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        if not self._transforms:
            return record
        changed = self._transforms.apply({key: value for key, value in record.items() if key != "value"})
        return None if changed is None else {**changed, "value": self._ledger_value(changed)}

    def finish(self) -> dict[str, int]:
        return self._transforms.finish()
