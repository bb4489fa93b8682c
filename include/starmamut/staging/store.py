"""Staging store: what the integration owns (batches, staged rows, id map, watermarks, quarantine, ledger).

SQLAlchemy Core over SQLite (default, a file beside the Airflow home) or PostgreSQL (production). Every
query is scoped by shop so one shop's state is never visible through another shop's calls. Writes are
portable upserts (``INSERT ... ON CONFLICT DO UPDATE`` on both backends), so a retried task neither
duplicates nor loses anything, and tasks of different shops can write at the same time.

A load step holds a :class:`Lease` on each (shop, entity) it writes (see :meth:`StagingStore.lease`), so two
loaders of the same thing never run at once, and a loader that lost its lease cannot commit a staging write.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from starmamut.staging import tables

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_BUSY_RETRY_SECONDS = 0.01
# Arbitrary but fixed key of the PostgreSQL advisory lock that serialises migrations ("STAG").
POSTGRES_MIGRATION_LOCK_KEY = 0x53544147
WRITE_CHUNK_SIZE = 1000
# Keys per IN (...) list: well under SQLite's bound-parameter limit, small enough for a fast plan.
IN_LIST_CHUNK_SIZE = 500
SUPPORTED_DIALECTS = ("sqlite", "postgresql")
# Airflow Connection URIs say "postgres://"; SQLAlchemy 2.1 maps bare "postgresql://" to psycopg 3, while the
# pinned driver is psycopg2. Both bare forms therefore get psycopg2.
PLAIN_POSTGRES_SCHEMES = ("postgres", "postgresql")
# Connection execution option: a read-only unit of work on SQLite starts a deferred (shared) transaction.
READ_ONLY_OPTION = "starmamut_read_only"

# How often a loader waiting for a lease looks again whether it is free.
LEASE_POLL_SECONDS = 1.0
# Lease.check trusts its last acquire or renewal, without reading staging, until this long before the expiry it
# wrote: max(LEASE_MARGIN_MIN_SECONDS, ttl / LEASE_MARGIN_TTL_DIVISOR), for clock differences between workers.
LEASE_MARGIN_MIN_SECONDS = 5.0
LEASE_MARGIN_TTL_DIVISOR = 10

T = TypeVar("T")
log = logging.getLogger(__name__)


class StagingError(Exception):
    """Base class for staging store errors the jobs can tell apart from database failures."""


class UnknownBatchError(StagingError, LookupError):
    """A batch id that the staging database has never issued."""


class UnknownStagedRowError(StagingError, LookupError):
    """A verdict for a key that was not staged in the batch (a validate/stage mismatch)."""


class UnknownLinkError(StagingError, LookupError):
    """Retiring an id-map link that does not exist."""


class LeaseHeld(StagingError):
    """Another live loader holds the lease of this shop and entity; this one waited and stops (a retry tries again)."""


class LeaseLost(StagingError):
    """This loader's lease was taken over (it stalled past its expiry): it must stop before it writes anything."""


@dataclass(frozen=True)
class StagedRow:
    """One normalised source record in a batch, with the validation verdict it earned."""

    key: str
    payload: dict[str, Any]
    content_hash: str
    verdict: str = "pending"
    reason: str | None = None


@dataclass(frozen=True)
class Link:
    """Id-map entry joining a record's Starweb id, Mamut key and SKU; retired, never deleted."""

    shop: str
    entity: str
    key: str
    starweb_id: str | None
    mamut_key: str | None
    sku: str | None
    content_hash: str | None
    synced_at: datetime | None
    retired_at: datetime | None


@dataclass(frozen=True)
class SkuHolder:
    """One SKU held by one key of a batch's source or target side (see ``index_skus``)."""

    key: str  # the staged record (source) or the target product holding the SKU
    sku: str
    sku_key: str  # the SKU as the target system compares it
    ref: str | None = None  # the holder's own id for this SKU: a variant ref, an article key


@dataclass(frozen=True)
class QuarantineEntry:
    """A record held back by validation, with every failed check and why."""

    shop: str
    entity: str
    key: str
    reasons: list[dict[str, Any]]
    batch_id: str
    first_seen: datetime
    last_seen: datetime
    resolved_at: datetime | None
    accepted_at: datetime | None = None  # None while the quality gate has not let it through
    dismissed_at: datetime | None = None  # set when a person dismissed it (see dismiss_quarantine)
    dismissed_by: str | None = None
    dismissal_note: str | None = None


def _quarantine_entry(row: Any) -> QuarantineEntry:
    """A quarantine table row as the entry callers see, reasons decoded."""
    return QuarantineEntry(
        shop=row.shop,
        entity=row.entity,
        key=row.key,
        reasons=json.loads(row.reasons),
        batch_id=row.batch_id,
        first_seen=row.first_seen,
        last_seen=row.last_seen,
        resolved_at=row.resolved_at,
        accepted_at=row.accepted_at,
        dismissed_at=row.dismissed_at,
        dismissed_by=row.dismissed_by,
        dismissal_note=row.dismissal_note,
    )


@dataclass(frozen=True)
class Batch:
    """One run of one job over one entity for one shop, and what it counted."""

    batch_id: str
    shop: str
    job: str
    entity: str
    status: str
    dry_run: bool
    started_at: datetime
    finished_at: datetime | None
    counts: dict[str, int]


def default_staging_url(airflow_home: str | Path) -> str:
    """SQLite file beside the Airflow home: the zero-configuration default for one machine."""
    path = Path(airflow_home).expanduser().absolute() / "starmamut_staging.db"
    return sa.engine.URL.create("sqlite", database=str(path)).render_as_string()


