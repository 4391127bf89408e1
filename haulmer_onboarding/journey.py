"""The facade: one method per customer step, and every rule of their order.

A step method opens one transaction in which it reads the link, checks that
the journey stands where the step may happen, changes the state, consumes
the link when the step completes its purpose, issues the next links and
queues the next emails. Either all of that commits or none of it does, so a
refused step changes nothing.

The order is the customer's: purchase recorded; CREAR CONTRASEÑA; for a new
razón social the workspace wizard (ACTIVAR, CREAR, SIGUIENTE, FINALIZAR);
INICIAR SETUP (COMENZAR, organization, signature, documents); certification;
the organization enabled.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from typing import Any

import attrs
import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import Connection
from sqlalchemy.engine import Row

from haulmer_onboarding import passwords, snapshots, store
from haulmer_onboarding.actions import (
    MAX_ATTEMPTS,
    ActionContext,
    ActionFailed,
    ActionResult,
    backoff,
    is_transient,
    service_client,
)
from haulmer_onboarding.business_days import (
    SANTIAGO,
    expected_date,
    format_date_es,
)
from haulmer_onboarding.certification import (
    CertificationClient,
    CertificationStatus,
    CertificationStep,
    StepStatus,
)
from haulmer_onboarding.dte import DteType, parse_codes
from haulmer_onboarding.errors import (
    CertificationServiceError,
    ConflictError,
    DocumentsError,
    FieldErrors,
    LinkInvalid,
    LinkUsed,
    NotFoundError,
    OnboardingError,
    RateLimited,
    RutError,
    StepOrderError,
    ValidationError,
)
from haulmer_onboarding.hookspecs import Plugins
from haulmer_onboarding.links import COMPLETED, LinkBook, LiveLink
from haulmer_onboarding.mail import Relay, Renderer, queue_email
from haulmer_onboarding.mail.outbox import PreparedEmail, prepare_email, write_email
from haulmer_onboarding.models import (
    Customer,
    DocumentOffer,
    Journey,
    JourneyEvent,
    Organization,
    Purchase,
    PurchaseItem,
    Stage,
    TaxDocumentRequest,
    Workspace,
)
from haulmer_onboarding.rut import Rut
from haulmer_onboarding.settings import Settings
from haulmer_onboarding.signatures import SignatureSealer, load_signature
from haulmer_onboarding.snapshots import LinkSnapshot
from haulmer_onboarding.store import Store
from haulmer_onboarding.store.tables import (
    customers,
    enablement_actions,
    events,
    journeys,
    organizations,
    password_requests,
    workspaces,
)
from haulmer_onboarding.text import check_line
from haulmer_onboarding.tokens import DEFAULT_MAX_AGES, LinkClaims, LinkSigner, Purpose

__all__ = [
    "RENEWABLE",
    "ExpiredLink",
    "Link",
    "Onboarding",
    "mask_email",
    "normalize_email",
]

logger = logging.getLogger("haulmer_onboarding")

_WIZARD_STAGES = (
    Stage.WORKSPACE_PENDING,
    Stage.WORKSPACE_ACTIVATED,
    Stage.WORKSPACE_ADMIN_CREATED,
    Stage.WORKSPACE_NAMED,
)
#: How many times a day a wizard may name a new workspace administrator.
_ADMINISTRATOR_CHANGES = 5

#: The purposes whose expired links can be replaced by a new one.
RENEWABLE = frozenset(
    {
        Purpose.CREATE_PASSWORD,
        Purpose.CREATE_WORKSPACE,
        Purpose.START_SETUP,
        Purpose.TAX_DOCUMENT,
    }
)
# Reads built once: building a SQLAlchemy statement costs more than running
# it on SQLite. A link page's own read is ``snapshots.LINK``.
_ORGANIZATIONS = (
    sa.select(organizations.c.id, organizations.c.legal_name, organizations.c.rut)
    .where(organizations.c.workspace_id == sa.bindparam("workspace_id"))
    .order_by(organizations.c.id)
)
_CUSTOMER = sa.select(customers).where(customers.c.id == sa.bindparam("customer_id"))
_PURCHASE = sa.select(journeys.c.purchase).where(
    journeys.c.id == sa.bindparam("journey_id")
)

_SETUP_OPEN = (
    Stage.SETUP_PENDING,
    Stage.SETUP_STARTED,
    Stage.SETUP_ORGANIZATION_CHOSEN,
    Stage.SETUP_SIGNATURE_LOADED,
)

#: Each step's link purpose, and the stage its turn needs (None: any).
_STEP_TURNS: dict[str, tuple[str, Stage | None]] = {
    "set_password": (Purpose.CREATE_PASSWORD, None),
    "activate_workspace": (Purpose.CREATE_WORKSPACE, Stage.WORKSPACE_PENDING),
    "create_workspace_administrator": (
        Purpose.CREATE_WORKSPACE,
        Stage.WORKSPACE_ACTIVATED,
    ),
    "name_workspace": (Purpose.CREATE_WORKSPACE, Stage.WORKSPACE_ADMIN_CREATED),
    "finish_workspace": (Purpose.CREATE_WORKSPACE, Stage.WORKSPACE_NAMED),
    "begin_setup": (Purpose.START_SETUP, Stage.SETUP_PENDING),
    "choose_organization": (Purpose.START_SETUP, Stage.SETUP_STARTED),
    "upload_signature": (Purpose.START_SETUP, Stage.SETUP_ORGANIZATION_CHOSEN),
    "choose_documents": (Purpose.START_SETUP, Stage.SETUP_SIGNATURE_LOADED),
    "request_tax_document": (Purpose.TAX_DOCUMENT, None),
}


def normalize_email(email: str) -> str:
    """Trimmed and lowercased: addresses are matched without regard to case."""
    return email.strip().lower()


def _check_email(email: str, field: str = "email") -> str:
    """A deliverable-looking address, trimmed and lowercased.

    Syntax is email-validator's (no DNS lookup); addresses that need
    SMTPUTF8 are refused because not every relay carries them.
    """
    normalized = normalize_email(email)
    if not normalized:
        raise ValidationError(
            "Ingresa tu correo electrónico.", code="email_missing", field=field
        )
    try:
        validate_email(normalized, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise ValidationError(
            "Ingresa un correo electrónico válido, por ejemplo nombre@empresa.cl.",
            code="email_invalid",
            field=field,
        ) from exc
    return normalized


def _required_text(value: str, field: str, label: str, limit: int = 200) -> str:
    """``value`` on one line of visible text (``text.py``), trimmed, with a
    run of spaces written as one."""
    check_line(value, field, label)
    text = " ".join(value.split())
    if not text:
        raise ValidationError(f"Ingresa {label}.", code=f"{field}_missing", field=field)
    if len(text) > limit:
        raise ValidationError(
            f"{label.capitalize()} no puede superar {limit} caracteres.",
            code=f"{field}_too_long",
            field=field,
        )
    return text


#: RUTs that exist but can never name a customer's organization.
_RESERVED_RUTS = {
    "60803000-K": "el RUT del Servicio de Impuestos Internos",
    "66666666-6": "el RUT genérico de receptor de boletas",
    "88888888-8": "el RUT que usa el SII en la certificación",
}


def _fields(*checks: Callable[[], Any]) -> list[Any]:
    """Each check's value, in the form's order; every field refused is
    told at once (``FieldErrors``), not the first alone."""
    values: list[Any] = []
    refused: list[ValidationError] = []
    for check in checks:
        try:
            values.append(check())
        except ValidationError as error:
            refused.append(error)
    if len(refused) == 1:
        raise refused[0]
    if refused:
        raise FieldErrors(refused)
    return values


def _parse_rut(value: str, field: str = "rut") -> Rut:
    try:
        rut = Rut.parse(value)
    except ValidationError as exc:
        exc.field = field
        raise
    reserved = _RESERVED_RUTS.get(str(rut))
    if reserved is not None:
        raise RutError(
            f"{rut.formatted()} es {reserved}; ingresa el RUT de tu organización.",
            code="rut_reserved",
            field=field,
        )
    return rut


def _refuse_known_rut(workspace: Workspace, rut: Rut) -> None:
    """A new organization may not repeat a RUT the workspace already has:
    the customer meant that one, or typed the RUT wrong."""
    known = next((o for o in workspace.organizations if o.rut == str(rut)), None)
    if known is None:
        return
    raise ValidationError(
        f"Tu espacio de trabajo ya tiene la organización con RUT "
        f"{rut.formatted()} ({known.legal_name}): elígela en la lista en vez "
        "de crearla de nuevo.",
        code="organization_exists",
        field="rut",
    )


def _representative_rut(value: str) -> Rut:
    field = "legal_representative_rut"
    try:
        return Rut.parse(value)
    except ValidationError as exc:
        if exc.code == "rut_empty":
            raise RutError(
                "Ingresa el RUT del representante legal.", code="rut_empty", field=field
            ) from None
        exc.field = field
        raise


@attrs.frozen
class Link:
    """A link as a page shows it: its claims, and what it acts on."""

    purpose: str
    claims: LinkClaims | None  # None for a link already used
    customer: Customer | None = None
    journey: Journey | None = None


@attrs.frozen
class ExpiredLink:
    """A link that expired unused, and where its replacement goes.

    ``recipient_hint`` shows enough of the address for the customer to
    recognize it (``c****@example.cl``) and no more.
    """

    purpose: str
    recipient_hint: str


def mask_email(email: str) -> str:
    """``camila@example.cl`` as ``c*****@example.cl``: the length of the
    local part is not shown either."""
    local, _, domain = email.partition("@")
    return local[:1] + "*****@" + domain


@attrs.frozen
class _Pending:
    """What a transaction leaves to do once it has committed."""

    events: list[JourneyEvent] = attrs.field(factory=list)
    # Prepared before the transaction (rendering is slow, and a write
    # transaction holds SQLite's only write lock): link tokens by purpose,
    # and emails with the template, recipient and context they were
    # rendered from. The transaction uses an email only when what it would
    # render is exactly that; otherwise it renders its own.
    tokens: dict[str, tuple[str, LinkClaims]] = attrs.field(factory=dict)
    prepared: list[tuple[str, str, dict[str, Any], PreparedEmail]] = attrs.field(
        factory=list
    )


class Onboarding:
    """The onboarding journey of a deployment: the one object callers need.

    Web handlers, the command line and tests call its methods; none of them
    touches the database or builds an email.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        plugins: Plugins | None = None,
        certification: CertificationClient | None = None,
    ) -> None:
        self.settings = settings
        self.clock: Callable[[], datetime] = settings.clock
        self.store = Store(settings.database_url)
        self.plugins = plugins or Plugins(blocked=settings.blocked_plugins)
        for purpose in sorted(set(settings.link_max_ages) - set(DEFAULT_MAX_AGES)):
            # A plugin's own purpose is fine; a misspelt core one would be
            # ignored without a word.
            logger.warning(
                "link_max_ages names %r, which is not a core link purpose "
                "(%s); fine for a plugin's own links, else check its spelling",
                purpose,
                ", ".join(sorted(DEFAULT_MAX_AGES)),
            )
        self.signer = LinkSigner(
            settings.secret_keys,
            max_ages=settings.link_max_ages,
            clock_skew=settings.clock_skew,
            clock=self.clock,
        )
        self.links = LinkBook(self.signer, base_url=settings.base_url, clock=self.clock)
        self.renderer = Renderer(
            [*settings.template_dirs, *self.plugins.template_dirs()],
            auto_reload=settings.development,
        )
        self.sealer = SignatureSealer(settings.sealing_keys)
        self.certification = certification or CertificationClient(
            settings.certification_url, api_key=settings.certification_api_key
        )

    # -- plumbing ----------------------------------------------------------

    def create_tables(self) -> None:
        self.store.create_all()

    def relay(self) -> Relay:
        """A relay delivering this deployment's outbox to its SMTP server."""
        s = self.settings
        return Relay(
            self.store,
            host=s.smtp_host,
            port=s.smtp_port,
            sender=s.mail_from,
            username=s.smtp_username,
            password=s.smtp_password,
            starttls=s.smtp_starttls,
            timeout=s.smtp_timeout,
            clock=self.clock,
        )

    def close(self) -> None:
        self.certification.close()
        self.store.dispose()

    @contextmanager
    def _transaction(
        self, prepared: _Pending | None = None
    ) -> Iterator[tuple[Connection, _Pending]]:
        pending = prepared or _Pending()
        with self.store.begin() as conn:
            yield conn, pending
        for event in pending.events:
            self.plugins.notify(event)

    def link_url(self, purpose: str, token: str) -> str:
        return self.links.url(purpose, token)

    def _issue(
        self, conn: Connection, pending: _Pending, purpose: str, subject: str
    ) -> str:
        """``LinkBook.issue``, with the token prepared for ``purpose`` if any."""
        return self.links.issue(
            conn, purpose, subject, signed=pending.tokens.pop(purpose, None)
        )

    def _prepare(
        self,
        pending: _Pending,
        template: str,
        recipient: str,
        /,
        **context: Any,
    ) -> None:
        """Render an email ahead of the transaction that will queue it."""
        context.setdefault("recipient", recipient)
        prepared = prepare_email(
            self.renderer,
            template=template,
            sender=self.settings.mail_from,
            recipient=recipient,
            context=context,
            now=self.clock(),
            reply_to=self.settings.reply_to,
        )
        pending.prepared.append((template, recipient, context, prepared))

    def _link_ahead(self, pending: _Pending, purpose: str) -> str:
        """A token for a link the coming transaction will record; its URL."""
        signed = pending.tokens[purpose] = self.signer.issue(purpose)
        return self.links.url(purpose, signed[0])

    def _event(
        self,
        conn: Connection,
        pending: _Pending,
        journey_id: int | None,
        kind: str,
        /,
        **data: Any,
    ) -> None:
        now = self.clock()
        store.record_event(conn, journey_id, kind, now, data)
        if journey_id is not None:
            pending.events.append(
                JourneyEvent(journey_id=journey_id, kind=kind, at=now, data=data)
            )

    def _email(
        self,
        conn: Connection,
        pending: _Pending,
        template: str,
        recipient: str,
        journey_id: int | None,
        /,
        **context: Any,
    ) -> None:
        context.setdefault("recipient", recipient)
        for n, (name, to, rendered_from, prepared) in enumerate(pending.prepared):
            if (name, to, rendered_from) == (template, recipient, context):
                del pending.prepared[n]
                write_email(conn, prepared, now=self.clock(), journey_id=journey_id)
                break
        else:
            queue_email(
                conn,
                self.renderer,
                template=template,
                sender=self.settings.mail_from,
                recipient=recipient,
                context=context,
                now=self.clock(),
                journey_id=journey_id,
                reply_to=self.settings.reply_to,
            )
        self._event(
            conn, pending, journey_id, "email_queued", template=template, to=recipient
        )

    # -- reading -----------------------------------------------------------

    def _customer(self, row: Row[Any]) -> Customer:
        return Customer(
            id=row.id,
            email=row.email,
            name=row.name,
            has_password=row.password_hash is not None,
        )

    def _workspace(self, conn: Connection, workspace_id: int) -> Workspace:
        row = store.one(
            conn,
            sa.select(
                workspaces,
                customers.c.email,
                customers.c.name.label("administrator_name"),
            )
            .join(
                customers, customers.c.id == workspaces.c.administrator_id, isouter=True
            )
            .where(workspaces.c.id == workspace_id),
        )
        assert row is not None
        orgs = conn.execute(_ORGANIZATIONS, {"workspace_id": workspace_id})
        return Workspace(
            id=row.id,
            name=row.name,
            administrator_email=row.email,
            administrator_name=row.administrator_name,
            organizations=tuple(
                Organization(id=o.id, legal_name=o.legal_name, rut=o.rut) for o in orgs
            ),
            finished=row.finished_at is not None,
        )

    def _journey(self, conn: Connection, row: Row[Any]) -> Journey:
        """The journey of ``row`` as it stands in ``conn``'s transaction."""
        journey = self._journey_by_id(conn, row.id)
        assert journey is not None
        return journey

    def _journey_by_id(self, conn: Connection, journey_id: int) -> Journey | None:
        # One statement built once: the journey with its buyer, workspace,
        # administrator and organizations (snapshots.py).
        rows = self.store.rows(snapshots.JOURNEY, {"journey_id": journey_id}, conn)
        return snapshots.journey_from(rows)

    def journey(self, journey_id: int) -> Journey:
        with self.store.read() as conn:
            journey = self._journey_by_id(conn, journey_id)
        if journey is None:
            raise NotFoundError()
        return journey

    def journey_by_order(self, order_number: str) -> Journey:
        with self.store.read() as conn:
            row = store.journey_by_order(conn, order_number)
            if row is None:
                raise NotFoundError()
            return self._journey(conn, row)

    def events(self, journey_id: int) -> list[JourneyEvent]:
        """The journey's events, oldest first."""
        with self.store.read() as conn:
            rows = store.all_rows(
                conn,
                sa.select(events)
                .where(events.c.journey_id == journey_id)
                .order_by(events.c.id),
            )
        return [
            JourneyEvent(journey_id=r.journey_id, kind=r.kind, at=r.at, data=r.data)
            for r in rows
        ]

    def open_link(self, token: str, purpose: str) -> Link:
        """What a GET on a link shows. Reads only: nothing is consumed."""
        return self.link_view(self.link_snapshot(token, purpose))

    def link_snapshot(self, token: str, purpose: str) -> LinkSnapshot:
        """A live link and what it acts on, as one statement reads them now.

        Raises the ``LinkError`` that says why a link cannot be used, as
        ``open_link`` does. Reads only. Nothing is kept between calls: each
        one asks the database, so a link used or a journey changed by any
        process shows in the next snapshot.
        """
        claims = self.signer.read(token, purpose)
        for _ in range(2):
            rows = self.store.rows(snapshots.LINK, {"jti": claims.jti})
            if snapshots.is_live(rows, purpose):
                subject = str(rows[0][1])
                return LinkSnapshot(purpose, claims, subject, tuple(rows))
            # A dead link is refused by the link book, which reads it again
            # and says why (used, superseded, unknown) with its dates.
            with self.store.read() as conn:
                self.links.read(conn, token, purpose)
            # Alive after all: recorded between the two reads.
        raise LinkInvalid(reason="unknown")

    def link_view(self, snapshot: LinkSnapshot) -> Link:
        """The ``Link`` a snapshot shows (``open_link``'s answer)."""
        if snapshot.subject.startswith("customer:"):
            customer = snapshot.customer()
            assert customer is not None
            return Link(snapshot.purpose, snapshot.claims, customer=customer)
        journey = snapshot.journey()
        assert journey is not None
        return Link(snapshot.purpose, snapshot.claims, journey=journey)

    def completed_link(self, token: str, purpose: str) -> Link:
        """What a used link completed: the account or journey it acted on.

        Raises a ``LinkError`` unless ``token`` is a genuine link that was
        used (or killed by its own step's completion). Reads only.
        """
        with self.store.read() as conn:
            subject = self.links.read_used(conn, token, purpose)
            return self._link_view(conn, purpose, None, subject)

    def _link_view(
        self, conn: Connection, purpose: str, claims: LinkClaims | None, subject: str
    ) -> Link:
        key = int(subject.partition(":")[2])
        if subject.startswith("customer:"):
            row = conn.execute(_CUSTOMER, {"customer_id": key}).first()
            assert row is not None
            return Link(purpose, claims, customer=self._customer(row))
        journey = self._journey_by_id(conn, key)
        assert journey is not None
        return Link(purpose, claims, journey=journey)

    def _peek(self, token: str, purpose: str) -> None:
        """Refuse a dead link before looking at the form: a customer with an
        old link should hear about the link, not about a typo."""
        with self.store.read() as conn:
            self.links.read(conn, token, purpose)

    def _journey_for_link(
        self, conn: Connection, token: str, purpose: str, *, for_update: bool = True
    ) -> tuple[LiveLink, Row[Any]]:
        link = self.links.read(conn, token, purpose)
        row = store.journey_row(conn, link.subject_id, for_update=for_update)
        assert row is not None
        return link, row

    def check_step(self, token: str, step: str) -> None:
        """Refuse, reading only, what would refuse ``step`` whatever its form
        says: the link's ``LinkError``, then ``StepOrderError`` for a step
        before its turn (or before the password it needs).

        ``step`` names the facade method: ``"set_password"``,
        ``"name_workspace"``, ``"choose_documents"``, ``"renew_link"`` and
        so on. The step checks both again when it runs; this lets a caller
        answer a dead link or a step out of turn before it reads the
        request's body. For ``"renew_link"`` the link must be a genuine one
        that expired unused, for whichever purpose it was made.
        """
        if step == "renew_link":
            purpose = self.signer.purpose_of(token)
            if purpose not in RENEWABLE:
                raise LinkInvalid(reason="not renewable")
            with self.store.read() as conn:
                self.links.read_expired(conn, token, purpose)
            return
        try:
            purpose, needs = _STEP_TURNS[step]
        except KeyError:
            raise ValueError(f"no step is called {step!r}") from None
        if needs is None:
            self._peek(token, purpose)
        else:
            self._peek_turn(token, purpose, needs)

    def _peek_turn(self, token: str, purpose: str, needs: Stage) -> None:
        """``_peek``, then the step's turn: a step posted out of order is
        told so, not about its fields."""
        with self.store.read() as conn:
            if purpose == Purpose.CREATE_WORKSPACE:
                self._wizard(conn, token, needs, for_update=False)
            else:
                self._setup(conn, token, needs, for_update=False)

    # -- 1-6: the purchase -------------------------------------------------

    def record_purchase(self, purchase: Purchase) -> Journey:
        """Record a paid purchase and queue the journey's first emails.

        Recording the same order number again returns the journey it already
        has and sends nothing, also when both arrive at the same instant.
        """
        return self.receive_purchase(purchase)[0]

    def receive_purchase(self, purchase: Purchase) -> tuple[Journey, bool]:
        """``record_purchase``, also saying whether this call recorded the
        purchase (``True``) or found its order number already recorded."""
        try:
            return self._receive_purchase(purchase)
        except sa.exc.IntegrityError:
            # Another worker recorded this order (or this buyer) between our
            # read and our insert; our transaction rolled back, and reading
            # again finds theirs.
            return self._receive_purchase(purchase)

    def _receive_purchase(self, purchase: Purchase) -> tuple[Journey, bool]:
        order_number = _required_text(
            purchase.order_number, "order_number", "el número de orden", 64
        )
        email = _check_email(purchase.email)
        buyer_name = _required_text(purchase.buyer_name, "buyer_name", "el nombre")
        if not purchase.items:
            raise ValidationError(
                "La compra no tiene productos.", code="purchase_empty", field="items"
            )
        for n, item in enumerate(purchase.items):
            for part, label in (("code", "el código"), ("name", "el nombre")):
                check_line(
                    getattr(item, part),
                    f"items[{n}].{part}",
                    f"{label} del producto {n + 1} de la compra",
                    code=f"item_{part}_invalid_character",
                )
        products = self.plugins.products_for_items(i.code for i in purchase.items)
        if not products:
            raise ValidationError(
                "Ningún producto de la compra corresponde a un servicio conocido.",
                code="purchase_unknown_products",
                field="items",
            )
        # Contradicting product rules must stop the purchase here, not later.
        self.plugins.document_offer(products, purchase)
        legal_name, rut = "", None
        if not purchase.changes_legal_name:
            legal_name = _required_text(
                purchase.legal_name, "legal_name", "la razón social"
            )
            rut = _parse_rut(purchase.rut)
            self.plugins.validate_organization(legal_name, rut, products)

        prepared = self._prepare_purchase(purchase, email, products, legal_name, rut)
        with self._transaction(prepared) as (conn, pending):
            existing = store.journey_by_order(conn, order_number)
            if existing is not None:
                if existing.purchase != _purchase_json(purchase, email):
                    raise ConflictError(
                        f"La orden {order_number} ya fue registrada con otros datos.",
                        code="purchase_conflict",
                    )
                return self._journey(conn, existing), False

            now = self.clock()
            customer = store.customer_by_email(conn, email)
            if customer is None:
                customer_id = store.insert(
                    conn,
                    customers,
                    {"email": email, "name": buyer_name, "created_at": now},
                )
                customer = store.customer_by_id(conn, customer_id)
                assert customer is not None

            workspace_id = organization_id = None
            stage = Stage.WORKSPACE_PENDING
            if rut is not None:
                workspace_id = store.insert(
                    conn,
                    workspaces,
                    {
                        "name": legal_name,
                        "administrator_id": customer.id,
                        "finished_at": now,
                        "created_at": now,
                    },
                )
                organization_id = store.insert(
                    conn,
                    organizations,
                    {
                        "workspace_id": workspace_id,
                        "legal_name": legal_name,
                        "rut": str(rut),
                        "created_at": now,
                    },
                )
                stage = Stage.SETUP_PENDING

            journey_id = store.insert(
                conn,
                journeys,
                {
                    "order_number": order_number,
                    "customer_id": customer.id,
                    "purchase": _purchase_json(purchase, email),
                    "products": list(products),
                    "changes_legal_name": purchase.changes_legal_name,
                    "stage": stage.value,
                    "workspace_id": workspace_id,
                    "organization_id": organization_id,
                    "documents": [],
                    "created_at": now,
                    "updated_at": now,
                },
            )
            self._event(
                conn,
                pending,
                journey_id,
                "purchase_recorded",
                order_number=order_number,
                products=list(products),
            )

            row = store.journey_row(conn, journey_id)
            assert row is not None
            common = self._purchase_context(row)
            self._email(
                conn, pending, "purchase_succeeded", email, journey_id, **common
            )
            self._email(conn, pending, "payment_confirmed", email, journey_id, **common)
            self._send_tax_document(conn, pending, row)
            if customer.password_hash is None:
                self._send_create_password(conn, pending, customer, journey_id)
            if stage is Stage.WORKSPACE_PENDING:
                self._send_create_workspace(conn, pending, row)
            else:
                self._send_start_setup(conn, pending, row)
            row = store.journey_row(conn, journey_id)
            assert row is not None
            return self._journey(conn, row), True

    # -- the emails that carry a step's link -------------------------------

    def _purchase_context(self, row: Row[Any]) -> dict[str, Any]:
        return self._purchase_context_of(row.purchase, row.products)

    def _purchase_context_of(
        self, purchase_json: Mapping[str, Any], products: Iterable[str]
    ) -> dict[str, Any]:
        purchase = _purchase_from_json(purchase_json)
        return {
            "buyer_name": purchase.buyer_name,
            "order_number": purchase.order_number,
            "items": purchase.items,
            "total": purchase.total,
            "products": [self.plugins.products[p].name for p in products],
        }

    def _prepare_purchase(
        self,
        purchase: Purchase,
        email: str,
        products: Sequence[str],
        legal_name: str,
        rut: Rut | None,
    ) -> _Pending:
        """The new purchase's emails, rendered before its write transaction
        from what the database holds now. Should the transaction find it
        changed (the buyer set a password meanwhile, the order arrived
        twice), its emails no longer match and it renders its own."""
        pending = _Pending()
        with self.store.read() as conn:
            if store.journey_by_order(conn, purchase.order_number) is not None:
                return pending
            customer = store.customer_by_email(conn, email)
        name = customer.name if customer is not None else purchase.buyer_name
        common = self._purchase_context_of(_purchase_json(purchase, email), products)
        self._prepare(pending, "purchase_succeeded", email, **common)
        self._prepare(pending, "payment_confirmed", email, **common)
        link = self._link_ahead(pending, Purpose.TAX_DOCUMENT)
        self._prepare(pending, "tax_document", email, link=link, **common)
        if customer is None or customer.password_hash is None:
            link = self._link_ahead(pending, Purpose.CREATE_PASSWORD)
            self._prepare(pending, "create_password", email, name=name, link=link)
        if rut is None:
            link = self._link_ahead(pending, Purpose.CREATE_WORKSPACE)
            self._prepare(pending, "create_workspace", email, name=name, link=link)
        else:
            link = self._link_ahead(pending, Purpose.START_SETUP)
            self._prepare(
                pending,
                "start_setup",
                email,
                name=name,
                legal_name=legal_name,
                link=link,
            )
        return pending

    def _send_tax_document(
        self, conn: Connection, pending: _Pending, row: Row[Any]
    ) -> str:
        recipient = self._buyer_email(conn, row)
        link = self._issue(conn, pending, Purpose.TAX_DOCUMENT, f"journey:{row.id}")
        context = self._purchase_context(row)
        self._email(
            conn, pending, "tax_document", recipient, row.id, link=link, **context
        )
        return recipient

    def _send_create_password(
        self,
        conn: Connection,
        pending: _Pending,
        customer: Row[Any],
        journey_id: int | None,
    ) -> str:
        subject = f"customer:{customer.id}"
        link = self._issue(conn, pending, Purpose.CREATE_PASSWORD, subject)
        self._email(
            conn,
            pending,
            "create_password",
            customer.email,
            journey_id,
            name=customer.name,
            link=link,
        )
        return str(customer.email)

    def _send_create_workspace(
        self, conn: Connection, pending: _Pending, row: Row[Any]
    ) -> str:
        recipient = self._buyer_email(conn, row)
        buyer = store.customer_by_id(conn, row.customer_id)
        assert buyer is not None
        link = self._issue(conn, pending, Purpose.CREATE_WORKSPACE, f"journey:{row.id}")
        self._email(
            conn,
            pending,
            "create_workspace",
            recipient,
            row.id,
            name=buyer.name,
            link=link,
        )
        return recipient

    def _send_start_setup(
        self, conn: Connection, pending: _Pending, row: Row[Any]
    ) -> str:
        recipient = self._administrator_email(conn, row)
        admin = store.customer_by_email(conn, recipient)
        assert admin is not None
        link = self._issue(conn, pending, Purpose.START_SETUP, f"journey:{row.id}")
        self._email(
            conn,
            pending,
            "start_setup",
            recipient,
            row.id,
            name=admin.name,
            legal_name=self._organization_name(conn, row),
            link=link,
        )
        return recipient

    def _buyer_email(self, conn: Connection, row: Row[Any]) -> str:
        buyer = store.customer_by_id(conn, row.customer_id)
        assert buyer is not None
        return str(buyer.email)

    # -- links that expired ----------------------------------------------

    def expired_link(self, token: str, purpose: str) -> ExpiredLink:
        """Where a new link would go, for a genuine link that expired unused.

        Reads only; raises the link's error when it cannot be renewed.
        """
        with self.store.read() as conn:
            subject = self.links.read_expired(conn, token, purpose)
            recipient = self._link_recipient(conn, purpose, subject)
        return ExpiredLink(purpose=purpose, recipient_hint=mask_email(recipient))

    def renew_link(self, token: str, purpose: str) -> ExpiredLink:
        """Send a new link in place of an expired one, to the same person.

        The new link supersedes the expired one, so a second request with
        the same expired link is refused as superseded.
        """
        if purpose not in RENEWABLE:
            raise LinkInvalid(reason="not renewable")
        with self._transaction() as (conn, pending):
            subject = self.links.read_expired(conn, token, purpose)
            key = int(subject.partition(":")[2])
            if purpose == Purpose.CREATE_PASSWORD:
                customer = store.customer_by_id(conn, key)
                assert customer is not None
                journeys_of = self._journeys_of(conn, key)
                recipient = self._send_create_password(
                    conn, pending, customer, journeys_of[-1] if journeys_of else None
                )
            else:
                row = store.journey_row(conn, key)
                assert row is not None
                send = {
                    Purpose.CREATE_WORKSPACE: self._send_create_workspace,
                    Purpose.START_SETUP: self._send_start_setup,
                    Purpose.TAX_DOCUMENT: self._send_tax_document,
                }[purpose]
                recipient = send(conn, pending, row)
                self._event(conn, pending, row.id, "link_renewed", purpose=purpose)
        return ExpiredLink(purpose=purpose, recipient_hint=mask_email(recipient))

    def _link_recipient(self, conn: Connection, purpose: str, subject: str) -> str:
        key = int(subject.partition(":")[2])
        if subject.startswith("customer:"):
            customer = store.customer_by_id(conn, key)
            assert customer is not None
            return str(customer.email)
        row = store.journey_row(conn, key)
        assert row is not None
        if purpose in (Purpose.START_SETUP, Purpose.CERTIFICATION_STATUS):
            return self._administrator_email(conn, row)
        return self._buyer_email(conn, row)

    # -- CREAR CONTRASEÑA --------------------------------------------------

    def set_password(self, token: str, password: str, confirmation: str) -> Customer:
        """Set the account's password; every other such link stops working."""
        self._peek(token, Purpose.CREATE_PASSWORD)
        passwords.check_policy(password, confirmation)
        # The slot is held until the link is used: requests racing on one
        # link that queued behind the winner find it used when their turn
        # comes, and are answered at once, without hashing.
        with passwords.hashing_slot():
            self._peek(token, Purpose.CREATE_PASSWORD)
            hashed = passwords.hash_password(password)
            with self._transaction() as (conn, pending):
                link = self.links.use(conn, token, Purpose.CREATE_PASSWORD)
                customer_id = link.subject_id
                self.links.revoke(
                    conn, link.subject, Purpose.CREATE_PASSWORD, reason=COMPLETED
                )
                conn.execute(
                    customers.update()
                    .where(customers.c.id == customer_id)
                    .values(password_hash=hashed, password_set_at=self.clock())
                )
                for journey_id in self._journeys_of(conn, customer_id):
                    self._event(conn, pending, journey_id, "password_set")
                row = store.customer_by_id(conn, customer_id)
                assert row is not None
                return self._customer(row)

    def _journeys_of(self, conn: Connection, customer_id: int) -> list[int]:
        rows = conn.execute(
            sa.select(journeys.c.id).where(journeys.c.customer_id == customer_id)
        )
        return [r.id for r in rows]

    def request_password_email(self, email: str, *, client: str | None = None) -> None:
        """¿Olvidó su contraseña?: email 4 again, if the address is known.

        The request is only recorded here; the worker looks the address up
        and sends the email (``process_password_requests``). So the answer
        says nothing about whether the address is known, and takes the same
        time either way. Requests are capped per address and per ``client``
        (the caller's IP address): past a cap ``RateLimited`` is raised,
        known address or not.
        """
        normalized = _check_email(email)
        settings = self.settings
        limits = [(f"address:{normalized}", settings.forgot_password_per_address)]
        if client:
            limits.append((f"client:{client}", settings.forgot_password_per_client))

        with self.store.begin() as conn:
            now = self.clock()
            for key, limit in limits:
                retry_after = store.take_hit(
                    conn,
                    "forgot:" + hashlib.sha256(key.encode()).hexdigest()[:40],
                    limit=limit,
                    window=settings.forgot_password_window,
                    now=now,
                )
                if retry_after is not None:
                    raise RateLimited(retry_after=retry_after)
            store.insert(
                conn, password_requests, {"email": normalized, "created_at": now}
            )

    def process_password_requests(self, limit: int = 100) -> int:
        """Answer recorded ¿Olvidó su contraseña? requests; return how many.

        A known address gets a new CREAR CONTRASEÑA link (older ones stop
        working); an unknown one gets nothing.
        """
        with self._transaction() as (conn, pending):
            rows = store.all_rows(
                conn,
                sa.select(password_requests)
                .order_by(password_requests.c.id)
                .limit(limit),
            )
            for request in rows:
                conn.execute(
                    password_requests.delete().where(
                        password_requests.c.id == request.id
                    )
                )
                customer = store.customer_by_email(conn, request.email)
                if customer is None:
                    logger.info("password email requested for an unknown address")
                    continue
                journey_ids = self._journeys_of(conn, customer.id)
                self._send_create_password(
                    conn, pending, customer, journey_ids[-1] if journey_ids else None
                )
        return len(rows)

    def verify_password(self, email: str, password: str) -> bool:
        """Whether ``password`` opens the account of ``email``."""
        with self.store.read() as conn:
            row = store.customer_by_email(conn, normalize_email(email))
        if row is None or row.password_hash is None:
            return False
        return passwords.verify_password(row.password_hash, password)

    # -- CREAR WORKSPACE ---------------------------------------------------

    def _check_turn(
        self,
        conn: Connection,
        row: Row[Any],
        *,
        open_stages: tuple[Stage, ...],
        needs: Stage,
        account_id: int | None,
        earlier: str,
    ) -> None:
        """Refuse a step whose wizard is closed or whose turn has not come.

        ``account_id`` is the account that must have its password first.
        """
        stage = Stage(row.stage)
        if stage not in open_stages:
            raise LinkUsed()
        account = store.customer_by_id(conn, account_id) if account_id else None
        if account is None or account.password_hash is None:
            raise StepOrderError(
                "Primero crea tu contraseña con el botón CREAR CONTRASEÑA del "
                "correo «[Haulmer Accounts] Crea tu nueva contraseña».",
                code="password_required",
            )
        if stage.rank < needs.rank:
            raise StepOrderError(
                f"Completa primero los pasos anteriores {earlier}.",
                code="step_order",
            )

    def _wizard(
        self, conn: Connection, token: str, needs: Stage, *, for_update: bool = True
    ) -> tuple[LiveLink, Row[Any]]:
        link, row = self._journey_for_link(
            conn, token, Purpose.CREATE_WORKSPACE, for_update=for_update
        )
        self._check_turn(
            conn,
            row,
            open_stages=_WIZARD_STAGES,
            needs=needs,
            account_id=row.customer_id,
            earlier="del espacio de trabajo",
        )
        return link, row

    def _advance(
        self, conn: Connection, row: Row[Any], stage: Stage, **values: Any
    ) -> Stage:
        """Move to ``stage`` unless the journey is already further along."""
        current = Stage(row.stage)
        reached = stage if stage.rank > current.rank else current
        store.update_journey(conn, row, self.clock(), stage=reached.value, **values)
        return reached

    def _reload(self, conn: Connection, journey_id: int) -> Journey:
        row = store.journey_row(conn, journey_id)
        assert row is not None
        return self._journey(conn, row)

    def activate_workspace(self, token: str) -> Journey:
        """ACTIVAR: open the workspace wizard."""
        with self._transaction() as (conn, pending):
            _, row = self._wizard(conn, token, Stage.WORKSPACE_PENDING)
            if row.workspace_id is None:
                workspace_id = store.insert(
                    conn, workspaces, {"created_at": self.clock()}
                )
                self._advance(
                    conn, row, Stage.WORKSPACE_ACTIVATED, workspace_id=workspace_id
                )
                self._event(conn, pending, row.id, "workspace_activated")
            return self._reload(conn, row.id)

    def create_workspace_administrator(
        self, token: str, email: str, name: str
    ) -> Journey:
        """CREAR: the administrator, who receives every later instruction.

        Another address than the buyer's gets an account of its own and, when
        the wizard finishes and if it has no password yet, its own CREAR
        CONTRASEÑA email. The administrator can be changed at most
        ``_ADMINISTRATOR_CHANGES`` times a day (``RateLimited``).
        """
        self._peek_turn(token, Purpose.CREATE_WORKSPACE, Stage.WORKSPACE_ACTIVATED)
        admin_name, admin_email = _fields(
            lambda: _required_text(name, "name", "el nombre del administrador"),
            lambda: _check_email(email),
        )
        with self._transaction() as (conn, pending):
            _, row = self._wizard(conn, token, Stage.WORKSPACE_ACTIVATED)
            now = self.clock()
            # Each change may create an account: a link is not a licence to
            # create them by the hundred.
            retry_after = store.take_hit(
                conn,
                f"workspace-administrator:{row.id}",
                limit=_ADMINISTRATOR_CHANGES,
                window=timedelta(days=1),
                now=now,
            )
            if retry_after is not None:
                raise RateLimited(retry_after=retry_after)
            admin = store.customer_by_email(conn, admin_email)
            if admin is None:
                admin_id = store.insert(
                    conn,
                    customers,
                    {"email": admin_email, "name": admin_name, "created_at": now},
                )
                admin = store.customer_by_id(conn, admin_id)
                assert admin is not None
            elif admin.id == row.customer_id and admin.name != admin_name:
                # The buyer named themself: their own account takes the name.
                # Another existing account keeps the name its owner has.
                conn.execute(
                    customers.update()
                    .where(customers.c.id == admin.id)
                    .values(name=admin_name)
                )
            conn.execute(
                workspaces.update()
                .where(workspaces.c.id == row.workspace_id)
                .values(administrator_id=admin.id)
            )
            self._advance(conn, row, Stage.WORKSPACE_ADMIN_CREATED)
            self._event(
                conn,
                pending,
                row.id,
                "workspace_administrator_set",
                same_as_buyer=admin.id == row.customer_id,
            )
            return self._reload(conn, row.id)

    def name_workspace(self, token: str, name: str) -> Journey:
        """SIGUIENTE: the workspace's name (it can be changed later)."""
        self._peek_turn(token, Purpose.CREATE_WORKSPACE, Stage.WORKSPACE_ADMIN_CREATED)
        workspace_name = _required_text(
            name, "workspace_name", "el nombre del espacio de trabajo", 120
        )
        with self._transaction() as (conn, pending):
            _, row = self._wizard(conn, token, Stage.WORKSPACE_ADMIN_CREATED)
            conn.execute(
                workspaces.update()
                .where(workspaces.c.id == row.workspace_id)
                .values(name=workspace_name)
            )
            self._advance(conn, row, Stage.WORKSPACE_NAMED)
            self._event(conn, pending, row.id, "workspace_named")
            return self._reload(conn, row.id)

    def finish_workspace(self, token: str, legal_name: str, rut: str) -> Journey:
        """FINALIZAR: the organization; email 6 goes to the administrator."""
        self._peek_turn(token, Purpose.CREATE_WORKSPACE, Stage.WORKSPACE_NAMED)
        name, parsed = _fields(
            lambda: _required_text(legal_name, "legal_name", "la razón social"),
            lambda: _parse_rut(rut),
        )
        with self._transaction() as (conn, pending):
            link, row = self._wizard(conn, token, Stage.WORKSPACE_NAMED)
            self.plugins.validate_organization(name, parsed, row.products)
            self.links.consume(conn, link)
            now = self.clock()
            organization_id = store.insert(
                conn,
                organizations,
                {
                    "workspace_id": row.workspace_id,
                    "legal_name": name,
                    "rut": str(parsed),
                    "created_at": now,
                },
            )
            conn.execute(
                workspaces.update()
                .where(workspaces.c.id == row.workspace_id)
                .values(finished_at=now)
            )
            store.update_journey(
                conn,
                row,
                now,
                stage=Stage.SETUP_PENDING.value,
                organization_id=organization_id,
            )
            self._event(conn, pending, row.id, "workspace_finished")
            finished = store.journey_row(conn, row.id)
            assert finished is not None
            # The administrator is final now: only now does another address
            # get its own password email, before email 6.
            admin = store.customer_by_email(
                conn, self._administrator_email(conn, finished)
            )
            assert admin is not None
            if admin.password_hash is None and admin.id != row.customer_id:
                self._send_create_password(conn, pending, admin, row.id)
            self._send_start_setup(conn, pending, finished)
            return self._reload(conn, row.id)

    # -- INICIAR SETUP -----------------------------------------------------

    def _setup(
        self, conn: Connection, token: str, needs: Stage, *, for_update: bool = True
    ) -> tuple[LiveLink, Row[Any]]:
        link, row = self._journey_for_link(
            conn, token, Purpose.START_SETUP, for_update=for_update
        )
        administrator_id = conn.execute(
            sa.select(workspaces.c.administrator_id).where(
                workspaces.c.id == row.workspace_id
            )
        ).scalar()
        self._check_turn(
            conn,
            row,
            open_stages=_SETUP_OPEN,
            needs=needs,
            account_id=administrator_id,
            earlier="de la habilitación",
        )
        return link, row

    def begin_setup(self, token: str) -> Journey:
        """COMENZAR: open the DTE enablement wizard."""
        with self._transaction() as (conn, pending):
            _, row = self._setup(conn, token, Stage.SETUP_PENDING)
            if Stage(row.stage) is Stage.SETUP_PENDING:
                self._advance(conn, row, Stage.SETUP_STARTED)
                self._event(conn, pending, row.id, "setup_started")
            return self._reload(conn, row.id)

    def choose_organization(
        self,
        token: str,
        *,
        organization_id: int | None = None,
        legal_name: str = "",
        rut: str = "",
    ) -> Journey:
        """Step 1: one of the workspace's organizations, or a new one.

        A new organization whose RUT the workspace already has is refused
        with ``organization_exists`` (field ``rut``), naming the one to
        choose: nothing is created, and nothing is chosen for the customer.
        """
        self._peek_turn(token, Purpose.START_SETUP, Stage.SETUP_STARTED)
        new_name, new_rut = None, None
        if organization_id is None:
            new_name, new_rut = _fields(
                lambda: _required_text(legal_name, "legal_name", "la razón social"),
                lambda: _parse_rut(rut),
            )
        with self._transaction() as (conn, pending):
            _, row = self._setup(conn, token, Stage.SETUP_STARTED)
            workspace = self._workspace(conn, row.workspace_id)
            if organization_id is not None:
                if organization_id not in {o.id for o in workspace.organizations}:
                    raise ValidationError(
                        "Elige una organización de tu espacio de trabajo.",
                        code="organization_unknown",
                        field="organization",
                    )
                chosen = organization_id
            else:
                assert new_rut is not None
                assert new_name is not None
                _refuse_known_rut(workspace, new_rut)
                self.plugins.validate_organization(new_name, new_rut, row.products)
                chosen = store.insert(
                    conn,
                    organizations,
                    {
                        "workspace_id": row.workspace_id,
                        "legal_name": new_name,
                        "rut": str(new_rut),
                        "created_at": self.clock(),
                    },
                )
            self._advance(
                conn, row, Stage.SETUP_ORGANIZATION_CHOSEN, organization_id=chosen
            )
            self._event(conn, pending, row.id, "organization_chosen")
            return self._reload(conn, row.id)

    def holds_signature(
        self,
        journey: Journey,
        data: bytes,
        password: str,
        legal_representative_rut: str | None = None,
    ) -> bool:
        """Whether ``journey`` already holds this very signature (same
        certificate) for this representative: step 2 sent twice, a double
        click on a slow upload, rather than a change from a stale page.
        Opening the file costs what the step itself costs; any file that
        does not open is simply not the one held."""
        saved = journey.signature
        if not saved:
            return False
        try:
            representative = (
                str(_representative_rut(legal_representative_rut))
                if legal_representative_rut is not None
                else None
            )
            loaded = load_signature(
                data,
                password,
                now=self.clock(),
                max_bytes=self.settings.signature_max_bytes,
            )
        except OnboardingError:
            return False

        same_certificate = loaded.info.fingerprint_sha256 == saved.get(
            "fingerprint_sha256"
        )
        return same_certificate and representative == saved.get(
            "legal_representative_rut"
        )

    def upload_signature(
        self,
        token: str,
        data: bytes,
        password: str,
        legal_representative_rut: str | None = None,
    ) -> Journey:
        """Step 2: the legal representative's PKCS#12 file and its password.

        ``legal_representative_rut`` is the RUT the customer gives for the
        legal representative (the setup page asks for it): a certificate of
        another holder is refused (``signature_rut_mismatch``), and the RUT
        is kept with the signature's facts. ``None``, for a program that
        does not ask, checks no holder.

        The password is used to open the file and then forgotten; the key and
        certificate are sealed under the server's key, and only the
        certificate's public facts are kept in clear.
        """
        # The step's turn is checked first, then the file is opened outside
        # the transaction: key derivation must never hold the write lock.
        self._peek_turn(token, Purpose.START_SETUP, Stage.SETUP_ORGANIZATION_CHOSEN)
        representative = None
        if legal_representative_rut is not None:
            representative = _representative_rut(legal_representative_rut)
        loaded = load_signature(
            data,
            password,
            now=self.clock(),
            expected_rut=representative,
            max_bytes=self.settings.signature_max_bytes,
            expiry_warning_days=self.settings.signature_expiry_warning_days,
        )
        sealed = self.sealer.seal(loaded)

        with self._transaction() as (conn, pending):
            _, row = self._setup(conn, token, Stage.SETUP_ORGANIZATION_CHOSEN)
            self.plugins.validate_signature(loaded.info, row.products)
            self._advance(
                conn,
                row,
                Stage.SETUP_SIGNATURE_LOADED,
                signature_info={
                    **loaded.info.as_dict(),
                    "legal_representative_rut": None
                    if representative is None
                    else str(representative),
                },
                signature_sealed=sealed,
            )
            self._event(
                conn,
                pending,
                row.id,
                "signature_loaded",
                fingerprint=loaded.info.fingerprint_sha256,
            )
            return self._reload(conn, row.id)

    def reseal_signatures(self) -> int:
        """Seal every stored signature again under the first sealing key;
        return how many. Run it after putting a new key first, before
        dropping the old one."""
        count = 0
        with self.store.begin() as conn:
            rows = conn.execute(
                sa.select(journeys.c.id, journeys.c.signature_sealed).where(
                    journeys.c.signature_sealed.is_not(None)
                )
            ).all()
            for row in rows:
                conn.execute(
                    journeys.update()
                    .where(journeys.c.id == row.id)
                    .values(signature_sealed=self.sealer.reseal(row.signature_sealed))
                )
                count += 1
        return count

    def document_offer(
        self, journey: Journey, snapshot: LinkSnapshot | None = None
    ) -> DocumentOffer:
        """The documents step of ``journey`` as its products define it.

        With the ``snapshot`` it was read from, the purchase is the one read
        there and nothing else is read.
        """
        data = snapshot.purchase() if snapshot is not None else None
        if data is None:
            with self.store.read() as conn:
                data = conn.execute(_PURCHASE, {"journey_id": journey.id}).scalar_one()
        purchase = _purchase_from_json(data)
        return self.plugins.document_offer(journey.products, purchase)

    def choose_documents(self, token: str, codes: Iterable[int | str]) -> Journey:
        """Step 3: the DTE types; the certification with the SII starts.

        Required documents, those a point of sale fixes among them, are
        always included; anything the products do not offer is refused.
        """
        self._peek_turn(token, Purpose.START_SETUP, Stage.SETUP_SIGNATURE_LOADED)
        chosen = parse_codes(codes)
        with self._transaction() as (conn, pending):
            link, row = self._setup(conn, token, Stage.SETUP_SIGNATURE_LOADED)
            purchase = _purchase_from_json(row.purchase)
            offer = self.plugins.document_offer(tuple(row.products), purchase)
            documents = _check_documents(offer, chosen)
            steps = self.plugins.certification_steps(tuple(row.products), documents)

            self.links.consume(conn, link)
            # The customer is promised the SII's limit at most; the products'
            # own schedule, when longer, is what an operator is warned by.
            scheduled_days = sum(step.business_days for step in steps)
            business_days = min(
                scheduled_days, self.settings.certification_business_days
            )
            expected = expected_date(self.clock(), business_days)
            scheduled = expected_date(self.clock(), scheduled_days)
            snapshot = {
                "id": None,
                "state": "pending",
                "steps": [
                    {**step.as_dict(), "state": "pending", "message": None}
                    for step in steps
                ],
                "business_days": business_days,
                "expected_date": expected.isoformat(),
                "schedule_date": scheduled.isoformat(),
                "overdue_alerted": False,
            }
            store.update_journey(
                conn,
                row,
                self.clock(),
                stage=Stage.CERTIFYING.value,
                documents=sorted(documents),
                certification=snapshot,
            )
            self._event(
                conn,
                pending,
                row.id,
                "documents_chosen",
                documents=sorted(documents),
            )
            self._email(
                conn,
                pending,
                "certification_started",
                self._administrator_email(conn, row),
                row.id,
                legal_name=self._organization_name(conn, row),
                documents=[DteType(c).title for c in sorted(documents)],
                steps=[s.title for s in steps],
                business_days=business_days,
                expected_date=format_date_es(expected),
                link=self.links.issue(
                    conn,
                    Purpose.CERTIFICATION_STATUS,
                    f"journey:{row.id}",
                    supersede=False,
                ),
            )
            journey_id = row.id

        # The customer's choice is committed; the worker's next poll tells
        # the service, so a slow service never holds up the customer's page.
        return self.journey(journey_id)

    def _administrator_email(self, conn: Connection, row: Row[Any]) -> str:
        email = self._workspace(conn, row.workspace_id).administrator_email
        assert email is not None
        return email

    def _organization_name(self, conn: Connection, row: Row[Any]) -> str:
        org = store.one(
            conn,
            sa.select(organizations).where(organizations.c.id == row.organization_id),
        )
        assert org is not None
        return str(org.legal_name)

    # -- the purchase's tax document (email 3) -----------------------------

    def request_tax_document(
        self,
        token: str,
        *,
        kind: str,
        legal_name: str = "",
        rut: str = "",
        business_activity: str = "",
        address: str = "",
    ) -> Journey:
        """Boleta, or factura with the buyer company's data."""
        self._peek(token, Purpose.TAX_DOCUMENT)
        if kind == "boleta":
            request = TaxDocumentRequest(kind="boleta")
        elif kind == "factura":
            request = TaxDocumentRequest(
                kind="factura",
                legal_name=_required_text(legal_name, "legal_name", "la razón social"),
                rut=str(_parse_rut(rut)),
                business_activity=_required_text(
                    business_activity, "business_activity", "el giro"
                ),
                address=_required_text(address, "address", "la dirección"),
            )
        else:
            raise ValidationError(
                "Elige boleta o factura.", code="tax_document_kind", field="kind"
            )
        with self._transaction() as (conn, pending):
            link, row = self._journey_for_link(conn, token, Purpose.TAX_DOCUMENT)
            self.links.consume(conn, link)
            store.update_journey(
                conn, row, self.clock(), tax_document=attrs.asdict(request)
            )
            self._event(conn, pending, row.id, "tax_document_requested", kind=kind)
            return self._reload(conn, row.id)

    # -- certification -----------------------------------------------------

    def certification_view(self, token: str) -> Journey:
        """The journey behind a certification status link (read only)."""
        link = self.open_link(token, Purpose.CERTIFICATION_STATUS)
        assert link.journey is not None
        return link.journey

    def poll_certifications(self) -> int:
        """Ask the certification service about every journey certifying.

        Each change becomes a state change plus its emails. Returns how many
        journeys changed; a service that cannot be reached changes nothing.
        """
        with self.store.begin() as conn:
            ids = [
                r.id
                for r in conn.execute(
                    sa.select(journeys.c.id)
                    .where(journeys.c.stage == Stage.CERTIFYING.value)
                    .order_by(journeys.c.id)
                )
            ]
        changed = 0
        for journey_id in ids:
            # One journey's trouble (a plugin raising, a bad answer) must not
            # stop the others: it is logged and the next poll tries again.
            try:
                changed += self._sync_certification(journey_id)
                self._check_overdue(journey_id)
            except Exception:
                logger.exception(
                    "polling the certification of journey %s failed", journey_id
                )
        return changed

    def _check_overdue(self, journey_id: int) -> None:
        """Warn an operator, once, when a certification passes its date.

        The warning goes to the log and, as the ``certification_overdue``
        journey event, to every plugin observing events.
        """
        with self._transaction() as (conn, pending):
            row = store.journey_row(conn, journey_id, for_update=True)
            assert row is not None
            snapshot = dict(row.certification or {})
            promised = snapshot.get("schedule_date") or snapshot.get("expected_date")
            if (
                Stage(row.stage) is not Stage.CERTIFYING
                or not promised
                or snapshot.get("overdue_alerted")
            ):
                return
            today = self.clock().astimezone(SANTIAGO).date()
            if today <= date.fromisoformat(promised):
                return
            snapshot["overdue_alerted"] = True
            store.update_journey(conn, row, self.clock(), certification=snapshot)
            self._event(
                conn, pending, row.id, "certification_overdue", expected_date=promised
            )
            logger.warning(
                "the certification of journey %s passed its expected date %s: "
                "an operator should check it with the SII",
                row.id,
                promised,
            )

    def _sync_certification(self, journey_id: int) -> bool:
        with self.store.begin() as conn:
            row = store.journey_row(conn, journey_id)
            assert row is not None
            if Stage(row.stage) is not Stage.CERTIFYING:
                return False
            snapshot = dict(row.certification or {})
            organization = store.one(
                conn,
                sa.select(organizations).where(
                    organizations.c.id == row.organization_id
                ),
            )
            assert organization is not None
        try:
            status = self._ask_service(row, snapshot, organization)
        except CertificationServiceError as exc:
            if exc.code == "certification_rejected":
                return self._reject_certification(journey_id, exc.message)
            logger.warning(
                "certification service unavailable for journey %s: %s",
                journey_id,
                exc.code,
            )
            return False
        return self._apply_status(journey_id, status)

    def _ask_service(
        self, row: Row[Any], snapshot: Mapping[str, Any], organization: Row[Any]
    ) -> CertificationStatus:
        if snapshot.get("id"):
            return self.certification.status(str(snapshot["id"]))
        return self.certification.start(
            reference=row.order_number,
            rut=organization.rut,
            legal_name=organization.legal_name,
            documents=list(row.documents),
            steps=[CertificationStep.from_dict(s) for s in snapshot["steps"]],
            signature_fingerprint=str(row.signature_info["fingerprint_sha256"]),
        )

    def _apply_status(self, journey_id: int, status: CertificationStatus) -> bool:
        """Turn the service's answer into state and emails, exactly once.

        The answer is merged into the row as it stands under the lock, not as
        it was read before the call: two pollers, or an old answer arriving
        after a newer one, change nothing twice and move nothing backwards.
        An answer about another certification, or with steps the journey did
        not declare, is refused.
        """
        with self._transaction() as (conn, pending):
            row = store.journey_row(conn, journey_id, for_update=True)
            assert row is not None
            if Stage(row.stage) is not Stage.CERTIFYING:
                return False
            stored = dict(row.certification or {})
            merged = _merge_status(row.order_number, stored, status)
            if merged is None:
                logger.warning(
                    "certification service answered for journey %s with a "
                    "certification or steps it does not have; ignored",
                    row.id,
                )
                return False
            if merged == stored:
                return False

            before = {s["id"]: s["state"] for s in stored.get("steps", ())}
            newly_done = [
                s
                for s in merged["steps"]
                if s["state"] == "done" and before.get(s["id"]) != "done"
            ]
            newly_failed = [
                s
                for s in merged["steps"]
                if s["state"] == "failed" and before.get(s["id"]) != "failed"
            ]
            stage = Stage.CERTIFYING
            if merged["state"] == "approved":
                stage = Stage.ENABLED
            elif merged["state"] == "failed":
                stage = Stage.CERTIFICATION_FAILED
            store.update_journey(
                conn, row, self.clock(), stage=stage.value, certification=merged
            )
            self._announce(
                conn, pending, row, stored, merged, stage, newly_done, newly_failed
            )
            return True

    def _announce(
        self,
        conn: Connection,
        pending: _Pending,
        row: Row[Any],
        stored: Mapping[str, Any],
        merged: Mapping[str, Any],
        stage: Stage,
        newly_done: list[dict[str, Any]],
        newly_failed: list[dict[str, Any]],
    ) -> None:
        recipient = self._administrator_email(conn, row)
        link = self.links.issue(
            conn, Purpose.CERTIFICATION_STATUS, f"journey:{row.id}", supersede=False
        )
        if not stored.get("id"):
            self._event(conn, pending, row.id, "certification_submitted")
        for step in newly_done:
            self._event(
                conn, pending, row.id, "certification_step_done", step=step["id"]
            )
        status = CertificationStatus.from_dict(
            {key: merged[key] for key in ("id", "reference", "state", "steps")}
        )
        context = {
            "legal_name": self._organization_name(conn, row),
            "link": link,
            "status": status,
            "done_steps": [s["title"] for s in newly_done],
            "expected_date": _expected_text(merged),
            "reason": None,
        }
        if stage is Stage.ENABLED:
            self._event(conn, pending, row.id, "organization_enabled")
            self._plan_actions(conn, row)
            self._email(
                conn, pending, "organization_enabled", recipient, row.id, **context
            )
            return
        if stage is Stage.CERTIFICATION_FAILED:
            self._event(conn, pending, row.id, "certification_failed")
            self._email(
                conn, pending, "certification_failed", recipient, row.id, **context
            )
            return
        for step in newly_failed:
            # The certification goes on; the customer must act.
            self._event(
                conn, pending, row.id, "certification_step_failed", step=step["id"]
            )
            self._email(
                conn,
                pending,
                "certification_step_failed",
                recipient,
                row.id,
                step=StepStatus.from_dict(step),
                **context,
            )
        if newly_done:
            self._email(
                conn, pending, "certification_progress", recipient, row.id, **context
            )

    def _reject_certification(self, journey_id: int, reason: str) -> bool:
        """The service refused the certification: tell the customer what it
        said, stop waiting, and warn an operator."""
        with self._transaction() as (conn, pending):
            row = store.journey_row(conn, journey_id, for_update=True)
            assert row is not None
            if Stage(row.stage) is not Stage.CERTIFYING:
                return False
            snapshot = {
                **(row.certification or {}),
                "state": "failed",
                "reason": reason,
            }
            store.update_journey(
                conn,
                row,
                self.clock(),
                stage=Stage.CERTIFICATION_FAILED.value,
                certification=snapshot,
            )
            self._event(conn, pending, row.id, "certification_failed")
            self._email(
                conn,
                pending,
                "certification_failed",
                self._administrator_email(conn, row),
                row.id,
                legal_name=self._organization_name(conn, row),
                link=self.links.issue(
                    conn,
                    Purpose.CERTIFICATION_STATUS,
                    f"journey:{row.id}",
                    supersede=False,
                ),
                status=None,
                reason=reason,
                expected_date="",
            )
        logger.warning(
            "the certification service refused journey %s: an operator must act",
            journey_id,
        )
        return True

    # -- after enablement --------------------------------------------------

    def _plan_actions(self, conn: Connection, row: Row[Any]) -> None:
        """One row per post-enablement action, in the enabling transaction:
        an enablement is never left without its actions."""
        now = self.clock()
        for product in row.products:
            for action in self.plugins.enablement_actions(product):
                conn.execute(
                    enablement_actions.insert().values(
                        journey_id=row.id,
                        product=product,
                        action=action.id,
                        title=action.title,
                        state="pending",
                        attempts=0,
                        next_attempt_at=now,
                        created_at=now,
                    )
                )

    def enablement_actions(self, journey_id: int) -> list[dict[str, Any]]:
        """The journey's post-enablement actions and how they stand."""
        with self.store.read() as conn:
            rows = store.all_rows(
                conn,
                sa.select(enablement_actions)
                .where(enablement_actions.c.journey_id == journey_id)
                .order_by(enablement_actions.c.id),
            )
        return [
            {
                "product": r.product,
                "action": r.action,
                "title": r.title,
                "state": r.state,
                "attempts": r.attempts,
                "result": r.result,
            }
            for r in rows
        ]

    def run_enablement_actions(self, limit: int = 20) -> int:
        """Run the due post-enablement actions; return how many finished.

        Each row is claimed with a lease, so several workers never run one
        action at once; the call happens outside any transaction, and its
        outcome is recorded only while the row is still pending.
        """
        done = 0
        for claimed in self._claim_actions(limit):
            outcome: ActionResult | BaseException
            try:
                outcome = self._run_action(claimed)
            except Exception as exc:  # the plugin's failure, recorded below
                outcome = exc
            try:
                recorded = self._record_action(claimed, outcome)
            except Exception as exc:
                # An outcome that cannot be stored counts as a failed attempt.
                logger.exception("recording action %s failed", claimed.id)
                recorded = self._record_action(claimed, exc)
            done += recorded
        return done

    def _claim_actions(self, limit: int) -> list[Row[Any]]:
        now = self.clock()
        free = sa.or_(
            enablement_actions.c.claimed_until.is_(None),
            enablement_actions.c.claimed_until < now,
        )
        with self.store.begin() as conn:
            due = store.all_rows(
                conn,
                sa.select(enablement_actions)
                .where(
                    enablement_actions.c.state == "pending",
                    enablement_actions.c.next_attempt_at <= now,
                    free,
                )
                .order_by(enablement_actions.c.id)
                .limit(limit),
            )
            claimed = []
            for row in due:
                result = conn.execute(
                    enablement_actions.update()
                    .where(enablement_actions.c.id == row.id, free)
                    .values(claimed_until=now + timedelta(minutes=5))
                )
                if result.rowcount == 1:
                    claimed.append(row)
        return claimed

    def _run_action(self, action_row: Row[Any]) -> ActionResult:
        declared = {
            a.id: a for a in self.plugins.enablement_actions(action_row.product)
        }
        action = declared.get(action_row.action)
        if action is None:
            raise ActionFailed(
                f"no plugin declares {action_row.product}/{action_row.action}",
                permanent=True,
            )
        with self.store.begin() as conn:
            row = store.journey_row(conn, action_row.journey_id)
            assert row is not None
            organization = store.one(
                conn,
                sa.select(organizations).where(
                    organizations.c.id == row.organization_id
                ),
            )
            assert organization is not None
            administrator = self._administrator_email(conn, row)
        service = self.settings.services.get(action_row.product, {})
        with service_client(service) as http:
            context = ActionContext(
                product=action_row.product,
                order_number=row.order_number,
                legal_name=organization.legal_name,
                rut=organization.rut,
                documents=frozenset(row.documents),
                administrator_email=administrator,
                idempotency_key=(
                    f"{row.order_number}:{action_row.product}:{action_row.action}"
                ),
                http=http,
                settings=service,
            )
            return action.run(context)

    def _record_action(
        self, claimed: Row[Any], outcome: ActionResult | BaseException
    ) -> bool:
        now = self.clock()
        still_pending = sa.and_(
            enablement_actions.c.id == claimed.id,
            enablement_actions.c.state == "pending",
        )
        attempts = claimed.attempts + 1
        with self._transaction() as (conn, pending):
            row = store.journey_row(conn, claimed.journey_id)
            assert row is not None
            if isinstance(outcome, ActionResult):
                result = conn.execute(
                    enablement_actions.update()
                    .where(still_pending)
                    .values(
                        state="done",
                        attempts=attempts,
                        # Stored as JSON: whatever a plugin put in, text.
                        result={
                            "summary": str(outcome.summary),
                            **{str(k): str(v) for k, v in outcome.data.items()},
                        },
                        done_at=now,
                        claimed_until=None,
                    )
                )
                if result.rowcount != 1:
                    return False
                self._event(
                    conn,
                    pending,
                    row.id,
                    "enablement_action_done",
                    product=claimed.product,
                    action=claimed.action,
                )
                self._email(
                    conn,
                    pending,
                    "enablement_action_done",
                    self._administrator_email(conn, row),
                    row.id,
                    title=claimed.title,
                    summary=outcome.summary,
                    legal_name=self._organization_name(conn, row),
                )
                return True

            error = f"{type(outcome).__name__}: {outcome}"[:500]
            if is_transient(outcome) and attempts < MAX_ATTEMPTS:
                wait = backoff(attempts)
                conn.execute(
                    enablement_actions.update()
                    .where(still_pending)
                    .values(
                        attempts=attempts,
                        last_error=error,
                        next_attempt_at=now + wait,
                        claimed_until=None,
                    )
                )
                logger.info(
                    "action %s/%s of journey %s failed (attempt %s), retrying in %ss",
                    claimed.product,
                    claimed.action,
                    row.id,
                    attempts,
                    int(wait.total_seconds()),
                )
                return False

            conn.execute(
                enablement_actions.update()
                .where(still_pending)
                .values(
                    state="failed",
                    attempts=attempts,
                    last_error=error,
                    claimed_until=None,
                )
            )
            self._event(
                conn,
                pending,
                row.id,
                "enablement_action_failed",
                product=claimed.product,
                action=claimed.action,
            )
            logger.warning(
                "action %s/%s of journey %s failed for good after %s attempts: "
                "an operator must act (%s)",
                claimed.product,
                claimed.action,
                row.id,
                attempts,
                type(outcome).__name__,
            )
            return False


