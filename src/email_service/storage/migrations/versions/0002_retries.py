"""Retries: when a deferred recipient is due, and an index for the scheduler's sweep.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("recipients") as batch:
        batch.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_recipients_status_lease", "recipients", ["status", "lease_until"])


def downgrade() -> None:
    op.drop_index("ix_recipients_status_lease", table_name="recipients")
    with op.batch_alter_table("recipients") as batch:
        batch.drop_column("next_attempt_at")
