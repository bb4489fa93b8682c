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
import sys
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import pandas as pd

from starmamut.config import OrderStatusToStarwebSettings
from starmamut.failpoints import failpoint
from starmamut.jobs.common import JobContext, advance_watermark, apply_verdicts, chunked, close_batch, run_steps
from starmamut.jobs.orders_to_mamut import UnknownOrderStatus, resolve_statuses
from starmamut.mamut.order_states import STATE_RULES, OrderState, OrderStateReader
from starmamut.mapping.order_status import decide, state_fingerprint, status_patch, unmapped_states
from starmamut.quality.runner import RowCheck, import_great_expectations, validate_rows
from starmamut.staging.store import StagedRow
from starmamut.starweb.client import StarwebClient
from starmamut.starweb.errors import StarwebError, StarwebNotFound

JOB = "order_status_to_starweb"
ENTITY = "order_status"  # staging entity, quarantine entity and ledger dimension
REPORTED = "state:"  # ledger target prefix: state:<state> = the status id reported for it
SKIPPED = "skipped"
FINGERPRINT = "mamut_state"
TRACKING_TYPES_PATH = "/shipping-tracking-types"
LEDGER_CHUNK = 500
PLANNED_SHOWN = 100
REFUSAL_STATUSES = frozenset({400, 403})
CHECK_COLUMNS = ("row_key", "unmapped_problem", "status_problem", "tracker_problem")
_COUNTER = {"nothing": "nothing_to_report", "behind": "behind", "wait": "awaiting_tracking"}

log = logging.getLogger(__name__)


class UnknownMamutState(ValueError):
    """The shop's transitions name a Mamut state that no state rule derives (a typo in the config)."""


def extract(ctx: JobContext) -> dict[str, Any]:
    """Stage a decision for every order whose Mamut state changed (see the module docstring)."""
    shop, store, params = ctx.shop, ctx.store, ctx.params
    settings = shop.order_status_to_starweb
    _check_transitions(shop.id, settings)
    reader = OrderStateReader(ctx.open_mamut())
    with ctx.open_starweb() as client:
        statuses = client.list_order_statuses()
        resolve_statuses(statuses, settings.final_statuses, shop.id)
        targets = _transition_statuses(shop.id, statuses, settings)
        attaching = any(transition.attach_tracking for transition in settings.transitions.values())
        tracker_types = _tracker_types(client) if attaching else {}
        requests = client.stats.requests_sent
    batch_id = store.start_batch(shop.id, JOB, ENTITY, dry_run=params.dry_run)
    forced = {str(order_id) for order_id in params.resync_ids}
    recheck = {entry.key for entry in store.open_quarantine(shop.id, ENTITY)}
    counts = {"read": 0, "unchanged": 0, "skipped_before": 0}
    newest: datetime | None = None  # the newest EDITDATE read (stays None where EDITDATE is not mapped)

    def to_stage() -> Iterator[StagedRow]:
        nonlocal newest
        for orders in chunked(_orders_to_read(ctx, reader, recheck), LEDGER_CHUNK):
            ledger = _ledger_by_order(ctx, [order.order_id for order in orders])
            for order in orders:
                counts["read"] += 1
                if order.edit_date is not None and (newest is None or order.edit_date > newest):
                    newest = order.edit_date
                entries = ledger.get(order.order_id, {})
                fingerprint = state_fingerprint(order)
                if not (params.full_refresh or order.order_id in forced or order.order_id in recheck):
                    if entries.get(SKIPPED):
                        counts["skipped_before"] += 1
                        continue
                    if entries.get(FINGERPRINT) == fingerprint:
                        counts["unchanged"] += 1
                        continue
                payload = _plan(shop.id, settings, order, entries, targets, tracker_types)
                yield StagedRow(key=order.order_id, payload=payload, content_hash=fingerprint)

    staged = store.stage_rows(batch_id, ENTITY, to_stage())
    read_from_mark = not params.resync_ids and params.since is None  # else the mark would skip unread orders
    high_water = newest.isoformat() if newest is not None and read_from_mark else None
    log.info("shop %s: staged %d of %d order(s) read from Mamut in batch %s", shop.id, staged, counts["read"], batch_id)
    return {"batch_id": batch_id, **counts, "changed": staged, "requests": requests, "high_water": high_water}


