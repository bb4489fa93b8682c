"""A person may dismiss an open quarantine entry with a note: who, when and why are kept with the entry.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-10

A dismissed entry is resolved at the same moment (it leaves the open quarantine and is no longer re-read by
id); ``dismissed_at``, ``dismissed_by`` and ``dismissal_note`` stay on the row as its audit trail. A record
that fails again in a later run opens a new entry.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMNs (no batch copy): SQLite's table rebuild could drop the partial unique index.
    op.add_column("quarantine", sa.Column("dismissed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("quarantine", sa.Column("dismissed_by", sa.String(), nullable=True))
    op.add_column("quarantine", sa.Column("dismissal_note", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("quarantine", "dismissal_note")
    op.drop_column("quarantine", "dismissed_by")
    op.drop_column("quarantine", "dismissed_at")
