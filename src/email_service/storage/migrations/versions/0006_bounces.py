"""Bounces and complaints received after the relay accepted a message.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bounces",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("recipient_id", sa.BigInteger(), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("smtp_code", sa.Integer(), nullable=True),
        sa.Column("diagnostic", sa.Text(), nullable=False),
        sa.Column("reporter", sa.String(length=255), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_bounces_recipient_kind", "bounces", ["recipient_id", "kind"], unique=True)
    op.create_index("ix_bounces_address_received", "bounces", ["address", "received_at"])
    op.create_index("ix_bounces_job", "bounces", ["job_id", "id"])


def downgrade() -> None:
    op.drop_table("bounces")
