"""How each job's charge on a partner was settled: held after the job died (awaiting the node's
accountant) or settled from the node's accountant; empty while the reservation is live.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("budget_charges") as batch:
        batch.add_column(sa.Column("settlement", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("budget_charges") as batch:
        batch.drop_column("settlement")
