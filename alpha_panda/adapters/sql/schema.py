"""The config store's tables, as SQLAlchemy Core metadata.

One row per strategy, holding exactly the fields of the YAML schema (ARCHITECTURE.md):
list and mapping fields are JSON (JSONB on PostgreSQL). The migrations in
``migrations/versions`` create this; a test checks the two never drift apart.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    func,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata: Final = MetaData()

Json = JSON().with_variant(JSONB(), "postgresql")

strategy_configs: Final = Table(
    "strategy_configs",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("strategy", String(256), nullable=False),
    Column("instruments", Json, nullable=False),
    Column("brokers", Json, nullable=False),
    Column("params", Json, nullable=False),
    Column("risk", Json, nullable=False),
    Column("execution", Json, nullable=False),
    Column("product", String(8), nullable=False, server_default="CNC"),
    Column("exit_at", String(8), nullable=True),  # "15:15:00"; NULL: none
    Column("enabled", Boolean, nullable=False, server_default=true()),
    Column("revision", Integer, nullable=False, server_default="1"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

CONFIG_FIELDS: Final = ("id", "strategy", "instruments", "brokers", "params", "risk", "execution",
                        "product", "exit_at", "enabled")
"""The columns that are the YAML schema (the rest is bookkeeping)."""
