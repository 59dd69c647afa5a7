"""Lanes and turns: each job waits in the transactional or the bulk lane, and records its place in its
lane's round (recipients counted as claims take them); an account may name the lane of its jobs.

The workers now pick their work from the database instead of the broker handing them every batch: a
row still to send is due when its lease_until has passed, so pending rows of running jobs, which held
a dispatch deadline, are made due at once. The per-job index of rows to send gains lease_until, for
the claims to take a job's due rows oldest first.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_TO_SEND = sa.text("lease_until IS NOT NULL")


def upgrade() -> None:
    op.add_column("jobs", sa.Column("lane", sa.String(length=16), nullable=False, server_default="bulk"))
    op.add_column("jobs", sa.Column("served", sa.BigInteger(), nullable=True))
    op.add_column("accounts", sa.Column("lane", sa.String(length=16), nullable=True))
    op.drop_index("ix_recipients_job_unfinished", table_name="recipients")
    op.create_index(
        "ix_recipients_job_due",
        "recipients",
        ["job_id", "lease_until"],
        postgresql_where=_TO_SEND,
        sqlite_where=_TO_SEND,
    )
    op.execute(
        sa.text("UPDATE recipients SET lease_until = :now WHERE status = 'pending' AND lease_until > :now").bindparams(
            sa.bindparam("now", datetime.now(UTC), type_=sa.DateTime(timezone=True))
        )
    )


def downgrade() -> None:
    op.drop_index("ix_recipients_job_due", table_name="recipients")
    op.create_index(
        "ix_recipients_job_unfinished", "recipients", ["job_id"], postgresql_where=_TO_SEND, sqlite_where=_TO_SEND
    )
    op.drop_column("accounts", "lane")
    op.drop_column("jobs", "served")
    op.drop_column("jobs", "lane")
