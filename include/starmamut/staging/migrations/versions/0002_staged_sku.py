"""SKU index of a staging batch: which staged record (source) or target-side product holds which SKU.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

The initial product migration finds SKUs held twice and matches source families with target products
through this table, so a catalogue of any size is compared in the database, not in memory.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "staged_sku",
        sa.Column("batch_id", sa.String(32), nullable=False),
        sa.Column("side", sa.String(16), nullable=False),
        sa.Column("sku_key", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("sku", sa.String(), nullable=False),
        sa.Column("ref", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["staging_batch.batch_id"], name="fk_staged_sku_batch_id_staging_batch", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("batch_id", "side", "sku_key", "key", name="pk_staged_sku"),
    )
    op.create_index("ix_staged_sku_batch_id_side_key", "staged_sku", ["batch_id", "side", "key"])


def downgrade() -> None:
    op.drop_index("ix_staged_sku_batch_id_side_key", table_name="staged_sku")
    op.drop_table("staged_sku")
