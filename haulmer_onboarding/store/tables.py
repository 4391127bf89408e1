"""The tables. SQLAlchemy Core, portable between SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

# Named constraints: a later migration can drop or alter them by name on
# every backend (SQLite and PostgreSQL would otherwise name them apart).
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

_ID = BigInteger().with_variant(Integer, "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every backend.

    SQLite keeps no time zone; PostgreSQL does. Either way callers get
    ``tzinfo=UTC`` back, and a naive value is refused on the way in.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Any) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _when(name: str, *, nullable: bool = True) -> Column[datetime]:
    return Column(name, UtcDateTime(), nullable=nullable)


customers = Table(
    "customers",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    # Trimmed and lowercased: addresses are matched without regard to case.
    Column("email", String(320), nullable=False, unique=True),
    Column("name", String(200), nullable=False, default=""),
    Column("password_hash", String(200)),
    _when("password_set_at"),
    _when("created_at", nullable=False),
)

journeys = Table(
    "journeys",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("order_number", String(64), nullable=False, unique=True),
    Column("customer_id", ForeignKey("customers.id"), nullable=False),
    Column("purchase", JSON, nullable=False),
    Column("products", JSON, nullable=False),
    Column("changes_legal_name", Boolean, nullable=False),
    Column("stage", String(40), nullable=False),
    Column("workspace_id", ForeignKey("workspaces.id")),
    Column("organization_id", ForeignKey("organizations.id")),
    Column("documents", JSON, nullable=False, default=list),
    Column("signature_info", JSON),
    Column("signature_sealed", LargeBinary),
    Column("certification_id", String(100)),
    Column("certification", JSON),
    Column("tax_document", JSON),
    # Bumped by every change: a cheap guard against lost updates.
    Column("version", Integer, nullable=False, default=1),
    _when("created_at", nullable=False),
    _when("updated_at", nullable=False),
)
Index("ix_journeys_stage", journeys.c.stage)

workspaces = Table(
    "workspaces",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("name", String(120)),
    Column("administrator_id", ForeignKey("customers.id")),
    _when("finished_at"),
    _when("created_at", nullable=False),
)

organizations = Table(
    "organizations",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("workspace_id", ForeignKey("workspaces.id"), nullable=False),
    Column("legal_name", String(200), nullable=False),
    Column("rut", String(12), nullable=False),
    _when("created_at", nullable=False),
    UniqueConstraint("workspace_id", "rut"),
)

link_tokens = Table(
    "link_tokens",
    metadata,
    Column("jti", String(40), primary_key=True),
    Column("purpose", String(40), nullable=False),
    # What the link acts on, e.g. "customer:7" or "journey:3".
    Column("subject", String(80), nullable=False),
    _when("issued_at", nullable=False),
    _when("used_at"),
    # Set when a newer link of the same purpose and subject was issued, or
    # when the subject's state made the link pointless.
    _when("revoked_at"),
    Column("revoked_reason", String(20)),
)
Index("ix_link_tokens_subject", link_tokens.c.subject, link_tokens.c.purpose)

outbox = Table(
    "outbox",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("message_id", String(200), nullable=False, unique=True),
    Column("journey_id", ForeignKey("journeys.id")),
    Column("template", String(80), nullable=False),
    Column("recipient", String(320), nullable=False),
    Column("subject", String(300), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("claimed_by", String(40)),
    _when("claimed_until"),
    _when("next_attempt_at", nullable=False),
    _when("sent_at"),
    # Refused for good (a 5xx about this message): never retried.
    _when("failed_at"),
    _when("created_at", nullable=False),
    # Last: SQLite keeps a long value in overflow pages, and reading any
    # column after it would walk them; the relay's queries read the others.
    Column("raw", LargeBinary, nullable=False),
)
Index("ix_outbox_pending", outbox.c.sent_at, outbox.c.next_attempt_at)
Index("ix_outbox_recipient", outbox.c.recipient, outbox.c.id)

events = Table(
    "events",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("journey_id", ForeignKey("journeys.id")),
    Column("kind", String(60), nullable=False),
    Column("data", JSON, nullable=False, default=dict),
    _when("at", nullable=False),
)
Index("ix_events_journey", events.c.journey_id, events.c.id)

throttle_hits = Table(
    "throttle_hits",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    # A hashed key such as "forgot:address:<sha256>": no address in clear.
    Column("key", String(100), nullable=False),
    _when("at", nullable=False),
)
Index("ix_throttle_hits_key", throttle_hits.c.key, throttle_hits.c.at)

# ¿Olvidó su contraseña? requests wait here for the worker, so that the
# answer to the request costs the same whether or not the address is known.
password_requests = Table(
    "password_requests",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False),
    _when("created_at", nullable=False),
)

# One row per post-enablement action of a journey: the unique key is what
# keeps an action from being recorded twice.
enablement_actions = Table(
    "enablement_actions",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("journey_id", ForeignKey("journeys.id"), nullable=False),
    Column("product", String(40), nullable=False),
    Column("action", String(60), nullable=False),
    Column("title", String(200), nullable=False),
    Column("state", String(20), nullable=False),  # pending, done, failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("result", JSON),
    Column("last_error", Text),
    _when("next_attempt_at", nullable=False),
    _when("claimed_until"),
    _when("done_at"),
    _when("created_at", nullable=False),
    UniqueConstraint("journey_id", "product", "action"),
)
Index(
    "ix_enablement_actions_due",
    enablement_actions.c.state,
    enablement_actions.c.next_attempt_at,
)
