"""OpenFactura, loaded as users load it: by the facade and by entry point."""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Iterator

import haulmer_openfactura
import httpx
import pytest
import respx

from haulmer_onboarding import (
    ActionContext,
    ActionFailed,
    DteType,
    EnablementAction,
    Plugins,
    Purchase,
    PurchaseItem,
)
from haulmer_onboarding.actions import is_transient
from haulmer_onboarding.sandbox import create_sandbox_app
from haulmer_onboarding.testing.servers import serve_in_thread

ITEM_CODES = {"OF-EMPRENDE", "OF-PYME", "OF-FULL"}
SERVICE = "https://openfactura.test"
RUT = "76086428-5"
KEY = "OC-1:openfactura:api_key"
CLASSIC = [
    "postulacion",
    "set_pruebas",
    "simulacion",
    "intercambio",
    "muestras_impresas",
    "declaracion",
]


def purchase(*item_codes: str) -> Purchase:
    return Purchase(
        order_number="OC-1",
        email="a@b.cl",
        buyer_name="Ana",
        items=[PurchaseItem(code=code, name=code) for code in item_codes],
        legal_name="X SpA",
        rut="76086428-5",
    )


def context(http: httpx.Client, key: str = KEY) -> ActionContext:
    return ActionContext(
        product="openfactura",
        order_number="OC-1",
        legal_name="X SpA",
        rut=RUT,
        documents=frozenset({61, 33, 56}),
        administrator_email="a@b.cl",
        idempotency_key=key,
        http=http,
        settings={"url": SERVICE, "api_key": "k"},
    )


@pytest.fixture
def plugins() -> Plugins:
    return Plugins(load_entry_points=False, extra=[haulmer_openfactura])


@pytest.fixture
def action() -> EnablementAction:
    actions = haulmer_openfactura.onboarding_enablement_actions("openfactura")
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


def api_keys(service: respx.MockRouter) -> respx.Route:
    return service.post(f"/v1/organizations/{RUT}/api-keys")


def test_declares_the_product_with_its_item_codes(plugins: Plugins) -> None:
    product = plugins.products["openfactura"]

    assert product.name == "OpenFactura"
    assert product.item_codes == ITEM_CODES


@pytest.mark.parametrize("item_code", sorted(ITEM_CODES))
def test_item_codes_mean_openfactura(plugins: Plugins, item_code: str) -> None:
    assert plugins.products_for_items([item_code]) == ("openfactura",)


def test_openretail_is_not_an_openfactura_item(plugins: Plugins) -> None:
    assert plugins.products_for_items(["OPENRETAIL"]) == ()


def test_offer_requires_factura_and_offers_boletas(plugins: Plugins) -> None:
    offer = plugins.document_offer(["openfactura"], purchase("OF-PYME"))

    assert offer.required == {DteType.FACTURA}
    assert {DteType.BOLETA, DteType.BOLETA_EXENTA} <= offer.optional
    assert offer.optional == {34, 39, 41, 43, 46, 52, 56, 61, 110, 111, 112}
    assert offer.preselected == {33, 56, 61}
    assert not offer.locked


def test_hooks_ignore_other_products() -> None:
    assert haulmer_openfactura.onboarding_dte_policy("tuu", purchase("TUU-POS")) is None
    assert (
        haulmer_openfactura.onboarding_certification_steps("tuu", frozenset({33}))
        is None
    )
    assert haulmer_openfactura.onboarding_enablement_actions("tuu") is None


def test_facturas_go_through_the_classic_stages(plugins: Plugins) -> None:
    steps = plugins.certification_steps(["openfactura"], frozenset({33, 61}))

    assert [step.id for step in steps] == CLASSIC
    assert [step.business_days for step in steps] == [1, 2, 1, 1, 1, 1]
    assert steps[0].title == "Postulación"
    assert steps[-1].title == "Declaración de cumplimiento"


@pytest.mark.parametrize("boleta", [DteType.BOLETA, DteType.BOLETA_EXENTA])
def test_a_boleta_adds_its_set_before_the_declaration(
    plugins: Plugins, boleta: DteType
) -> None:
    steps = plugins.certification_steps(["openfactura"], frozenset({33, boleta}))

    assert [step.id for step in steps] == [*CLASSIC[:-1], "set_boletas", "declaracion"]
    assert steps[-2].title == "Set de pruebas de boletas"


def test_only_boletas_skip_the_classic_stages(plugins: Plugins) -> None:
    steps = plugins.certification_steps(["openfactura"], frozenset({39, 41}))

    assert [step.id for step in steps] == ["postulacion", "set_boletas", "declaracion"]


