"""What the pages and the JSON API share: HTTP statuses of the SDK's errors,
the wizards' step numbers, and the JSON shape of the journey's records."""

from __future__ import annotations

from typing import Any

import attrs

from haulmer_onboarding.errors import (
    CertificationServiceError,
    ConflictError,
    LinkError,
    LinkExpired,
    LinkInvalid,
    LinkSuperseded,
    LinkUsed,
    LinkWrongPurpose,
    NotFoundError,
    OnboardingError,
    RateLimited,
    StepOrderError,
)
from haulmer_onboarding.models import Customer, DocumentOffer, Journey, Stage

LINK_STATUS: dict[type[LinkError], int] = {
    LinkInvalid: 404,
    LinkWrongPurpose: 404,
    LinkExpired: 410,
    LinkUsed: 410,
    LinkSuperseded: 410,
}

#: The step a wizard page shows for each stage: 0 is the welcome page.
WIZARD_STEP = {
    Stage.WORKSPACE_PENDING: 0,
    Stage.WORKSPACE_ACTIVATED: 1,
    Stage.WORKSPACE_ADMIN_CREATED: 2,
    Stage.WORKSPACE_NAMED: 3,
}
SETUP_STEP = {
    Stage.SETUP_PENDING: 0,
    Stage.SETUP_STARTED: 1,
    Stage.SETUP_ORGANIZATION_CHOSEN: 2,
    Stage.SETUP_SIGNATURE_LOADED: 3,
}

# What the customer is shown of a certification; the rest is for operators.
_CERTIFICATION_KEYS = ("state", "steps", "business_days", "expected_date")


def error_status(error: OnboardingError) -> int:
    """The HTTP status that answers ``error``, on a page or in the API."""
    if isinstance(error, LinkError):
        status = LINK_STATUS.get(type(error))
        return status or (410 if isinstance(error, LinkUsed) else 404)
    if isinstance(error, StepOrderError | ConflictError):
        return 409
    if isinstance(error, RateLimited):
        return 429
    if isinstance(error, NotFoundError):
        return 404
    if isinstance(error, CertificationServiceError):
        return 503
    if isinstance(error, PermissionError):
        return 403
    return 400


def customer_json(customer: Customer) -> dict[str, Any]:
    return {
        "email": customer.email,
        "name": customer.name,
        "has_password": customer.has_password,
    }


def journey_json(journey: Journey) -> dict[str, Any]:
    """A journey as the link's holder may see it (the API's ``Journey``)."""
    workspace = journey.workspace
    certification = journey.certification
    return {
        "id": journey.id,
        "order_number": journey.order_number,
        "stage": journey.stage.value,
        "products": list(journey.products),
        "changes_legal_name": journey.changes_legal_name,
        "buyer": customer_json(journey.buyer),
        "workspace": None
        if workspace is None
        else {
            "name": workspace.name,
            "administrator_email": workspace.administrator_email,
            "finished": workspace.finished,
            "organizations": [attrs.asdict(o) for o in workspace.organizations],
        },
        "organization": attrs.asdict(journey.organization)
        if journey.organization
        else None,
        "documents": sorted(journey.documents),
        "signature": dict(journey.signature) if journey.signature else None,
        "certification": None
        if certification is None
        else {k: certification.get(k) for k in _CERTIFICATION_KEYS},
        "tax_document": attrs.asdict(journey.tax_document)
        if journey.tax_document
        else None,
        "created_at": journey.created_at.isoformat(),
    }


def offer_json(offer: DocumentOffer) -> dict[str, Any]:
    return {
        "choices": list(offer.choices),
        "required": sorted(offer.required),
        "preselected": sorted(offer.preselected),
        "locked": offer.locked,
    }
