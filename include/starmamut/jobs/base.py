"""The one shape of a sync job: extract → validate → load → report, with the rules every job obeys, once.

A job is a subclass of :class:`Job` that says only what differs: where its records come from and how one is
normalised (extract), what its checks are (validate), how one record is written (load). The base runs the loops
and applies the cross-job rules:

* **Record-level errors.** A source record whose own data cannot be read is staged as a stand-in holding its
  reasons (:func:`~starmamut.jobs.common.read_record`), so the gate counts it and the batch goes on; a record the
  target refuses is quarantined on load (:class:`Outcome` with a ``problem``) and the batch goes on.
* **The gate.** Every staged record gets its verdict through :func:`~starmamut.jobs.common.apply_verdicts`: a
  batch whose failing share passes the shop's threshold is stopped and never loaded (``run_step``).
* **Quarantine heals.** Open quarantine entries are read again by key on every run (:meth:`Job.read_quarantined`),
  and an entry closes once its record is written or found unchanged.
* **Watermarks.** Only a complete live read moves the job's watermark
  (:func:`~starmamut.jobs.common.advance_watermark`), after the load; a job reading Starweb by time first checks
  the clocks agree (:func:`~starmamut.jobs.common.check_clock`).
* **One vocabulary.** Every step counts into a :class:`BatchCounts`; the report sums the three steps' counts and
  closes the batch. Airflow passes the steps' results between tasks as plain dicts (XCom), so each step returns
  ``BatchCounts.as_dict()`` and the report reads them back with ``BatchCounts.from_dict``.

Hooks a job overrides (the defaults suit a job that reads Starweb by time and writes one record at a time):

========================  ======================================================================================
``open_extract``          the extract's session (clients, checks of the job's mapping before anything is staged)
``read_given``            the records a manual run asks for by id or SKU
``read_changed``          the records changed since a point in time (the watermark minus the overlap)
``read_by_key``           one record by its key, for the quarantine re-read
``known_at_extract``      lookups for a chunk of source records (e.g. which are already transferred)
``passes_over``           leave a source record out before it is read (counted by the job)
``fetch``                 what else one record needs from the source (e.g. its variants)
``normalise``             one source record → the staged record (guarded: a record error quarantines it)
``stage_batch``           the whole staging, for a job whose extract does not fit the loop above
``check``                 the reasons each readable staged record fails its checks
``open_load``             the load's session (clients, repositories)
``known_at_load``         lookups for a chunk of staged records (links, ledger)
``unchanged``             the target already has this record: nothing to write
``write_one``             write one record; returns its :class:`Outcome`
``after_load``            what the load records once every record is written (e.g. a ledger)
``watermark``             where the watermark moves after a complete live run (default: the batch's start)
========================  ======================================================================================

A job whose extract does not fit (the ledger pushes compare with a ledger and bind SKUs first) overrides
:meth:`Job.stage_batch`; every other step still comes from here.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any, ClassVar, Literal

from starmamut.config import ShopConfig, TransformEntity, TransformPoint
from starmamut.jobs.common import (
    UNREADABLE,
    JobContext,
    Reasons,
    advance_watermark,
    apply_verdicts,
    check_clock,
    chunked,
    close_batch,
    quarantine_on_load,
    read_record,
    reread_quarantined,
    run_steps,
)
from starmamut.staging.store import Batch, StagedRow

log = logging.getLogger(__name__)

SHOWN = 100
"""Entries of a list in a step's result (planned writes, conflicts); all of them go to the log."""

COUNTED = (
    "read",
    "changed",
    "valid",
    "quarantined",
    "loaded",
    "unchanged",
    "skipped",
    "failed",
    "requests",
    "write_requests",
)


