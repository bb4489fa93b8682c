"""Alembic environment for the staging database.

At run time ``StagingStore.migrate()`` hands in a connection that already holds the migration lock
(``config.attributes["connection"]``). From the command line (developers: ``alembic -c
include/starmamut/staging/alembic.ini -x url=<sqlalchemy url> revision --autogenerate -m ...``) the URL
comes from ``-x url=...`` or ``STARMAMUT_STAGING_URL``, and the same engine set-up and lock are used.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from alembic import context
from sqlalchemy.engine import Connection

from starmamut.staging.store import lock_for_migration, staging_engine
from starmamut.staging.tables import UtcDateTime, metadata

config = context.config


def render_item(type_: str, item: Any, autogen_context: Any) -> str | Literal[False]:
    """Autogenerate writes UtcDateTime as its storage type, so revisions never import tables.py."""
    if type_ == "type" and isinstance(item, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


# render_as_batch: SQLite cannot ALTER most things, so later revisions rebuild tables in batch mode.
CONFIGURE_OPTIONS: dict[str, Any] = {
    "target_metadata": metadata,
    "render_as_batch": True,
    "compare_type": True,
    "render_item": render_item,
}


def command_line_url() -> str:
    """The database URL a developer named on the command line (never read at run time)."""
    url = context.get_x_argument(as_dictionary=True).get("url") or os.environ.get("STARMAMUT_STAGING_URL")
    if not url:
        raise SystemExit("name the staging database: alembic -x url=<sqlalchemy url> ... (or STARMAMUT_STAGING_URL)")
    return url


def run_on(connection: Connection) -> None:
    context.configure(connection=connection, **CONFIGURE_OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    given: Connection | None = config.attributes.get("connection")
    if given is not None:
        run_on(given)
        return
    engine = staging_engine(command_line_url())
    try:
        with engine.begin() as connection:
            lock_for_migration(connection)
            run_on(connection)
    finally:
        engine.dispose()


def run_offline() -> None:
    """``alembic upgrade head --sql``: emit the DDL for a DBA instead of running it."""
    context.configure(url=command_line_url(), literal_binds=True, **CONFIGURE_OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
