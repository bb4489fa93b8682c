"""Load leases: one loader at a time per shop and entity, with a fencing token.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-14

A load step holds the lease of each entity it writes while it runs; a second loader (a zombie task and its
retry, the migration and the regular price/stock jobs) waits for it or stops. The token grows by one at every
take, so a loader whose lease was taken over finds another token on the row and cannot commit. Rows are never
deleted: a released lease keeps its token, so tokens only grow.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "load_lease",
        sa.Column("shop", sa.String(), nullable=False),
        sa.Column("entity", sa.String(), nullable=False),
        sa.Column("holder", sa.String(), nullable=True),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("shop", "entity", name="pk_load_lease"),
    )


def downgrade() -> None:
    op.drop_table("load_lease")
