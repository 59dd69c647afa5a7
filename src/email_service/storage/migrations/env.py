"""Alembic environment: runs the service's migrations on the URL given by storage.migrate."""

from alembic import context

from email_service.storage.database import make_engine
from email_service.storage.models import Base

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
            context.run_migrations()
    engine.dispose()
