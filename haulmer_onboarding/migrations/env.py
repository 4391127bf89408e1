"""Alembic's environment: runs on the connection ``store.migrations`` gives.

``haulmer_onboarding.store.migrations`` opens the transaction (and, on
PostgreSQL, takes a lock), so that two processes starting at once cannot
both migrate; here the migrations only run on that connection.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from haulmer_onboarding.store.tables import metadata

config = context.config
connection = config.attributes.get("connection")

if context.is_offline_mode():
    # ``haulmer-onboarding migrate --sql``: the SQL for a DBA to review.
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()
elif not isinstance(connection, Connection):
    raise RuntimeError(
        "run the migrations with `haulmer-onboarding migrate` or "
        "Onboarding.create_tables(), which give them a connection"
    )
else:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite alters a table by copying it: batch mode does that.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
