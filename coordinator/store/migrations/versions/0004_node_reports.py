"""What nodes report beside their heartbeats: data-subject requests (random request id, kind,
dates, status; never the member) and coarsened per-purpose consent counts.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_ID = sa.String(length=64)
_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "subject_requests",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("partner_id", _ID, nullable=False),
        sa.Column("request_id", _ID, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("received_at", _TIME, nullable=False),
        sa.Column("deadline", _TIME, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("completed_at", _TIME, nullable=True),
        sa.Column("reported_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("partner_id", "request_id"),
    )
    op.create_index("ix_subject_requests_partner_id", "subject_requests", ["partner_id"])
    op.create_index("ix_subject_requests_deadline", "subject_requests", ["deadline"])
    op.create_table(
        "consent_counts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("partner_id", _ID, nullable=False),
        sa.Column("purpose", sa.String(length=64), nullable=False),
        sa.Column("members", sa.Integer(), nullable=True),
        sa.Column("granularity", sa.Integer(), nullable=False),
        sa.Column("counted_at", _TIME, nullable=False),
        sa.Column("reported_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("partner_id", "purpose"),
    )
    op.create_index("ix_consent_counts_partner_id", "consent_counts", ["partner_id"])


def downgrade() -> None:
    op.drop_table("consent_counts")
    op.drop_table("subject_requests")
