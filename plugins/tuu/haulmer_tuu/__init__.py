"""Tuu: Haulmer's point of sale and payments.

The point of sale issues a boleta electrónica (39) for every sale, and the
system cannot run without the factura electrónica (33). Both are therefore
enabled and fixed: the policy is locked, the customer sees the two marked
and cannot change them. When Tuu is bought with another product, the two
stay fixed and that product's own optional documents remain selectable.

Certification covers the boleta stages: the application, the boleta test
set and the declaration. The step ids and titles are the ones every product
plugin uses, so bought together with OpenFactura each shared step appears
once, in an order that agrees with both products.

Once the SII enables the organization, one action activates the point of
sale bought with the order (``POST /v1/terminals/activations``), so the
customer can sell with boletas from then on. The call is idempotent because
it sends the journey's ``Idempotency-Key``, which stays the same across
retries: a call repeated after a crash gets back the terminal activated the
first time instead of activating a second one. ``onboarding_sandbox_routes``
serves the same contract for demos.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from typing import Any

from haulmer_onboarding import (
    ActionContext,
    ActionResult,
    CertificationStep,
    DtePolicy,
    DteType,
    EnablementAction,
    Product,
    Purchase,
    hookimpl,
    sandbox_endpoint,
)

__all__ = [
    "ACTIONS",
    "POLICY",
    "PRODUCT",
    "STEPS",
    "activate_terminal",
    "onboarding_certification_steps",
    "onboarding_dte_policy",
    "onboarding_enablement_actions",
    "onboarding_products",
    "onboarding_sandbox_routes",
]

PRODUCT = Product(
    code="tuu",
    name="Tuu punto de venta",
    item_codes={"TUU-POS", "TUU-POS-PRO"},
)

POLICY = DtePolicy(required={DteType.FACTURA, DteType.BOLETA}, locked=True)

STEPS = (
    CertificationStep("postulacion", "Postulación", 1),
    CertificationStep("set_boletas", "Set de pruebas de boletas", 1),
    CertificationStep("declaracion", "Declaración de cumplimiento", 1),
)


@hookimpl
def onboarding_products() -> Sequence[Product]:
    return [PRODUCT]


@hookimpl
def onboarding_dte_policy(product: str, purchase: Purchase) -> DtePolicy | None:
    """``POLICY`` for Tuu, whatever the purchase; None otherwise."""
    if product != PRODUCT.code:
        return None
    return POLICY


@hookimpl
def onboarding_certification_steps(
    product: str, documents: frozenset[int]
) -> Sequence[CertificationStep] | None:
    """``STEPS`` for Tuu; None for other products."""
    if product != PRODUCT.code:
        return None
    return STEPS


def activate_terminal(context: ActionContext) -> ActionResult:
    """Activate the terminal of the order's point of sale.

    HTTP errors propagate for the core to judge.
    """
    terminal_id = context.post(
        "/v1/terminals/activations",
        {"rut": context.rut, "order_number": context.order_number},
        "terminal_id",
    )["terminal_id"]

    summary = (
        f"Activamos tu punto de venta Tuu (terminal {terminal_id}). Ya puedes "
        "vender con boleta electrónica."
    )
    return ActionResult(summary=summary, data={"terminal_id": terminal_id})


ACTIONS = (
    EnablementAction(
        id="terminal",
        title="Activación de tu punto de venta Tuu",
        run=activate_terminal,
    ),
)


@hookimpl
def onboarding_enablement_actions(product: str) -> Sequence[EnablementAction] | None:
    """``ACTIONS`` for Tuu; None for other products."""
    if product != PRODUCT.code:
        return None
    return ACTIONS


@hookimpl
def onboarding_sandbox_routes() -> Sequence[tuple[str, Sequence[Any]]]:
    """The activation endpoint, answering a new terminal for every new
    request.

    The answer hashes the request with a counter the routes own: a sandbox
    gives the same answers to the same run of requests, and no two requests
    to it get the same answer.
    """
    counter = itertools.count(1)

    def respond(body: Mapping[str, Any]) -> Mapping[str, Any]:
        seed = json.dumps([next(counter), body], sort_keys=True)
        digest = hashlib.sha256(seed.encode()).hexdigest().upper()
        return {"terminal_id": f"T-{digest[:8]}"}

    return [(PRODUCT.code, [sandbox_endpoint("/v1/terminals/activations", respond)])]
