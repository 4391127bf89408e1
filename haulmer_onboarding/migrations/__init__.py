"""Alembic migrations of the schema in ``haulmer_onboarding.store.tables``.

The scripts are in ``versions/``; ``env.py`` runs them on the connection
``haulmer_onboarding.store.migrations`` gives. The two functions here are
what ``haulmer-onboarding migrate`` calls; ``Onboarding.create_tables()``
runs the same upgrade. ``docs/database.md`` says how to add a migration.
"""

from __future__ import annotations

__all__ = ["migrate", "sql_script"]


def migrate(url: str) -> tuple[bool, str]:
    """Bring the database at ``url`` to the newest revision; return whether
    anything changed, and that revision."""
    from haulmer_onboarding.store import Store, migrations

    store = Store(url)
    try:
        changed = migrations.upgrade(store)
    finally:
        store.dispose()
    return changed, migrations.head_revision()


def sql_script(url: str) -> str:
    """The SQL that builds the newest schema in an empty database of
    ``url``'s kind, for an administrator who runs DDL by hand."""
    from haulmer_onboarding.store import migrations

    return migrations.sql(url)
