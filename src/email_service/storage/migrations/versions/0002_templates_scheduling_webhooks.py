"""Stored templates, attachments, scheduling and message options, idempotency keys, webhook outbox.

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

UTC_DATETIME = sa.DateTime(timezone=True)
BIG_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("jobs") as jobs:
        jobs.add_column(sa.Column("template_version", sa.Integer(), nullable=True))
        jobs.add_column(sa.Column("variables", sa.JSON(), nullable=True))
        jobs.add_column(sa.Column("reply_to", sa.String(length=320), nullable=True))
        jobs.add_column(sa.Column("headers", sa.JSON(), nullable=True))
        jobs.add_column(sa.Column("tags", sa.JSON(), nullable=True))
        jobs.add_column(sa.Column("metadata", sa.JSON(), nullable=True))
        jobs.add_column(sa.Column("callback_url", sa.Text(), nullable=True))
        jobs.add_column(sa.Column("send_at", UTC_DATETIME, nullable=True))
        jobs.add_column(sa.Column("expires_at", UTC_DATETIME, nullable=True))
    op.create_index("ix_jobs_status", "jobs", ["status"])

    with op.batch_alter_table("recipients") as recipients:
        recipients.add_column(sa.Column("failure_unreported", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_index(
        "ix_recipients_failure_unreported",
        "recipients",
        ["job_id"],
        postgresql_where=sa.text("failure_unreported"),
        sqlite_where=sa.text("failure_unreported"),
    )

    op.create_table(
        "attachments",
        sa.Column("id", BIG_KEY, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=255), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_attachments_job", "attachments", ["job_id", "position"], unique=True)

    op.create_table(
        "templates",
        sa.Column("id", BIG_KEY, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("html", sa.Text(), nullable=True),
        sa.Column("eml", sa.Text(), nullable=True),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("deleted_at", UTC_DATETIME, nullable=True),
    )
    op.create_index("ix_templates_name_version", "templates", ["name", "version"], unique=True)

    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.String(length=255), primary_key=True),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=True),
        sa.Column("response", sa.JSON(), nullable=True),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
    )
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])

    op.create_table(
        "webhook_events",
        sa.Column("id", BIG_KEY, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTC_DATETIME, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("delivered_at", UTC_DATETIME, nullable=True),
    )
    op.create_index(
        "ix_webhook_events_due",
        "webhook_events",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    )
    op.create_index("ix_webhook_events_job", "webhook_events", ["job_id", "id"])


def downgrade() -> None:
    op.drop_table("webhook_events")
    op.drop_table("idempotency_keys")
    op.drop_table("templates")
    op.drop_table("attachments")
    op.drop_index("ix_recipients_failure_unreported", table_name="recipients")
    with op.batch_alter_table("recipients") as recipients:
        recipients.drop_column("failure_unreported")
    op.drop_index("ix_jobs_status", table_name="jobs")
    with op.batch_alter_table("jobs") as jobs:
        for column in (
            "expires_at", "send_at", "callback_url", "metadata", "tags", "headers", "reply_to", "variables",
            "template_version",
        ):  # fmt: skip
            jobs.drop_column(column)
