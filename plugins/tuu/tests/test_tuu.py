"""Tuu, alone and bought with other products, loaded as users load it."""

from __future__ import annotations

import importlib.metadata
import json
import re
from collections.abc import Iterator, Sequence

import haulmer_openfactura
import haulmer_tuu
import httpx
import pytest
import respx

from haulmer_onboarding import (
    ActionContext,
    ActionFailed,
    ConflictError,
    DtePolicy,
    DteType,
    EnablementAction,
    Plugins,
    Product,
    Purchase,
    PurchaseItem,
    hookimpl,
)
from haulmer_onboarding.actions import is_transient
from haulmer_onboarding.sandbox import create_sandbox_app
from haulmer_onboarding.testing.servers import serve_in_thread

ITEM_CODES = {"TUU-POS", "TUU-POS-PRO"}
LOCKED = {DteType.FACTURA, DteType.BOLETA}
SERVICE = "https://tuu.test"
KEY = "OC-1:tuu:terminal"


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


def context(http: httpx.Client, key: str = KEY) -> ActionContext:
    return ActionContext(
        product="tuu",
        order_number="OC-1",
        legal_name="X SpA",
        rut="76086428-5",
        documents=frozenset(LOCKED),
        administrator_email="a@b.cl",
        idempotency_key=key,
        http=http,
        settings={"url": SERVICE, "api_key": "k"},
    )


@pytest.fixture
def action() -> EnablementAction:
    actions = haulmer_tuu.onboarding_enablement_actions("tuu")
    assert actions is not None
    [only] = actions
    return only


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(base_url=SERVICE, headers={"Authorization": "Bearer k"}) as c:
        yield c


@pytest.fixture
def service() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=SERVICE, assert_all_called=True) as router:
        yield router


def activations(service: respx.MockRouter) -> respx.Route:
    return service.post("/v1/terminals/activations")


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
    assert haulmer_tuu.onboarding_enablement_actions("openfactura") is None


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


def test_declares_one_action_the_core_plans(plugins: Plugins) -> None:
    [action] = plugins.enablement_actions("tuu")

    assert action.id == "terminal"
    assert action.title == "Activación de tu punto de venta Tuu"
    assert plugins.enablement_actions("openfactura") == []


def test_each_product_plans_its_own_action(with_openfactura: Plugins) -> None:
    planned = {
        product: [action.id for action in with_openfactura.enablement_actions(product)]
        for product in ("openfactura", "tuu")
    }

    assert planned == {"openfactura": ["api_key"], "tuu": ["terminal"]}


def test_terminal_of_the_order_is_activated(
    action: EnablementAction, http: httpx.Client, service: respx.MockRouter
) -> None:
    route = activations(service).respond(201, json={"terminal_id": "T-000123"})

    result = action.run(context(http))

    request = route.calls.last.request
    assert request.url.path == "/v1/terminals/activations"
    assert json.loads(request.content) == {
        "rut": "76086428-5",
        "order_number": "OC-1",
    }
    assert request.headers["Idempotency-Key"] == KEY
    assert request.headers["Authorization"] == "Bearer k"
    assert result.summary == (
        "Activamos tu punto de venta Tuu (terminal T-000123). Ya puedes vender con "
        "boleta electrónica."
    )
    assert result.data == {"terminal_id": "T-000123"}


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_a_refusal_is_permanent(
    action: EnablementAction,
    http: httpx.Client,
    service: respx.MockRouter,
    status: int,
) -> None:
    activations(service).respond(status, json={"code": "refused"})

    with pytest.raises(httpx.HTTPStatusError) as raised:
        action.run(context(http))

    assert raised.value.response.status_code == status
    assert not is_transient(raised.value)


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_a_service_failure_is_transient(
    action: EnablementAction,
    http: httpx.Client,
    service: respx.MockRouter,
    status: int,
) -> None:
    activations(service).respond(status)

    with pytest.raises(httpx.HTTPStatusError) as raised:
        action.run(context(http))

    assert is_transient(raised.value)


def test_a_timeout_is_transient(
    action: EnablementAction, http: httpx.Client, service: respx.MockRouter
) -> None:
    activations(service).mock(side_effect=httpx.ReadTimeout)

    with pytest.raises(httpx.ReadTimeout) as raised:
        action.run(context(http))

    assert is_transient(raised.value)


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(201, text="<html>ok</html>"),
        httpx.Response(201, json=["T-000123"]),
        httpx.Response(201, json={"id": "T-000123"}),
        httpx.Response(201, json={"terminal_id": None}),
    ],
)
def test_a_malformed_answer_fails_for_now(
    action: EnablementAction,
    http: httpx.Client,
    service: respx.MockRouter,
    answer: httpx.Response,
) -> None:
    activations(service).mock(return_value=answer)

    with pytest.raises(ActionFailed) as raised:
        action.run(context(http))

    assert not raised.value.permanent
    assert is_transient(raised.value)


def test_sandbox_gives_the_same_terminal_for_the_same_idempotency_key(
    action: EnablementAction,
) -> None:
    [(code, routes)] = haulmer_tuu.onboarding_sandbox_routes()
    assert code == "tuu"
    app = create_sandbox_app(services={code: routes})

    with (
        serve_in_thread(app) as server,
        httpx.Client(
            base_url=f"{server.url}/{code}",
            headers={"Authorization": "Bearer sandbox"},
        ) as http,
    ):
        first = action.run(context(http))
        again = action.run(context(http))
        other = action.run(context(http, key="OC-2:tuu:terminal"))

    assert again == first
    assert re.fullmatch(r"T-[0-9A-F]{8}", first.data["terminal_id"])
    assert other.data != first.data


def test_sandbox_routes_of_both_products_are_served(with_openfactura: Plugins) -> None:
    assert sorted(with_openfactura.sandbox_routes()) == ["openfactura", "tuu"]


def test_a_failed_call_is_retried_with_the_same_key_then_succeeds(
    action: EnablementAction, http: httpx.Client, service: respx.MockRouter
) -> None:
    route = activations(service)
    route.side_effect = [
        httpx.Response(503),
        httpx.ReadTimeout("slow"),
        httpx.Response(201, json={"terminal_id": "T-000123"}),
    ]
    for _ in range(2):
        with pytest.raises(httpx.HTTPError) as raised:
            action.run(context(http))
        assert is_transient(raised.value)

    result = action.run(context(http))

    assert route.call_count == 3
    assert {call.request.headers["Idempotency-Key"] for call in route.calls} == {KEY}
    assert result.data == {"terminal_id": "T-000123"}
