"""strategy_configs.exit_at: the IST time from which the runner keeps a strategy flat.

NULL is a file's ``exit_at: null`` (no exit). A row stored before this column existed
said nothing, which for ``product: MIS`` now means 15:15: those rows get it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("strategy_configs", sa.Column("exit_at", sa.String(8), nullable=True))
    configs = sa.table("strategy_configs", sa.column("product", sa.String),
                       sa.column("exit_at", sa.String))
    op.execute(configs.update().where(configs.c.product == "MIS").values(exit_at="15:15:00"))


def downgrade() -> None:
    with op.batch_alter_table("strategy_configs") as batch:  # SQLite drops columns in a batch
        batch.drop_column("exit_at")
