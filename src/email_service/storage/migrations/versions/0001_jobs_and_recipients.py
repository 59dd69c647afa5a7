"""Jobs and recipients.

Revision ID: 0001
Revises:
Create Date: 2026-11-28

The recipients table is written 100,000 rows at a time by the intake, so it carries only what
the sweep and the API read: no foreign key (a per-row check that doubles the insert time; the job
and its rows are written in one transaction by storage.jobs.insert_job) and no stored Message-ID
(it is derived from the job id and position).
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(length=36), primary_key=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("template", sa.String(length=64), nullable=False),
        sa.Column("sender", sa.String(length=320), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("started_at", UTC_DATETIME, nullable=True),
        sa.Column("finished_at", UTC_DATETIME, nullable=True),
    )
    op.create_index("ix_jobs_created_at", "jobs", ["created_at"])
    op.create_table(
        "recipients",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=True),
        sa.Column("variables", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_until", UTC_DATETIME, nullable=True),
        sa.Column("next_attempt_at", UTC_DATETIME, nullable=True),
        sa.Column("last_error_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("sent_at", UTC_DATETIME, nullable=True),
        sa.Column("updated_at", UTC_DATETIME, nullable=True),
    )
    op.create_index("ix_recipients_job_position", "recipients", ["job_id", "position"], unique=True)
    for name, column in (("ix_recipients_lease", "lease_until"), ("ix_recipients_job_unfinished", "job_id")):
        op.create_index(
            name,
            "recipients",
            [column],
            postgresql_where=sa.text("lease_until IS NOT NULL"),
            sqlite_where=sa.text("lease_until IS NOT NULL"),
        )


def downgrade() -> None:
    op.drop_table("recipients")
    op.drop_table("jobs")
