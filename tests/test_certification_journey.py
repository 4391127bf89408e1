"""Certification as the customer lives it: a step that fails once, the
expected date in Chile's calendar, an operator alert when it is late."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime

import attrs
import httpx
import pytest

from haulmer_onboarding import (
    CertificationStatus,
    JourneyEvent,
    Onboarding,
    Plugins,
    Settings,
    Stage,
    hookimpl,
)
from haulmer_onboarding.business_days import SANTIAGO
from haulmer_onboarding.sandbox import create_sandbox_app
from haulmer_onboarding.testing.clock import MovableClock
from haulmer_onboarding.testing.customer import link_in
from haulmer_onboarding.testing.journey import JourneyWalker
from haulmer_onboarding.testing.scenarios import purchase_for
from haulmer_onboarding.testing.servers import RunningServer, serve_in_thread
from haulmer_onboarding.testing.signatures import make_pkcs12
from haulmer_onboarding.testing.smtp import SmtpCatcher
from haulmer_onboarding.web import create_app

BUYER = "ana@example.cl"
REASON = (
    "El SII rechazó el set de pruebas: la razón social de las facturas no "
    "coincide con la registrada. Revisa tus datos en el Espacio de trabajo."
)


class Watcher:
    def __init__(self) -> None:
        self.events: list[JourneyEvent] = []

    @hookimpl
    def onboarding_journey_event(self, event: JourneyEvent) -> None:
        self.events.append(event)


@pytest.fixture
def watcher() -> Watcher:
    return Watcher()


@pytest.fixture
def plugins(watcher: Watcher) -> Plugins:
    return Plugins(extra=[watcher])


@pytest.fixture
def retrying(plugins: Plugins) -> Iterator[RunningServer]:
    """The sandbox, failing "Set de pruebas" once, with the products' own
    services mounted beside it."""
    app = create_sandbox_app(
        seconds_per_business_day=3600.0,
        retry_steps={"set_pruebas": REASON},
        services=plugins.sandbox_routes(),
    )
    with serve_in_thread(app) as server:
        yield server


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
def facade(
    settings: Settings,
    plugins: Plugins,
    retrying: RunningServer,
    clock: MovableClock,
) -> Iterator[Onboarding]:
    onboarding = Onboarding(
        attrs.evolve(
            settings,
            clock=clock,
            certification_url=retrying.url,
            services={p: {"url": f"{retrying.url}/{p}"} for p in plugins.products},
        ),
        plugins=plugins,
    )
    onboarding.create_tables()
    yield onboarding
    onboarding.close()


def subjects(walker: JourneyWalker) -> list[str]:
    return [m.subject for m in walker.deliver()]


def test_a_step_that_fails_once_then_passes_emails_each_change_once(
    facade: Onboarding, catcher: SmtpCatcher, retrying: RunningServer
) -> None:
    walker = JourneyWalker(facade, catcher, retrying.url)
    journey = walker.to_enabled(purchase_for("simple", BUYER))
    assert journey.stage is Stage.ENABLED
    facade.poll_certifications()  # a late poll changes nothing

    sent = subjects(walker)
    name = "Ferretería Los Andes SpA"
    failed = [s for s in sent if "revisa la etapa Set de pruebas" in s]
    assert failed == [f"Certificación de {name}: revisa la etapa Set de pruebas"]
    failure = next(m for m in catcher.messages if m.subject == failed[0])
    assert REASON in failure.text()
    assert "La certificación sigue en curso" in failure.text()

    assert sum(s.startswith("Comenzó la certificación") for s in sent) == 1
    assert sent.count(f"¡{name} ya puede emitir documentos electrónicos!") == 1
    progress = [s for s in sent if s.startswith("Avance de la certificación")]
    steps_done = [step for s in progress for step in s.split(": ", 1)[1].split(", ")]
    assert sorted(steps_done) == sorted(
        [
            "Postulación",
            "Set de pruebas",
            "Simulación",
            "Intercambio de información",
            "Muestras impresas",
        ]
    )
    # The failure comes before the step's success, the verdict last.
    assert sent.index(failed[0]) < next(
        i for i, s in enumerate(sent) if "Set de pruebas" in s and "Avance" in s
    )

    assert facade.run_enablement_actions() == 1
    assert facade.run_enablement_actions() == 0
    (action,) = facade.enablement_actions(journey.id)
    assert action["state"] == "done"
    keys = [s for s in subjects(walker) if s.endswith(": API key de OpenFactura")]
    assert keys == [f"{name}: API key de OpenFactura"]
    kinds = [e.kind for e in facade.events(journey.id)]
    assert kinds.count("certification_step_failed") == 1
    assert kinds.count("organization_enabled") == 1


def test_the_friday_before_fiestas_patrias_gets_the_right_date(
    facade: Onboarding,
    catcher: SmtpCatcher,
    retrying: RunningServer,
    clock: MovableClock,
) -> None:
    # Friday 15 September 2028, 10:00 in Santiago. Monday 18 and Tuesday 19
    # are holidays: the 7 business days are 20, 21, 22, 25, 26, 27 and 28.
    clock.now = datetime(2028, 9, 15, 10, 0, tzinfo=SANTIAGO)
    walker = JourneyWalker(facade, catcher, retrying.url)
    pfx = make_pkcs12(
        password="x1",
        not_before=datetime(2028, 1, 1, tzinfo=SANTIAGO),
        not_after=datetime(2029, 1, 1, tzinfo=SANTIAGO),
    )
    _, setup = walker.to_signature(purchase_for("simple", BUYER), pfx, "x1")
    started = facade.choose_documents(setup, [33])

    assert started.certification is not None
    assert started.certification["expected_date"] == "2028-09-28"
    email = next(
        m for m in walker.deliver() if m.subject.startswith("Comenzó la certificación")
    )
    assert "estimamos terminar el jueves 28 de septiembre de 2028" in email.text()


def test_a_late_certification_warns_an_operator_once(
    facade: Onboarding,
    catcher: SmtpCatcher,
    retrying: RunningServer,
    clock: MovableClock,
    watcher: Watcher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    walker = JourneyWalker(facade, catcher, retrying.url)
    journey, setup = walker.to_signature(purchase_for("simpleboleta", BUYER))
    started = facade.choose_documents(setup, [39])
    assert started.certification is not None
    promised = started.certification["expected_date"]
    status_email = next(
        m for m in walker.deliver() if m.subject.startswith("Comenzó la certificación")
    )
    with serve_in_thread(create_app(facade)) as server:
        page = httpx.get(
            link_in(status_email, "VER AVANCE").replace(
                "http://127.0.0.1:9", server.url
            )
        )
    assert page.status_code == 200
    assert "Fecha estimada de término" in page.text

    facade.poll_certifications()
    assert "certification_overdue" not in [e.kind for e in watcher.events]
    clock.advance(days=12)
    with caplog.at_level(logging.WARNING, logger="haulmer_onboarding"):
        facade.poll_certifications()
        facade.poll_certifications()
    overdue = [e for e in watcher.events if e.kind == "certification_overdue"]
    assert len(overdue) == 1
    assert overdue[0].data == {"expected_date": promised}
    assert caplog.text.count("passed its expected date") == 1
    assert facade.journey(journey.id).stage is Stage.CERTIFYING


def certifying(
    facade: Onboarding, catcher: SmtpCatcher, url: str, scenario: str = "simpleboleta"
) -> tuple[JourneyWalker, int]:
    """A journey whose documents were just chosen."""
    walker = JourneyWalker(facade, catcher, url)
    journey, setup = walker.to_signature(purchase_for(scenario, BUYER))
    facade.choose_documents(setup, [39])
    return walker, journey.id


def status_of(
    journey: int, facade: Onboarding, states: dict[str, str], **extra: object
) -> CertificationStatus:
    current = facade.journey(journey).certification
    assert current is not None
    return CertificationStatus.from_dict(
        {
            "id": extra.get("id", current["id"]),
            "reference": extra.get("reference", facade.journey(journey).order_number),
            "state": extra.get("state", "running"),
            "steps": [
                {
                    **{k: s[k] for k in ("id", "title", "business_days")},
                    "state": states.get(s["id"], "pending"),
                    "message": "Motivo " + s["id"]
                    if states.get(s["id"]) == "failed"
                    else None,
                }
                for s in current["steps"]
            ],
        }
    )


def test_old_answers_and_second_pollers_change_nothing_twice(
    facade: Onboarding, catcher: SmtpCatcher, retrying: RunningServer
) -> None:
    walker, journey = certifying(facade, catcher, retrying.url)
    facade.poll_certifications()  # submitted
    newer = status_of(journey, facade, {"postulacion": "done", "set_boletas": "failed"})
    older = status_of(journey, facade, {"postulacion": "running"})

    assert facade._apply_status(journey, newer)
    assert not facade._apply_status(journey, newer)  # a second poller
    assert not facade._apply_status(journey, older)  # a late, older answer
    steps = facade.journey(journey).certification["steps"]  # type: ignore[index]
    assert steps[0]["state"] == "done"

    sent = subjects(walker)
    assert sum("revisa la etapa Set de pruebas de boletas" in s for s in sent) == 1
    assert sum(s.startswith("Avance de la certificación") for s in sent) == 1


def test_a_step_failing_twice_is_emailed_twice(
    facade: Onboarding, catcher: SmtpCatcher, retrying: RunningServer
) -> None:
    walker, journey = certifying(facade, catcher, retrying.url)
    facade.poll_certifications()
    for states in (
        {"postulacion": "failed"},
        {"postulacion": "running"},
        {"postulacion": "failed"},
    ):
        facade._apply_status(journey, status_of(journey, facade, states))
    failures = [s for s in subjects(walker) if "revisa la etapa Postulación" in s]
    assert len(failures) == 2


def test_answers_about_other_certifications_are_ignored(
    facade: Onboarding, catcher: SmtpCatcher, retrying: RunningServer
) -> None:
    _, journey = certifying(facade, catcher, retrying.url)
    facade.poll_certifications()
    all_done = {"postulacion": "done", "set_boletas": "done", "declaracion": "done"}
    for foreign in (
        status_of(journey, facade, all_done, state="approved", reference="OC-OTRA"),
        status_of(journey, facade, all_done, state="approved", id="cert_999"),
        status_of(journey, facade, {"postulacion": "done"}, state="approved"),
    ):
        facade._apply_status(journey, foreign)
    assert facade.journey(journey).stage is Stage.CERTIFYING


def test_a_refusal_from_the_service_fails_the_journey_with_its_reason(
    facade: Onboarding, catcher: SmtpCatcher, retrying: RunningServer
) -> None:
    walker, journey = certifying(facade, catcher, retrying.url)
    reason = "La firma no es de un usuario autorizado ante el SII."
    assert facade._reject_certification(journey, reason)
    assert facade.journey(journey).stage is Stage.CERTIFICATION_FAILED
    failed = next(m for m in walker.deliver() if "necesita tu atención" in m.subject)
    assert reason in failed.text()
    assert failed.message["Reply-To"]
    facade.poll_certifications()
    assert not facade._reject_certification(journey, reason)  # once
