"""Values Mamut governs (prices, stock) pushed to Starweb: only what differs from the ledger, as absolute values.

The engine behind ``prices_to_starweb`` and ``stock_to_starweb``. Each job's extract checks its mapping, reads
Mamut and maps every value to a :class:`Desired` (SKU, target, canonical ledger value, record); its other
steps are those of its :class:`PushSpec`. Step by step:

* extract — :func:`stage_changes` keeps the values that differ from the ledger (every value on a full
  refresh; open quarantine entries too, so a fixed value is checked again), finds the Starweb variant of each
  SKU (:func:`~starmamut.jobs.starweb_binder.bind_variants_by_sku`) and stages them. A SKU the shop does not
  have is counted, not staged, and remembered (ledger dimension ``not_in_shop``): later runs look for it in
  the id map only, where the products jobs link new variants, instead of searching the shop every run.
* validate — :func:`check_batch` runs the job's Great Expectations suite; failing values are quarantined with
  their reasons, the rest load, unless the failure share passes the shop's threshold.
* load — :func:`push_batch` compares with the ledger again (a retried load skips what the crashed one
  recorded), sends one request per value on the client's concurrent pool, and records each value in the
  ledger right after its request succeeds. A crash between the two re-sends that one value on the retry,
  which is harmless: values are absolute. A value Starweb refuses (400/403/404) is quarantined with
  Starweb's reason; anything else (throttling or server errors past the client's retries) fails the task.
* report — :func:`report_batch` closes the batch with its counts, requests included.

Checks that concern the whole run (a mapped price list, stock location, stock status or warehouse that does
not exist, an inactive price list, a target mapped twice) are the jobs'; they raise :class:`ShopMappingError`
before anything is staged or written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from starmamut.config import ShopConfig, TransformEntity, TransformPoint
from starmamut.failpoints import failpoint
from starmamut.jobs.common import JobContext, apply_verdicts, chunked, close_batch, parse_variant_ref
from starmamut.jobs.starweb_binder import VARIANT, bind_variants_by_sku
from starmamut.mapping.prices_stock import PlannedRequest, row_key
from starmamut.quality.runner import RowCheck, validate_rows
from starmamut.staging.store import Link, StagedRow, StagingStore
from starmamut.starweb.client import StarwebClient
from starmamut.starweb.errors import StarwebError
from starmamut.transforms import RecordTransforms

LEDGER_CHUNK = 2000
# Ledger dimension remembering SKUs the shop did not have when searched (target "shop", value: when).
NOT_IN_SHOP = "not_in_shop"
LOAD_CHUNK = 500
CHECK_CHUNK = 5_000  # values per run of the Great Expectations suite (its results grow with the rows)
PLANNED_SHOWN = 100
# Answers that refuse one value (bad value, forbidden target, variant or list gone): quarantine it, go on.
REFUSAL_STATUSES = frozenset({400, 403, 404})

log = logging.getLogger(__name__)


class ShopMappingError(ValueError):
    """The shop's price-list or stock mapping does not fit the shop or Mamut (a price list, stock location,
    stock status or warehouse that does not exist, an inactive price list, or a target mapped twice); raised
    before anything is staged or written, naming the culprit."""


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


@dataclass(frozen=True)
class PushSpec:
    """One job's part in the engine (its names, checks and requests); its steps are the job's steps."""

    job: str
    entity: str  # staging entity, quarantine entity and ledger dimension
    columns: tuple[str, ...]
    check_row: Callable[[str, Mapping[str, Any]], dict[str, Any]]
    checks: Callable[[], list[RowCheck]]
    request: Callable[[Mapping[str, Any], tuple[int, int], str | None], PlannedRequest]
    """(staged record, (product id, variant id), last pushed value or None) → the request."""
    threshold: Callable[[ShopConfig], float]
    """The shop's quarantine threshold for this job."""
    transforms: TransformEntity
    """The entity whose custom transforms the shop lists for this job (prices, stock)."""
    ledger_value: Callable[[Mapping[str, Any]], str]
    """A record's canonical ledger value, recomputed after transforms have changed the record."""

    def validate(self, ctx: JobContext, batch_id: str) -> dict[str, int]:
        """Run the job's checks; quarantine failing values with their reasons; stop if too many fail."""
        return check_batch(ctx, self, batch_id, self.threshold(ctx.shop))

    def load(self, ctx: JobContext, batch_id: str) -> dict[str, Any]:
        """Send each valid value that still differs from the ledger; record it in the ledger right after."""
        return push_batch(ctx, self, batch_id)

    def report(
        self,
        ctx: JobContext,
        batch_id: str,
        extracted: dict[str, Any],
        validated: dict[str, Any],
        loaded: dict[str, Any],
    ) -> dict[str, Any]:
        """Close the batch with its counts (read, changed, loaded, unchanged, quarantined, failed, requests)."""
        return report_batch(ctx, self, batch_id, extracted, validated, loaded)


