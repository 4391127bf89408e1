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
"""

from __future__ import annotations

from collections.abc import Sequence

from haulmer_onboarding import (
    CertificationStep,
    DtePolicy,
    DteType,
    Product,
    Purchase,
    hookimpl,
)

__all__ = [
    "POLICY",
    "PRODUCT",
    "STEPS",
    "onboarding_certification_steps",
    "onboarding_dte_policy",
    "onboarding_products",
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
