"""Mamut order states → Starweb order status, with the buyer's e-mail, tracking and payment capture, once each.

Flows ``erp`` and ``combo``; a shop of flow ``ecom`` turns it on with ``extra_jobs``. Per shop, each Mamut state
(:mod:`starmamut.mamut.order_states`) maps to a Starweb status by idCode or id, with its switches
(``order_status_to_starweb.transitions``); :mod:`starmamut.mapping.order_status` decides what an order calls for.

* extract — checks that every transition names a known state and that the final statuses exist (a config error
  stops the run before anything is staged), then reads the shop's web orders from Mamut (EXTERNALID
  ``<shop>:<orderId>``): with EDITDATE mapped, those changed since the watermark minus an overlap; without it,
  all of them. An order whose fingerprint (states and tracking) equals the ledger's is unchanged, one recorded
  as skipped stays skipped; both are left out. Orders with an open quarantine entry are read again every run.
  Each remaining order is decided and staged with the PATCH it calls for. A full refresh reads and decides every
  order again (after the transitions changed); ``resync_ids`` does so for the given orders only, skipped ones
  included. Neither ever reports a state a second time.
* validate — row checks through :mod:`starmamut.quality.runner`: every state the order is in is mapped (or
  ignorable), the mapped Starweb status exists, the tracker type is one the shop has. A failing order is
  quarantined with a reason naming the shop, the order and the state; the other orders go on.
* load — for each order to report, reads the Starweb order first, then: gone (404) → recorded as skipped;
  already in the target status → recorded as reported without a PATCH; in one of the shop's final statuses →
  recorded as skipped; otherwise the PATCH, and right after it the ledger entry. Skipped orders are never
  retried (a manual run with ``resync_ids`` retries them). Orders with nothing to report record their
  fingerprint; an order waiting for its tracking number does not, so it is decided again once its row changes.
  A status Starweb refuses (400/403) is quarantined with Starweb's reason and tried again on the next run.
* report — counts (and on a dry run the PATCHes it would send); the watermark moves to the newest EDITDATE read.

Why the load reads before it writes: a status PATCH is not idempotent in effect (it may e-mail the buyer and
capture the payment), and the ledger entry can only be written after it, so a crash in between leaves no trace
here. Starweb acts on a change of status only, so an order found in the target status has had that change: the
retry records it and sends nothing. The read costs one GET per reported change, never per unchanged order.

Ledger (dimension ``order_status``, sku = Starweb orderId): target ``state:<state>`` = the status id reported for
that state (every state ever reported, so none is reported twice); ``skipped`` = why the order is left alone
(empty once a later report succeeds); ``mamut_state`` = the fingerprint last settled.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from starmamut.config import OrderStatusToStarwebSettings
from starmamut.failpoints import failpoint
from starmamut.jobs.base import BatchCounts, Job, Outcome, Session
from starmamut.jobs.common import JobContext, Reasons, chunked
from starmamut.mamut.order_states import STATE_RULES, OrderState, OrderStateReader
from starmamut.mapping.order_status import decide, state_fingerprint, status_patch, unmapped_states
from starmamut.quality.runner import RowCheck, import_great_expectations
from starmamut.services.reference import UnknownOrderStatus, resolve_statuses
from starmamut.staging.store import Batch, StagedRow
from starmamut.starweb.client import StarwebClient
from starmamut.starweb.errors import StarwebError, StarwebNotFound

REPORTED = "state:"  # ledger target prefix: state:<state> = the status id reported for it
SKIPPED = "skipped"
FINGERPRINT = "mamut_state"
TRACKING_TYPES_PATH = "/shipping-tracking-types"
LEDGER_CHUNK = 500
REFUSAL_STATUSES = frozenset({400, 403})
CHECK_COLUMNS = ("row_key", "unmapped_problem", "status_problem", "tracker_problem")
_COUNTER = {"nothing": "nothing_to_report", "behind": "behind", "wait": "awaiting_tracking"}

log = logging.getLogger(__name__)


class UnknownMamutState(ValueError):
    """The shop's transitions name a Mamut state that no state rule derives (a typo in the config)."""


