"""A batch's operations are counted by state after every group of outcomes: the index on
(batch_id, state) answers that from the index alone, instead of reading every operation of
the batch (1 ms instead of 5 to 30 ms for a batch of 10,000 on SQLite).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_operations_batch_id_state"), "operations", ["batch_id", "state"])
    op.drop_index(op.f("ix_operations_batch_id"), table_name="operations")


def downgrade() -> None:
    op.create_index(op.f("ix_operations_batch_id"), "operations", ["batch_id"])
    op.drop_index(op.f("ix_operations_batch_id_state"), table_name="operations")