def staging_engine(url: str) -> Engine:
    """Engine for the staging database, set up for concurrent Airflow tasks.

    PostgreSQL: a bare ``postgres://`` or ``postgresql://`` URL uses psycopg2 (the pinned driver).
    SQLite: WAL (readers never block the writer), a busy timeout instead of instant "database is
    locked", foreign keys enforced, and write transactions opened with ``BEGIN IMMEDIATE`` so two writers
    queue on the lock up front instead of failing when a read lock cannot be upgraded.
    """
    parsed = sa.engine.make_url(url)
    if parsed.drivername in PLAIN_POSTGRES_SCHEMES:
        parsed = parsed.set(drivername="postgresql+psycopg2")
    engine = sa.create_engine(parsed, pool_pre_ping=True)
    if engine.dialect.name not in SUPPORTED_DIALECTS:
        engine.dispose()
        raise StagingError(
            f"staging database dialect {engine.dialect.name!r} is not supported; use SQLite or PostgreSQL"
        )
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _configure_sqlite_connection)
        sa.event.listen(engine, "begin", _begin_sqlite_transaction)
    return engine


def _configure_sqlite_connection(dbapi_connection: Any, _connection_record: Any) -> None:
    # Hand transaction control to SQLAlchemy's "begin" event instead of the sqlite3 module.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        _switch_to_wal(cursor)
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _switch_to_wal(cursor: sqlite3.Cursor) -> None:
    """Enable WAL (a no-op once the file is in WAL mode), retrying while another process holds the file.

    SQLite answers BUSY to the journal-mode switch without calling the busy handler when another
    connection is opening or converting the same fresh file, so the wait is done here.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
            time.sleep(SQLITE_BUSY_RETRY_SECONDS)


def _begin_sqlite_transaction(connection: Connection) -> None:
    if connection.get_execution_options().get(READ_ONLY_OPTION):
        connection.exec_driver_sql("BEGIN")
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def lock_for_migration(connection: Connection) -> None:
    """Serialise concurrent migrations until the surrounding transaction ends.

    PostgreSQL: a transaction-scoped advisory lock. SQLite: the transaction was opened with
    ``BEGIN IMMEDIATE``, which already holds the database's single write lock. Either way the second
    process waits, then finds the schema at head and does nothing.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(POSTGRES_MIGRATION_LOCK_KEY)))


def alembic_config() -> Config:
    """Alembic configuration pointing at the packaged migrations; no alembic.ini needed at run time."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def _now() -> datetime:
    return datetime.now(UTC)


def _clocks() -> tuple[float, datetime]:
    """A monotonic and a wall-clock reading, taken together (see :meth:`Lease.check`)."""
    return time.monotonic(), _now()


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _json_default(value: Any) -> str:
    """Decimals become strings (no float rounding of prices); dates become ISO 8601 strings."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date):  # datetime is a date
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} value {value!r} is not JSON serialisable")


def _to_json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, default=_json_default)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what} cannot be stored as JSON: {error}") from error


def _validated_reasons(reasons: list[dict[str, Any]], what: str) -> list[dict[str, Any]]:
    if not reasons:
        raise ValueError(f"{what}: quarantine needs at least one reason")
    for reason in reasons:
        if not isinstance(reason, Mapping) or not {"check", "reason"} <= reason.keys():
            raise ValueError(f"{what}: each reason must be a mapping with 'check' and 'reason', got {reason!r}")
    return [dict(reason) for reason in reasons]


