"""Tuu: Haulmer's point of sale and payments.

The point of sale issues a boleta electrónica (39) for every sale, and the
system cannot run without the factura electrónica (33). Both are therefore
enabled and fixed: the policy is locked, the customer sees the two marked
and cannot change them. When Tuu is bought with another product, the core
offers exactly this locked set.

Certification covers the boleta stages: the application, the boleta test
set and the declaration. The step ids and titles are the ones every product
plugin uses, so bought together with OpenFactura each shared step appears
once, in an order that agrees with both products.
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
