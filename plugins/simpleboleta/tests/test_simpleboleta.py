"""SimpleBoleta, loaded as users load it: by the facade and by entry point."""

from __future__ import annotations

import importlib.metadata

import haulmer_simpleboleta
import pytest

from haulmer_onboarding import DteType, Plugins, Purchase, PurchaseItem

ITEM_CODES = {"SB-PLAN-BASICO", "SB-PLAN-PLUS"}


def purchase(*item_codes: str) -> Purchase:
    return Purchase(
        order_number="OC-1",
        email="a@b.cl",
        buyer_name="Ana",
        items=[PurchaseItem(code=code, name=code) for code in item_codes],
        legal_name="X SpA",
        rut="76086428-5",
    )


@pytest.fixture
def plugins() -> Plugins:
    return Plugins(load_entry_points=False, extra=[haulmer_simpleboleta])


def test_declares_the_product_with_its_item_codes(plugins: Plugins) -> None:
    product = plugins.products["simpleboleta"]

    assert product.name == "SimpleBoleta"
    assert product.item_codes == ITEM_CODES


@pytest.mark.parametrize("item_code", sorted(ITEM_CODES))
def test_item_codes_mean_simpleboleta(plugins: Plugins, item_code: str) -> None:
    assert plugins.products_for_items([item_code, "OTRO"]) == ("simpleboleta",)


def test_offer_requires_boleta_and_offers_the_exempt_one(plugins: Plugins) -> None:
    offer = plugins.document_offer(["simpleboleta"], purchase("SB-PLAN-BASICO"))

    assert offer.required == {DteType.BOLETA}
    assert offer.optional == {DteType.BOLETA_EXENTA}
    assert offer.preselected == {DteType.BOLETA, DteType.BOLETA_EXENTA}
    assert not offer.locked


def test_hooks_ignore_other_products() -> None:
    assert haulmer_simpleboleta.onboarding_dte_policy("tuu", purchase()) is None
    assert (
        haulmer_simpleboleta.onboarding_certification_steps("tuu", frozenset({39}))
        is None
    )


@pytest.mark.parametrize("documents", [{39}, {39, 41}])
def test_certification_is_the_boleta_set(plugins: Plugins, documents: set[int]) -> None:
    steps = plugins.certification_steps(["simpleboleta"], frozenset(documents))

    assert [(step.id, step.title, step.business_days) for step in steps] == [
        ("postulacion", "Postulación", 1),
        ("set_boletas", "Set de pruebas de boletas", 1),
        ("declaracion", "Declaración de cumplimiento", 1),
    ]


def test_loads_through_its_entry_point() -> None:
    entry_points = importlib.metadata.entry_points(group="haulmer_onboarding")
    assert "simpleboleta" in entry_points.names
    assert entry_points["simpleboleta"].value == "haulmer_simpleboleta"

    plugins = Plugins()

    assert plugins.pm.get_plugin("simpleboleta") is haulmer_simpleboleta
    assert plugins.products["simpleboleta"].item_codes == ITEM_CODES