@dataclass(kw_only=True)
class _Reading(Session):
    reader: OrderStateReader
    targets: dict[str, tuple[int | None, str | None]]
    tracker_types: dict[int, str]
    recheck: set[str]  # orders with an open quarantine entry: decided again every run
    forced: set[str]  # orders asked for by id: decided again, skipped ones included
    newest: datetime | None = None  # the newest EDITDATE read (stays None where EDITDATE is not mapped)


@dataclass(kw_only=True)
class _Writing(Session):
    lock: threading.Lock = field(default_factory=threading.Lock)
    final_statuses: dict[int, str] | None = None
    fingerprints: dict[tuple[str, str], str] = field(default_factory=dict)

    def final(self, ctx: JobContext) -> dict[int, str]:
        """The shop's final statuses, read on the first order to report (one request)."""
        with self.lock:
            if self.final_statuses is None:
                self.final_statuses = _final_statuses(ctx, self.client)
            return self.final_statuses


class OrderStatusToStarweb(Job):
    """Mamut order states reported to Starweb as order statuses, once each (see the module docstring)."""

    name = "order_status_to_starweb"
    entity = "order_status"  # staging entity, quarantine entity and ledger dimension
    noun = "order"
    key_field = "order_id"
    detects_change = "extract"
    read_chunk = LEDGER_CHUNK
    details = (
        "already_in_status",
        "nothing_to_report",
        "behind",
        "awaiting_tracking",
        "recorded_before",
        "skipped_before",
        "deleted",
        "final",
    )

    # extract

    @contextmanager
    def open_extract(self, ctx: JobContext) -> Iterator[Session]:
        """Check the transitions and the final statuses (a config error stops the run before anything is staged)."""
        shop, settings = ctx.shop, ctx.shop.order_status_to_starweb
        _check_transitions(shop.id, settings)
        reader = OrderStateReader(ctx.open_mamut())
        with ctx.open_starweb() as client:
            statuses = client.list_order_statuses()
            resolve_statuses(statuses, settings.final_statuses, shop.id)
            attaching = any(transition.attach_tracking for transition in settings.transitions.values())
            yield _Reading(
                client=client,
                reader=reader,
                targets=_transition_statuses(shop.id, statuses, settings),
                tracker_types=_tracker_types(client) if attaching else {},
                recheck={entry.key for entry in ctx.store.open_quarantine(shop.id, self.entity)},
                forced={str(order_id) for order_id in ctx.params.resync_ids},
            )

    def read_given(self, ctx: JobContext, session: Session) -> Iterable[Any] | None:
        assert isinstance(session, _Reading)
        if not ctx.params.resync_ids:
            return None
        return session.reader.shop_orders(ctx.shop.id, ctx.params.resync_ids)

    def read_changed(self, ctx: JobContext, session: Session, since: datetime | None) -> Iterator[Any]:
        """Those changed since the watermark less the overlap (EDITDATE of a transaction committed late may lie
        behind the watermark); without EDITDATE every order, its fingerprint compared with the ledger."""
        assert isinstance(session, _Reading)
        changed_since = since if session.reader.tracks_changes else None
        return session.reader.iter_shop_orders(ctx.shop.id, changed_since=changed_since)

    def read_quarantined(self, ctx: JobContext, session: Session, seen: set[str]) -> Iterator[Any]:
        assert isinstance(session, _Reading)
        return iter(session.reader.shop_orders(ctx.shop.id, session.recheck - seen))

    def source_key(self, item: OrderState) -> str:
        return item.order_id

    def known_at_extract(self, ctx: JobContext, session: Session, chunk: list[Any]) -> dict[str, dict[str, str]]:
        return _ledger_by_order(ctx, [order.order_id for order in chunk])

    def passes_over(self, ctx: JobContext, session: Session, known: Any, item: Any, counts: BatchCounts) -> bool:
        """An order recorded as skipped stays skipped, one whose fingerprint equals the ledger's is unchanged;
        a full refresh, a resync and the quarantine's re-read decide them again."""
        assert isinstance(session, _Reading)
        order: OrderState = item
        if order.edit_date is not None and (session.newest is None or order.edit_date > session.newest):
            session.newest = order.edit_date
        if ctx.params.full_refresh or order.order_id in session.forced or order.order_id in session.recheck:
            return False
        entries = known.get(order.order_id, {})
        if entries.get(SKIPPED):
            counts.skipped += 1
            counts.count("skipped_before")
            return True
        if entries.get(FINGERPRINT) == state_fingerprint(order):
            counts.unchanged += 1
            return True
        return False

    def normalise(self, ctx: JobContext, session: Session, item: Any, fetched: Any, known: Any) -> dict[str, Any]:
        """The staged decision for one order, with the PATCH it calls for."""
        assert isinstance(session, _Reading)
        settings = ctx.shop.order_status_to_starweb
        entries = known.get(item.order_id, {})
        return _plan(ctx.shop.id, settings, item, entries, session.targets, session.tracker_types)

    def content_hash(self, item: Any, record: Mapping[str, Any]) -> str:
        return state_fingerprint(item)

    def carry(self, ctx: JobContext, session: Session) -> dict[str, Any]:
        """The newest EDITDATE read, where the watermark moves (not after a run by ids or from a date: the mark
        would pass over orders it did not read)."""
        assert isinstance(session, _Reading)
        read_from_mark = not ctx.params.resync_ids and ctx.params.since is None
        newest = session.newest
        return {"high_water": newest.isoformat() if newest is not None and read_from_mark else None}

    # validate

    def check(self, ctx: JobContext, batch_id: str, rows: list[StagedRow]) -> dict[str, Reasons]:
        """An unmapped state, an unknown Starweb status or tracker type."""
        import pandas as pd

        from starmamut.quality.runner import validate_rows

        check_rows = [
            {"row_key": row.key, **{column: row.payload[column] for column in CHECK_COLUMNS[1:]}} for row in rows
        ]
        report = validate_rows(
            pd.DataFrame(check_rows, columns=list(CHECK_COLUMNS)),
            status_checks(),
            key_column="row_key",
            suite_name=f"{ctx.shop.id}_{self.name}_{batch_id}",
        )
        return {
            key: [{"check": failure.check, "reason": failure.reason} for failure in failures]
            for key, failures in report.failures.items()
        }

    # load

    @contextmanager
    def open_load(self, ctx: JobContext, batch_id: str, before_load: Any) -> Iterator[Session]:
        with ctx.open_starweb() as client:
            yield _Writing(client=client, concurrent=True)

    def write_one(self, ctx: JobContext, session: Session, known: Any, row: StagedRow) -> Outcome:
        """Report the decision to Starweb once (see the module docstring); record what was done at once."""
        assert isinstance(session, _Writing)
        action = row.payload["action"]
        if action != "report":
            if action != "wait":  # a waiting order is decided again until its tracking number arrives
                session.fingerprints[(row.key, FINGERPRINT)] = row.content_hash
            return Outcome(counted=None, details={_COUNTER[action]: 1})
        outcome = _settle(ctx, session.client, row, session.final(ctx))
        if outcome == "reported":
            return Outcome()
        if outcome == "would_send":
            return Outcome(counted=None, would_write=True, planned=[f"PATCH /orders/{row.key} {row.payload['body']}"])
        if isinstance(outcome, tuple):
            return Outcome.refused(*outcome)
        counted = {"recorded_before": "unchanged", "deleted": "skipped", "final": "skipped"}.get(outcome)
        return Outcome(counted=counted, details={outcome: 1})

    def after_load(self, ctx: JobContext, batch_id: str, session: Session, counts: BatchCounts) -> None:
        """The fingerprints of orders with nothing to report, so they are not decided again until they change."""
        assert isinstance(session, _Writing)
        for chunk in chunked(session.fingerprints.items(), LEDGER_CHUNK):
            ctx.store.set_ledger(ctx.shop.id, self.entity, dict(chunk))

    # report

    def watermark(self, ctx: JobContext, batch: Batch, extracted: Mapping[str, Any]) -> datetime | None:
        """The newest EDITDATE read (none where EDITDATE is not mapped, or after a run by ids or from a date)."""
        high_water = extracted.get("high_water")
        return datetime.fromisoformat(high_water) if high_water else None


