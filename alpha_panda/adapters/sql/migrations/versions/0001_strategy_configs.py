"""strategy_configs: one row per strategy, the YAML schema's fields.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_json = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "strategy_configs",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("strategy", sa.String(256), nullable=False),
        sa.Column("instruments", _json, nullable=False),
        sa.Column("brokers", _json, nullable=False),
        sa.Column("params", _json, nullable=False),
        sa.Column("risk", _json, nullable=False),
        sa.Column("execution", _json, nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("revision", sa.Integer(), nullable=False, server_default="1"),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )


def downgrade() -> None:
    op.drop_table("strategy_configs")
