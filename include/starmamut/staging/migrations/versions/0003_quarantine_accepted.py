"""Quarantine entries remember whether the quality gate (or a person) accepted them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06

A record quarantined by a batch that the gate stopped is not accepted: it keeps counting in the failing
share of every later validation (the task's retry included) until it is fixed, or a person releases it with
``accept_quarantine``, or raises the threshold. Records quarantined by a batch that passed the gate are
accepted and no longer count, so one old bad record cannot fail every run.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ADD COLUMN (no batch copy): SQLite's table rebuild could drop the partial unique index.
    op.add_column("quarantine", sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True))
    # Entries open before this revision were let through by the gate as it was then.
    op.execute(sa.text("UPDATE quarantine SET accepted_at = last_seen WHERE resolved_at IS NULL"))


def downgrade() -> None:
    op.drop_column("quarantine", "accepted_at")