def stage_changes(ctx: JobContext, spec: PushSpec, client: StarwebClient, desired: Iterable[Desired]) -> dict[str, Any]:
    """Start a batch and stage the values to push (see the module docstring); returns the batch id, counts
    (read, unchanged, changed, not_in_shop) and the requests ``client`` has used, for the extract step.

    Values whose SKU the id map places are staged chunk by chunk, so memory stays flat however large the
    catalogue; only the others are held until their SKUs are bound in one call, so the shop is searched at
    most once per run (a search may list the whole catalogue).
    """
    shop, store, full_refresh = ctx.shop.id, ctx.store, ctx.params.full_refresh
    batch_id = store.start_batch(shop, spec.job, spec.entity, dry_run=ctx.params.dry_run)
    recheck = {entry.key for entry in store.open_quarantine(shop, spec.entity)}
    after_mapping = _transforms(ctx, spec, batch_id, "after_mapping")
    counts = {"read": 0, "unchanged": 0, "changed": 0}
    unplaced: list[Desired] = []
    for chunk in chunked(desired, LEDGER_CHUNK):
        counts["read"] += len(chunk)
        if after_mapping:
            chunk = [kept for item in chunk if (kept := _transformed(spec, after_mapping, item)) is not None]
        ledger = {} if full_refresh else store.get_ledger(shop, spec.entity, {item.sku for item in chunk})
        changed = [
            item
            for item in chunk
            if full_refresh or item.key in recheck or ledger.get((item.sku, item.target)) != item.value
        ]
        counts["changed"] += len(changed)
        placed = store.find_links_by_sku(shop, VARIANT, {item.sku for item in changed})
        _stage_placed(store, spec, batch_id, changed, placed)
        unplaced.extend(item for item in changed if item.sku not in placed)
    transformed = after_mapping.finish()
    counts["unchanged"] = counts["read"] - counts["changed"] - sum(transformed.values())
    links = _bind(ctx, client, list(dict.fromkeys(item.sku for item in unplaced)))
    staged = counts["changed"] - len(unplaced) + _stage_placed(store, spec, batch_id, unplaced, links)
    not_in_shop = sorted({item.sku for item in unplaced if item.sku not in links})
    if not_in_shop:
        log.info(
            "shop %s: %d Mamut article(s) have no variant in the shop and are left out, e.g. %s",
            shop,
            len(not_in_shop),
            ", ".join(not_in_shop[:10]),
        )
    return {
        "batch_id": batch_id,
        "read": counts["read"],
        "unchanged": counts["unchanged"],
        "changed": staged,
        "not_in_shop": len(not_in_shop),
        "requests": client.stats.requests_sent,
        **transformed,
    }


