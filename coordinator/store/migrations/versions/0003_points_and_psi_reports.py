"""Points interchange at the coordinator: agreements awaiting signature and their officers'
signatures, the nodes' settlement totals (never transfers or tokens), and PSI run summaries (counts).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_ID = sa.String(length=64)
_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "interchange_agreements",
        sa.Column("agreement_hash", sa.String(length=64), nullable=False),
        sa.Column("agreement_id", _ID, nullable=False),
        sa.Column("partner_a", _ID, nullable=False),
        sa.Column("partner_b", _ID, nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("drafted_by", _ID, nullable=False),
        sa.Column("drafted_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("agreement_hash"),
    )
    for column in ("agreement_id", "partner_a", "partner_b"):
        op.create_index(f"ix_interchange_agreements_{column}", "interchange_agreements", [column])
    op.create_table(
        "interchange_agreement_signatures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("agreement_hash", sa.String(length=64), nullable=False),
        sa.Column("partner_id", _ID, nullable=False),
        sa.Column("officer", sa.String(length=128), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.Column("signed_at", _TIME, nullable=False),
        sa.Column("recorded_by", _ID, nullable=False),
        sa.Column("recorded_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(["agreement_hash"], ["interchange_agreements.agreement_hash"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("signature"),
    )
    op.create_table(
        "points_settlements",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("agreement_id", _ID, nullable=False),
        sa.Column("period_start", _TIME, nullable=False),
        sa.Column("period_end", _TIME, nullable=False),
        sa.Column("reporter", _ID, nullable=False),
        sa.Column("peer", _ID, nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("directions", sa.JSON(), nullable=False),
        sa.Column("payer", _ID, nullable=True),
        sa.Column("payee", _ID, nullable=True),
        sa.Column("net_amount", sa.String(length=40), nullable=False),
        sa.Column("reconciled", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("differences", sa.JSON(), nullable=False),
        sa.Column("reported_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("agreement_id", "period_start", "period_end", "reporter"),
    )
    op.create_index("ix_points_settlements_agreement_id", "points_settlements", ["agreement_id"])
    op.create_table(
        "psi_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("partner_id", _ID, nullable=False),
        sa.Column("session_id", _ID, nullable=False),
        sa.Column("psi_role", sa.String(length=16), nullable=False),
        sa.Column("peer", _ID, nullable=False),
        sa.Column("purpose", sa.String(length=64), nullable=False),
        sa.Column("mode", sa.String(length=32), nullable=False),
        sa.Column("own_set_size", sa.Integer(), nullable=True),
        sa.Column("peer_set_size", sa.Integer(), nullable=True),
        sa.Column("result_cardinality", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("refusal", sa.String(length=64), nullable=True),
        sa.Column("ran_at", _TIME, nullable=False),
        sa.Column("reported_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("partner_id", "session_id"),
    )
    op.create_index("ix_psi_runs_partner_id", "psi_runs", ["partner_id"])


def downgrade() -> None:
    op.drop_table("psi_runs")
    op.drop_table("points_settlements")
    op.drop_table("interchange_agreement_signatures")
    op.drop_table("interchange_agreements")