@dataclass
class BatchCounts:
    """What a step did, in the words every job uses; the report adds up its steps' counts.

    Each job counts a thing at the step where it sees it (``changed`` at extract where the extract compares
    with the target, at load otherwise), so the sum never counts a record twice. ``details`` are the job's own
    counts beside these (e.g. ``customers_created``); ``lists`` the first entries of what a run would write or
    could not decide (``planned``, ``conflict_reasons``).
    """

    read: int = 0  # source records read
    changed: int = 0  # records that differ from what the target last got (to write)
    valid: int = 0  # staged records that passed the checks
    quarantined: int = 0  # held before the load: failed the checks, unreadable, or rejected by a transform
    loaded: int = 0  # written to the target (or found written by an earlier try)
    unchanged: int = 0  # the target has them already: nothing sent
    skipped: int = 0  # left out on purpose (a transform's Skip, an order in a final status, …)
    failed: int = 0  # refused at the load (by the target or a before_load transform): quarantined
    requests: int = 0  # Starweb requests
    write_requests: int = 0  # of which writes
    would_write: int = 0  # dry run: records a live run would write
    details: dict[str, int] = field(default_factory=dict)
    lists: dict[str, list[str]] = field(default_factory=dict)

    def count(self, name: str, amount: int = 1) -> None:
        """Add to a common count or, for any other name, to the job's details."""
        if name in COUNTED or name == "would_write":
            setattr(self, name, getattr(self, name) + amount)
        else:
            self.details[name] = self.details.get(name, 0) + amount

    def note(self, name: str, entries: Iterable[str]) -> None:
        """Keep the first :data:`SHOWN` entries of a list."""
        kept = self.lists.setdefault(name, [])
        kept.extend(entry for entry, _ in zip(entries, range(SHOWN - len(kept)), strict=False))

    def add_transforms(self, counts: Mapping[str, int], *, at_load: bool) -> None:
        """A step's transform counts: a skip is skipped; a reject is quarantined at extract, failed at load."""
        self.skipped += counts.get("skipped", 0)
        if at_load:
            self.failed += counts.get("rejected", 0)
        else:
            self.quarantined += counts.get("rejected", 0)

    def __add__(self, other: BatchCounts) -> BatchCounts:
        total = BatchCounts(
            **{name: getattr(self, name) + getattr(other, name) for name in (*COUNTED, "would_write")},
            details=dict(self.details),
        )
        for name, amount in other.details.items():
            total.details[name] = total.details.get(name, 0) + amount
        for source in (self, other):
            for name, entries in source.lists.items():
                total.note(name, entries)
        return total

    def as_dict(self, *, dry_run: bool = False, lists: bool = True) -> dict[str, Any]:
        """JSON-able, for XCom and the batch record: the common counts, then the details, then the lists; a
        dry run adds ``would_write`` and always lists ``planned``."""
        result: dict[str, Any] = {name: getattr(self, name) for name in COUNTED}
        if dry_run:
            result["would_write"] = self.would_write
        result.update(self.details)
        if lists:
            result.update({name: list(entries) for name, entries in self.lists.items()})
            if dry_run:
                result.setdefault("planned", [])
        return result

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BatchCounts:
        """Back from a step's result: common counts by name, other whole numbers as details, lists as lists
        (anything else, such as the batch id, is not a count)."""
        counts = cls()
        known = {item.name for item in fields(cls)} - {"details", "lists"}
        for name, value in data.items():
            if isinstance(value, bool):
                continue
            if name in known and isinstance(value, int):
                setattr(counts, name, value)
            elif isinstance(value, int):
                counts.details[name] = value
            elif isinstance(value, list) and all(isinstance(entry, str) for entry in value):
                counts.lists[name] = list(value)
        return counts


@dataclass
class Outcome:
    """What writing one record did, or in a dry run would do.

    ``counted`` names the count it adds one to (``loaded``, ``unchanged``, ``skipped``, ``failed`` or a detail;
    None for none). A ``problem`` ``(check, reason)`` quarantines the record on load. A record without a problem
    closes its open quarantine entry unless ``settles`` says otherwise.
    """

    counted: str | None = "loaded"
    problem: tuple[str, str] | None = None
    settles: bool | None = None
    would_write: bool = False
    writes: int = 0
    details: dict[str, int] = field(default_factory=dict)
    planned: list[str] = field(default_factory=list)
    lists: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def refused(cls, check: str, reason: str, **more: Any) -> Outcome:
        """The target refused this record (or it cannot be mapped): failed, quarantined with the reason."""
        return cls(counted="failed", problem=(check, reason), **more)

    @property
    def closes_quarantine(self) -> bool:
        return self.problem is None if self.settles is None else self.settles