def _stage_placed(
    store: StagingStore, spec: PushSpec, batch_id: str, items: Iterable[Desired], links: Mapping[str, Link]
) -> int:
    """Stage the values whose SKU has a variant link, naming the variant; returns how many were staged."""
    return store.stage_rows(
        batch_id,
        spec.entity,
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


def _transforms(ctx: JobContext, spec: PushSpec, batch_id: str, point: TransformPoint) -> RecordTransforms:
    """The shop's transforms of this job's values at one point; they see the staged record (with ``sku`` and
    ``target``; ``value`` follows from the rest), and ``target`` stays fixed."""
    return RecordTransforms(
        ctx,
        batch_id,
        job=spec.job,
        entity=spec.transforms,
        point=point,
        staged_entity=spec.entity,
        key=lambda record: row_key(record["sku"], record["target"]),
        fixed=("target",) if point == "after_mapping" else ("sku", "target", "variant"),
    )


def _transformed(spec: PushSpec, after_mapping: RecordTransforms, item: Desired) -> Desired | None:
    """A desired value after the after_mapping transforms, its ledger value recomputed (a SKU mapped here is
    the one bound, compared and recorded)."""
    record = after_mapping.apply({**item.record, "sku": item.sku, "target": item.target})
    if record is None:
        return None
    sku, target = record.pop("sku"), record.pop("target")
    return Desired(sku=sku, target=target, value=spec.ledger_value(record), record=record)


def _bind(ctx: JobContext, client: StarwebClient, skus: list[str]) -> dict[str, Link]:
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


def check_batch(ctx: JobContext, spec: PushSpec, batch_id: str, threshold: float) -> dict[str, int]:
    """Validate the staged values; quarantine the failing ones with their reasons; stop if too many fail.

    The suite runs on ``CHECK_CHUNK`` values at a time (the threshold applies to each), so a first push of a
    whole catalogue is checked in flat memory.
    """
    shop, store = ctx.shop.id, ctx.store
    counts = {"valid": 0, "quarantined": 0}
    for chunk in chunked(store.iter_staged(batch_id, spec.entity), CHECK_CHUNK):
        rows = [spec.check_row(row.key, row.payload) for row in chunk]
        report = validate_rows(
            pd.DataFrame(rows, columns=list(spec.columns)),
            spec.checks(),
            key_column="row_key",
            suite_name=f"{shop}_{spec.job}_{batch_id}",
        )
        reasons = {
            key: [{"check": failure.check, "reason": failure.reason} for failure in failures]
            for key, failures in report.failures.items()
        }
        verdicts = apply_verdicts(
            ctx,
            batch_id,
            spec.entity,
            (row["row_key"] for row in rows),
            reasons,
            threshold=threshold,
            noun=f"{spec.entity} value",
        )
        counts = {key: counts[key] + verdicts[key] for key in counts}
    return counts


def push_batch(ctx: JobContext, spec: PushSpec, batch_id: str) -> dict[str, Any]:
    """Send the valid staged values that still differ from the ledger (see the module docstring)."""
    shop, store, params = ctx.shop.id, ctx.store, ctx.params
    counts: dict[str, Any] = {"loaded": 0, "unchanged": 0, "failed": 0, "requests": 0, "write_requests": 0}
    held = {entry.key for entry in store.open_quarantine(shop, spec.entity)}
    settled: list[str] = []  # held values now pushed or found pushed: their quarantine entries close
    before_load = _transforms(ctx, spec, batch_id, "before_load")

    def pending() -> Iterator[tuple[StagedRow, PlannedRequest]]:
        for chunk in chunked(store.iter_staged(batch_id, spec.entity, verdict="valid"), LOAD_CHUNK):
            ledger = store.get_ledger(shop, spec.entity, {row.payload["sku"] for row in chunk})
            for row in chunk:
                if before_load:  # before the comparison, so a value the transform changes is compared as sent
                    record = before_load.apply({k: v for k, v in row.payload.items() if k != "value"})
                    if record is None:
                        continue
                    row = replace(row, payload={**record, "value": spec.ledger_value(record)})
                previous = ledger.get((row.payload["sku"], row.payload["target"]))
                if previous == row.payload["value"] and not params.full_refresh:
                    counts["unchanged"] += 1
                    if row.key in held:
                        settled.append(row.key)
                    continue
                yield row, spec.request(row.payload, parse_variant_ref(row.payload["variant"]), previous)

    if params.dry_run:
        planned = [request.describe() for _row, request in pending()]
        for line in planned:
            log.info("dry run: would send %s", line)
        return {**counts, **before_load.finish(), "would_write": len(planned), "planned": planned[:PLANNED_SHOWN]}

    with ctx.open_starweb() as client:
        for row, refusal in client.map_concurrent(lambda item: _send(ctx, spec, client, *item), pending()):
            if refusal is None:
                counts["loaded"] += 1
                if row.key in held:
                    settled.append(row.key)
                continue
            counts["failed"] += 1
            log.warning("shop %s: %s %s quarantined on load: %s", shop, spec.entity, row.key, refusal)
            store.quarantine(shop, spec.entity, row.key, [{"check": "starweb_accepts", "reason": refusal}], batch_id)
        stats = client.stats.as_dict()
    counts["requests"] = stats["requests_sent"]
    counts["write_requests"] = stats["requests_sent"] - stats["token_fetches"]
    store.resolve_quarantine(shop, spec.entity, settled)
    return {**counts, **before_load.finish()}


def _send(
    ctx: JobContext, spec: PushSpec, client: StarwebClient, row: StagedRow, request: PlannedRequest
) -> tuple[StagedRow, str | None]:
    """One write, then its ledger entry at once; Starweb's refusal of this one value comes back as the reason."""
    try:
        if request.method == "PUT":
            client.put(request.path, request.body)
        else:
            client.patch(request.path, request.body)
    except StarwebError as exc:
        if exc.status in REFUSAL_STATUSES:
            return row, f"Starweb refused {request.describe()}: {exc.error_description or exc.error or exc.status}"
        raise
    failpoint(f"{spec.job}.after_request")
    ctx.store.set_ledger(ctx.shop.id, spec.entity, {(row.payload["sku"], row.payload["target"]): row.payload["value"]})
    return row, None


def report_batch(
    ctx: JobContext,
    spec: PushSpec,
    batch_id: str,
    extracted: Mapping[str, Any],
    validated: Mapping[str, Any],
    loaded: Mapping[str, Any],
) -> dict[str, Any]:
    """Close the batch with its counts and log them as a table; a dry run also returns the planned requests."""
    counts: dict[str, Any] = {
        "read": extracted["read"],
        "changed": extracted["changed"],
        "loaded": loaded["loaded"],
        "unchanged": extracted["unchanged"] + loaded["unchanged"],
        "skipped": extracted["skipped"] + loaded["skipped"],
        "quarantined": validated["quarantined"] + extracted["rejected"],
        "failed": loaded["failed"] + loaded["rejected"],
        "not_in_shop": extracted["not_in_shop"],
        "requests": extracted["requests"] + loaded["requests"],
        "write_requests": loaded["write_requests"],
    }
    if ctx.params.dry_run:
        counts["would_write"] = loaded["would_write"]
    close_batch(ctx, batch_id, spec.job, counts)
    if ctx.params.dry_run:
        return {**counts, "planned": loaded["planned"]}
    return counts
