"""Records of the journey, as the facade hands them out.

These are plain frozen values: reading one never touches the database, and
changing one changes nothing. The store maps rows to them.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import attrs

__all__ = [
    "Customer",
    "DocumentOffer",
    "DtePolicy",
    "Journey",
    "JourneyEvent",
    "Organization",
    "Product",
    "Purchase",
    "PurchaseItem",
    "Stage",
    "TaxDocumentRequest",
    "Workspace",
]


def _codes(values: Iterable[int]) -> frozenset[int]:
    return frozenset(int(v) for v in values)


def _item_codes(values: Iterable[str]) -> frozenset[str]:
    return frozenset(values)


def _items(values: Iterable[PurchaseItem]) -> tuple[PurchaseItem, ...]:
    return tuple(values)


class Stage(enum.StrEnum):
    """Where a journey stands; the order of the members is the seed's order."""

    WORKSPACE_PENDING = "workspace_pending"
    WORKSPACE_ACTIVATED = "workspace_activated"
    WORKSPACE_ADMIN_CREATED = "workspace_admin_created"
    WORKSPACE_NAMED = "workspace_named"
    SETUP_PENDING = "setup_pending"
    SETUP_STARTED = "setup_started"
    SETUP_ORGANIZATION_CHOSEN = "setup_organization_chosen"
    SETUP_SIGNATURE_LOADED = "setup_signature_loaded"
    CERTIFYING = "certifying"
    ENABLED = "enabled"
    CERTIFICATION_FAILED = "certification_failed"

    @property
    def rank(self) -> int:
        return list(Stage).index(self)


@attrs.frozen
class Product:
    """A Haulmer service a plugin declares.

    ``item_codes`` are the purchase item codes (SKUs) that mean this product.
    """

    code: str
    name: str
    item_codes: frozenset[str] = attrs.field(converter=_item_codes, factory=frozenset)


@attrs.frozen
class DtePolicy:
    """Which DTE types a product needs and offers, by SII code.

    ``required`` are always enabled; ``optional`` may be chosen;
    ``preselected`` start checked. A ``locked`` policy fixes ``required``
    and offers nothing more of its own (a point of sale).
    """

    required: frozenset[int] = attrs.field(converter=_codes, factory=frozenset)
    optional: frozenset[int] = attrs.field(converter=_codes, factory=frozenset)
    preselected: frozenset[int] = attrs.field(converter=_codes, factory=frozenset)
    locked: bool = False


@attrs.frozen
class DocumentOffer:
    """The documents step as a customer sees it, merged across products.

    ``required`` are enabled whatever the customer does (shown checked and
    disabled); ``optional`` may be chosen. ``locked`` says a point of sale
    fixed part of the set, which the page explains.
    """

    required: frozenset[int]
    optional: frozenset[int]
    preselected: frozenset[int]
    locked: bool

    @property
    def choices(self) -> tuple[int, ...]:
        return tuple(sorted(self.required | self.optional))


@attrs.frozen
class PurchaseItem:
    code: str
    name: str
    quantity: int = 1
    unit_price: int = 0  # Chilean pesos, VAT included


@attrs.frozen
class Purchase:
    """A purchase as the shop reports it.

    ``changes_legal_name`` is set when the purchase is for a new razón social
    (a new workspace must be created); otherwise ``legal_name`` and ``rut``
    name the organization the services are for.
    """

    order_number: str
    email: str
    buyer_name: str
    items: tuple[PurchaseItem, ...] = attrs.field(converter=_items)
    legal_name: str = ""
    rut: str = ""
    changes_legal_name: bool = False
    paid_at: datetime | None = None

    @property
    def total(self) -> int:
        return sum(item.quantity * item.unit_price for item in self.items)


@attrs.frozen
class Customer:
    id: int
    email: str
    name: str
    has_password: bool


@attrs.frozen
class Organization:
    id: int
    legal_name: str
    rut: str


@attrs.frozen
class Workspace:
    id: int
    name: str | None
    administrator_email: str | None
    organizations: tuple[Organization, ...]
    finished: bool
    #: The administrator account's name, as stored (an existing account
    #: keeps its own).
    administrator_name: str | None = None


@attrs.frozen
class TaxDocumentRequest:
    kind: str  # "boleta" or "factura"
    legal_name: str | None = None
    rut: str | None = None
    business_activity: str | None = None
    address: str | None = None


@attrs.frozen
class Journey:
    """One purchase's way from payment to an enabled organization."""

    id: int
    order_number: str
    stage: Stage
    buyer: Customer
    products: tuple[str, ...]
    changes_legal_name: bool
    workspace: Workspace | None
    organization: Organization | None
    documents: frozenset[int]
    signature: Mapping[str, Any] | None
    certification: Mapping[str, Any] | None
    tax_document: TaxDocumentRequest | None
    created_at: datetime


@attrs.frozen
class JourneyEvent:
    """Something that happened in a journey; plugins observe these."""

    journey_id: int
    kind: str
    at: datetime
    data: Mapping[str, Any] = attrs.field(factory=dict)
