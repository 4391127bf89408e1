"""OpenRetail: Haulmer's retail management, onboarded as its own product.

OpenRetail issues its documents through OpenFactura's machinery: it needs
the factura electrónica (33) and the boleta electrónica (39) of a shop, and
offers credit notes (61) for returns. Its certification is the factura and
boleta path. Once the organization is enabled, OpenRetail opens the store
in its own service; the call carries an idempotency key, so a retry after a
crash opens nothing twice.
"""

from __future__ import annotations

import hashlib
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

PRODUCT = Product(code="openretail", name="OpenRetail", item_codes={"OR-TIENDA"})

POLICY = DtePolicy(
    required={DteType.FACTURA, DteType.BOLETA},
    optional={DteType.NOTA_CREDITO},
    preselected={DteType.NOTA_CREDITO},
)

STEPS = (
    CertificationStep("postulacion", "Postulación", 1),
    CertificationStep("set_pruebas", "Set de pruebas", 2),
    CertificationStep("set_boletas", "Set de pruebas de boletas", 1),
    CertificationStep("declaracion", "Declaración de cumplimiento", 1),
)


def open_store(context: ActionContext) -> ActionResult:
    """Open the organization's store in OpenRetail's service."""
    store_id = context.post(
        "/v1/stores",
        {"rut": context.rut, "legal_name": context.legal_name},
        "store_id",
    )["store_id"]
    return ActionResult(
        summary=f"Tu tienda en OpenRetail ya está abierta (tienda {store_id}).",
        data={"store_id": store_id},
    )


ACTIONS = (EnablementAction("store", "Tu tienda en OpenRetail", open_store),)


@hookimpl
def onboarding_products() -> Sequence[Product]:
    return [PRODUCT]


@hookimpl
def onboarding_dte_policy(product: str, purchase: Purchase) -> DtePolicy | None:
    return POLICY if product == PRODUCT.code else None


@hookimpl
def onboarding_certification_steps(
    product: str, documents: frozenset[int]
) -> Sequence[CertificationStep] | None:
    return STEPS if product == PRODUCT.code else None


@hookimpl
def onboarding_enablement_actions(product: str) -> Sequence[EnablementAction] | None:
    return ACTIONS if product == PRODUCT.code else None


def _new_store(body: Mapping[str, Any]) -> Mapping[str, Any]:
    digest = hashlib.sha256(str(body.get("rut")).encode()).hexdigest()[:8]
    return {"store_id": f"OR-{digest.upper()}"}


@hookimpl
def onboarding_sandbox_routes() -> Sequence[tuple[str, Any]]:
    return [(PRODUCT.code, [sandbox_endpoint("/v1/stores", _new_store)])]