_ORDER = {"pending": 0, "running": 1, "failed": 1, "done": 2}


def _merge_status(
    reference: str, stored: Mapping[str, Any], status: CertificationStatus
) -> dict[str, Any] | None:
    """The stored certification moved on by ``status``; ``None`` when the
    answer is about another certification or other steps.

    The journey's declared steps keep their order; a step never goes back
    from done; the certification is approved only when every step is done.
    """
    if status.reference != reference or (
        stored.get("id") and status.id != stored["id"]
    ):
        return None
    declared = [dict(s) for s in stored.get("steps", ())]
    answered = {s.id: s for s in status.steps}
    if not declared or set(answered) - {s["id"] for s in declared}:
        return None

    steps = []
    for step in declared:
        new = answered.get(step["id"])
        # A step never moves back (done to anything, running to pending): an
        # older answer arriving late says nothing new.
        if new is None or _ORDER[new.state] < _ORDER[step["state"]]:
            steps.append(step)
            continue
        steps.append({**step, "state": new.state, "message": new.message})

    state = status.state
    if state == "approved" and any(s["state"] != "done" for s in steps):
        state = "running"
    if stored.get("state") in {"approved", "failed"}:
        state = str(stored["state"])
    merged = {key: stored[key] for key in _OWN_CERTIFICATION_KEYS if key in stored}
    merged.update(id=status.id, reference=status.reference, state=state, steps=steps)
    return merged