def lease_holder() -> str:
    """A new holder name: host and process, for whoever reads a LeaseHeld message, and a random part, as a
    process id alone repeats across hosts and restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """A held load lease on one shop × entity (see :meth:`StagingStore.lease`), renewed by a heartbeat thread.

    The staging writes of the store that took it are fenced without help; :meth:`check` is for the writes that
    store cannot see (a Starweb request, a Mamut commit), called right before each.

    ``asked`` is the clock reading (:func:`_clocks`) taken before the acquire that returned ``token`` computed the
    row's expiry (see :meth:`check`).
    """

    def __init__(
        self,
        store: StagingStore,
        shop: str,
        entity: str,
        holder: str,
        token: int,
        ttl: float,
        asked: tuple[float, datetime],
    ) -> None:
        self.shop = shop
        self.entity = entity
        self.holder = holder
        self.token = token
        self._store = store
        self._ttl = timedelta(seconds=ttl)
        self._margin = max(LEASE_MARGIN_MIN_SECONDS, ttl / LEASE_MARGIN_TTL_DIVISOR)
        # Monotonic time until which nobody else can hold the lease (see check); moved on by each renewal.
        self._trust_from(asked)
        self._lost: str | None = None
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(target=self._beat, name=f"lease {shop}/{entity}", daemon=True)

    def __repr__(self) -> str:
        return f"Lease({self.shop!r}, {self.entity!r}, holder={self.holder!r}, token={self.token})"

    def check(self) -> None:
        """Raise LeaseLost unless the row still carries our token and has not expired: the last moment to stop
        before a write the staging database cannot fence.

        Called before every Starweb write request and every Mamut commit, so it reads staging only when the lease
        may have been lost. Another loader takes a lease only through :meth:`StagingStore.lease`, which takes it
        only once its ``expires_at`` has passed on that loader's clock; and only this loader's acquire and
        renewals (which write ``expires_at`` = their clock reading + ttl) and its release change the row while
        it holds the token. So once an acquire or renewal committed with ``expires_at`` = T, nobody else can
        hold the lease before T. Until T minus a margin of max(5 s, ttl/10), for the difference between the
        clocks of two workers (kept in NTP sync, see the README), check returns without a read. The moment is
        kept on the monotonic clock from a reading taken before T was computed, so it errs early and a step of
        this worker's wall clock does not move it. A healthy heartbeat renews every ttl/3, long before that
        moment; once it is near (the heartbeat stalled or its renewals fail) every check reads the row as
        before and raises LeaseLost if it is gone, carries another token or has expired.
        """
        if self._lost is None:
            steady, wall = _clocks()
            if steady < self._sure_until[0] and wall < self._sure_until[1]:
                return
            table = tables.load_lease
            with self._store._read() as connection:
                row = connection.execute(sa.select(table).where(*self._identity())).one_or_none()
            self._judge(row, now=_now())
        if self._lost is not None:
            raise LeaseLost(self._lost)

    def _fence(self, connection: Connection) -> None:
        """Inside a staging write transaction: lock the lease row (PostgreSQL; SQLite's writer already holds the
        whole file) and make sure it still carries our token, so the transaction commits only while we hold it."""
        table = tables.load_lease
        if self._lost is None:
            self._judge(connection.execute(sa.select(table).where(*self._identity()).with_for_update()).one_or_none())
        if self._lost is not None:
            raise LeaseLost(self._lost)

    def _judge(self, row: sa.Row[Any] | None, now: datetime | None = None) -> None:
        """Mark the lease lost (and stop the heartbeat) when ``row`` shows it is no longer ours; with ``now``, also
        when it expired unrenewed, as another loader may take it at any moment then."""
        if row is not None and row.holder == self.holder and row.token == self.token:
            if now is None or row.expires_at > now:
                return
            state = f"it expired at {row.expires_at:%Y-%m-%d %H:%M:%S} UTC without being renewed"
        elif row is not None and row.holder is not None:
            state = f"{row.holder} holds it now with token {row.token}"
        else:
            state = "another loader took it since" if row is not None and row.token != self.token else "it was released"
        self._lost = (
            f"shop {self.shop}: this loader ({self.holder}, token {self.token}) lost the {self.entity} lease: {state}. "
            "It stalled past its lease, so it stops without writing; the loader holding the lease carries on"
        )
        self._stop.set()

    def _identity(self) -> tuple[sa.ColumnElement[bool], ...]:
        table = tables.load_lease
        return (table.c.shop == self.shop, table.c.entity == self.entity)

    def _beat(self) -> None:
        """Renew every ttl/3 until released or lost; a failed renewal is tried again at the next beat."""
        while not self._stop.wait(self._ttl.total_seconds() / 3):
            try:
                self._renew()
            except sa.exc.SQLAlchemyError as error:
                log.warning(
                    "shop %s: could not renew the %s lease (%s); trying again in %.0f s",
                    self.shop,
                    self.entity,
                    type(error).__name__,
                    self._ttl.total_seconds() / 3,
                )
        if self._lost is not None:
            log.error("%s", self._lost)

    def _renew(self) -> None:
        """Move the expiry on by ttl; once committed, :meth:`check` trusts the lease until the new expiry."""
        table = tables.load_lease
        ours = (*self._identity(), table.c.holder == self.holder, table.c.token == self.token)
        asked = _clocks()  # before the expiry is computed, so the moment check trusts errs early
        with self._store._engine.begin() as connection:
            renewed = connection.execute(sa.update(table).where(*ours).values(expires_at=_now() + self._ttl)).rowcount
            if renewed == 0:
                self._judge(connection.execute(sa.select(table).where(*self._identity())).one_or_none())
        if renewed:
            self._trust_from(asked)

    def _trust_from(self, asked: tuple[float, datetime]) -> None:
        """Trust the lease until ttl minus the margin after ``asked``, on both clocks: the monotonic one does not
        step with the wall clock, the wall clock goes on while the machine is suspended."""
        trust = self._ttl.total_seconds() - self._margin
        self._sure_until = (asked[0] + trust, asked[1] + timedelta(seconds=trust))

    def _release(self) -> None:
        """Stop the heartbeat and free the row (its token stays, so the next holder's is higher). A release that
        fails is only logged: the lease frees itself at expiry."""
        self._stop.set()
        self._heartbeat.join()
        self._sure_until = (float("-inf"), datetime.min.replace(tzinfo=UTC))  # a check after it reads the row
        table = tables.load_lease
        ours = (*self._identity(), table.c.holder == self.holder, table.c.token == self.token)
        try:
            with self._store._engine.begin() as connection:
                connection.execute(
                    sa.update(table).where(*ours).values(holder=None, acquired_at=None, expires_at=_now())
                )
        except sa.exc.SQLAlchemyError as error:
            log.warning(
                "shop %s: could not release the %s lease (%s); it frees itself at expiry",
                self.shop,
                self.entity,
                type(error).__name__,
            )


class StagingStore:
    """Owns the staging database; every method is its own short transaction."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._leases: dict[tuple[str, str], Lease] = {}
        self._leases_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str) -> StagingStore:
        """Store over a SQLAlchemy URL; tables appear only once :meth:`migrate` has run."""
        return cls(staging_engine(url))

    def __repr__(self) -> str:
        # URL's repr masks the password.
        return f"StagingStore({self._engine.url!r})"

    def close(self) -> None:
        """Release pooled connections (end of a task, or before dropping a test database)."""
        self._engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction, fenced by every lease this store holds (LeaseLost, rolled back, once one is lost)."""
        with self._engine.begin() as connection:
            with self._leases_lock:
                held = sorted(self._leases.values(), key=lambda lease: (lease.shop, lease.entity))
            for lease in held:
                lease._fence(connection)
            yield connection

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.connect() as connection:
            connection.execution_options(**{READ_ONLY_OPTION: True})
            yield connection

    def _upsert(
        self,
        table: sa.Table,
        update_columns: Sequence[str],
        conflict_columns: Sequence[str] | None = None,
        conflict_where: sa.ColumnElement[bool] | None = None,
        keep_existing: Sequence[str] = (),
    ) -> sa.Insert:
        """``INSERT ... ON CONFLICT (...) DO UPDATE`` in the engine's dialect (both accept the same form).

        ``keep_existing`` columns keep a stored non-null value and take the new one only where none is stored.
        """
        insert = sqlite.insert if self._engine.dialect.name == "sqlite" else postgresql.insert
        statement = insert(table)
        target = conflict_columns or [column.name for column in table.primary_key.columns]
        return statement.on_conflict_do_update(
            index_elements=target,
            index_where=conflict_where,
            set_={
                **{name: statement.excluded[name] for name in update_columns},
                **{name: sa.func.coalesce(table.c[name], statement.excluded[name]) for name in keep_existing},
            },
        )

    # -- schema ---------------------------------------------------------------------------------------------

    def migrate(self) -> None:
        """Bring the schema to Alembic head; a no-op when already there.

        Safe when several processes start at once (e.g. parallel Airflow tasks on a fresh SQLite file):
        the upgrade runs in one transaction that first takes :func:`lock_for_migration`, so the others
        wait, then see the new revision and do nothing. DDL is transactional on both backends, so a
        crash mid-migration leaves the previous revision intact.
        """
        config = alembic_config()
        with self._write() as connection:
            lock_for_migration(connection)
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    # -- load leases ----------------------------------------------------------------------------------------

    @contextmanager
    def lease(self, shop: str, entity: str, *, ttl: float, wait: float) -> Iterator[Lease]:
        """Hold the load lease of ``shop`` × ``entity`` for the block, so one loader at a time writes it.

        A free or expired lease is taken at once with the next fencing token. One a live loader holds is looked at
        again every second for up to ``wait`` seconds, then LeaseHeld names the holder and since when (the task's
        retry tries again). While held, a daemon thread renews it every ``ttl``/3 seconds, and every staging write
        of this store checks in its own transaction that the row still carries our token: a loader that stalled
        past ``ttl`` while another took the lease gets LeaseLost and commits nothing. Released when the block ends.
        """
        if ttl <= 0 or wait < 0:
            raise ValueError(f"lease ttl must be positive and wait not negative, got ttl={ttl}, wait={wait}")
        holder = lease_holder()
        deadline = time.monotonic() + wait
        asked = _clocks()  # before _take_lease computes the expiry (see Lease.check)
        while isinstance(taken := self._take_lease(shop, entity, holder, ttl), sa.Row):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LeaseHeld(
                    f"shop {shop}: {entity} is being loaded by {taken.holder} since "
                    f"{taken.acquired_at:%Y-%m-%d %H:%M:%S} UTC (lease until {taken.expires_at:%H:%M:%S} UTC unless "
                    f"renewed); waited {wait:g} s. One loader at a time writes a shop's {entity}: this run stops "
                    "and its retry tries again"
                )
            time.sleep(min(LEASE_POLL_SECONDS, remaining))
            asked = _clocks()
        lease = Lease(self, shop, entity, holder, taken, ttl, asked)
        with self._leases_lock:
            self._leases[(shop, entity)] = lease
        lease._heartbeat.start()
        try:
            yield lease
        finally:
            with self._leases_lock:
                del self._leases[(shop, entity)]
            lease._release()

    def _take_lease(self, shop: str, entity: str, holder: str, ttl: float) -> int | sa.Row[Any]:
        """Our new token if the lease was free or expired (now ours), else the row of its live holder.

        Not fenced by the leases this store holds: the lease rows are what fences.
        """
        table = tables.load_lease
        identity = (table.c.shop == shop, table.c.entity == entity)
        insert = sqlite.insert if self._engine.dialect.name == "sqlite" else postgresql.insert
        with self._engine.begin() as connection:
            connection.execute(insert(table).values(shop=shop, entity=entity, token=0).on_conflict_do_nothing())
            row = connection.execute(sa.select(table).where(*identity).with_for_update()).one()
            now = _now()
            if row.holder is not None and row.expires_at > now:
                return row
            if row.holder is not None:
                log.warning(
                    "shop %s: taking over the %s lease of %s, which expired at %s UTC unrenewed",
                    shop,
                    entity,
                    row.holder,
                    f"{row.expires_at:%Y-%m-%d %H:%M:%S}",
                )
            token = int(row.token) + 1
            connection.execute(
                sa.update(table)
                .where(*identity)
                .values(holder=holder, token=token, acquired_at=now, expires_at=now + timedelta(seconds=ttl))
            )
        return token

    # -- shared Starweb tokens ------------------------------------------------------------------------------

    def shared_token(
        self,
        shop: str,
        client_id: str,
        decide: Callable[[str | None, datetime | None, float | None], tuple[str, datetime, float] | None],
    ) -> None:
        """Run ``decide(sealed_token, expires_at, lifetime_seconds)`` on the shop's stored token row with the row
        locked (FOR UPDATE on PostgreSQL, the write lock on SQLite), so processes of one shop take turns; when it
        returns ``(sealed_token, expires_at, lifetime_seconds)`` the row is replaced in the same transaction.
        Used by :class:`starmamut.starweb.token_cache.StagingTokenCache`; not fenced by leases."""
        table = tables.starweb_token
        identity = (table.c.shop == shop, table.c.client_id == client_id)
        insert = sqlite.insert if self._engine.dialect.name == "sqlite" else postgresql.insert
        with self._engine.begin() as connection:
            connection.execute(insert(table).values(shop=shop, client_id=client_id).on_conflict_do_nothing())
            row = connection.execute(sa.select(table).where(*identity).with_for_update()).one()
            replaced = decide(row.sealed_token, row.expires_at, row.lifetime_seconds)
            if replaced is not None:
                sealed, expires_at, lifetime = replaced
                connection.execute(
                    sa.update(table)
                    .where(*identity)
                    .values(sealed_token=sealed, expires_at=expires_at, lifetime_seconds=lifetime)
                )

    # -- batches and staged rows ----------------------------------------------------------------------------

    def start_batch(self, shop: str, job: str, entity: str, *, dry_run: bool = False) -> str:
        batch_id = uuid.uuid4().hex
        with self._write() as connection:
            connection.execute(
                sa.insert(tables.staging_batch).values(
                    batch_id=batch_id,
                    shop=shop,
                    job=job,
                    entity=entity,
                    status="running",
                    dry_run=dry_run,
                    started_at=_now(),
                    finished_at=None,
                    counts="{}",
                )
            )
        return batch_id

    def _require_batch(self, connection: Connection, batch_id: str) -> None:
        table = tables.staging_batch
        if connection.scalar(sa.select(table.c.batch_id).where(table.c.batch_id == batch_id)) is None:
            raise UnknownBatchError(f"unknown staging batch {batch_id!r}")

    def stage_rows(self, batch_id: str, entity: str, rows: Iterable[StagedRow]) -> int:
        """Write rows in chunks, consuming ``rows`` lazily; returns how many rows were read from it.

        Staging a key again in the same batch replaces it, so a retried extract does not duplicate. All
        chunks commit together: a failure part-way leaves the batch as it was before the call.
        """
        table = tables.staged_row
        statement = self._upsert(table, ["payload", "content_hash", "verdict", "reason"])
        count = 0
        with self._write() as connection:
            self._require_batch(connection, batch_id)
            for chunk in _chunks(rows, WRITE_CHUNK_SIZE):
                # PostgreSQL refuses to upsert one key twice in a statement; the last version wins anyway.
                latest = {
                    row.key: {
                        "batch_id": batch_id,
                        "entity": entity,
                        "key": row.key,
                        "payload": _to_json(row.payload, f"{entity} {row.key!r} payload"),
                        "content_hash": row.content_hash,
                        "verdict": row.verdict,
                        "reason": row.reason,
                    }
                    for row in chunk
                }
                connection.execute(statement, list(latest.values()))
                count += len(chunk)
        return count

    def iter_staged(
        self,
        batch_id: str,
        entity: str,
        verdict: str | None = None,
        chunk_size: int = 1000,
        *,
        key_range: tuple[str, str] | None = None,
    ) -> Iterator[StagedRow]:
        """Rows in key order (only keys within ``key_range``, bounds included, when given), fetched
        ``chunk_size`` at a time by key (keyset paging).

        Each chunk is its own short read, so no transaction stays open while the caller works, and
        verdicts set between chunks neither skip nor repeat rows.
        """
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        table = tables.staged_row
        with self._read() as connection:
            self._require_batch(connection, batch_id)
        query = (
            sa.select(table.c.key, table.c.payload, table.c.content_hash, table.c.verdict, table.c.reason)
            .where(table.c.batch_id == batch_id, table.c.entity == entity)
            .order_by(table.c.key)
            .limit(chunk_size)
        )
        if verdict is not None:
            query = query.where(table.c.verdict == verdict)
        if key_range is not None:
            query = query.where(table.c.key >= key_range[0], table.c.key <= key_range[1])
        after_key: str | None = None
        while True:
            page = query if after_key is None else query.where(table.c.key > after_key)
            with self._read() as connection:
                rows = connection.execute(page).all()
            for row in rows:
                yield StagedRow(
                    key=row.key,
                    payload=json.loads(row.payload),
                    content_hash=row.content_hash,
                    verdict=row.verdict,
                    reason=row.reason,
                )
            if len(rows) < chunk_size:
                return
            after_key = rows[-1].key

    def key_ranges(self, batch_id: str, entity: str, size: int) -> list[tuple[str, str]]:
        """The batch's keys cut into consecutive ranges of ``size`` keys: ``(first, last)`` each, in key order."""
        table = tables.staged_row
        query = (
            sa.select(table.c.key).where(table.c.batch_id == batch_id, table.c.entity == entity).order_by(table.c.key)
        )
        ranges: list[tuple[str, str]] = []
        with self._read() as connection:
            self._require_batch(connection, batch_id)
            for chunk in _chunks(connection.scalars(query), size):
                ranges.append((chunk[0], chunk[-1]))
        return ranges

    def set_verdicts(self, batch_id: str, entity: str, verdicts: Mapping[str, tuple[str, str | None]]) -> None:
        """Record validation verdicts; all or nothing, and a key that was never staged is an error.

        Keys sharing a (verdict, reason) are updated together through IN lists: a batch is mostly
        "valid" with no reason, so this is a handful of statements rather than one per row.
        """
        table = tables.staged_row
        keys_by_outcome: dict[tuple[str, str | None], list[str]] = defaultdict(list)
        for key, outcome in verdicts.items():
            keys_by_outcome[outcome].append(key)
        with self._write() as connection:
            for (verdict, reason), keys in keys_by_outcome.items():
                for chunk in _chunks(keys, IN_LIST_CHUNK_SIZE):
                    in_batch = (
                        table.c.batch_id == batch_id,
                        table.c.entity == entity,
                        table.c.key.in_(chunk),
                    )
                    updated = connection.execute(
                        sa.update(table).where(*in_batch).values(verdict=verdict, reason=reason)
                    )
                    if updated.rowcount != len(chunk):
                        found = set(connection.scalars(sa.select(table.c.key).where(*in_batch)))
                        missing = [key for key in chunk if key not in found]
                        raise UnknownStagedRowError(
                            f"batch {batch_id!r} has no staged {entity} rows with keys {missing[:10]!r}"
                            + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
                        )

    def count_staged(self, batch_id: str, entity: str) -> dict[str, int]:
        table = tables.staged_row
        with self._read() as connection:
            rows = connection.execute(
                sa.select(table.c.verdict, sa.func.count())
                .where(table.c.batch_id == batch_id, table.c.entity == entity)
                .group_by(table.c.verdict)
            ).all()
        return {verdict: count for verdict, count in rows}

    def finish_batch(self, batch_id: str, status: str, counts: Mapping[str, int]) -> None:
        table = tables.staging_batch
        with self._write() as connection:
            result = connection.execute(
                sa.update(table)
                .where(table.c.batch_id == batch_id)
                .values(
                    status=status,
                    finished_at=_now(),
                    counts=_to_json(dict(counts), f"batch {batch_id} counts"),
                )
            )
            if result.rowcount == 0:
                raise UnknownBatchError(f"unknown staging batch {batch_id!r}")

    def set_batch_status(self, batch_id: str, status: str) -> None:
        """Change a batch's status only (e.g. stopped at the quality gate, then let through on a retry)."""
        table = tables.staging_batch
        with self._write() as connection:
            result = connection.execute(sa.update(table).where(table.c.batch_id == batch_id).values(status=status))
            if result.rowcount == 0:
                raise UnknownBatchError(f"unknown staging batch {batch_id!r}")

    def set_batch_progress(self, batch_id: str, counts: Mapping[str, Any]) -> None:
        """Record a running batch's counts as a checkpoint a resumed run reads back; the status stays."""
        table = tables.staging_batch
        with self._write() as connection:
            result = connection.execute(
                sa.update(table)
                .where(table.c.batch_id == batch_id)
                .values(counts=_to_json(dict(counts), f"batch {batch_id} counts"))
            )
            if result.rowcount == 0:
                raise UnknownBatchError(f"unknown staging batch {batch_id!r}")

    @staticmethod
    def _batch(row: sa.Row[Any]) -> Batch:
        return Batch(
            batch_id=row.batch_id,
            shop=row.shop,
            job=row.job,
            entity=row.entity,
            status=row.status,
            dry_run=bool(row.dry_run),
            started_at=row.started_at,
            finished_at=row.finished_at,
            counts=json.loads(row.counts),
        )

    def get_batch(self, batch_id: str) -> Batch:
        table = tables.staging_batch
        with self._read() as connection:
            row = connection.execute(sa.select(table).where(table.c.batch_id == batch_id)).one_or_none()
        if row is None:
            raise UnknownBatchError(f"unknown staging batch {batch_id!r}")
        return self._batch(row)

    def latest_batches(self, shop: str, job: str | None = None, limit: int = 20) -> list[Batch]:
        """Newest first."""
        table = tables.staging_batch
        query = (
            sa.select(table)
            .where(table.c.shop == shop)
            .order_by(table.c.started_at.desc(), table.c.batch_id.desc())
            .limit(limit)
        )
        if job is not None:
            query = query.where(table.c.job == job)
        with self._read() as connection:
            return [self._batch(row) for row in connection.execute(query)]

    def batches_started_between(self, shop: str, start: datetime, end: datetime) -> list[Batch]:
        """The shop's batches started in ``[start, end)``, oldest first (the daily report's day)."""
        table = tables.staging_batch
        query = (
            sa.select(table)
            .where(table.c.shop == shop, table.c.started_at >= start, table.c.started_at < end)
            .order_by(table.c.started_at, table.c.batch_id)
        )
        with self._read() as connection:
            return [self._batch(row) for row in connection.execute(query)]

    # -- SKU index ------------------------------------------------------------------------------------------

    def index_skus(self, batch_id: str, side: str, holders: Iterable[SkuHolder]) -> int:
        """Record which key holds which SKU; all or nothing, and indexing a holder again changes nothing."""
        statement = self._upsert(tables.staged_sku, ["sku", "ref"])
        count = 0
        with self._write() as connection:
            self._require_batch(connection, batch_id)
            for chunk in _chunks(holders, WRITE_CHUNK_SIZE):
                latest = {(holder.sku_key, holder.key): holder for holder in chunk}
                connection.execute(
                    statement,
                    [
                        {
                            "batch_id": batch_id,
                            "side": side,
                            "sku_key": holder.sku_key,
                            "key": holder.key,
                            "sku": holder.sku,
                            "ref": holder.ref,
                        }
                        for holder in latest.values()
                    ],
                )
                count += len(chunk)
        return count

    def clear_sku_index(self, batch_id: str, side: str) -> None:
        table = tables.staged_sku
        with self._write() as connection:
            connection.execute(sa.delete(table).where(table.c.batch_id == batch_id, table.c.side == side))

    def holders_by_key(self, batch_id: str, side: str, keys: Iterable[str]) -> dict[str, list[SkuHolder]]:
        """For each key, the SKUs it holds; keys holding none are absent."""
        return self._holders(batch_id, side, tables.staged_sku.c.key, keys, by_sku=False)

    def holders_by_sku(self, batch_id: str, side: str, sku_keys: Iterable[str]) -> dict[str, list[SkuHolder]]:
        """For each SKU (as ``sku_key``), the keys of ``side`` holding it; SKUs nobody holds are absent."""
        return self._holders(batch_id, side, tables.staged_sku.c.sku_key, sku_keys, by_sku=True)

    def _holders(
        self, batch_id: str, side: str, column: sa.Column[str], values: Iterable[str], *, by_sku: bool
    ) -> dict[str, list[SkuHolder]]:
        table = tables.staged_sku
        query = (
            sa.select(table.c.key, table.c.sku, table.c.sku_key, table.c.ref)
            .where(table.c.batch_id == batch_id, table.c.side == side)
            .order_by(table.c.key, table.c.sku_key)
        )
        found: dict[str, list[SkuHolder]] = defaultdict(list)
        with self._read() as connection:
            for chunk in _chunks(values, IN_LIST_CHUNK_SIZE):
                for row in connection.execute(query.where(column.in_(chunk))):
                    holder = SkuHolder(key=row.key, sku=row.sku, sku_key=row.sku_key, ref=row.ref)
                    found[holder.sku_key if by_sku else holder.key].append(holder)
        return dict(found)

    # -- id map ---------------------------------------------------------------------------------------------

    @staticmethod
    def _link(row: sa.Row[Any]) -> Link:
        return Link(
            shop=row.shop,
            entity=row.entity,
            key=row.key,
            starweb_id=row.starweb_id,
            mamut_key=row.mamut_key,
            sku=row.sku,
            content_hash=row.content_hash,
            synced_at=row.synced_at,
            retired_at=row.retired_at,
        )

    def get_links(self, shop: str, entity: str, keys: Iterable[str] | None = None) -> dict[str, Link]:
        """Links by key, retired ones included (``retired_at`` set); keys=None means every link."""
        table = tables.id_map
        query = sa.select(table).where(table.c.shop == shop, table.c.entity == entity)
        with self._read() as connection:
            if keys is None:
                return {row.key: self._link(row) for row in connection.execute(query)}
            links: dict[str, Link] = {}
            for chunk in _chunks(keys, IN_LIST_CHUNK_SIZE):
                for row in connection.execute(query.where(table.c.key.in_(chunk))):
                    links[row.key] = self._link(row)
            return links

    def find_link_by_sku(self, shop: str, entity: str, sku: str) -> Link | None:
        """The live (not retired) link carrying this SKU; if several do, the most recently synced."""
        return self.find_links_by_sku(shop, entity, [sku]).get(sku)

    def find_links_by_sku(self, shop: str, entity: str, skus: Iterable[str]) -> dict[str, Link]:
        """For each SKU a live (not retired) link carries, that link (the most recently synced if several do)."""
        table = tables.id_map
        query = (
            sa.select(table)
            .where(table.c.shop == shop, table.c.entity == entity, table.c.retired_at.is_(None))
            .order_by(table.c.synced_at.desc(), table.c.key)
        )
        found: dict[str, Link] = {}
        with self._read() as connection:
            for chunk in _chunks(skus, IN_LIST_CHUNK_SIZE):
                for row in connection.execute(query.where(table.c.sku.in_(chunk))):
                    found.setdefault(row.sku, self._link(row))
        return found

    def upsert_link(
        self,
        shop: str,
        entity: str,
        key: str,
        *,
        starweb_id: str | None,
        mamut_key: str | None,
        sku: str | None,
        content_hash: str | None,
    ) -> None:
        """Record a successful push at once (so a crash right after it cannot lose the link).

        A retired link that is synced again comes back to life.
        """
        statement = self._upsert(
            tables.id_map, ["starweb_id", "mamut_key", "sku", "content_hash", "synced_at", "retired_at"]
        ).values(
            shop=shop,
            entity=entity,
            key=key,
            starweb_id=starweb_id,
            mamut_key=mamut_key,
            sku=sku,
            content_hash=content_hash,
            synced_at=_now(),
            retired_at=None,
        )
        with self._write() as connection:
            connection.execute(statement)

    def upsert_links(self, links: Iterable[Link]) -> None:
        """Record many links in one transaction (their ``synced_at`` is now, ``retired_at`` cleared)."""
        statement = self._upsert(
            tables.id_map, ["starweb_id", "mamut_key", "sku", "content_hash", "synced_at", "retired_at"]
        )
        now = _now()
        with self._write() as connection:
            for chunk in _chunks(links, WRITE_CHUNK_SIZE):
                latest = {(link.shop, link.entity, link.key): link for link in chunk}
                connection.execute(
                    statement,
                    [
                        {
                            "shop": link.shop,
                            "entity": link.entity,
                            "key": link.key,
                            "starweb_id": link.starweb_id,
                            "mamut_key": link.mamut_key,
                            "sku": link.sku,
                            "content_hash": link.content_hash,
                            "synced_at": now,
                            "retired_at": None,
                        }
                        for link in latest.values()
                    ],
                )

    def retire_link(self, shop: str, entity: str, key: str) -> None:
        """Mark a link retired (the record is gone at the source); keeps the first retirement time."""
        table = tables.id_map
        identity = (table.c.shop == shop, table.c.entity == entity, table.c.key == key)
        with self._write() as connection:
            retired = connection.execute(
                sa.update(table).where(*identity, table.c.retired_at.is_(None)).values(retired_at=_now())
            )
            if retired.rowcount == 0 and connection.scalar(sa.select(table.c.key).where(*identity)) is None:
                raise UnknownLinkError(f"shop {shop!r} has no {entity} link with key {key!r} to retire")

    # -- watermarks -----------------------------------------------------------------------------------------

    def get_watermark(self, shop: str, job: str) -> datetime | None:
        table = tables.watermark
        with self._read() as connection:
            return connection.scalar(sa.select(table.c.value).where(table.c.shop == shop, table.c.job == job))

    def set_watermark(self, shop: str, job: str, value: datetime) -> None:
        """Store the extract's high-water mark (timezone-aware; kept in UTC)."""
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"watermark {shop}/{job}: naive datetime {value.isoformat()}; pass a timezone")
        statement = self._upsert(tables.watermark, ["value", "updated_at"]).values(
            shop=shop, job=job, value=value, updated_at=_now()
        )
        with self._write() as connection:
            connection.execute(statement)

    # -- quarantine -----------------------------------------------------------------------------------------

    def quarantine(
        self,
        shop: str,
        entity: str,
        key: str,
        reasons: list[dict[str, Any]],
        batch_id: str,
        *,
        accepted: bool = True,
    ) -> None:
        """Open an entry, or refresh the open one (reasons, batch, last seen; first seen is kept).

        ``accepted=False`` (the quality gate's own verdicts) leaves the entry counting in the gate's failing
        share until :meth:`accept_quarantine`; an entry accepted once stays accepted.
        """
        what = f"quarantine of {entity} {key!r}"
        now = _now()
        statement = self._upsert(
            tables.quarantine,
            ["reasons", "batch_id", "last_seen"],
            conflict_columns=["shop", "entity", "key"],
            conflict_where=tables.OPEN_QUARANTINE_PREDICATE,
            keep_existing=["accepted_at"],
        ).values(
            shop=shop,
            entity=entity,
            key=key,
            reasons=_to_json(_validated_reasons(reasons, what), what),
            batch_id=batch_id,
            first_seen=now,
            last_seen=now,
            resolved_at=None,
            accepted_at=now if accepted else None,
        )
        with self._write() as connection:
            connection.execute(statement)

    def accept_quarantine(self, shop: str, entity: str, keys: Iterable[str]) -> int:
        """Mark open entries as let through by the gate (or released by a person); returns how many changed."""
        column = tables.quarantine.c.accepted_at
        return self._update_open_quarantine(shop, entity, keys, {column: _now()}, column.is_(None))

    def resolve_quarantine(self, shop: str, entity: str, keys: Iterable[str]) -> int:
        """Close the open entries for these keys (they passed validation); returns how many were open."""
        return self._update_open_quarantine(shop, entity, keys, {tables.quarantine.c.resolved_at: _now()})

    def _update_open_quarantine(
        self,
        shop: str,
        entity: str,
        keys: Iterable[str],
        values: Mapping[sa.Column[Any], Any],
        *conditions: sa.ColumnElement[bool],
    ) -> int:
        """Set ``values`` on the open entries of these keys that meet ``conditions``; returns how many."""
        table = tables.quarantine
        updated = 0
        with self._write() as connection:
            for chunk in _chunks(keys, IN_LIST_CHUNK_SIZE):
                result = connection.execute(
                    sa.update(table)
                    .where(
                        table.c.shop == shop,
                        table.c.entity == entity,
                        table.c.key.in_(chunk),
                        table.c.resolved_at.is_(None),
                        *conditions,
                    )
                    .values(values)
                )
                updated += result.rowcount
        return updated

    def open_quarantine(self, shop: str, entity: str | None = None) -> list[QuarantineEntry]:
        """Unresolved entries, by entity then key."""
        table = tables.quarantine
        query = (
            sa.select(table)
            .where(table.c.shop == shop, table.c.resolved_at.is_(None))
            .order_by(table.c.entity, table.c.key)
        )
        if entity is not None:
            query = query.where(table.c.entity == entity)
        with self._read() as connection:
            return [_quarantine_entry(row) for row in connection.execute(query)]

    def dismiss_quarantine(self, shop: str, entity: str, keys: Iterable[str], *, by: str, note: str) -> int:
        """Close open entries by a person's decision, keeping who, when and why; returns how many were open.

        A dismissed entry leaves the open quarantine (it is no longer re-read by id nor counted by the gate); a
        record that fails again later opens a new entry. The dismissal stays on the row (``dismissed_quarantine``).
        """
        note = note.strip()
        if not note:
            raise ValueError("dismissing a quarantine entry needs a note saying why")
        if not by.strip():
            raise ValueError("dismissing a quarantine entry needs the name of who dismissed it")
        now = _now()
        table = tables.quarantine
        return self._update_open_quarantine(
            shop,
            entity,
            keys,
            {
                table.c.resolved_at: now,
                table.c.dismissed_at: now,
                table.c.dismissed_by: by.strip(),
                table.c.dismissal_note: note,
            },
        )

    def dismissed_quarantine(self, shop: str, limit: int = 50) -> list[QuarantineEntry]:
        """Entries a person dismissed, newest first, with who, when and the note."""
        table = tables.quarantine
        query = (
            sa.select(table)
            .where(table.c.shop == shop, table.c.dismissed_at.is_not(None))
            .order_by(table.c.dismissed_at.desc(), table.c.quarantine_id.desc())
            .limit(limit)
        )
        with self._read() as connection:
            return [_quarantine_entry(row) for row in connection.execute(query)]

    # -- ledger ---------------------------------------------------------------------------------------------

    def get_ledger(self, shop: str, dimension: str, skus: Iterable[str] | None = None) -> dict[tuple[str, str], str]:
        """Last pushed values by (sku, target), e.g. ("A-1", "pricelist:2") -> "199.00"."""
        table = tables.ledger
        query = sa.select(table.c.sku, table.c.target, table.c.value).where(
            table.c.shop == shop, table.c.dimension == dimension
        )
        with self._read() as connection:
            if skus is None:
                return {(sku, target): value for sku, target, value in connection.execute(query)}
            values: dict[tuple[str, str], str] = {}
            for chunk in _chunks(skus, IN_LIST_CHUNK_SIZE):
                for sku, target, value in connection.execute(query.where(table.c.sku.in_(chunk))):
                    values[(sku, target)] = value
            return values

    def set_ledger(self, shop: str, dimension: str, entries: Mapping[tuple[str, str], str]) -> None:
        """Record pushed values (strings, so "199.00" stays exactly what was sent); all or nothing."""
        for (sku, target), value in entries.items():
            if not isinstance(value, str):
                raise TypeError(
                    f"ledger {dimension} value for sku {sku!r} target {target!r} must be a str, "
                    f"got {type(value).__name__} {value!r}"
                )
        statement = self._upsert(tables.ledger, ["value", "updated_at"])
        now = _now()
        with self._write() as connection:
            for chunk in _chunks(entries.items(), WRITE_CHUNK_SIZE):
                connection.execute(
                    statement,
                    [
                        {
                            "shop": shop,
                            "dimension": dimension,
                            "sku": sku,
                            "target": target,
                            "value": value,
                            "updated_at": now,
                        }
                        for (sku, target), value in chunk
                    ],
                )
