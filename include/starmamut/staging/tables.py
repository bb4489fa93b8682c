"""Schema of the staging database, described once for queries and for Alembic's autogenerate check.

The tables are created only by the Alembic migrations in ``migrations/versions``; this metadata is what
the store queries against and what ``alembic revision --autogenerate`` diffs a database with.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Stores aware datetimes as UTC and returns them aware in UTC on SQLite and PostgreSQL alike.

    SQLite has no time zone type (values are kept as naive UTC text); PostgreSQL's ``timestamptz``
    comes back in the session's time zone, so both are normalised to UTC on the way out.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} given to the staging store: pass a timezone")
        as_utc = value.astimezone(UTC)
        return as_utc.replace(tzinfo=None) if dialect.name == "sqlite" else as_utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


staging_batch = sa.Table(
    "staging_batch",
    metadata,
    sa.Column("batch_id", sa.String(32), primary_key=True),
    sa.Column("shop", sa.String(), nullable=False),
    sa.Column("job", sa.String(), nullable=False),
    sa.Column("entity", sa.String(), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("dry_run", sa.Boolean(), nullable=False),
    sa.Column("started_at", UtcDateTime(), nullable=False),
    sa.Column("finished_at", UtcDateTime(), nullable=True),
    sa.Column("counts", sa.Text(), nullable=False),
    sa.Index(None, "shop", "job", "started_at"),
)

staged_row = sa.Table(
    "staged_row",
    metadata,
    sa.Column(
        "batch_id",
        sa.String(32),
        sa.ForeignKey("staging_batch.batch_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("entity", sa.String(), primary_key=True),
    sa.Column("key", sa.String(), primary_key=True),
    sa.Column("payload", sa.Text(), nullable=False),
    sa.Column("content_hash", sa.String(), nullable=False),
    sa.Column("verdict", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text(), nullable=True),
    sa.Index(None, "batch_id", "entity", "verdict", "key"),
)

staged_sku = sa.Table(
    "staged_sku",
    metadata,
    sa.Column(
        "batch_id",
        sa.String(32),
        sa.ForeignKey("staging_batch.batch_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("side", sa.String(16), primary_key=True),  # "source" (staged records) or "target" (products found)
    sa.Column("sku_key", sa.String(), primary_key=True),  # the SKU as the target system compares it
    sa.Column("key", sa.String(), primary_key=True),
    sa.Column("sku", sa.String(), nullable=False),
    sa.Column("ref", sa.String(), nullable=True),  # the holder's own id for the SKU (variant ref, article key)
    sa.Index(None, "batch_id", "side", "key"),
)

id_map = sa.Table(
    "id_map",
    metadata,
    sa.Column("shop", sa.String(), primary_key=True),
    sa.Column("entity", sa.String(), primary_key=True),
    sa.Column("key", sa.String(), primary_key=True),
    sa.Column("starweb_id", sa.String(), nullable=True),
    sa.Column("mamut_key", sa.String(), nullable=True),
    sa.Column("sku", sa.String(), nullable=True),
    sa.Column("content_hash", sa.String(), nullable=True),
    sa.Column("synced_at", UtcDateTime(), nullable=True),
    sa.Column("retired_at", UtcDateTime(), nullable=True),
    sa.Index(None, "shop", "entity", "sku"),
)

watermark = sa.Table(
    "watermark",
    metadata,
    sa.Column("shop", sa.String(), primary_key=True),
    sa.Column("job", sa.String(), primary_key=True),
    sa.Column("value", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)

quarantine = sa.Table(
    "quarantine",
    metadata,
    sa.Column("quarantine_id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("shop", sa.String(), nullable=False),
    sa.Column("entity", sa.String(), nullable=False),
    sa.Column("key", sa.String(), nullable=False),
    sa.Column("reasons", sa.Text(), nullable=False),
    sa.Column("batch_id", sa.String(32), nullable=False),
    sa.Column("first_seen", UtcDateTime(), nullable=False),
    sa.Column("last_seen", UtcDateTime(), nullable=False),
    sa.Column("resolved_at", UtcDateTime(), nullable=True),
    # Set when the gate passed a batch holding the entry (or a person released it): see migration 0003.
    sa.Column("accepted_at", UtcDateTime(), nullable=True),
    # Set when a person dismissed the entry with a note (it is resolved at the same moment): see migration 0005.
    sa.Column("dismissed_at", UtcDateTime(), nullable=True),
    sa.Column("dismissed_by", sa.String(), nullable=True),
    sa.Column("dismissal_note", sa.Text(), nullable=True),
)

# At most one open entry per (shop, entity, key); resolved entries stay as history. Both backends support
# partial unique indexes, and the quarantine upsert names this predicate as its conflict target.
OPEN_QUARANTINE_PREDICATE = quarantine.c.resolved_at.is_(None)
sa.Index(
    "uq_quarantine_open",
    quarantine.c.shop,
    quarantine.c.entity,
    quarantine.c.key,
    unique=True,
    sqlite_where=OPEN_QUARANTINE_PREDICATE,
    postgresql_where=OPEN_QUARANTINE_PREDICATE,
)

ledger = sa.Table(
    "ledger",
    metadata,
    sa.Column("shop", sa.String(), primary_key=True),
    sa.Column("dimension", sa.String(), primary_key=True),
    sa.Column("sku", sa.String(), primary_key=True),
    sa.Column("target", sa.String(), primary_key=True),
    sa.Column("value", sa.Text(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)

# One row per (shop, entity) ever leased: who may load it now and until when. ``token`` grows by one at every
# take and is never reset (a released lease keeps it), so a loader whose lease was taken over is told apart.
load_lease = sa.Table(
    "load_lease",
    metadata,
    sa.Column("shop", sa.String(), primary_key=True),
    sa.Column("entity", sa.String(), primary_key=True),
    sa.Column("holder", sa.String(), nullable=True),  # host:pid:random of the live holder; None when released
    sa.Column("token", sa.BigInteger(), nullable=False),
    sa.Column("acquired_at", UtcDateTime(), nullable=True),
    sa.Column("expires_at", UtcDateTime(), nullable=True),
)

# The shop's Starweb access token, shared by its tasks (starweb/token_cache.py): sealed with a key derived from the
# client secret, never stored in the clear; None until first fetched.
starweb_token = sa.Table(
    "starweb_token",
    metadata,
    sa.Column("shop", sa.String(), primary_key=True),
    sa.Column("client_id", sa.String(), primary_key=True),
    sa.Column("sealed_token", sa.Text(), nullable=True),
    sa.Column("expires_at", UtcDateTime(), nullable=True),
    sa.Column("lifetime_seconds", sa.Float(), nullable=True),
)
