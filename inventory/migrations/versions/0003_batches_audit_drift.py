"""Batches of operations, the audit log, and drift on unit observations.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("requested_by", sa.String(length=100), nullable=False),
        sa.Column("selection", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("canary", sa.Integer(), nullable=False),
        sa.Column("canary_last_op_id", sa.Integer(), nullable=True),
        sa.Column("max_failure_rate", sa.Float(), nullable=False),
        sa.Column("max_parallel", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "state IN ('canary', 'running', 'stopped', 'done', 'cancelled')",
            name=op.f("ck_batches_state"),
        ),
        sa.CheckConstraint(
            "max_failure_rate >= 0 AND max_failure_rate <= 1", name=op.f("ck_batches_rate")
        ),
        sa.CheckConstraint("canary >= 0", name=op.f("ck_batches_canary")),
        sa.CheckConstraint("max_parallel >= 1", name=op.f("ck_batches_max_parallel")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batches")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    for column in ("at", "target", "actor", "request_id"):
        op.create_index(op.f(f"ix_audit_log_{column}"), "audit_log", [column])
    with op.batch_alter_table("unit_observations") as batch:
        batch.add_column(sa.Column("drift", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("unit_observations") as batch:
        batch.drop_column("drift")
    for column in ("at", "target", "actor", "request_id"):
        op.drop_index(op.f(f"ix_audit_log_{column}"), table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("batches")
