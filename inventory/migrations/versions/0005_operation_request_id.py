"""Operations keep the id of the request that made them, so a push to a unit is audited
under the staff request that asked for it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("operations") as batch:
        batch.add_column(sa.Column("request_id", sa.String(length=64), nullable=True))
    op.create_index(op.f("ix_operations_request_id"), "operations", ["request_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_operations_request_id"), table_name="operations")
    with op.batch_alter_table("operations") as batch:
        batch.drop_column("request_id")
