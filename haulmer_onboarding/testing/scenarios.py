"""Sample purchases: the scenarios of ``demo``, ``serve`` and the tests."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping

from haulmer_onboarding.models import Purchase, PurchaseItem

__all__ = ["SCENARIOS", "purchase_for"]


def _order_number() -> str:
    return "OC-" + secrets.token_hex(4).upper()


def new_legal_name(email: str, order_number: str | None = None) -> Purchase:
    """OpenFactura plus a Tuu point of sale, for a new razón social."""
    return Purchase(
        order_number=order_number or _order_number(),
        email=email,
        buyer_name="Camila Rojas",
        items=(
            PurchaseItem("OF-PYME", "OpenFactura Plan Pyme (anual)", 1, 249_900),
            PurchaseItem("TUU-POS", "Tuu punto de venta", 1, 89_900),
        ),
        changes_legal_name=True,
    )


def plain(email: str, order_number: str | None = None) -> Purchase:
    """OpenFactura for the buyer's existing company."""
    return Purchase(
        order_number=order_number or _order_number(),
        email=email,
        buyer_name="Camila Rojas",
        items=(PurchaseItem("OF-PYME", "OpenFactura Plan Pyme (anual)", 1, 249_900),),
        legal_name="Ferretería Los Andes SpA",
        rut="76.086.428-5",
    )


def simpleboleta(email: str, order_number: str | None = None) -> Purchase:
    """SimpleBoleta alone, for the buyer's existing shop."""
    return Purchase(
        order_number=order_number or _order_number(),
        email=email,
        buyer_name="Jorge Muñoz",
        items=(PurchaseItem("SB-PLAN-BASICO", "SimpleBoleta Plan Básico", 1, 59_900),),
        legal_name="Almacén Don Jorge EIRL",
        rut="77.123.456-9",
    )


#: key -> (label, make(email)) for every sample purchase.
SCENARIOS: Mapping[str, tuple[str, Callable[..., Purchase]]] = {
    "razon-social": ("OpenFactura + Tuu, nueva razón social", new_legal_name),
    "simple": ("OpenFactura, empresa existente", plain),
    "simpleboleta": ("SimpleBoleta, empresa existente", simpleboleta),
}


def purchase_for(
    scenario: str, email: str, order_number: str | None = None
) -> Purchase:
    """The sample purchase of ``scenario`` for ``email``."""
    return SCENARIOS[scenario][1](email, order_number)
