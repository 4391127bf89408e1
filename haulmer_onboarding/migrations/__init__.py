"""Alembic migrations of the schema in ``haulmer_onboarding.store.tables``.

Run them with ``haulmer-onboarding migrate`` or ``Onboarding.create_tables()``;
``docs/database.md`` says how to add one.
"""
