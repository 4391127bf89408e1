"""OpenFactura: Haulmer's electronic invoicing platform and API.

An OpenFactura organization exists to issue facturas, so the factura
electrónica (33) is always enabled. The notes that correct a factura (56, 61)
start checked, since nearly every issuer needs them sooner or later. The
other facturas, the guía de despacho and the export documents are offered,
and so are the boletas (39, 41), for customers who ask for them.

Certification follows the SII's classic stages for the documents that travel
in the DTE envelope (facturas, notes, guías, exports). Boletas go through a
separate SII service with a test set of its own, so choosing one adds that
set before the declaración de cumplimiento.

Once the SII enables the organization, one action issues its OpenFactura
API key: ``POST /v1/organizations/{rut}/api-keys`` on the service named in
the settings. The key itself stays in the customer's Espacio de trabajo;
the answer carries only its id and last four characters, and only those are
kept and emailed. The call is idempotent because it sends the journey's
``Idempotency-Key``, which stays the same across retries: a call repeated
after a crash gets back the key issued the first time instead of a second
one. ``onboarding_sandbox_routes`` serves the same contract for demos.

OpenRetail issues its documents through OpenFactura, but it is a product of
its own with its own item codes; this plugin does not declare it.
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
    "issue_api_key",
    "onboarding_certification_steps",
    "onboarding_dte_policy",
    "onboarding_enablement_actions",
    "onboarding_products",
    "onboarding_sandbox_routes",
]

PRODUCT = Product(
    code="openfactura",
    name="OpenFactura",
    item_codes={"OF-EMPRENDE", "OF-PYME", "OF-FULL"},
)

POLICY = DtePolicy(
    required={DteType.FACTURA},
    optional={
        DteType.FACTURA_EXENTA,
        DteType.LIQUIDACION_FACTURA,
        DteType.FACTURA_COMPRA,
        DteType.GUIA_DESPACHO,
        DteType.NOTA_DEBITO,
        DteType.NOTA_CREDITO,
        DteType.FACTURA_EXPORTACION,
        DteType.NOTA_DEBITO_EXPORTACION,
        DteType.NOTA_CREDITO_EXPORTACION,
        DteType.BOLETA,
        DteType.BOLETA_EXENTA,
    },
    preselected={DteType.FACTURA, DteType.NOTA_DEBITO, DteType.NOTA_CREDITO},
)

_BOLETAS = frozenset({DteType.BOLETA, DteType.BOLETA_EXENTA})

_POSTULACION = CertificationStep("postulacion", "Postulación", 1)
_ENVELOPE_STEPS = (
    CertificationStep("set_pruebas", "Set de pruebas", 2),
    CertificationStep("simulacion", "Simulación", 1),
    CertificationStep("intercambio", "Intercambio de información", 1),
    CertificationStep("muestras_impresas", "Muestras impresas", 1),
)
_SET_BOLETAS = CertificationStep("set_boletas", "Set de pruebas de boletas", 1)
_DECLARACION = CertificationStep("declaracion", "Declaración de cumplimiento", 1)


@hookimpl
def onboarding_products() -> Sequence[Product]:
    return [PRODUCT]


@hookimpl
def onboarding_dte_policy(product: str, purchase: Purchase) -> DtePolicy | None:
    """``POLICY`` for OpenFactura, whatever the purchase; None otherwise."""
    if product != PRODUCT.code:
        return None
    return POLICY


@hookimpl
def onboarding_certification_steps(
    product: str, documents: frozenset[int]
) -> Sequence[CertificationStep] | None:
    """The classic stages, plus the boleta set when a boleta is enabled.

    The classic stages are left out only when every document is a boleta.
    """
    if product != PRODUCT.code:
        return None

    only_boletas = bool(documents) and documents <= _BOLETAS
    steps = [_POSTULACION]
    if not only_boletas:
        steps.extend(_ENVELOPE_STEPS)
    if documents & _BOLETAS:
        steps.append(_SET_BOLETAS)
    steps.append(_DECLARACION)
    return steps


def issue_api_key(context: ActionContext) -> ActionResult:
    """Issue the organization's API key for the documents it enabled.

    HTTP errors propagate for the core to judge; only the key's id and last
    four characters are read from the answer.
    """
    answer = context.post(
        f"/v1/organizations/{context.rut}/api-keys",
        {"legal_name": context.legal_name, "documents": sorted(context.documents)},
        "id",
        "last4",
    )

    summary = (
        f"La API key de OpenFactura de {context.legal_name} está lista en tu "
        f"Espacio de trabajo (termina en {answer['last4']})."
    )
    return ActionResult(
        summary=summary, data={"api_key_id": answer["id"], "last4": answer["last4"]}
    )


ACTIONS = (
    EnablementAction(id="api_key", title="API key de OpenFactura", run=issue_api_key),
)


@hookimpl
def onboarding_enablement_actions(product: str) -> Sequence[EnablementAction] | None:
    """``ACTIONS`` for OpenFactura; None for other products."""
    if product != PRODUCT.code:
        return None
    return ACTIONS


@hookimpl
def onboarding_sandbox_routes() -> Sequence[tuple[str, Sequence[Any]]]:
    """The API key endpoint, answering a new key id for every new request.

    The answer hashes the request with a counter the routes own: a sandbox
    gives the same answers to the same run of requests, and no two requests
    to it get the same answer.
    """
    counter = itertools.count(1)

    def respond(body: Mapping[str, Any]) -> Mapping[str, Any]:
        seed = json.dumps([next(counter), body], sort_keys=True)
        digest = hashlib.sha256(seed.encode()).hexdigest()
        return {"id": f"key_{digest[:24]}", "last4": digest[-4:]}

    path = "/v1/organizations/{rut}/api-keys"
    return [(PRODUCT.code, [sandbox_endpoint(path, respond)])]