def validate(ctx: JobContext, batch_id: str) -> dict[str, Any]:
    """Quarantine orders with an unmapped state, an unknown Starweb status or tracker type; stop if too many."""
    shop = ctx.shop
    rows = [
        {"row_key": row.key, **{column: row.payload[column] for column in CHECK_COLUMNS[1:]}}
        for row in ctx.store.iter_staged(batch_id, ENTITY)
    ]
    report = validate_rows(
        pd.DataFrame(rows, columns=list(CHECK_COLUMNS)),
        status_checks(),
        key_column="row_key",
        suite_name=f"{shop.id}_{JOB}_{batch_id}",
    )
    reasons = {
        key: [{"check": failure.check, "reason": failure.reason} for failure in failures]
        for key, failures in report.failures.items()
    }
    return apply_verdicts(
        ctx,
        batch_id,
        ENTITY,
        (row["row_key"] for row in rows),
        reasons,
        threshold=shop.order_status_to_starweb.quarantine_threshold,
        noun="order",
    )


def status_checks() -> list[RowCheck]:
    """Each check column holds the problem in words (None = fine), so the reason is the problem itself."""

    def expect_null(column: str) -> Any:
        return import_great_expectations().expectations.ExpectColumnValuesToBeNull(column=column)

    return [
        RowCheck(
            name=f"{column.removesuffix('_problem')}_ok",
            expectation=partial(expect_null, column),
            describe=lambda row, column=column: str(row[column]),
        )
        for column in CHECK_COLUMNS[1:]
    ]


def load(ctx: JobContext, batch_id: str) -> dict[str, Any]:
    """Report each valid decision to Starweb once (see the module docstring); record what was done at once."""
    shop, store, params = ctx.shop, ctx.store, ctx.params
    counts = dict.fromkeys(
        (
            "reported",
            "already_in_status",
            "recorded_before",
            "nothing_to_report",
            "behind",
            "awaiting_tracking",
            "deleted",
            "final",
            "failed",
            "would_send",
            "requests",
        ),
        0,
    )
    to_send: list[StagedRow] = []
    settled: list[str] = []
    fingerprints: dict[tuple[str, str], str] = {}
    for row in store.iter_staged(batch_id, ENTITY, verdict="valid"):
        action = row.payload["action"]
        if action == "report":
            to_send.append(row)
            continue
        counts[_COUNTER[action]] += 1
        settled.append(row.key)
        if action != "wait":  # a waiting order is decided again until its tracking number arrives
            fingerprints[(row.key, FINGERPRINT)] = row.content_hash
    planned: list[str] = []
    if to_send:
        with ctx.open_starweb() as client:
            final = _final_statuses(ctx, client)
            for row, outcome in client.map_concurrent(partial(_settle, ctx, client, batch_id, final), to_send):
                counts[outcome] += 1
                if outcome == "would_send":
                    planned.append(f"PATCH /orders/{row.key} {row.payload['body']}")
                if outcome != "failed":
                    settled.append(row.key)
            counts["requests"] = client.stats.requests_sent
    if params.dry_run:
        return {**counts, "planned": planned[:PLANNED_SHOWN]}
    for chunk in chunked(fingerprints.items(), LEDGER_CHUNK):
        store.set_ledger(shop.id, ENTITY, dict(chunk))
    store.resolve_quarantine(shop.id, ENTITY, settled)
    return counts


def report(
    ctx: JobContext, batch_id: str, extracted: dict[str, Any], validated: dict[str, Any], loaded: dict[str, Any]
) -> dict[str, Any]:
    """Close the batch with its counts; move the watermark (not on dry runs, resyncs or runs from a given date)."""
    counts: dict[str, Any] = {
        "read": extracted["read"],
        "changed": extracted["changed"],
        "loaded": loaded["reported"],
        "unchanged": extracted["unchanged"] + loaded["recorded_before"],
        "already_in_status": loaded["already_in_status"],
        "nothing_to_report": loaded["nothing_to_report"],
        "behind": loaded["behind"],
        "awaiting_tracking": loaded["awaiting_tracking"],
        "skipped": extracted["skipped_before"] + loaded["deleted"] + loaded["final"],
        "quarantined": validated["quarantined"],
        "failed": loaded["failed"],
        "requests": extracted["requests"] + loaded["requests"],
    }
    dry_run = ctx.params.dry_run
    if dry_run:
        counts["would_send"] = loaded["would_send"]
    if extracted["high_water"]:
        advance_watermark(ctx, JOB, datetime.fromisoformat(extracted["high_water"]))
    close_batch(ctx, batch_id, JOB, counts)
    return {**counts, "planned": loaded["planned"]} if dry_run else counts


def run(ctx: JobContext) -> dict[str, Any]:
    """All four steps in one process (CLI, benchmarks, tests); the DAG runs them as separate tasks."""
    return run_steps(sys.modules[__name__], ctx)


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


