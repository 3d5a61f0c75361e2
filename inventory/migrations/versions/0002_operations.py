"""The durable operations store: operations and their step history.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

_RUNNING = sa.text("state = 'running'")


def upgrade() -> None:
    op.create_table(
        "operations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("unit_serial", sa.String(length=12), nullable=True),
        sa.Column("customer_code", sa.String(length=9), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("secret_params", sa.Text(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("batch_id", sa.String(length=64), nullable=True),
        sa.Column("requested_by", sa.String(length=100), nullable=False),
        sa.Column("lease_owner", sa.String(length=100), nullable=True),
        sa.Column("lease_expires", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "state IN ('queued', 'running', 'retry_wait', 'succeeded', 'failed', "
            "'escalated', 'cancelled')",
            name=op.f("ck_operations_state"),
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_operations_attempts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operations")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_operations_idempotency_key")),
    )
    op.create_index(op.f("ix_operations_state_not_before"), "operations", ["state", "not_before"])
    op.create_index(op.f("ix_operations_unit_serial_state"), "operations", ["unit_serial", "state"])
    op.create_index(op.f("ix_operations_batch_id"), "operations", ["batch_id"])
    op.create_index(op.f("ix_operations_customer_code"), "operations", ["customer_code"])
    # at most one running operation per unit, enforced by the database on both stores
    op.create_index(
        "uq_operations_unit_serial_running",
        "operations",
        ["unit_serial"],
        unique=True,
        sqlite_where=_RUNNING,
        postgresql_where=_RUNNING,
    )
    op.create_table(
        "operation_steps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("operation_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("step", sa.String(length=64), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["operation_id"],
            ["operations.id"],
            name=op.f("fk_operation_steps_operation_id_operations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operation_steps")),
        sa.UniqueConstraint(
            "operation_id", "seq", name=op.f("uq_operation_steps_operation_id_seq")
        ),
    )


def downgrade() -> None:
    op.drop_table("operation_steps")
    op.drop_index("uq_operations_unit_serial_running", table_name="operations")
    op.drop_index(op.f("ix_operations_customer_code"), table_name="operations")
    op.drop_index(op.f("ix_operations_batch_id"), table_name="operations")
    op.drop_index(op.f("ix_operations_unit_serial_state"), table_name="operations")
    op.drop_index(op.f("ix_operations_state_not_before"), table_name="operations")
    op.drop_table("operations")
