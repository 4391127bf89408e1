"""Post-enablement actions against a real HTTP peer that fails on purpose."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import attrs
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from haulmer_onboarding import (
    ActionContext,
    ActionResult,
    CertificationStep,
    DtePolicy,
    EnablementAction,
    Onboarding,
    Plugins,
    Product,
    Purchase,
    PurchaseItem,
    Settings,
    Stage,
    hookimpl,
)
from haulmer_onboarding.actions import MAX_ATTEMPTS, backoff
from haulmer_onboarding.testing.clock import MovableClock
from haulmer_onboarding.testing.journey import JourneyWalker
from haulmer_onboarding.testing.servers import RunningServer, serve_in_thread
from haulmer_onboarding.testing.smtp import SmtpCatcher


class ProductService:
    """A product's service: answers 503 ``failures`` times, then 201; the
    same Idempotency-Key always gets the same key back."""

    def __init__(self, failures: int = 0, status: int = 503) -> None:
        self.failures = failures
        self.status = status
        self.calls: list[tuple[str, str]] = []
        self.issued: dict[str, str] = {}

    async def endpoint(self, request: Request) -> JSONResponse:
        key = request.headers["idempotency-key"]
        self.calls.append((key, request.headers.get("authorization", "")))
        if self.failures:
            self.failures -= 1
            return JSONResponse({"code": "busy"}, status_code=self.status)
        number = self.issued.setdefault(key, f"K-{len(self.issued) + 1}")
        return JSONResponse({"key": number}, status_code=201)


def issue_key(context: ActionContext) -> ActionResult:
    response = context.http.post(
        "/keys",
        json={"rut": context.rut},
        headers={"Idempotency-Key": context.idempotency_key},
    )
    response.raise_for_status()
    key = response.json()["key"]
    return ActionResult(summary=f"Tu clave es {key}.", data={"key": key})


class KeyProduct:
    """A small product plugin with one action."""

    @hookimpl
    def onboarding_products(self) -> Sequence[Product]:
        return [Product("llaves", "Llaves", {"KEY-1"})]

    @hookimpl
    def onboarding_dte_policy(self, product: str, purchase: Purchase) -> DtePolicy:
        return DtePolicy(required={33})

    @hookimpl
    def onboarding_certification_steps(
        self, product: str, documents: frozenset[int]
    ) -> Sequence[CertificationStep]:
        return [CertificationStep("postulacion", "Postulación", 1)]

    @hookimpl
    def onboarding_enablement_actions(self, product: str) -> Sequence[EnablementAction]:
        return [EnablementAction("key", "Clave de Llaves", issue_key)]


PURCHASE = Purchase(
    order_number="OC-KEY",
    email="ana@example.cl",
    buyer_name="Ana",
    items=[PurchaseItem("KEY-1", "Llaves")],
    legal_name="Llaves SpA",
    rut="76.086.428-5",
)


@pytest.fixture
def service() -> ProductService:
    return ProductService(failures=2)


@pytest.fixture
def service_server(service: ProductService) -> Iterator[RunningServer]:
    app = Starlette(routes=[Route("/keys", service.endpoint, methods=["POST"])])
    with serve_in_thread(app) as server:
        yield server


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
def keyed(
    settings: Settings, service_server: RunningServer, clock: MovableClock
) -> Iterator[Onboarding]:
    facade = Onboarding(
        attrs.evolve(
            settings,
            clock=clock,
            services={"llaves": {"url": service_server.url, "api_key": "s3cret"}},
        ),
        plugins=Plugins(load_entry_points=False, extra=[KeyProduct()]),
    )
    facade.create_tables()
    yield facade
    facade.close()


def test_an_action_that_fails_twice_then_succeeds_is_recorded_once(
    keyed: Onboarding,
    catcher: SmtpCatcher,
    sandbox: RunningServer,
    service: ProductService,
    clock: MovableClock,
) -> None:
    walker = JourneyWalker(keyed, catcher, sandbox.url)
    journey = walker.to_enabled(PURCHASE)
    assert journey.stage is Stage.ENABLED
    assert keyed.enablement_actions(journey.id)[0]["state"] == "pending"

    assert keyed.run_enablement_actions() == 0  # 503
    assert keyed.run_enablement_actions() == 0  # not due yet: nothing sent
    assert len(service.calls) == 1
    clock.advance(seconds=2)
    assert keyed.run_enablement_actions() == 0  # 503 again
    clock.advance(seconds=4)
    assert keyed.run_enablement_actions() == 1  # 201
    clock.advance(minutes=10)
    assert keyed.run_enablement_actions() == 0  # nothing left

    (action,) = keyed.enablement_actions(journey.id)
    assert action["state"] == "done"
    assert action["attempts"] == 3
    assert action["result"] == {"summary": "Tu clave es K-1.", "key": "K-1"}
    assert {key for key, _ in service.calls} == {"OC-KEY:llaves:key"}
    assert {auth for _, auth in service.calls} == {"Bearer s3cret"}
    emails = [m for m in walker.deliver() if m.subject.endswith(": Clave de Llaves")]
    assert len(emails) == 1
    assert "Tu clave es K-1." in emails[0].text()
    assert keyed.journey(journey.id).stage is Stage.ENABLED


def test_a_call_that_succeeded_before_a_crash_is_not_repeated(
    keyed: Onboarding,
    catcher: SmtpCatcher,
    sandbox: RunningServer,
    service: ProductService,
    clock: MovableClock,
) -> None:
    service.failures = 0
    walker = JourneyWalker(keyed, catcher, sandbox.url)
    journey = walker.to_enabled(PURCHASE)

    # A worker claims the action, gets its answer, and dies before recording.
    (claimed,) = keyed._claim_actions(10)
    keyed._run_action(claimed)
    assert keyed.run_enablement_actions() == 0  # still leased to the dead one
    clock.advance(minutes=6)
    assert keyed.run_enablement_actions() == 1

    (action,) = keyed.enablement_actions(journey.id)
    assert action["result"]["key"] == "K-1"  # the service's first answer
    assert len(service.issued) == 1
    emails = [m for m in walker.deliver() if m.subject.endswith(": Clave de Llaves")]
    assert len(emails) == 1


def test_a_refused_action_is_left_for_an_operator(
    keyed: Onboarding,
    catcher: SmtpCatcher,
    sandbox: RunningServer,
    service: ProductService,
    caplog: pytest.LogCaptureFixture,
) -> None:
    service.failures, service.status = 1, 422
    journey = JourneyWalker(keyed, catcher, sandbox.url).to_enabled(PURCHASE)
    with caplog.at_level(logging.WARNING, logger="haulmer_onboarding"):
        assert keyed.run_enablement_actions() == 0
    (action,) = keyed.enablement_actions(journey.id)
    assert action["state"] == "failed"
    assert action["attempts"] == 1
    assert "an operator must act" in caplog.text
    assert "s3cret" not in caplog.text
    assert keyed.journey(journey.id).stage is Stage.ENABLED


def test_an_unreachable_service_is_retried_until_it_gives_up(
    keyed: Onboarding,
    catcher: SmtpCatcher,
    sandbox: RunningServer,
    service_server: RunningServer,
    clock: MovableClock,
) -> None:
    journey = JourneyWalker(keyed, catcher, sandbox.url).to_enabled(PURCHASE)
    service_server.stop()
    waited = 0.0
    for attempt in range(1, MAX_ATTEMPTS + 1):
        keyed.run_enablement_actions()
        (action,) = keyed.enablement_actions(journey.id)
        if attempt < MAX_ATTEMPTS:
            assert action["state"] == "pending", attempt
        wait = backoff(attempt).total_seconds()
        waited += wait
        clock.advance(seconds=wait)
    (action,) = keyed.enablement_actions(journey.id)
    assert action["state"] == "failed"
    assert action["attempts"] == MAX_ATTEMPTS
    # Hours of trying, not minutes, before an operator is called.
    assert waited > 2 * 3600
