"""Tuu, alone and bought with other products, loaded as users load it."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence

import haulmer_openfactura
import haulmer_tuu
import pytest

from haulmer_onboarding import (
    ConflictError,
    DtePolicy,
    DteType,
    Plugins,
    Product,
    Purchase,
    PurchaseItem,
    hookimpl,
)

ITEM_CODES = {"TUU-POS", "TUU-POS-PRO"}
LOCKED = {DteType.FACTURA, DteType.BOLETA}


def purchase(*item_codes: str) -> Purchase:
    return Purchase(
        order_number="OC-1",
        email="a@b.cl",
        buyer_name="Ana",
        items=[PurchaseItem(code=code, name=code) for code in item_codes],
        legal_name="X SpA",
        rut="76086428-5",
    )


class Kiosk:
    """A second point of sale that locks a different set of documents."""

    @hookimpl
    def onboarding_products(self) -> Sequence[Product]:
        return [Product(code="kiosk", name="Kiosk", item_codes={"KIOSK"})]

    @hookimpl
    def onboarding_dte_policy(
        self, product: str, purchase: Purchase
    ) -> DtePolicy | None:
        if product != "kiosk":
            return None
        return DtePolicy(required={DteType.BOLETA}, locked=True)


def is_subsequence(part: Sequence[str], whole: Sequence[str]) -> bool:
    remaining = iter(whole)
    return all(item in remaining for item in part)


@pytest.fixture
def plugins() -> Plugins:
    return Plugins(load_entry_points=False, extra=[haulmer_tuu])


@pytest.fixture
def with_openfactura() -> Plugins:
    return Plugins(load_entry_points=False, extra=[haulmer_openfactura, haulmer_tuu])


def test_declares_the_product_with_its_item_codes(plugins: Plugins) -> None:
    product = plugins.products["tuu"]

    assert product.name == "Tuu punto de venta"
    assert product.item_codes == ITEM_CODES


@pytest.mark.parametrize("item_code", sorted(ITEM_CODES))
def test_item_codes_mean_tuu(plugins: Plugins, item_code: str) -> None:
    assert plugins.products_for_items([item_code]) == ("tuu",)


def test_offer_is_locked_to_factura_and_boleta(plugins: Plugins) -> None:
    offer = plugins.document_offer(["tuu"], purchase("TUU-POS"))

    assert offer.locked
    assert offer.required == LOCKED
    assert offer.optional == frozenset()
    assert offer.preselected == LOCKED
    assert offer.choices == (33, 39)


def test_hooks_ignore_other_products() -> None:
    assert haulmer_tuu.onboarding_dte_policy("openfactura", purchase()) is None
    assert (
        haulmer_tuu.onboarding_certification_steps("openfactura", frozenset({33}))
        is None
    )


def test_certification_is_the_boleta_set(plugins: Plugins) -> None:
    steps = plugins.certification_steps(["tuu"], frozenset(LOCKED))

    assert [(step.id, step.title, step.business_days) for step in steps] == [
        ("postulacion", "Postulación", 1),
        ("set_boletas", "Set de pruebas de boletas", 1),
        ("declaracion", "Declaración de cumplimiento", 1),
    ]


def test_items_of_both_products_map_to_both(with_openfactura: Plugins) -> None:
    found = with_openfactura.products_for_items(["OF-PYME", "TUU-POS-PRO"])

    assert found == ("openfactura", "tuu")


@pytest.mark.parametrize("products", [["openfactura", "tuu"], ["tuu", "openfactura"]])
def test_tuu_locks_the_offer_of_openfactura(
    with_openfactura: Plugins, products: list[str]
) -> None:
    offer = with_openfactura.document_offer(products, purchase("OF-PYME", "TUU-POS"))

    # The point of sale fixes 33 and 39; OpenFactura's other documents stay
    # selectable.
    assert offer.locked
    assert offer.required == LOCKED
    assert offer.optional == {34, 41, 43, 46, 52, 56, 61, 110, 111, 112}
    assert offer.preselected == LOCKED | {56, 61}


def test_two_locks_that_disagree_conflict() -> None:
    plugins = Plugins(load_entry_points=False, extra=[haulmer_tuu, Kiosk()])

    with pytest.raises(ConflictError) as raised:
        plugins.document_offer(["tuu", "kiosk"], purchase("TUU-POS", "KIOSK"))

    assert raised.value.code == "documents_lock_conflict"
    assert isinstance(raised.value, RuntimeError)


@pytest.mark.parametrize("products", [["openfactura", "tuu"], ["tuu", "openfactura"]])
def test_steps_with_openfactura_keep_both_orders(
    with_openfactura: Plugins, products: list[str]
) -> None:
    documents = frozenset(LOCKED)
    steps = with_openfactura.certification_steps(products, documents)
    ids = [step.id for step in steps]

    openfactura = haulmer_openfactura.onboarding_certification_steps(
        "openfactura", documents
    )
    assert openfactura is not None
    assert is_subsequence([step.id for step in openfactura], ids)
    assert is_subsequence([step.id for step in haulmer_tuu.STEPS], ids)
    assert ids[0] == "postulacion"
    assert ids[-1] == "declaracion"
    assert ids.index("set_boletas") < ids.index("declaracion")
    assert len(ids) == len(set(ids))
    assert ids == [
        "postulacion",
        "set_pruebas",
        "simulacion",
        "intercambio",
        "muestras_impresas",
        "set_boletas",
        "declaracion",
    ]


def test_loads_through_its_entry_point() -> None:
    entry_points = importlib.metadata.entry_points(group="haulmer_onboarding")
    assert "tuu" in entry_points.names
    assert entry_points["tuu"].value == "haulmer_tuu"

    plugins = Plugins()

    assert plugins.pm.get_plugin("tuu") is haulmer_tuu
    assert plugins.document_offer(["tuu"], purchase("TUU-POS")).required == LOCKED
