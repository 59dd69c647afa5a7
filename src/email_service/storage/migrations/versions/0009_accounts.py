"""Accounts: each calling service owns its keys, jobs, templates, suppressions, senders and webhook secret.

Every existing key becomes an account of its own, with the key's id as the account's id: its jobs (whose
owner was the key's id), its senders and its idempotency keys (stored as a digest of the owner's id) follow
it unchanged. Existing stored templates become shared ones; bounce and manual suppressions shared;
unsubscribes and complaints go to the account whose job caused them (shared when that is unknown). The
accounts made here sign their webhook events with WEBHOOK_SECRET, as their keys did, until the operator
rotates their secret.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# SQLite only auto-increments an INTEGER PRIMARY KEY.
_BIG_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    _accounts_from_keys()
    _jobs_owned_by_accounts()
    _scoped_templates()
    _scoped_suppressions()


def _accounts_from_keys() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(length=36), primary_key=True),
        sa.Column("name", sa.String(length=64), nullable=False, unique=True),
        sa.Column("senders", sa.JSON(), nullable=True),
        sa.Column("callback_url", sa.Text(), nullable=True),
        sa.Column("webhook_secret", sa.String(length=128), nullable=True),
        sa.Column("previous_webhook_secret", sa.String(length=128), nullable=True),
        sa.Column("previous_secret_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
    )
    connection = op.get_bind()
    keys = connection.execute(sa.text("SELECT id, name FROM api_keys ORDER BY created_at, id")).all()
    taken: set[str] = set()
    for key_id, name in keys:
        # Key names were never unique; account names are: a repeated one gets the start of its key's id.
        account_name = name if name not in taken else f"{name[:55]}-{key_id[:8]}"
        taken.add(account_name)
        connection.execute(
            sa.text(
                "INSERT INTO accounts (id, name, senders, created_at) "
                "SELECT id, :name, senders, created_at FROM api_keys WHERE id = :id"
            ),
            {"id": key_id, "name": account_name},
        )
    with op.batch_alter_table("api_keys") as api_keys:
        api_keys.add_column(sa.Column("account_id", sa.String(length=36), nullable=True))
        api_keys.add_column(sa.Column("role", sa.String(length=16), nullable=True))
    op.execute("UPDATE api_keys SET account_id = id, role = 'account'")
    with op.batch_alter_table("api_keys") as api_keys:
        api_keys.alter_column("account_id", existing_type=sa.String(length=36), nullable=False)
        api_keys.alter_column("role", existing_type=sa.String(length=16), nullable=False)
        api_keys.drop_column("senders")
    op.create_index("ix_api_keys_account_id", "api_keys", ["account_id"])


def _jobs_owned_by_accounts() -> None:
    op.drop_index("ix_jobs_owner_created_at", table_name="jobs")
    with op.batch_alter_table("jobs") as jobs:
        jobs.alter_column("owner", new_column_name="account_id", existing_type=sa.String(length=36))
        jobs.add_column(sa.Column("template_id", sa.BigInteger(), nullable=True))
    op.create_index("ix_jobs_account_created_at", "jobs", ["account_id", "created_at"])
    op.execute(
        "UPDATE jobs SET template_id = (SELECT templates.id FROM templates "
        "WHERE templates.name = jobs.template AND templates.version = jobs.template_version) "
        "WHERE template_version IS NOT NULL"
    )


def _scoped_templates() -> None:
    op.drop_index("ix_templates_name_version", table_name="templates")
    with op.batch_alter_table("templates") as templates:
        templates.add_column(sa.Column("account_id", sa.String(length=36), nullable=True))
    op.create_index(
        "ix_templates_scope_name_version",
        "templates",
        [sa.text("coalesce(account_id, '')"), "name", "version"],
        unique=True,
    )


def _scoped_suppressions() -> None:
    # The primary key changes (from the address to an id), which SQLite cannot alter: the rows are set
    # aside, the table made again, and the rows put back with their scope.
    op.execute(
        "CREATE TABLE suppressions_before_accounts AS SELECT address, reason, job_id, created_at FROM suppressions"
    )
    op.drop_table("suppressions")
    op.create_table(
        "suppressions",
        sa.Column("id", _BIG_KEY, primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.String(length=36), nullable=True),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_suppressions_scope_address", "suppressions", [sa.text("coalesce(account_id, '')"), "address"], unique=True
    )
    op.execute(
        "INSERT INTO suppressions (account_id, address, reason, job_id, created_at) "
        "SELECT CASE WHEN old.reason IN ('unsubscribed', 'complained') "
        "THEN (SELECT jobs.account_id FROM jobs WHERE jobs.id = old.job_id) END, "
        "old.address, old.reason, old.job_id, old.created_at "
        "FROM suppressions_before_accounts AS old ORDER BY old.created_at, old.address"
    )
    op.drop_table("suppressions_before_accounts")


def downgrade() -> None:
    raise NotImplementedError("accounts cannot be undone: restore the backup taken before the upgrade")
