"""Provider webhook signatures already accepted, so that a replay of one is refused.

Revision ID: 0007
Revises: 0006
Create Date: 2027-01-10
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "used_webhook_signatures",
        sa.Column("key", sa.String(length=64), primary_key=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_used_webhook_signatures_expires", "used_webhook_signatures", ["expires_at"])


def downgrade() -> None:
    op.drop_table("used_webhook_signatures")
