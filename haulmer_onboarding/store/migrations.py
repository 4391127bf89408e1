"""Schema migrations: Alembic scripts shipped in ``haulmer_onboarding.migrations``.

``upgrade`` brings a database to the newest schema, and is what
``Store.create_all``, ``Onboarding.create_tables()`` and
``haulmer-onboarding migrate`` run. It holds the database's write lock (SQLite)
or an advisory lock (PostgreSQL) for the whole upgrade, so that several
processes starting at once migrate once, and a failed upgrade changes
nothing: both databases run DDL inside the transaction.
"""

from __future__ import annotations

import io
import logging
import os
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

if TYPE_CHECKING:
    from haulmer_onboarding.store import Store

__all__ = [
    "FIRST_REVISION",
    "current_revision",
    "downgrade",
    "head_revision",
    "new_revision",
    "sql",
    "upgrade",
]

logger = logging.getLogger("haulmer_onboarding")

SCRIPTS = "haulmer_onboarding:migrations"
#: The schema the first release created with ``metadata.create_all``.
FIRST_REVISION = "0001"
# Any constant: the key of the advisory lock PostgreSQL migrators share.
_LOCK_KEY = 0x4855_4C4D_4552


def _config(connection: Connection | None = None, url: str | None = None) -> Config:
    config = Config(stdout=io.StringIO())
    config.set_main_option("script_location", SCRIPTS)
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


@cache
def head_revision() -> str:
    """The newest revision this version of the package ships."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at; ``None`` for an unmigrated one."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(store: Store, revision: str = "head") -> bool:
    """Migrate to ``revision``; return whether anything had to change."""
    with store.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_LOCK_KEY)))
        current = current_revision(conn)
        target = head_revision() if revision == "head" else revision
        if current == target:
            return False
        inspector = sa.inspect(conn)
        if current is None and inspector.has_table("customers"):
            # Made by ``create_all`` before migrations existed: the tables
            # are the first revision's, so they are recorded as such.
            command.stamp(_config(conn), FIRST_REVISION)
            logger.warning(
                "the database had tables but no migration record: recorded "
                "as revision %s, then upgraded",
                FIRST_REVISION,
            )
        command.upgrade(_config(conn), revision)
        logger.info("database migrated from %s to %s", current, target)
        return True


def downgrade(store: Store, revision: str) -> None:
    """Go back to ``revision`` (``"base"``: no tables at all)."""
    with store.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_LOCK_KEY)))
        command.downgrade(_config(conn), revision)


def new_revision(store: Store, message: str, folder: str | None = None) -> str:
    """Write a new migration script comparing ``store``'s database (at the
    newest revision) with the tables module; return its path.

    For the project's developers: review and edit what it wrote. ``folder``
    writes it elsewhere than the package's ``versions/`` (tests do).
    """
    with store.begin() as conn:
        config = _config(conn)
        if folder is not None:
            shipped = Path(str(resources.files("haulmer_onboarding.migrations")))
            config.set_main_option("path_separator", "os")
            config.set_main_option(
                "version_locations",
                os.pathsep.join([str(shipped / "versions"), folder]),
            )
        script = command.revision(
            config, message, autogenerate=True, version_path=folder
        )
    if script is None or isinstance(script, list):
        raise RuntimeError("Alembic wrote no script, or more than one")
    return str(script.path)


def sql(url: str, revision: str = "head") -> str:
    """The SQL that upgrades an empty database at ``url``'s kind to
    ``revision``, for a database administrator to review and run."""
    from haulmer_onboarding.store import database_url

    config = _config(url=database_url(url).render_as_string(hide_password=False))
    output = io.StringIO()
    config.output_buffer = output
    command.upgrade(config, revision, sql=True)
    return output.getvalue()