def status_checks() -> list[RowCheck]:
    """Each check column holds the problem in words (None = fine), so the reason is the problem itself."""

    def expect_null(column: str) -> Any:
        return import_great_expectations().expectations.ExpectColumnValuesToBeNull(column=column)

    return [
        RowCheck(
            name=f"{column.removesuffix('_problem')}_ok",
            expectation=partial(expect_null, column),
            describe=partial(_problem_in, column),
        )
        for column in CHECK_COLUMNS[1:]
    ]


def _problem_in(column: str, row: Mapping[str, Any]) -> str:
    return str(row[column])


def _check_transitions(shop_id: str, settings: OrderStatusToStarwebSettings) -> None:
    known = [rule.name for rule in STATE_RULES]
    unknown = sorted(set(settings.transitions) - set(known))
    if unknown:
        raise UnknownMamutState(
            f"shop {shop_id}: order_status_to_starweb.transitions names Mamut state(s) "
            f"{unknown} that no state rule derives; known states: {', '.join(known)}"
        )


def _transition_statuses(
    shop_id: str, statuses: list[dict[str, Any]], settings: OrderStatusToStarwebSettings
) -> dict[str, tuple[int | None, str | None]]:
    """Per mapped state: the Starweb status id, or None and why (an unknown status fails its orders only)."""
    resolved: dict[str, tuple[int | None, str | None]] = {}
    for state, transition in settings.transitions.items():
        try:
            (status_id,) = resolve_statuses(statuses, [transition.status], shop_id)
        except UnknownOrderStatus as exc:
            resolved[state] = (None, str(exc).removeprefix(f"shop {shop_id}: "))  # the order's reason names the shop
        else:
            resolved[state] = (status_id, None)
    return resolved


