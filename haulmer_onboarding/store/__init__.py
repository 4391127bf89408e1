"""The database: an engine, transactions, and the queries the journey needs.

Every function takes a ``Connection`` inside a transaction the caller opened
with ``Store.begin()``, so that a state change, the links it issues and the
emails it queues commit or roll back together.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import Row
from sqlalchemy.pool import NullPool

from haulmer_onboarding.store.tables import (
    customers,
    enablement_actions,
    events,
    journeys,
    link_tokens,
    metadata,
    organizations,
    outbox,
    password_requests,
    throttle_hits,
    workspaces,
)

logger = logging.getLogger("haulmer_onboarding")

__all__ = [
    "Store",
    "customers",
    "database_url",
    "enablement_actions",
    "events",
    "journeys",
    "link_tokens",
    "metadata",
    "organizations",
    "outbox",
    "password_requests",
    "throttle_hits",
    "workspaces",
]


# SQLite's own busy handler waits at most this long for the write lock;
# ``Store`` then logs and tries again until its ``lock_timeout``.
_BUSY_SLICE = 2.0


def _sqlite_pragmas(busy_ms: int) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        # The driver's own transaction handling is off: ``Store.begin``
        # opens each transaction itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # WAL lets the relay read while a request writes; the timeout turns
        # a short lock wait into a wait rather than an error.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return on_connect


def _busy(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "database is locked" in text or "database is busy" in text


def database_url(url: str) -> sa.URL:
    """``url`` as the engine gets it: a bare ``postgresql://`` URL means the
    psycopg 3 driver, the one the ``postgresql`` extra installs."""
    parsed = sa.engine.make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


class Store:
    """One database, given by a SQLAlchemy URL (SQLite file or PostgreSQL).

    ``lock_timeout`` is how long a SQLite transaction waits for another
    process's write lock before it gives up; meanwhile it retries, and logs a
    warning every two seconds of waiting. It is the time a request may hang
    behind a long write (a migration, a backup), not a normal wait.
    """

    def __init__(
        self, url: str, *, echo: bool = False, lock_timeout: float = 60.0
    ) -> None:
        self.url = url
        parsed = database_url(url)
        self._sqlite = parsed.get_backend_name() == "sqlite"
        self.lock_timeout = lock_timeout
        options: dict[str, Any] = {}
        if self._sqlite:
            # With a connection held per thread, a pool's size limit could
            # only make threads wait: SQLite gets no pool. Closed from
            # another thread only at shutdown (``dispose``).
            options = {
                "poolclass": NullPool,
                "connect_args": {"check_same_thread": False},
            }
        else:
            # A server restart or an idle timeout must cost a reconnect, not
            # an error in the first request after it.
            options = {"pool_pre_ping": True}
        self.engine: Engine = sa.create_engine(parsed, echo=echo, **options)
        # SQLite connections are cheap to keep and costly to check out of a
        # pool on every click: each thread keeps its own.
        self._local = threading.local()
        self._held: list[Connection] = []
        self._held_lock = threading.Lock()
        if self._sqlite:
            busy_ms = int(min(_BUSY_SLICE, lock_timeout) * 1000)
            event.listen(self.engine, "connect", _sqlite_pragmas(busy_ms))

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return str(self.engine.dialect.name)

    def create_all(self) -> None:
        """Bring the schema to the newest migration: creates every table in
        an empty database, upgrades an older one, and does nothing (one
        query) on a current one. Safe to call from many processes at once."""
        from haulmer_onboarding.store import migrations

        migrations.upgrade(self)

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction: committed on success, rolled back on any error."""
        if not self._sqlite:
            with self.engine.begin() as conn:
                yield conn
            return

        conn = self._thread_connection()
        self._begin_immediate(conn)
        try:
            with conn.begin():
                yield conn
        except BaseException:
            if conn.invalidated:
                self._local.conn = None
            raise

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A transaction that only reads: one consistent snapshot, no lock.

        On SQLite a deferred ``BEGIN``: in WAL mode readers run beside the
        writer instead of queueing for its lock as ``begin()`` does. On
        PostgreSQL a plain transaction (no row is locked). Nothing may be
        written in it.
        """
        if not self._sqlite:
            with self.engine.begin() as conn:
                yield conn
            return

        conn = self._thread_connection()
        driver = conn.connection.driver_connection
        assert driver is not None
        # A deferred BEGIN takes no lock; the snapshot starts at the first
        # read, and the busy timeout covers WAL's rare short waits.
        driver.execute("BEGIN")
        try:
            with conn.begin():
                yield conn
        except BaseException:
            if conn.invalidated:
                self._local.conn = None
            raise

    def _begin_immediate(self, conn: Connection) -> None:
        # pysqlite would open the transaction at the first write, letting
        # two writers both read and then collide; BEGIN IMMEDIATE takes the
        # write lock up front, so a link consumed by one request is seen by
        # the next. Nothing ran yet, so a busy database is simply retried.
        driver = conn.connection.driver_connection
        assert driver is not None
        started = time.monotonic()
        while True:
            try:
                driver.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                waited = time.monotonic() - started
                if not _busy(exc) or waited >= self.lock_timeout:
                    # As every other database error reaches callers.
                    raise sa.exc.OperationalError("BEGIN IMMEDIATE", None, exc) from exc
                logger.warning(
                    "the SQLite database has been locked by another writer "
                    "for %.0fs; still waiting",
                    waited,
                )

    def _thread_connection(self) -> Connection:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.invalidated:
            conn = self.engine.connect()
            self._local.conn = conn
            with self._held_lock:
                self._held.append(conn)
        return conn

    def dispose(self) -> None:
        with self._held_lock:
            held, self._held = self._held, []
        for conn in held:
            # Closing at shutdown is best effort: a connection whose thread
            # is gone may refuse.
            with contextlib.suppress(Exception):
                conn.close()
        self.engine.dispose()


# -- small helpers used by the journey ---------------------------------------


# Built once: a purchase runs some twenty of these in its transaction, and
# building a statement (``insert().values(...)`` above all) cost more than
# running it.
_INSERTS: dict[str, sa.Insert] = {}
_CUSTOMER_BY_EMAIL = sa.select(customers).where(
    customers.c.email == sa.bindparam("email")
)
_CUSTOMER_BY_ID = sa.select(customers).where(customers.c.id == sa.bindparam("id"))
_JOURNEY_BY_ID = sa.select(journeys).where(journeys.c.id == sa.bindparam("id"))
_JOURNEY_BY_ID_FOR_UPDATE = _JOURNEY_BY_ID.with_for_update()
_JOURNEY_BY_ORDER = sa.select(journeys).where(
    journeys.c.order_number == sa.bindparam("order_number")
)


def insert(conn: Connection, table: sa.Table, values: Mapping[str, Any]) -> int:
    """Insert one row and return its integer primary key."""
    statement = _INSERTS.get(table.name)
    if statement is None or statement.table is not table:
        statement = _INSERTS[table.name] = table.insert()
    result = conn.execute(statement, dict(values))
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def one(conn: Connection, query: sa.Select[Any]) -> Row[Any] | None:
    return conn.execute(query).first()


def all_rows(conn: Connection, query: sa.Select[Any]) -> Sequence[Row[Any]]:
    return conn.execute(query).all()


def customer_by_email(conn: Connection, email: str) -> Row[Any] | None:
    return conn.execute(_CUSTOMER_BY_EMAIL, {"email": email}).first()


def customer_by_id(conn: Connection, customer_id: int) -> Row[Any] | None:
    return conn.execute(_CUSTOMER_BY_ID, {"id": customer_id}).first()


def journey_row(
    conn: Connection, journey_id: int, *, for_update: bool = False
) -> Row[Any] | None:
    query = _JOURNEY_BY_ID
    if for_update and conn.dialect.name != "sqlite":
        query = _JOURNEY_BY_ID_FOR_UPDATE
    return conn.execute(query, {"id": journey_id}).first()


def journey_by_order(conn: Connection, order_number: str) -> Row[Any] | None:
    return conn.execute(_JOURNEY_BY_ORDER, {"order_number": order_number}).first()


def update_journey(
    conn: Connection, row: Row[Any], now: datetime, **values: Any
) -> None:
    """Change a journey read as ``row``; fails if it changed in between."""
    result = conn.execute(
        journeys.update()
        .where(journeys.c.id == row.id, journeys.c.version == row.version)
        .values(version=row.version + 1, updated_at=now, **values)
    )
    if result.rowcount != 1:
        raise RuntimeError(f"journey {row.id} changed concurrently")


def record_event(
    conn: Connection,
    journey_id: int | None,
    kind: str,
    now: datetime,
    data: Mapping[str, Any] | None = None,
) -> None:
    insert(
        conn,
        events,
        {"journey_id": journey_id, "kind": kind, "data": dict(data or {}), "at": now},
    )


def take_hit(
    conn: Connection, key: str, *, limit: int, window: timedelta, now: datetime
) -> int | None:
    """Count a request under ``key``; refuse it when ``limit`` were already
    counted within ``window``.

    Returns ``None`` when the request may go on, else the seconds until the
    oldest counted request leaves the window (a request exactly ``window``
    old has left it), rounded up.
    """
    since = now - window
    conn.execute(
        throttle_hits.delete().where(
            throttle_hits.c.key == key, throttle_hits.c.at <= since
        )
    )
    hits = conn.execute(
        sa.select(throttle_hits.c.at)
        .where(throttle_hits.c.key == key)
        .order_by(throttle_hits.c.at)
    ).all()
    if len(hits) >= limit:
        oldest = hits[0].at
        wait: timedelta = oldest + window - now
        return max(1, math.ceil(wait.total_seconds()))
    conn.execute(throttle_hits.insert().values(key=key, at=now))
    return None
