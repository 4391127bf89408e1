"""SimpleBoleta, loaded as users load it: by the facade and by entry point."""

from __future__ import annotations

import importlib.metadata
import json
import re
from collections.abc import Iterator

import haulmer_simpleboleta
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

ITEM_CODES = {"SB-PLAN-BASICO", "SB-PLAN-PLUS"}
SERVICE = "https://simpleboleta.test"
KEY = "OC-1:simpleboleta:activation_code"


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


def context(http: httpx.Client, key: str = KEY) -> ActionContext:
    return ActionContext(
        product="simpleboleta",
        order_number="OC-1",
        legal_name="X SpA",
        rut="76086428-5",
        documents=frozenset({39, 41}),
        administrator_email="a@b.cl",
        idempotency_key=key,
        http=http,
        settings={"url": SERVICE, "api_key": "k"},
    )


@pytest.fixture
def action() -> EnablementAction:
    actions = haulmer_simpleboleta.onboarding_enablement_actions("simpleboleta")
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


def activation_codes(service: respx.MockRouter) -> respx.Route:
    return service.post("/v1/activation-codes")


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
    assert haulmer_simpleboleta.onboarding_enablement_actions("tuu") is None


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


def test_declares_one_action_the_core_plans(plugins: Plugins) -> None:
    [action] = plugins.enablement_actions("simpleboleta")

    assert action.id == "activation_code"
    assert action.title == "Código de activación de SimpleBoleta"
    assert plugins.enablement_actions("tuu") == []


def test_activation_code_is_handed_to_the_customer(
    action: EnablementAction, http: httpx.Client, service: respx.MockRouter
) -> None:
    route = activation_codes(service).respond(201, json={"code": "SB-7K2P-Q9XM"})

    result = action.run(context(http))

    request = route.calls.last.request
    assert request.url.path == "/v1/activation-codes"
    assert json.loads(request.content) == {
        "rut": "76086428-5",
        "legal_name": "X SpA",
    }
    assert request.headers["Idempotency-Key"] == KEY
    assert request.headers["Authorization"] == "Bearer k"
    assert result.summary == (
        "Tu código de activación de SimpleBoleta es SB-7K2P-Q9XM. Ingrésalo en la "
        "aplicación para comenzar a emitir boletas."
    )
    assert result.data == {"activation_code": "SB-7K2P-Q9XM"}


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_a_refusal_is_permanent(
    action: EnablementAction,
    http: httpx.Client,
    service: respx.MockRouter,
    status: int,
) -> None:
    activation_codes(service).respond(status, json={"code": "refused"})

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
    activation_codes(service).respond(status)

    with pytest.raises(httpx.HTTPStatusError) as raised:
        action.run(context(http))

    assert is_transient(raised.value)


def test_a_timeout_is_transient(
    action: EnablementAction, http: httpx.Client, service: respx.MockRouter
) -> None:
    activation_codes(service).mock(side_effect=httpx.ReadTimeout)

    with pytest.raises(httpx.ReadTimeout) as raised:
        action.run(context(http))

    assert is_transient(raised.value)


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(201, text="<html>ok</html>"),
        httpx.Response(201, json=["SB-7K2P-Q9XM"]),
        httpx.Response(201, json={"activation_code": "SB-7K2P-Q9XM"}),
        httpx.Response(201, json={"code": 1234}),
        httpx.Response(201, json={"code": ""}),
    ],
)
def test_a_malformed_answer_fails_for_now(
    action: EnablementAction,
    http: httpx.Client,
    service: respx.MockRouter,
    answer: httpx.Response,
) -> None:
    activation_codes(service).mock(return_value=answer)

    with pytest.raises(ActionFailed) as raised:
        action.run(context(http))

    assert not raised.value.permanent
    assert is_transient(raised.value)


def test_sandbox_gives_the_same_code_for_the_same_idempotency_key(
    action: EnablementAction,
) -> None:
    [(code, routes)] = haulmer_simpleboleta.onboarding_sandbox_routes()
    assert code == "simpleboleta"
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
        other = action.run(context(http, key="OC-2:simpleboleta:activation_code"))

    assert again == first
    assert re.fullmatch(r"SB-[0-9A-F]{4}-[0-9A-F]{4}", first.data["activation_code"])
    assert other.data != first.data


def test_sandbox_routes_are_served_by_the_core(plugins: Plugins) -> None:
    assert list(plugins.sandbox_routes()) == ["simpleboleta"]


def test_a_failed_call_is_retried_with_the_same_key_then_succeeds(
    action: EnablementAction, http: httpx.Client, service: respx.MockRouter
) -> None:
    route = activation_codes(service)
    route.side_effect = [
        httpx.Response(503),
        httpx.ReadTimeout("slow"),
        httpx.Response(201, json={"code": "SB-7K2P-Q9XM"}),
    ]
    for _ in range(2):
        with pytest.raises(httpx.HTTPError) as raised:
            action.run(context(http))
        assert is_transient(raised.value)

    result = action.run(context(http))

    assert route.call_count == 3
    assert {call.request.headers["Idempotency-Key"] for call in route.calls} == {KEY}
    assert result.data == {"activation_code": "SB-7K2P-Q9XM"}