def _tracker_types(client: StarwebClient) -> dict[int, str]:
    return {entry["type"]: entry["name"] for entry in client.get(TRACKING_TYPES_PATH)["data"]}


def _ledger_by_order(ctx: JobContext, order_ids: list[str]) -> dict[str, dict[str, str]]:
    entries: dict[str, dict[str, str]] = defaultdict(dict)
    for (order_id, target), value in ctx.store.get_ledger(ctx.shop.id, OrderStatusToStarweb.entity, order_ids).items():
        entries[order_id][target] = value
    return entries


def _plan(
    shop_id: str,
    settings: OrderStatusToStarwebSettings,
    order: OrderState,
    entries: Mapping[str, str],
    targets: Mapping[str, tuple[int | None, str | None]],
    tracker_types: Mapping[int, str],
) -> dict[str, Any]:
    """The staged decision for one order: action, state, PATCH body and the problems the checks look at."""
    where = f"shop {shop_id}: order {order.order_id} (Mamut order {order.order_number})"
    reported = [target.removeprefix(REPORTED) for target in entries if target.startswith(REPORTED)]
    decision = decide(
        order.states,
        transitions=settings.transitions,
        rules=STATE_RULES,
        reported=reported,
        allow_backwards=settings.allow_backwards,
        has_tracking=order.tracking_no is not None,
    )
    unmapped = unmapped_states(order.states, settings.transitions, STATE_RULES)
    state = decision.state
    status_id, status_error, body, tracker_problem = None, None, None, None
    if state is not None and decision.action in ("report", "wait"):
        status_id, status_error = targets[state]
    if state is not None and decision.action == "report" and status_id is not None:
        body = status_patch(settings.transitions[state], status_id, order.tracking_no, order.tracker_type)
        tracker = body.get("shippingTrackerType")
        if tracker is not None and tracker not in tracker_types:
            known = ", ".join(f"{number} {name}" for number, name in tracker_types.items())
            tracker_problem = (
                f"{where}: Mamut tracker type {tracker} is not one of the shop's shipping tracking types ({known})"
            )
    return {
        "order_id": order.order_id,
        "mamut_order_number": order.order_number,
        "states": sorted(order.states),
        "action": decision.action,
        "state": decision.state,
        "reason": decision.reason,
        "status_id": status_id,
        "body": body,
        "unmapped_problem": (
            f"{where} is in Mamut state(s) {', '.join(unmapped)} with no transition in "
            "order_status_to_starweb.transitions; map each to a Starweb status (idCode or id)"
            if unmapped
            else None
        ),
        "status_problem": f"{where}, Mamut state {decision.state!r}: {status_error}" if status_error else None,
        "tracker_problem": tracker_problem,
    }


