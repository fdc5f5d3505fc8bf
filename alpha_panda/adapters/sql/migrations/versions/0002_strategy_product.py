"""strategy_configs.product: the product of orders that name none (CNC or MIS).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("strategy_configs",
                  sa.Column("product", sa.String(8), nullable=False, server_default="CNC"))


def downgrade() -> None:
    with op.batch_alter_table("strategy_configs") as batch:  # SQLite drops columns in a batch
        batch.drop_column("product")