@dataclass(kw_only=True)
class Session:
    """What a step holds open while it runs: the Starweb client (if the step uses Starweb), whatever else the
    job adds in a subclass. ``concurrent`` runs :meth:`map` on the client's pool of threads."""

    client: Any = None  # StarwebClient (kept out of the annotations: the base imports no client)
    concurrent: bool = False

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        if self.concurrent and self.client is not None:
            return self.client.map_concurrent(fn, items)
        return map(fn, items)

    @property
    def requests(self) -> int:
        return self.client.stats.requests_sent if self.client is not None else 0


class NoTransforms:
    """A job whose records the shop cannot transform: everything passes as it is."""

    def __bool__(self) -> bool:
        return False

    def apply(self, record: dict[str, Any], *, source: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        return record

    def preview(self, record: dict[str, Any]) -> dict[str, Any] | None:
        return record

    def finish(self) -> dict[str, int]:
        return {"skipped": 0, "rejected": 0}


class Job:
    """A sync job: subclass it, set the class attributes, override the hooks that differ (see the module
    docstring), and register the class in :mod:`starmamut.jobs.registry`.

    The steps keep no state on the instance (a task runs one step in its own process), so one instance serves
    every run; what a step holds open lives in its :class:`Session`.
    """

    name: ClassVar[str]  # the registry's name, the batch's job and the watermark's key
    entity: ClassVar[str]  # staging, quarantine and id-map entity of the records
    noun: ClassVar[str] = "record"  # how a record is named in logs and reasons ("order", "product")
    key_field: ClassVar[str] = "key"  # the staged record's field holding its key
    transform_entity: ClassVar[TransformEntity | None] = None  # the shop's transforms for these records
    detects_change: ClassVar[Literal["extract", "load"]] = "load"  # the step that counts ``changed``
    keeps_watermark: ClassVar[bool] = True
    reads_starweb_by_time: ClassVar[bool] = False  # check the clocks agree before reading Starweb by time
    details: ClassVar[tuple[str, ...]] = ()  # the job's own counts, reported even when zero
    dry_run_details: ClassVar[tuple[str, ...]] = ()  # the same, of a dry run (what it would write)
    read_chunk: ClassVar[int] = 500  # source records per known_at_extract call
    load_chunk: ClassVar[int] = 500  # staged records per known_at_load call
    check_chunk: ClassVar[int | None] = None  # staged records per run of the checks (None: all at once)
    compare_after_transforms: ClassVar[bool] = False  # run the before_load transforms before ``unchanged``

    # ------------------------------------------------------------------------------------------- settings

    def settings(self, shop: ShopConfig) -> Any:
        """The shop's section for this job (quarantine threshold, overlap)."""
        return getattr(shop, self.name)

    def threshold(self, shop: ShopConfig) -> float:
        return float(self.settings(shop).quarantine_threshold)

    def overlap(self, shop: ShopConfig) -> timedelta:
        return timedelta(minutes=self.settings(shop).overlap_minutes)

    def counts(self, ctx: JobContext) -> BatchCounts:
        """A step's counts, starting at zero, the job's own ones included."""
        names = self.details + (self.dry_run_details if ctx.params.dry_run else ())
        return BatchCounts(details=dict.fromkeys(names, 0))

    # ---------------------------------------------------------------------------------------------- steps

    def run(self, ctx: JobContext) -> dict[str, Any]:
        """All four steps in one process (CLI, benchmarks, tests); the DAG runs them as separate tasks."""
        return run_steps(self, ctx)

    def extract(self, ctx: JobContext) -> dict[str, Any]:
        """Stage the records to sync (changed since the watermark, or those asked for, plus the quarantine's)."""
        counts = self.counts(ctx)
        with self.open_extract(ctx) as session:
            batch_id = ctx.store.start_batch(ctx.shop.id, self.name, self.entity, dry_run=ctx.params.dry_run)
            after_mapping = self.transforms(ctx, batch_id, "after_mapping")
            staged = self.stage_batch(ctx, session, batch_id, after_mapping, counts)
            counts.requests += session.requests
            carried = self.carry(ctx, session)
        counts.add_transforms(after_mapping.finish(), at_load=False)
        if self.detects_change == "extract":
            counts.changed += staged
        self.after_extract(ctx, session, counts)
        log.info(
            "shop %s: staged %d %s(s) of %d read in batch %s", ctx.shop.id, staged, self.noun, counts.read, batch_id
        )
        return {"batch_id": batch_id, **counts.as_dict(), **carried}

    def validate(self, ctx: JobContext, batch_id: str) -> dict[str, Any]:
        """Run the job's checks; quarantine failing records with their reasons; stop if too many fail."""
        counts = self.counts(ctx)
        judged = False
        for chunk in chunked(ctx.store.iter_staged(batch_id, self.entity), self.check_chunk or sys.maxsize):
            reasons: dict[str, Reasons] = {
                row.key: list(row.payload[UNREADABLE]) for row in chunk if UNREADABLE in row.payload
            }
            readable = [row for row in chunk if row.key not in reasons]
            if readable:
                for key, found in self.check(ctx, batch_id, readable).items():
                    reasons.setdefault(key, []).extend(found)
            self._judge(ctx, batch_id, [row.key for row in chunk], reasons, counts)
            judged = True
        if not judged:
            self._judge(ctx, batch_id, [], {}, counts)
        return counts.as_dict()

    def _judge(
        self, ctx: JobContext, batch_id: str, keys: list[str], reasons: Mapping[str, Reasons], counts: BatchCounts
    ) -> None:
        verdicts = apply_verdicts(
            ctx, batch_id, self.entity, keys, reasons, threshold=self.threshold(ctx.shop), noun=self.noun
        )
        counts.valid += verdicts["valid"]
        counts.quarantined += verdicts["quarantined"]

    def load(self, ctx: JobContext, batch_id: str) -> dict[str, Any]:
        """Write each valid record the target does not have yet; quarantine what it refuses; close the entries
        of records written or found unchanged."""
        store, shop, dry_run = ctx.store, ctx.shop.id, ctx.params.dry_run
        counts = self.counts(ctx)
        held = {entry.key for entry in store.open_quarantine(shop, self.entity)}
        settled: list[str] = []
        before_load = self.transforms(ctx, batch_id, "before_load")
        with self.open_load(ctx, batch_id, before_load) as session:
            work = self._to_write(ctx, session, batch_id, before_load, counts, settled)
            for row, outcome in session.map(lambda item: (item[1], self.write_one(ctx, session, *item)), work):
                self._tally(ctx, batch_id, row, outcome, counts)
                if outcome.closes_quarantine:
                    settled.append(row.key)
            counts.requests += session.requests
            if not dry_run:
                self.after_load(ctx, batch_id, session, counts)
        counts.add_transforms(before_load.finish(), at_load=True)
        if not dry_run:
            store.resolve_quarantine(shop, self.entity, [key for key in settled if key in held])
        return counts.as_dict(dry_run=dry_run)

    def _to_write(
        self,
        ctx: JobContext,
        session: Session,
        batch_id: str,
        before_load: Any,
        counts: BatchCounts,
        settled: list[str],
    ) -> Iterator[tuple[Any, StagedRow]]:
        """``(known, row)`` for each valid record to write, after the before_load transforms; records the target
        has already are counted unchanged (and settle)."""
        for chunk in chunked(ctx.store.iter_staged(batch_id, self.entity, verdict="valid"), self.load_chunk):
            known = self.known_at_load(ctx, session, chunk)
            for row in chunk:
                if not self.compare_after_transforms and self.unchanged(ctx, known, row):
                    counts.unchanged += 1
                    settled.append(row.key)
                    continue
                record = before_load.apply(row.payload)
                if record is None:
                    continue
                prepared = self.prepared(row, record)
                if self.compare_after_transforms and self.unchanged(ctx, known, prepared):
                    counts.unchanged += 1
                    settled.append(row.key)
                    continue
                if self.detects_change == "load":
                    counts.changed += 1
                yield known, prepared

    def _tally(self, ctx: JobContext, batch_id: str, row: StagedRow, outcome: Outcome, counts: BatchCounts) -> None:
        if outcome.counted is not None:
            counts.count(outcome.counted)
        for name, amount in outcome.details.items():
            counts.count(name, amount)
        counts.write_requests += outcome.writes
        counts.would_write += outcome.would_write
        if outcome.planned:
            counts.note("planned", outcome.planned)
        for name, entries in outcome.lists.items():
            counts.note(name, entries)
        if outcome.problem is not None:
            quarantine_on_load(ctx, batch_id, self.entity, row.key, *outcome.problem)

    def report(
        self,
        ctx: JobContext,
        batch_id: str,
        extracted: Mapping[str, Any],
        validated: Mapping[str, Any],
        loaded: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Add up the steps' counts, move the watermark after a complete live run, close the batch."""
        counts = BatchCounts.from_dict(extracted) + BatchCounts.from_dict(validated) + BatchCounts.from_dict(loaded)
        if self.keeps_watermark and not ctx.params.dry_run:
            mark = self.watermark(ctx, ctx.store.get_batch(batch_id), extracted)
            if mark is not None:
                advance_watermark(ctx, self.name, mark)
        dry_run = ctx.params.dry_run
        stored = counts.as_dict(dry_run=dry_run, lists=False)
        if dry_run:  # what a live run would write (the first SHOWN), for the operator view
            stored["planned"] = list(counts.lists.get("planned", []))
        close_batch(ctx, batch_id, self.name, stored)
        return counts.as_dict(dry_run=dry_run)

    # ------------------------------------------------------------------------------------------- extract

    def open_extract(self, ctx: JobContext) -> AbstractContextManager[Session]:
        """The extract's session; default: Starweb, with the clocks checked when the job reads by time."""
        return self.starweb_session(ctx, check_clocks=self.reads_starweb_by_time)

    @contextmanager
    def starweb_session(
        self, ctx: JobContext, *, check_clocks: bool = False, concurrent: bool = True
    ) -> Iterator[Session]:
        with ctx.open_starweb() as client:
            if check_clocks:
                self.check_clocks(ctx, client)
            yield Session(client=client, concurrent=concurrent)

    def check_clocks(self, ctx: JobContext, client: Any) -> None:
        """Before reading Starweb by time: stop if this worker's clock and Starweb's differ by more than half
        the job's overlap (see :func:`~starmamut.jobs.common.check_clock`)."""
        check_clock(client, self.settings(ctx.shop).overlap_minutes)

    def stage_batch(
        self, ctx: JobContext, session: Session, batch_id: str, after_mapping: Any, counts: BatchCounts
    ) -> int:
        """Stage the batch's records (see :meth:`stage`); returns how many were staged."""
        return ctx.store.stage_rows(batch_id, self.entity, self.stage(ctx, session, after_mapping, counts))

    def stage(self, ctx: JobContext, session: Session, after_mapping: Any, counts: BatchCounts) -> Iterator[StagedRow]:
        """The staged rows: each source record read, left out (``passes_over``), or normalised (a record error
        stages its reasons instead), then transformed. Runs inside the staging write: no store writes here."""
        for chunk in chunked(self.select(ctx, session), self.read_chunk):
            known = self.known_at_extract(ctx, session, chunk)
            wanted = []
            for item in chunk:
                counts.read += 1
                if not self.passes_over(ctx, session, known, item, counts):
                    wanted.append(item)
            for item, fetched in session.map(lambda item: (item, self.fetch(ctx, session, item)), wanted):
                key = self.source_key(item)
                record: dict[str, Any] | None = read_record(
                    self.noun,
                    key,
                    self.key_field,
                    partial(self.normalise, ctx, session, item, fetched, known),
                )
                if record is not None and UNREADABLE not in record:
                    record = after_mapping.apply(record, source=self.transform_source(item))
                if record is not None:
                    yield StagedRow(key=key, payload=record, content_hash=self.content_hash(item, record))

    def select(self, ctx: JobContext, session: Session) -> Iterator[Any]:
        """The source records to read: those asked for; else those changed since the watermark (less the
        overlap), then the open quarantine entries not read already."""
        given = self.read_given(ctx, session)
        if given is not None:
            yield from given
            return
        seen: set[str] = set()
        for item in self.read_changed(ctx, session, self.since(ctx)):
            seen.add(self.source_key(item))
            yield item
        yield from self.read_quarantined(ctx, session, seen)

    def since(self, ctx: JobContext) -> datetime | None:
        """Where a read by time starts: the run's ``since``, else the watermark less the overlap (None: all)."""
        if ctx.params.since is not None:
            return ctx.params.since
        watermark = None if ctx.params.full_refresh else ctx.store.get_watermark(ctx.shop.id, self.name)
        return watermark - self.overlap(ctx.shop) if watermark else None

    def read_given(self, ctx: JobContext, session: Session) -> Iterable[Any] | None:
        """The records a manual run asks for (``resync_ids``, ``skus``), or None for a run over the source."""
        return None

    def read_changed(self, ctx: JobContext, session: Session, since: datetime | None) -> Iterator[Any]:
        raise NotImplementedError

    def read_quarantined(self, ctx: JobContext, session: Session, seen: set[str]) -> Iterator[Any]:
        """Every open quarantine entry not read already, read again by key (a record gone closes its entry)."""
        return reread_quarantined(ctx, self.entity, seen, lambda key: self.read_by_key(ctx, session, key))

    def read_by_key(self, ctx: JobContext, session: Session, key: str) -> Any:
        raise NotImplementedError

    def source_key(self, item: Any) -> str:
        """The key of a source record (the staged key)."""
        raise NotImplementedError

    def known_at_extract(self, ctx: JobContext, session: Session, chunk: list[Any]) -> Any:
        return None

    def passes_over(self, ctx: JobContext, session: Session, known: Any, item: Any, counts: BatchCounts) -> bool:
        """Leave this source record out (counting why): it needs nothing done. Default: read every one."""
        return False

    def fetch(self, ctx: JobContext, session: Session, item: Any) -> Any:
        """What else this record needs from the source; runs on the session's pool."""
        return None

    def normalise(self, ctx: JobContext, session: Session, item: Any, fetched: Any, known: Any) -> dict[str, Any]:
        raise NotImplementedError

    def transform_source(self, item: Any) -> Mapping[str, Any] | None:
        """The source record as a transform sees it at after_mapping."""
        return item if isinstance(item, Mapping) else None

    def content_hash(self, item: Any, record: Mapping[str, Any]) -> str:
        from starmamut.mapping.products import content_hash

        return content_hash(record)

    def carry(self, ctx: JobContext, session: Session) -> dict[str, Any]:
        """Values the extract hands on to the report besides its counts (JSON-able)."""
        return {}

    def after_extract(self, ctx: JobContext, session: Session, counts: BatchCounts) -> None:
        """Writes the extract keeps until the staging is done (the staging write holds the store)."""

    def transforms(self, ctx: JobContext, batch_id: str, point: TransformPoint) -> Any:
        """The shop's transforms of these records at one point (the key field stays fixed)."""
        if self.transform_entity is None:
            return NoTransforms()
        from starmamut.transforms import RecordTransforms

        key_field = self.key_field
        return RecordTransforms(
            ctx,
            batch_id,
            job=self.name,
            entity=self.transform_entity,
            point=point,
            staged_entity=self.entity,
            key=lambda record: str(record[key_field]),
            fixed=(key_field,),
        )

    # ------------------------------------------------------------------------------------------ validate

    def check(self, ctx: JobContext, batch_id: str, rows: list[StagedRow]) -> dict[str, Reasons]:
        """Why each failing record fails (readable records only; unreadable ones are judged already)."""
        return {}

    # ---------------------------------------------------------------------------------------------- load

    def open_load(self, ctx: JobContext, batch_id: str, before_load: Any) -> AbstractContextManager[Session]:
        return self.starweb_session(ctx)

    def known_at_load(self, ctx: JobContext, session: Session, chunk: list[StagedRow]) -> Any:
        return None

    def unchanged(self, ctx: JobContext, known: Any, row: StagedRow) -> bool:
        return False

    def prepared(self, row: StagedRow, record: dict[str, Any]) -> StagedRow:
        """The row as written, after the before_load transforms changed its record."""
        return row if record is row.payload else replace(row, payload=record)

    def write_one(self, ctx: JobContext, session: Session, known: Any, row: StagedRow) -> Outcome:
        raise NotImplementedError

    def after_load(self, ctx: JobContext, batch_id: str, session: Session, counts: BatchCounts) -> None:
        """What a live load records once every record is written."""

    # -------------------------------------------------------------------------------------------- report

    def watermark(self, ctx: JobContext, batch: Batch, extracted: Mapping[str, Any]) -> datetime | None:
        """Where a complete live run moves the watermark: the batch's start (less nothing: the next read
        starts at the mark less the overlap)."""
        return batch.started_at
