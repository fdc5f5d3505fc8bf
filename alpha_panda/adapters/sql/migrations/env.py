"""Alembic environment: runs on the connection ``StrategyStore.upgrade`` passes in.

No alembic.ini and no logging set-up here: the store configures Alembic in code, so the
migrations work from an installed wheel, and the process keeps its own logging.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from alpha_panda.adapters.sql.schema import metadata


def run_migrations_online() -> None:
    connection: Connection | None = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("alpha_panda migrations run through StrategyStore.upgrade()")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported; use upgrade()")
run_migrations_online()
