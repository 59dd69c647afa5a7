"""Alembic environment: runs the service's migrations on the URL given by storage.migrate."""

from alembic import context
from sqlalchemy import text

from email_service.storage.database import make_engine
from email_service.storage.models import Base

# Key of the PostgreSQL advisory lock held while migrating: API containers started together (or
# `--scale api=N`) migrate one after the other; the later ones then find the schema up to date.
MIGRATION_LOCK = 0x656D61696C  # "email"

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url, "storage.migrate sets sqlalchemy.url"

if context.is_offline_mode():
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            context.run_migrations()
    engine.dispose()