def _orders_to_read(ctx: JobContext, reader: OrderStateReader, recheck: set[str]) -> Iterator[OrderState]:
    """Given orders only; else those changed since the watermark (all without EDITDATE), then the quarantined."""
    shop, params = ctx.shop, ctx.params
    if params.resync_ids:
        yield from reader.shop_orders(shop.id, params.resync_ids)
        return
    since = params.since
    if since is None and not params.full_refresh:
        watermark = ctx.store.get_watermark(shop.id, JOB)
        # EDITDATE of a transaction committed late may lie behind the watermark
        overlap = timedelta(minutes=shop.order_status_to_starweb.overlap_minutes)
        since = watermark - overlap if watermark else None
    if not reader.tracks_changes:
        since = None  # no EDITDATE: every order is read and its fingerprint compared with the ledger
    seen: set[str] = set()
    for order in reader.iter_shop_orders(shop.id, changed_since=since):
        seen.add(order.order_id)
        yield order
    yield from reader.shop_orders(shop.id, recheck - seen)


def _ledger_by_order(ctx: JobContext, order_ids: list[str]) -> dict[str, dict[str, str]]:
    entries: dict[str, dict[str, str]] = defaultdict(dict)
    for (order_id, target), value in ctx.store.get_ledger(ctx.shop.id, ENTITY, order_ids).items():
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


def _settle(
    ctx: JobContext, client: StarwebClient, batch_id: str, final: Mapping[int, str], row: StagedRow
) -> tuple[StagedRow, str]:
    """One order: read it, then record, skip or PATCH and record (see the module docstring); the outcome's name."""
    key, plan, dry_run = row.key, row.payload, ctx.params.dry_run
    ledger = ctx.store.get_ledger(ctx.shop.id, ENTITY, [key])
    if (key, REPORTED + plan["state"]) in ledger:
        return row, "recorded_before"  # an earlier try of this load sent and recorded it
    try:
        current = client.get_order(int(key))["statusId"]
    except StarwebNotFound:
        return row, _skip(ctx, row, "deleted", "the order no longer exists in Starweb")
    if current == plan["status_id"]:
        if not dry_run:
            _record(ctx, row, ledger)
        return row, "already_in_status"
    if current in final:
        return row, _skip(ctx, row, "final", f"the order is in final status {final[current]} already")
    if dry_run:
        log.info("dry run: would send PATCH /orders/%s %s (%s)", key, plan["body"], plan["reason"])
        return row, "would_send"
    failpoint(f"{JOB}.before_patch")
    try:
        client.patch(f"/orders/{int(key)}", plan["body"])
    except StarwebNotFound:
        return row, _skip(ctx, row, "deleted", "the order no longer exists in Starweb")
    except StarwebError as exc:
        if exc.status not in REFUSAL_STATUSES:
            raise
        reason = (
            f"shop {ctx.shop.id}: order {key}: Starweb refused status {plan['status_id']} for Mamut state "
            f"{plan['state']!r}: {exc}"
        )
        log.warning("quarantined on load: %s", reason)
        ctx.store.quarantine(ctx.shop.id, ENTITY, key, [{"check": "starweb_accepts", "reason": reason}], batch_id)
        return row, "failed"
    failpoint(f"{JOB}.after_patch")
    _record(ctx, row, ledger)
    log.info(
        "shop %s: order %s reported as status %s (Mamut state %r)", ctx.shop.id, key, plan["status_id"], plan["state"]
    )
    return row, "reported"


def _record(ctx: JobContext, row: StagedRow, ledger: Iterable[tuple[str, str]]) -> None:
    """The state as reported, with the fingerprint, in one ledger write; a former skip no longer holds."""
    entries = {
        (row.key, REPORTED + row.payload["state"]): str(row.payload["status_id"]),
        (row.key, FINGERPRINT): row.content_hash,
    }
    if (row.key, SKIPPED) in ledger:
        entries[(row.key, SKIPPED)] = ""
    ctx.store.set_ledger(ctx.shop.id, ENTITY, entries)


def _skip(ctx: JobContext, row: StagedRow, outcome: str, reason: str) -> str:
    """Leave the order alone from now on (a manual resync may try it again); the outcome's name."""
    log.info("shop %s: order %s skipped: %s", ctx.shop.id, row.key, reason)
    if not ctx.params.dry_run:
        ctx.store.set_ledger(
            ctx.shop.id, ENTITY, {(row.key, SKIPPED): reason, (row.key, FINGERPRINT): row.content_hash}
        )
    return outcome