_OWN_CERTIFICATION_KEYS = (
    "business_days",
    "expected_date",
    "schedule_date",
    "overdue_alerted",
)


def _expected_text(snapshot: Mapping[str, Any]) -> str:
    """The expected date of a certification snapshot, as customers read it."""
    iso = snapshot.get("expected_date")
    return format_date_es(date.fromisoformat(iso)) if iso else ""


def _check_documents(
    offer: DocumentOffer, chosen: frozenset[DteType]
) -> frozenset[int]:
    """The documents to enable: the customer's choice plus the required ones."""
    codes = frozenset(int(c) for c in chosen)
    unknown = codes - set(offer.choices)
    if unknown:
        names = ", ".join(str(c) for c in sorted(unknown))
        raise DocumentsError(
            f"Tu plan no incluye estos documentos: {names}.",
            code="documents_not_offered",
            field="documents",
        )
    documents = codes | offer.required
    if not documents:
        raise DocumentsError(
            "Elige al menos un documento.", code="documents_empty", field="documents"
        )
    return documents


def _purchase_json(purchase: Purchase, email: str) -> dict[str, Any]:
    data = attrs.asdict(purchase, recurse=True)
    data["email"] = email
    data["items"] = [attrs.asdict(i) for i in purchase.items]
    data["paid_at"] = purchase.paid_at.isoformat() if purchase.paid_at else None
    return data


def _purchase_from_json(data: Mapping[str, Any]) -> Purchase:
    values = dict(data)
    values["items"] = tuple(PurchaseItem(**i) for i in values["items"])
    paid_at = values.get("paid_at")
    values["paid_at"] = datetime.fromisoformat(paid_at) if paid_at else None
    return Purchase(**values)
