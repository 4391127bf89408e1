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

OpenRetail issues its documents through OpenFactura, but it is a product of
its own with its own item codes; this plugin does not declare it.
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
    "onboarding_certification_steps",
    "onboarding_dte_policy",
    "onboarding_products",
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
