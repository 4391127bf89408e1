"""A journey, or a link and what it acts on, read in one statement.

A link's page is drawn from the link's row, its journey with the buyer,
the workspace, its administrator and organizations, and the purchase. One
``SELECT`` reads all of that (one row per organization) and hands back the
values as the driver returned them (``Store.rows``); they are decoded into
the journey's records only when a page is drawn. Kept as read, the values
are the snapshot's ``state``: two snapshots of one link with equal states
are drawn into the same page, which is what lets the web app keep pages
(docs/web.md, "Kept link pages").
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs
import sqlalchemy as sa

from haulmer_onboarding.models import (
    Customer,
    Journey,
    Organization,
    Stage,
    TaxDocumentRequest,
    Workspace,
)
from haulmer_onboarding.store.tables import (
    customers,
    journeys,
    link_tokens,
    organizations,
    workspaces,
)
from haulmer_onboarding.tokens import LinkClaims

__all__ = ["JOURNEY", "LINK", "LinkSnapshot", "is_live", "journey_from"]

Rows = Sequence[tuple[Any, ...]]

_admin = customers.alias("administrator")
_holder = customers.alias("holder")


def _text(column: sa.Column[Any]) -> sa.Cast[str]:
    # JSON as stored: PostgreSQL's driver would parse it, SQLite gives text.
    return sa.cast(column, sa.Text)


# The order is the decoder's: ``journey_from`` reads them by position.
_JOURNEY_COLUMNS = (
    journeys.c.id,
    journeys.c.order_number,
    journeys.c.stage,
    _text(journeys.c.products),
    journeys.c.changes_legal_name,
    journeys.c.workspace_id,
    journeys.c.organization_id,
    _text(journeys.c.documents),
    _text(journeys.c.signature_info),
    _text(journeys.c.certification),
    _text(journeys.c.tax_document),
    journeys.c.created_at,
    _text(journeys.c.purchase),
    customers.c.id,
    customers.c.email,
    customers.c.name,
    customers.c.password_hash.is_not(None),
    workspaces.c.name,
    workspaces.c.finished_at,
    _admin.c.email,
    _admin.c.name,
    organizations.c.id,
    organizations.c.legal_name,
    organizations.c.rut,
)
_PURCHASE_AT = 12
_ORGANIZATION_AT = 21


def _around_journey(source: sa.FromClause) -> sa.Join:
    """``source`` joined to the buyer, workspace, administrator and each
    organization of the journey; outer joins, so that a link without a
    journey still reads its own row."""
    return (
        source.outerjoin(customers, customers.c.id == journeys.c.customer_id)
        .outerjoin(workspaces, workspaces.c.id == journeys.c.workspace_id)
        .outerjoin(_admin, _admin.c.id == workspaces.c.administrator_id)
        .outerjoin(
            organizations, organizations.c.workspace_id == journeys.c.workspace_id
        )
    )


def _subject_key(prefix: str) -> sa.Case[Any]:
    # "journey:7" -> 7, NULL for another kind of subject; CASE first, so
    # that PostgreSQL never casts "customer:7"'s tail.
    subject = link_tokens.c.subject
    return sa.case(
        (
            subject.startswith(prefix),
            sa.cast(sa.func.substr(subject, len(prefix) + 1), sa.Integer),
        )
    )


#: A journey by ``journey_id``, one row per organization of its workspace.
JOURNEY = (
    sa.select(*_JOURNEY_COLUMNS)
    .select_from(_around_journey(journeys))
    .where(journeys.c.id == sa.bindparam("journey_id"))
    .order_by(organizations.c.id)
)

#: A link by ``jti``: its row, the customer or the journey it acts on.
LINK = (
    sa.select(
        link_tokens.c.purpose,
        link_tokens.c.subject,
        link_tokens.c.used_at,
        link_tokens.c.revoked_at,
        _holder.c.id,
        _holder.c.email,
        _holder.c.name,
        _holder.c.password_hash.is_not(None),
        *_JOURNEY_COLUMNS,
    )
    .select_from(
        _around_journey(
            link_tokens.outerjoin(
                _holder, _holder.c.id == _subject_key("customer:")
            ).outerjoin(journeys, journeys.c.id == _subject_key("journey:"))
        )
    )
    .where(link_tokens.c.jti == sa.bindparam("jti"))
    .order_by(organizations.c.id)
)
_LINK_JOURNEY_AT = 8


def is_live(rows: Rows, purpose: str) -> bool:
    """Whether ``LINK``'s rows are those of a live link for ``purpose``:
    recorded for it, neither used nor revoked."""
    if not rows:
        return False
    found, _, used_at, revoked_at = rows[0][:4]
    return bool(found == purpose and used_at is None and revoked_at is None)


def journey_from(rows: Rows, start: int = 0) -> Journey | None:
    """The journey in ``rows`` (``JOURNEY``'s, or ``LINK``'s from its
    journey columns at ``start``); ``None`` when there is none."""
    if not rows or rows[0][start] is None:
        return None
    (
        journey_id,
        order_number,
        stage,
        products,
        changes_legal_name,
        workspace_id,
        organization_id,
        documents,
        signature,
        certification,
        tax,
        created_at,
        _,
        buyer_id,
        buyer_email,
        buyer_name,
        buyer_has_password,
        workspace_name,
        workspace_finished_at,
        administrator_email,
        administrator_name,
    ) = rows[0][start : start + _ORGANIZATION_AT]
    workspace = organization = None
    if workspace_id is not None:
        at = start + _ORGANIZATION_AT
        orgs = tuple(
            Organization(id=row[at], legal_name=row[at + 1], rut=row[at + 2])
            for row in rows
            if row[at] is not None
        )
        workspace = Workspace(
            id=workspace_id,
            name=workspace_name,
            administrator_email=administrator_email,
            administrator_name=administrator_name,
            organizations=orgs,
            finished=workspace_finished_at is not None,
        )
        if organization_id is not None:
            organization = next(o for o in orgs if o.id == organization_id)
    tax_document = _json(tax)
    return Journey(
        id=journey_id,
        order_number=order_number,
        stage=Stage(stage),
        buyer=Customer(
            id=buyer_id,
            email=buyer_email,
            name=buyer_name,
            has_password=bool(buyer_has_password),
        ),
        products=tuple(_json(products)),
        changes_legal_name=bool(changes_legal_name),
        workspace=workspace,
        organization=organization,
        documents=frozenset(_json(documents) or ()),
        signature=_json(signature),
        certification=_json(certification),
        tax_document=TaxDocumentRequest(**tax_document) if tax_document else None,
        created_at=_utc(created_at),
    )


@attrs.frozen(eq=False)
class LinkSnapshot:
    """A live link and what it acts on, as one statement read them.

    ``state`` is every value read, as the database returned it; a page of
    the link is drawn from it alone, so equal states draw equal pages.
    """

    purpose: str
    claims: LinkClaims
    subject: str
    state: tuple[tuple[Any, ...], ...] = attrs.field(repr=False)

    def customer(self) -> Customer | None:
        """The customer the link acts on (``customer:<id>`` subjects)."""
        holder_id, email, name, has_password = self.state[0][4:8]
        if holder_id is None:
            return None
        return Customer(
            id=holder_id, email=email, name=name, has_password=bool(has_password)
        )

    def journey(self) -> Journey | None:
        """The journey the link acts on (``journey:<id>`` subjects)."""
        return journey_from(self.state, _LINK_JOURNEY_AT)

    def purchase(self) -> Mapping[str, Any] | None:
        """The journey's purchase as recorded (its JSON)."""
        data = self.state[0][_LINK_JOURNEY_AT + _PURCHASE_AT]
        return None if data is None else dict(_json(data))


def _json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _utc(value: datetime | str) -> datetime:
    """A stored instant as ``UtcDateTime`` reads it: SQLite keeps the text
    of a naive UTC time, PostgreSQL an aware one."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
