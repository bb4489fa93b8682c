"""Initial staging schema: batches, staged rows, id map, watermarks, quarantine, ledger.

Revision ID: 0001
Revises:
Create Date: 2026-11-27

Types are spelled out here (not imported from tables.py) so this revision keeps creating the same
schema whatever tables.py later becomes; UtcDateTime's storage type is DateTime(timezone=True).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "staging_batch",
        sa.Column("batch_id", sa.String(32), nullable=False),
        sa.Column("shop", sa.String(), nullable=False),
        sa.Column("job", sa.String(), nullable=False),
        sa.Column("entity", sa.String(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("counts", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("batch_id", name="pk_staging_batch"),
    )
    op.create_index(
        "ix_staging_batch_shop_job_started_at", "staging_batch", ["shop", "job", "started_at"]
    )

    op.create_table(
        "staged_row",
        sa.Column("batch_id", sa.String(32), nullable=False),
        sa.Column("entity", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(), nullable=False),
        sa.Column("verdict", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["staging_batch.batch_id"],
            name="fk_staged_row_batch_id_staging_batch",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("batch_id", "entity", "key", name="pk_staged_row"),
    )
    op.create_index(
        "ix_staged_row_batch_id_entity_verdict_key", "staged_row", ["batch_id", "entity", "verdict", "key"]
    )

    op.create_table(
        "id_map",
        sa.Column("shop", sa.String(), nullable=False),
        sa.Column("entity", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("starweb_id", sa.String(), nullable=True),
        sa.Column("mamut_key", sa.String(), nullable=True),
        sa.Column("sku", sa.String(), nullable=True),
        sa.Column("content_hash", sa.String(), nullable=True),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("shop", "entity", "key", name="pk_id_map"),
    )
    op.create_index("ix_id_map_shop_entity_sku", "id_map", ["shop", "entity", "sku"])

    op.create_table(
        "watermark",
        sa.Column("shop", sa.String(), nullable=False),
        sa.Column("job", sa.String(), nullable=False),
        sa.Column("value", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("shop", "job", name="pk_watermark"),
    )

    op.create_table(
        "quarantine",
        sa.Column("quarantine_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("shop", sa.String(), nullable=False),
        sa.Column("entity", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("reasons", sa.Text(), nullable=False),
        sa.Column("batch_id", sa.String(32), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("quarantine_id", name="pk_quarantine"),
    )
    op.create_index(
        "uq_quarantine_open",
        "quarantine",
        ["shop", "entity", "key"],
        unique=True,
        sqlite_where=sa.text("resolved_at IS NULL"),
        postgresql_where=sa.text("resolved_at IS NULL"),
    )

    op.create_table(
        "ledger",
        sa.Column("shop", sa.String(), nullable=False),
        sa.Column("dimension", sa.String(), nullable=False),
        sa.Column("sku", sa.String(), nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("shop", "dimension", "sku", "target", name="pk_ledger"),
    )


def downgrade() -> None:
    op.drop_table("ledger")
    op.drop_index("uq_quarantine_open", table_name="quarantine")
    op.drop_table("quarantine")
    op.drop_table("watermark")
    op.drop_index("ix_id_map_shop_entity_sku", table_name="id_map")
    op.drop_table("id_map")
    op.drop_index("ix_staged_row_batch_id_entity_verdict_key", table_name="staged_row")
    op.drop_table("staged_row")
    op.drop_index("ix_staging_batch_shop_job_started_at", table_name="staging_batch")
    op.drop_table("staging_batch")
