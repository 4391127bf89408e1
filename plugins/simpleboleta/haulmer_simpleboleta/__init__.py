"""SimpleBoleta: boleta issuing for small shops.

A shop that sells to consumers issues the boleta electrónica (39) for every
sale, so it is always enabled. The boleta exenta (41) is for VAT-exempt
sales; it is offered and starts checked, so a shop that also sells exempt
goods is ready from the first day.

Boletas travel through the SII's boleta service, not the DTE envelope, so
their certification skips the classic test set, simulation, exchange and
printed samples: the application, the boleta test set and the declaration.
The step ids and titles are the ones every product plugin uses, so the
core's merge counts a step shared with another product once.

Once the SII enables the shop, one action asks the SimpleBoleta service for
an activation code (``POST /v1/activation-codes``). The code is meant for
the customer, who types it in the application to start issuing, so it goes
in the email and is kept with the action's outcome. The call is idempotent
because it sends the journey's ``Idempotency-Key``, which stays the same
across retries: a call repeated after a crash gets back the code issued the
first time, so the customer never holds a code that was replaced.
``onboarding_sandbox_routes`` serves the same contract for demos.
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
    "issue_activation_code",
    "onboarding_certification_steps",
    "onboarding_dte_policy",
    "onboarding_enablement_actions",
    "onboarding_products",
    "onboarding_sandbox_routes",
]

PRODUCT = Product(
    code="simpleboleta",
    name="SimpleBoleta",
    item_codes={"SB-PLAN-BASICO", "SB-PLAN-PLUS"},
)

POLICY = DtePolicy(
    required={DteType.BOLETA},
    optional={DteType.BOLETA_EXENTA},
    preselected={DteType.BOLETA, DteType.BOLETA_EXENTA},
)

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
    """``POLICY`` for SimpleBoleta, whatever the purchase; None otherwise."""
    if product != PRODUCT.code:
        return None
    return POLICY


@hookimpl
def onboarding_certification_steps(
    product: str, documents: frozenset[int]
) -> Sequence[CertificationStep] | None:
    """``STEPS`` for SimpleBoleta, whichever boletas are enabled."""
    if product != PRODUCT.code:
        return None
    return STEPS


def issue_activation_code(context: ActionContext) -> ActionResult:
    """Ask for the shop's activation code and hand it to the customer.

    HTTP errors propagate for the core to judge.
    """
    code = context.post(
        "/v1/activation-codes",
        {"rut": context.rut, "legal_name": context.legal_name},
        "code",
    )["code"]

    summary = (
        f"Tu código de activación de SimpleBoleta es {code}. Ingrésalo en la "
        "aplicación para comenzar a emitir boletas."
    )
    return ActionResult(summary=summary, data={"activation_code": code})


ACTIONS = (
    EnablementAction(
        id="activation_code",
        title="Código de activación de SimpleBoleta",
        run=issue_activation_code,
    ),
)


@hookimpl
def onboarding_enablement_actions(product: str) -> Sequence[EnablementAction] | None:
    """``ACTIONS`` for SimpleBoleta; None for other products."""
    if product != PRODUCT.code:
        return None
    return ACTIONS


@hookimpl
def onboarding_sandbox_routes() -> Sequence[tuple[str, Sequence[Any]]]:
    """The activation code endpoint, answering a new code for every new
    request.

    The answer hashes the request with a counter the routes own: a sandbox
    gives the same answers to the same run of requests, and no two requests
    to it get the same answer.
    """
    counter = itertools.count(1)

    def respond(body: Mapping[str, Any]) -> Mapping[str, Any]:
        seed = json.dumps([next(counter), body], sort_keys=True)
        digest = hashlib.sha256(seed.encode()).hexdigest().upper()
        return {"code": f"SB-{digest[:4]}-{digest[4:8]}"}

    return [(PRODUCT.code, [sandbox_endpoint("/v1/activation-codes", respond)])]