def _final_statuses(ctx: JobContext, client: StarwebClient) -> dict[int, str]:
    """The shop's final status ids with a label for the ledger (idCode, else the id)."""
    statuses = client.list_order_statuses()
    final = resolve_statuses(statuses, ctx.shop.order_status_to_starweb.final_statuses, ctx.shop.id)
    return {
        status["statusId"]: status.get("idCode") or str(status["statusId"])
        for status in statuses
        if status["statusId"] in final
    }


def _settle(ctx: JobContext, client: StarwebClient, row: StagedRow, final: Mapping[int, str]) -> str | tuple[str, str]:
    """One order: read it, then record, skip or PATCH and record (see the module docstring); the outcome's name,
    or ``(check, reason)`` when Starweb refuses the status."""
    key, plan, dry_run = row.key, row.payload, ctx.params.dry_run
    ledger = ctx.store.get_ledger(ctx.shop.id, OrderStatusToStarweb.entity, [key])
    if (key, REPORTED + plan["state"]) in ledger:
        return "recorded_before"  # an earlier try of this load sent and recorded it
    try:
        current = client.get_order(int(key))["statusId"]
    except StarwebNotFound:
        return _skip(ctx, row, "deleted", "the order no longer exists in Starweb")
    if current == plan["status_id"]:
        if not dry_run:
            _record(ctx, row, ledger)
        return "already_in_status"
    if current in final:
        return _skip(ctx, row, "final", f"the order is in final status {final[current]} already")
    if dry_run:
        log.info("dry run: would send PATCH /orders/%s %s (%s)", key, plan["body"], plan["reason"])
        return "would_send"
    failpoint(f"{OrderStatusToStarweb.name}.before_patch")
    try:
        client.patch(f"/orders/{int(key)}", plan["body"])
    except StarwebNotFound:
        return _skip(ctx, row, "deleted", "the order no longer exists in Starweb")
    except StarwebError as exc:
        if exc.status not in REFUSAL_STATUSES:
            raise
        reason = (
            f"shop {ctx.shop.id}: order {key}: Starweb refused status {plan['status_id']} for Mamut state "
            f"{plan['state']!r}: {exc}"
        )
        return "starweb_accepts", reason
    failpoint(f"{OrderStatusToStarweb.name}.after_patch")
    _record(ctx, row, ledger)
    log.info(
        "shop %s: order %s reported as status %s (Mamut state %r)", ctx.shop.id, key, plan["status_id"], plan["state"]
    )
    return "reported"


def _record(ctx: JobContext, row: StagedRow, ledger: Iterable[tuple[str, str]]) -> None:
    """The state as reported, with the fingerprint, in one ledger write; a former skip no longer holds."""
    entries = {
        (row.key, REPORTED + row.payload["state"]): str(row.payload["status_id"]),
        (row.key, FINGERPRINT): row.content_hash,
    }
    if (row.key, SKIPPED) in ledger:
        entries[(row.key, SKIPPED)] = ""
    ctx.store.set_ledger(ctx.shop.id, OrderStatusToStarweb.entity, entries)


def _skip(ctx: JobContext, row: StagedRow, outcome: str, reason: str) -> str:
    """Leave the order alone from now on (a manual resync may try it again); the outcome's name."""
    log.info("shop %s: order %s skipped: %s", ctx.shop.id, row.key, reason)
    if not ctx.params.dry_run:
        ctx.store.set_ledger(
            ctx.shop.id,
            OrderStatusToStarweb.entity,
            {(row.key, SKIPPED): reason, (row.key, FINGERPRINT): row.content_hash},
        )
    return outcome


JOB, ENTITY = OrderStatusToStarweb.name, OrderStatusToStarweb.entity
# The steps bound to one instance, for the CLI, benchmarks and tests (the registry names the class).
extract, validate, load, report, run = (
    getattr(OrderStatusToStarweb(), step) for step in ("extract", "validate", "load", "report", "run")
)
__all__ = ["ENTITY", "JOB", "OrderStatusToStarweb", "UnknownMamutState", "UnknownOrderStatus"]
