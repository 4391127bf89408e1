"""The certification client against the sandbox over real HTTP, and against
respx for the faults the sandbox cannot produce."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import respx

from haulmer_onboarding.certification import (
    CertificationClient,
    CertificationStatus,
    CertificationStep,
    StepStatus,
)
from haulmer_onboarding.errors import CertificationServiceError
from haulmer_onboarding.sandbox import create_sandbox_app
from haulmer_onboarding.testing.servers import RunningServer, free_port, serve_in_thread

STEPS = (
    CertificationStep("postulacion", "Postulación", 1),
    CertificationStep("set_pruebas", "Set de pruebas", 2),
    CertificationStep("simulacion", "Simulación", 1),
    CertificationStep("intercambio", "Intercambio de información", 1),
    CertificationStep("muestras_impresas", "Muestras impresas", 1),
    CertificationStep("declaracion", "Declaración de cumplimiento", 1),
)
STEP_IDS = [step.id for step in STEPS]

# One business day lasts ten fake seconds in these tests.
DAY = 10.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += seconds


def start_body(reference: str = "OC-1001", **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "reference": reference,
        "rut": "76123456-0",
        "legal_name": "Comercial Los Andes SpA",
        "documents": [33, 39],
        "steps": [step.as_dict() for step in STEPS],
        "signature_fingerprint": "ab:cd:ef",
    }
    body.update(changes)
    return body


def start(client: CertificationClient, reference: str = "OC-1001") -> Any:
    return client.start(
        reference=reference,
        rut="76123456-0",
        legal_name="Comercial Los Andes SpA",
        documents=[33, 39],
        steps=STEPS,
        signature_fingerprint="ab:cd:ef",
    )


def states(status: CertificationStatus) -> list[str]:
    return [step.state for step in status.steps]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def serve(clock: FakeClock) -> Iterator[Callable[..., RunningServer]]:
    """Start a sandbox on a real socket; every one started is stopped after."""
    running: list[RunningServer] = []

    def _serve(**options: Any) -> RunningServer:
        app = create_sandbox_app(seconds_per_business_day=DAY, clock=clock, **options)
        server = serve_in_thread(app)
        running.append(server)
        return server

    yield _serve
    for server in running:
        server.stop()


@pytest.fixture
def sandbox(serve: Callable[..., RunningServer]) -> RunningServer:
    return serve()


@pytest.fixture
def client(sandbox: RunningServer) -> Iterator[CertificationClient]:
    with CertificationClient(sandbox.url, api_key="sk_test_123") as client:
        yield client


# -- the models ---------------------------------------------------------------


def test_step_round_trips_through_a_dict() -> None:
    step = CertificationStep("simulacion", "Simulación", 1)

    assert step.as_dict() == {
        "id": "simulacion",
        "title": "Simulación",
        "business_days": 1,
    }
    assert CertificationStep.from_dict(step.as_dict()) == step


@pytest.mark.parametrize(
    "data",
    [
        {"id": "x", "title": "X"},
        {"id": "x", "title": "X", "business_days": "1"},
        {"id": "x", "title": "X", "business_days": True},
        {"id": "x", "title": "X", "business_days": -1},
        {"id": "", "title": "X", "business_days": 1},
    ],
)
def test_step_from_a_bad_dict_is_refused(data: dict[str, Any]) -> None:
    with pytest.raises((KeyError, TypeError, ValueError)):
        CertificationStep.from_dict(data)


def test_status_properties_follow_the_steps() -> None:
    status = CertificationStatus(
        id="cert_1",
        reference="OC-1",
        state="running",
        steps=(
            StepStatus("a", "A", 1, "done"),
            StepStatus("b", "B", 2, "done"),
            StepStatus("c", "C", 1, "running"),
            StepStatus("d", "D", 1, "pending"),
        ),
    )

    assert status.done_count == 2
    assert status.progress == 0.5
    assert status.current_step is not None
    assert status.current_step.id == "c"
    assert CertificationStatus.from_dict(status.as_dict()) == status


def test_status_of_an_approved_certification_has_no_current_step() -> None:
    status = CertificationStatus(
        id="cert_1",
        reference="OC-1",
        state="approved",
        steps=(StepStatus("a", "A", 1, "done"),),
    )

    assert status.current_step is None
    assert status.progress == 1.0


def test_status_refuses_an_unknown_state() -> None:
    with pytest.raises(ValueError, match="state"):
        StepStatus("a", "A", 1, "finished")


# -- against the sandbox, over HTTP ---------------------------------------------


def test_health(sandbox: RunningServer) -> None:
    response = httpx.get(f"{sandbox.url}/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_start_returns_a_running_certification(client: CertificationClient) -> None:
    status = start(client)

    assert status.id.startswith("cert_")
    assert status.reference == "OC-1001"
    assert status.state == "running"
    assert [step.id for step in status.steps] == STEP_IDS
    assert [step.title for step in status.steps][1] == "Set de pruebas"
    assert states(status) == ["running"] + ["pending"] * 5
    assert status.progress == 0.0


def test_steps_advance_with_the_clock(
    client: CertificationClient, clock: FakeClock
) -> None:
    certification_id = start(client).id

    clock.tick(DAY - 0.5)
    assert states(client.status(certification_id))[:2] == ["running", "pending"]

    # Postulación takes one business day, the set de pruebas two more.
    clock.tick(0.5)
    status = client.status(certification_id)
    assert states(status)[:3] == ["done", "running", "pending"]
    assert status.current_step is not None
    assert status.current_step.id == "set_pruebas"

    clock.tick(2 * DAY - 0.5)
    assert client.status(certification_id).done_count == 1
    clock.tick(0.5)
    assert client.status(certification_id).done_count == 2

    clock.tick(3 * DAY)
    status = client.status(certification_id)
    assert states(status) == ["done"] * 5 + ["running"]
    assert status.state == "running"
    assert status.progress == pytest.approx(5 / 6)

    clock.tick(DAY)
    status = client.status(certification_id)
    assert status.state == "approved"
    assert status.progress == 1.0
    assert status.current_step is None


def test_advance_ends_the_running_step_now(
    sandbox: RunningServer, client: CertificationClient, clock: FakeClock
) -> None:
    certification_id = start(client).id
    advance_url = f"{sandbox.url}/v1/certifications/{certification_id}/advance"

    clock.tick(DAY + 1)  # postulación done, set de pruebas running
    response = httpx.post(advance_url)
    assert response.status_code == 200
    assert [s["state"] for s in response.json()["steps"]][:3] == [
        "done",
        "done",
        "running",
    ]

    # The simulación's day counts from the advance, not from the start.
    clock.tick(DAY - 1)
    assert client.status(certification_id).done_count == 2
    clock.tick(1)
    assert client.status(certification_id).done_count == 3

    for _ in range(3):
        assert httpx.post(advance_url).status_code == 200
    assert client.status(certification_id).state == "approved"

    finished = httpx.post(advance_url)
    assert finished.status_code == 409
    assert finished.json()["code"] == "finished"


def test_a_failing_step_fails_the_certification(
    serve: Callable[..., RunningServer], clock: FakeClock
) -> None:
    message = "Revisa que la razón social coincida con la registrada en el SII."
    sandbox = serve(fail_steps={"set_pruebas": message})

    with CertificationClient(sandbox.url) as client:
        certification_id = start(client).id

        clock.tick(3 * DAY - 1)  # the set de pruebas is still on its turn
        assert client.status(certification_id).state == "running"

        clock.tick(1)
        status = client.status(certification_id)
        assert status.state == "failed"
        assert states(status) == ["done", "failed"] + ["pending"] * 4
        assert status.current_step is not None
        assert status.current_step.id == "set_pruebas"
        assert status.current_step.message == message
        assert status.steps[0].message is None

        # Time does not move a failed certification any further.
        clock.tick(100 * DAY)
        assert client.status(certification_id) == status

    advance = httpx.post(f"{sandbox.url}/v1/certifications/{certification_id}/advance")
    assert advance.status_code == 409


def test_advance_into_a_failing_step_fails_it(
    serve: Callable[..., RunningServer],
) -> None:
    sandbox = serve(fail_steps={"postulacion": "Firma de un usuario no autorizado."})

    with CertificationClient(sandbox.url) as client:
        certification_id = start(client).id
        url = f"{sandbox.url}/v1/certifications/{certification_id}/advance"

        response = httpx.post(url)

        assert response.status_code == 200
        assert response.json()["state"] == "failed"
        status = client.status(certification_id)
        assert states(status) == ["failed"] + ["pending"] * 5
        assert status.steps[0].message == "Firma de un usuario no autorizado."


def test_start_is_idempotent_by_reference(
    sandbox: RunningServer, client: CertificationClient, clock: FakeClock
) -> None:
    first = start(client, "OC-7")
    clock.tick(DAY)

    again = start(client, "OC-7")
    other = start(client, "OC-8")

    assert again.id == first.id
    assert again.done_count == 1  # the existing one, as it stands now
    assert other.id != first.id

    created = httpx.post(f"{sandbox.url}/v1/certifications", json=start_body("OC-9"))
    repeated = httpx.post(f"{sandbox.url}/v1/certifications", json=start_body("OC-9"))
    assert (created.status_code, repeated.status_code) == (201, 200)
    assert created.json()["id"] == repeated.json()["id"]


def test_unknown_certification_is_a_404(
    sandbox: RunningServer, client: CertificationClient
) -> None:
    response = httpx.get(f"{sandbox.url}/v1/certifications/cert_nope")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"

    with pytest.raises(CertificationServiceError) as caught:
        client.status("cert_nope")
    assert caught.value.code == "certification_rejected"
    assert caught.value.message == "No encontramos esa certificación."

    advance = httpx.post(f"{sandbox.url}/v1/certifications/cert_nope/advance")
    assert advance.status_code == 404


def test_unknown_route_answers_json(sandbox: RunningServer) -> None:
    response = httpx.get(f"{sandbox.url}/v2/nothing")

    assert response.status_code == 404
    assert response.json()["code"] == "http_error"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"reference": ""}, "reference"),
        ({"rut": None}, "rut"),
        ({"legal_name": 5}, "legal_name"),
        ({"signature_fingerprint": "  "}, "signature_fingerprint"),
        ({"documents": []}, "documents"),
        ({"documents": [33, "39"]}, "documents"),
        ({"documents": [True]}, "documents"),
        ({"documents": 33}, "documents"),
        ({"steps": []}, "steps"),
        ({"steps": [{"id": "a", "title": "A"}]}, "steps"),
        ({"steps": ["postulacion"]}, "steps"),
        (
            {"steps": [{"id": "a", "title": "A", "business_days": 1}] * 2},
            "steps",
        ),
    ],
)
def test_a_bad_body_is_a_422(
    sandbox: RunningServer, changes: dict[str, Any], field: str
) -> None:
    response = httpx.post(
        f"{sandbox.url}/v1/certifications", json=start_body(**changes)
    )

    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "invalid_body"
    assert body["field"] == field
    assert body["message"]


def test_a_missing_field_is_a_422(sandbox: RunningServer) -> None:
    body = start_body()
    del body["legal_name"]

    response = httpx.post(f"{sandbox.url}/v1/certifications", json=body)

    assert response.status_code == 422
    assert response.json()["field"] == "legal_name"


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]"])
def test_a_body_that_is_no_object_is_a_422(
    sandbox: RunningServer, content: bytes
) -> None:
    response = httpx.post(
        f"{sandbox.url}/v1/certifications",
        content=content,
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 422
    assert response.json()["code"] in {"invalid_json", "invalid_body"}


def test_a_mismatched_idempotency_key_is_a_422(sandbox: RunningServer) -> None:
    response = httpx.post(
        f"{sandbox.url}/v1/certifications",
        json=start_body("OC-1"),
        headers={"Idempotency-Key": "OC-2"},
    )

    assert response.status_code == 422
    assert response.json()["code"] == "idempotency_key_mismatch"


def test_the_client_reports_a_422_as_rejected(client: CertificationClient) -> None:
    with pytest.raises(CertificationServiceError) as caught:
        client.start(
            reference="OC-1",
            rut="76123456-0",
            legal_name="Comercial Los Andes SpA",
            documents=[],
            steps=STEPS,
            signature_fingerprint="ab:cd:ef",
        )

    assert caught.value.code == "certification_rejected"
    assert caught.value.field == "documents"
    assert "tipo de documento" in caught.value.message


def test_nothing_listening_is_unavailable() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    with (
        CertificationClient(url, retries=1, backoff=0) as client,
        pytest.raises(CertificationServiceError) as caught,
    ):
        client.status("cert_1")

    assert caught.value.code == "certification_unavailable"
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


# -- faults the sandbox cannot produce, through respx ---------------------------

BASE = "https://certification.test"


def status_json(state: str = "running") -> dict[str, Any]:
    return {
        "id": "cert_1",
        "reference": "OC-1",
        "state": state,
        "steps": [
            {
                "id": "postulacion",
                "title": "Postulación",
                "business_days": 1,
                "state": "running",
                "message": None,
            }
        ],
    }


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=True) as router:
        yield router


def test_start_sends_the_contract(mock: respx.MockRouter) -> None:
    route = mock.post("/v1/certifications").respond(201, json=status_json())

    with CertificationClient(BASE, api_key="sk_live_secret") as client:
        status = start(client, "OC-1")

    assert status.reference == "OC-1"
    request = route.calls.last.request
    assert request.headers["Idempotency-Key"] == "OC-1"
    assert request.headers["Authorization"] == "Bearer sk_live_secret"
    sent = httpx.Response(200, content=request.content).json()
    assert sent == start_body("OC-1")


def test_the_api_key_never_reaches_the_log(
    mock: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    mock.post("/v1/certifications").respond(201, json=status_json())
    mock.get("/v1/certifications/cert_1").respond(503)
    caplog.set_level(logging.DEBUG)

    with CertificationClient(
        BASE, api_key="sk_live_secret", retries=1, backoff=0
    ) as client:
        start(client, "OC-1")
        with pytest.raises(CertificationServiceError):
            client.status("cert_1")

    assert "certification cert_1 for reference OC-1 is running" in caplog.text
    assert "unavailable" in caplog.text
    assert "sk_live_secret" not in caplog.text
    assert "ab:cd:ef" not in caplog.text


def test_a_timeout_is_unavailable_after_the_retries(mock: respx.MockRouter) -> None:
    route = mock.get("/v1/certifications/cert_1").mock(
        side_effect=httpx.ReadTimeout("too slow")
    )

    with (
        CertificationClient(BASE, retries=2, backoff=0) as client,
        pytest.raises(CertificationServiceError) as caught,
    ):
        client.status("cert_1")

    assert caught.value.code == "certification_unavailable"
    assert route.call_count == 3


def test_a_500_then_success_is_retried(mock: respx.MockRouter) -> None:
    route = mock.get("/v1/certifications/cert_1").mock(
        side_effect=[httpx.Response(500), httpx.Response(200, json=status_json())]
    )

    with CertificationClient(BASE, backoff=0) as client:
        status = client.status("cert_1")

    assert status.id == "cert_1"
    assert status.current_step == StepStatus("postulacion", "Postulación", 1, "running")
    assert route.call_count == 2


def test_start_is_retried_after_a_502(mock: respx.MockRouter) -> None:
    route = mock.post("/v1/certifications").mock(
        side_effect=[httpx.Response(502), httpx.Response(200, json=status_json())]
    )

    with CertificationClient(BASE, backoff=0) as client:
        assert start(client, "OC-1").id == "cert_1"

    keys = [call.request.headers["Idempotency-Key"] for call in route.calls]
    assert keys == ["OC-1", "OC-1"]


def test_a_503_always_is_unavailable(mock: respx.MockRouter) -> None:
    route = mock.get("/v1/certifications/cert_1").respond(503)

    with (
        CertificationClient(BASE, retries=2, backoff=0) as client,
        pytest.raises(CertificationServiceError) as caught,
    ):
        client.status("cert_1")

    assert caught.value.code == "certification_unavailable"
    assert "no está disponible" in caught.value.message
    assert route.call_count == 3


def test_no_retries_means_one_call(mock: respx.MockRouter) -> None:
    route = mock.get("/v1/certifications/cert_1").respond(503)

    with (
        CertificationClient(BASE, retries=0) as client,
        pytest.raises(CertificationServiceError),
    ):
        client.status("cert_1")

    assert route.call_count == 1


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, content=b"{not json"),
        httpx.Response(200, json=["a", "list"]),
        httpx.Response(200, json={"id": "cert_1"}),
        httpx.Response(200, json={**status_json(), "state": "paused"}),
        httpx.Response(200, json={**status_json(), "steps": "none"}),
    ],
    ids=["not-json", "not-an-object", "missing-fields", "bad-state", "bad-steps"],
)
def test_a_malformed_answer_is_unavailable(
    mock: respx.MockRouter, response: httpx.Response
) -> None:
    route = mock.get("/v1/certifications/cert_1").mock(return_value=response)

    with (
        CertificationClient(BASE, backoff=0) as client,
        pytest.raises(CertificationServiceError) as caught,
    ):
        client.status("cert_1")

    assert caught.value.code == "certification_unavailable"
    assert route.call_count == 1


def test_a_4xx_is_rejected_with_the_server_message(mock: respx.MockRouter) -> None:
    route = mock.post("/v1/certifications").respond(
        409,
        json={
            "code": "signature_not_authorized",
            "message": "La firma no es de un usuario autorizado ante el SII.",
            "field": "signature_fingerprint",
        },
    )

    with (
        CertificationClient(BASE, backoff=0) as client,
        pytest.raises(CertificationServiceError) as caught,
    ):
        start(client, "OC-1")

    assert caught.value.code == "certification_rejected"
    assert caught.value.message == (
        "La firma no es de un usuario autorizado ante el SII."
    )
    assert caught.value.field == "signature_fingerprint"
    assert route.call_count == 1  # a refusal is not retried


def test_a_4xx_without_a_message_gets_a_spanish_one(mock: respx.MockRouter) -> None:
    mock.get("/v1/certifications/cert_1").respond(401, text="Unauthorized")

    with (
        CertificationClient(BASE) as client,
        pytest.raises(CertificationServiceError) as caught,
    ):
        client.status("cert_1")

    assert caught.value.code == "certification_rejected"
    assert caught.value.message == (
        "El servicio de certificación rechazó la solicitud. Contacta a soporte."
    )
    assert caught.value.field is None


def test_the_id_is_escaped_in_the_path(mock: respx.MockRouter) -> None:
    route = mock.get("/v1/certifications/a%2F..%2Fb").respond(200, json=status_json())

    with CertificationClient(BASE) as client:
        client.status("a/../b")

    assert route.call_count == 1


@pytest.mark.parametrize("status_code", [408, 429])
def test_too_busy_is_tried_again_not_a_refusal(
    mock: respx.MockRouter, status_code: int
) -> None:
    route = mock.get("/v1/certifications/cert_1").mock(
        side_effect=[
            httpx.Response(status_code),
            httpx.Response(200, json=status_json()),
        ]
    )

    with CertificationClient(BASE, backoff=0) as client:
        assert client.status("cert_1").id == "cert_1"
    assert route.call_count == 2