def test_loads_through_its_entry_point() -> None:
    entry_points = importlib.metadata.entry_points(group="haulmer_onboarding")
    assert "openfactura" in entry_points.names
    assert entry_points["openfactura"].value == "haulmer_openfactura"

    plugins = Plugins()

    assert plugins.pm.get_plugin("openfactura") is haulmer_openfactura
    assert plugins.products["openfactura"].item_codes == ITEM_CODES


def test_declares_one_action_the_core_plans(plugins: Plugins) -> None:
    [action] = plugins.enablement_actions("openfactura")

    assert action.id == "api_key"
    assert action.title == "API key de OpenFactura"
    assert plugins.enablement_actions("tuu") == []


def test_api_key_is_issued_and_only_its_end_is_told(
    action: EnablementAction, http: httpx.Client, service: respx.MockRouter
) -> None:
    route = api_keys(service).respond(
        201, json={"id": "key_1a2b", "last4": "abcd", "key": "of_live_abcd"}
    )

    result = action.run(context(http))

    request = route.calls.last.request
    assert request.url.path == f"/v1/organizations/{RUT}/api-keys"
    assert json.loads(request.content) == {
        "legal_name": "X SpA",
        "documents": [33, 56, 61],
    }
    assert request.headers["Idempotency-Key"] == KEY
    assert request.headers["Authorization"] == "Bearer k"
    assert result.summary == (
        "La API key de OpenFactura de X SpA está lista en tu Espacio de trabajo "
        "(termina en abcd)."
    )
    assert result.data == {"api_key_id": "key_1a2b", "last4": "abcd"}
    assert "of_live_abcd" not in result.summary + repr(result.data)


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_a_refusal_is_permanent(
    action: EnablementAction,
    http: httpx.Client,
    service: respx.MockRouter,
    status: int,
) -> None:
    api_keys(service).respond(status, json={"code": "refused"})

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
    api_keys(service).respond(status)

    with pytest.raises(httpx.HTTPStatusError) as raised:
        action.run(context(http))

    assert is_transient(raised.value)


def test_a_timeout_is_transient(
    action: EnablementAction, http: httpx.Client, service: respx.MockRouter
) -> None:
    api_keys(service).mock(side_effect=httpx.ReadTimeout)

    with pytest.raises(httpx.ReadTimeout) as raised:
        action.run(context(http))

    assert is_transient(raised.value)


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(201, text="<html>ok</html>"),
        httpx.Response(201, json=["key_1a2b", "abcd"]),
        httpx.Response(201, json={"id": "key_1a2b"}),
        httpx.Response(201, json={"id": "key_1a2b", "last4": None}),
        httpx.Response(201, json={"id": "", "last4": "abcd"}),
    ],
)
def test_a_malformed_answer_fails_for_now(
    action: EnablementAction,
    http: httpx.Client,
    service: respx.MockRouter,
    answer: httpx.Response,
) -> None:
    api_keys(service).mock(return_value=answer)

    with pytest.raises(ActionFailed) as raised:
        action.run(context(http))

    assert not raised.value.permanent
    assert is_transient(raised.value)


def test_sandbox_gives_the_same_key_for_the_same_idempotency_key(
    action: EnablementAction,
) -> None:
    [(code, routes)] = haulmer_openfactura.onboarding_sandbox_routes()
    assert code == "openfactura"
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
        other = action.run(context(http, key="OC-2:openfactura:api_key"))

    assert again == first
    assert first.data["api_key_id"].startswith("key_")
    assert len(first.data["last4"]) == 4
    assert other.data != first.data


def test_sandbox_routes_are_served_by_the_core(plugins: Plugins) -> None:
    assert list(plugins.sandbox_routes()) == ["openfactura"]


def test_a_failed_call_is_retried_with_the_same_key_then_succeeds(
    action: EnablementAction, http: httpx.Client, service: respx.MockRouter
) -> None:
    route = api_keys(service)
    route.side_effect = [
        httpx.Response(503),
        httpx.ReadTimeout("slow"),
        httpx.Response(201, json={"id": "key_1", "last4": "abcd"}),
    ]
    for _ in range(2):
        with pytest.raises(httpx.HTTPError) as raised:
            action.run(context(http))
        assert is_transient(raised.value)

    result = action.run(context(http))

    assert route.call_count == 3
    assert {call.request.headers["Idempotency-Key"] for call in route.calls} == {KEY}
    assert result.data == {"api_key_id": "key_1", "last4": "abcd"}
