"""Starweb access tokens shared by a shop's tasks: one row per shop and API client, the token sealed.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-16

Every task of a migration is a process with its own client; without a shared token each fetched its own. The
row holds the token sealed with a key derived from the client secret (which is never stored), so neither the
staging database nor a dump of it gives a usable token, and when it expires.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "starweb_token",
        sa.Column("shop", sa.String(), nullable=False),
        sa.Column("client_id", sa.String(), nullable=False),
        sa.Column("sealed_token", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lifetime_seconds", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("shop", "client_id", name="pk_starweb_token"),
    )


def downgrade() -> None:
    op.drop_table("starweb_token")
