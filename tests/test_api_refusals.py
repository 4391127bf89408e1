"""What the JSON API refuses, over real HTTP: bodies that are not JSON text,
invisible characters, a bad link whatever the body, a step before its turn
whatever its fields, the organization step's mixed or repeated choices, and
what a 413 or a 429 says. Every refusal changes nothing."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import httpx
import pytest

from haulmer_onboarding import Onboarding, Settings, Stage
from haulmer_onboarding.signatures import format_size
from haulmer_onboarding.testing.clock import MovableClock
from haulmer_onboarding.testing.customer import WebCustomer, link_in
from haulmer_onboarding.testing.scenarios import purchase_for
from haulmer_onboarding.testing.servers import free_port, serve_in_thread
from haulmer_onboarding.testing.signatures import make_pkcs12
from haulmer_onboarding.testing.smtp import SmtpCatcher
from haulmer_onboarding.web import create_app
from haulmer_onboarding.web.limits import api_body_limit

BUYER = "compras@ferreteria-los-andes.cl"
GOOD = "Cordillera2026"
PASSWORD = "[Haulmer Accounts] Crea tu nueva contraseña"
WORKSPACE = "[Workspace] Crea tu nuevo espacio de trabajo"
SETUP = "¡Habilita tu organización para emitir documentos!"
TAX = "¿Boleta o factura?"
REP = "12.345.678-5"


@attrs.define
class Api:
    onboarding: Onboarding
    catcher: SmtpCatcher
    clock: MovableClock
    url: str
    http: httpx.Client

    def token(self, subject: str, button: str, to: str = BUYER) -> str:
        """The token of the newest email ``subject`` to ``to``."""
        self.onboarding.process_password_requests()
        self.onboarding.relay().deliver_pending()
        found = [
            m
            for m in self.catcher.messages
            if m.subject.startswith(subject) and to in m.rcpt_tos
        ]
        assert found, f"no email {subject!r}"
        return link_in(found[-1], button).rsplit("/", 1)[1]

    def post(self, path: str, token: str | None, body: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if isinstance(body, bytes):
            headers["Content-Type"] = "application/json"
            return self.http.post(path, headers=headers, content=body)
        return self.http.post(path, headers=headers, json=body)

    def set_password(self) -> None:
        token = self.token(PASSWORD, "CREAR CONTRASEÑA")
        done = self.post("/password", token, {"password": GOOD, "confirmation": GOOD})
        assert done.status_code == 200, done.text

    def stage(self, order_number: str) -> Stage:
        return self.onboarding.journey_by_order(order_number).stage


@contextmanager
def served(settings: Settings, catcher: SmtpCatcher, **changes: Any) -> Iterator[Api]:
    """The app served over HTTP on its own port, with a clock that moves only
    when told, and a client for its API."""
    port = free_port()
    clock = MovableClock()
    facade = Onboarding(
        attrs.evolve(
            settings, base_url=f"http://127.0.0.1:{port}", clock=clock, **changes
        )
    )
    facade.create_tables()
    with (
        serve_in_thread(create_app(facade), port=port) as server,
        httpx.Client(base_url=server.url + "/api/v1", timeout=30) as http,
    ):
        yield Api(facade, catcher, clock, server.url, http)
    facade.close()


@pytest.fixture
def api(settings: Settings, catcher: SmtpCatcher) -> Iterator[Api]:
    with served(settings, catcher) as running:
        yield running


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error: dict[str, Any] = response.json()["error"]
    return error


# -- bodies that are JSON but not text, or nested past any use -----------------


def test_deep_nesting_and_lone_surrogates_are_invalid_json(api: Api) -> None:
    api.onboarding.record_purchase(purchase_for("simple", BUYER, "OC-1"))
    token = api.token(PASSWORD, "CREAR CONTRASEÑA")
    deep = b'{"password": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    lone = f'"{GOOD}\\ud800"'.encode()
    for body in [
        deep,
        b'{"password": ' + lone + b', "confirmation": ' + lone + b"}",
        b'{"password": "' + GOOD.encode() + b'", "\\udfff": 1}',
        b'{"password": {"confirmation": ["\\ud83d"]}}',
    ]:
        error = error_of(api.post("/password", token, body), 400)
        assert error["code"] == "json_invalid"
        assert "JSON" in error["message"]
        assert error["field"] is None
    assert api.onboarding.verify_password(BUYER, GOOD) is False
    assert api.http.get("/password", headers={"Authorization": f"Bearer {token}"})

    # Also where no link is needed, and in every other text field.
    email = b'{"email": "compras\\ud800@ferreteria-los-andes.cl"}'
    assert error_of(api.post("/password-requests", None, email), 400)["code"] == (
        "json_invalid"
    )
    # An escaped pair is one ordinary character, not a lone surrogate.
    pair = b'{"email": "compras\\ud83d\\ude00@ferreteria-los-andes.cl"}'
    assert error_of(api.post("/password-requests", None, pair), 400)["code"] == (
        "email_invalid"
    )


# -- a bad link answers as a bad link, whatever comes with it -------------------


def test_a_bad_link_is_told_before_the_body_is_read(api: Api) -> None:
    api.onboarding.record_purchase(purchase_for("razon-social", BUYER, "OC-1"))
    password = api.token(PASSWORD, "CREAR CONTRASEÑA")
    workspace = api.token(WORKSPACE, "CREAR WORKSPACE")
    api.set_password()
    limit = api_body_limit(api.onboarding.settings.signature_max_bytes)
    bodies: list[Any] = [
        b"{",
        b"[" * 100_000,
        b'{"password": "\\ud800"}',
        {"password": 12345678},
        b'{"email": "' + b"x" * (limit + 1) + b'"}',
    ]
    for body in bodies:
        used = api.post("/password", password, body)
        assert error_of(used, 410)["code"] == "link_used"
        forged = api.post("/workspace/name", "abc.def", body)
        assert error_of(forged, 404)["code"] == "link_invalid"
        wrong = api.post("/setup/organization", workspace, body)
        assert error_of(wrong, 404)["code"] == "link_wrong_purpose"
        renewal = api.post("/link-renewals", "abc.def", body)
        assert error_of(renewal, 404)["code"] == "link_invalid"
    # Not even the content type is looked at behind a dead link.
    text = api.http.post(
        "/password",
        headers={"Authorization": f"Bearer {password}", "Content-Type": "text/plain"},
        content=b"hola",
    )
    assert error_of(text, 410)["code"] == "link_used"

    # An expired link is told as expired, and can still be renewed.
    api.clock.advance(days=15)
    expired = api.post("/workspace/activate", workspace, b"[")
    assert error_of(expired, 410)["code"] == "link_expired"
    assert api.stage("OC-1") is Stage.WORKSPACE_PENDING
    renewed = api.post("/link-renewals", workspace, {"purpose": "create_workspace"})
    assert renewed.status_code == 202, renewed.text


# -- invisible and control characters --------------------------------------------


def test_control_and_bidi_characters_are_refused_in_every_text_field(
    api: Api,
) -> None:
    api.onboarding.record_purchase(purchase_for("razon-social", BUYER, "OC-1"))
    password = api.token(PASSWORD, "CREAR CONTRASEÑA")
    nul = GOOD + "\x00"
    refused = api.post("/password", password, {"password": nul, "confirmation": nul})
    error = error_of(refused, 400)
    assert (error["code"], error["field"]) == ("password_invalid_character", "password")
    assert "U+0000" in error["message"]
    assert api.onboarding.verify_password(BUYER, nul) is False
    assert api.onboarding.journey_by_order("OC-1").buyer.has_password is False
    api.set_password()

    wizard = api.token(WORKSPACE, "CREAR WORKSPACE")
    api.post("/workspace/activate", wizard, {})
    for path, body, field, said in [
        (
            "/workspace/administrator",
            {"name": "Camila\tRojas", "email": BUYER},
            "name",
            "tabulación",
        ),
        (
            "/workspace/administrator",
            {"name": "Camila\u2028Rojas", "email": BUYER},
            "name",
            "salto de línea",
        ),
        (
            "/workspace/administrator",
            {"name": "Camila\u200bRojas", "email": BUYER},
            "name",
            "U+200B",
        ),
    ]:
        error = error_of(api.post(path, wizard, body), 400)
        assert (error["code"], error["field"]) == (f"{field}_invalid_character", field)
        assert said in error["message"]
        assert api.stage("OC-1") is Stage.WORKSPACE_ACTIVATED
    # Ordinary spaces, no-break spaces among them, are fine.
    named = api.post(
        "/workspace/administrator",
        wizard,
        {"name": "  Camila\u00a0 Rojas ", "email": BUYER},
    )
    assert named.status_code == 200, named.text
    for name in ("Rojas\u202eApS", "Rojas\nSpA", "Rojas\x1bSpA", "\ufeffRojas"):
        error = error_of(
            api.post("/workspace/name", wizard, {"workspace_name": name}), 400
        )
        assert error["code"] == "workspace_name_invalid_character"
        assert error["message"].startswith("El nombre del espacio de trabajo tiene ")
    assert api.stage("OC-1") is Stage.WORKSPACE_ADMIN_CREATED
    api.post("/workspace/name", wizard, {"workspace_name": "Rojas"})
    bidi = {"legal_name": "Rojas \u202eApS", "rut": "76.543.210-3"}
    error = error_of(api.post("/workspace/organization", wizard, bidi), 400)
    assert (error["code"], error["field"]) == (
        "legal_name_invalid_character",
        "legal_name",
    )
    assert "U+202E" in error["message"]
    assert api.stage("OC-1") is Stage.WORKSPACE_NAMED
    workspace = api.onboarding.journey_by_order("OC-1").workspace
    assert workspace is not None
    assert (workspace.name, workspace.organizations) == ("Rojas", ())

    tax = api.token(TAX, "SOLICITAR DOCUMENTO")
    company = {
        "kind": "factura",
        "legal_name": "Ferretería Los Andes SpA",
        "rut": "76.086.428-5",
        "business_activity": "Ferretería",
        "address": "Av. Los Andes 123\r\nSantiago",
    }
    error = error_of(api.post("/tax-document", tax, company), 400)
    assert (error["code"], error["field"]) == ("address_invalid_character", "address")
    assert api.onboarding.journey_by_order("OC-1").tax_document is None


# -- the organization step -------------------------------------------------------


def test_the_organization_step_refuses_mixed_typed_and_repeated_choices(
    api: Api,
) -> None:
    api.onboarding.record_purchase(purchase_for("simple", BUYER, "OC-1"))
    api.set_password()
    setup = api.token(SETUP, "INICIAR SETUP")
    api.post("/setup/start", setup, {})
    workspace = api.onboarding.journey_by_order("OC-1").workspace
    assert workspace is not None
    (existing,) = workspace.organizations

    for body, status, code, field in [
        (
            {"organization_id": existing.id, "legal_name": "Otra SpA", "rut": "1-9"},
            400,
            "json_fields_exclusive",
            "organization_id",
        ),
        (
            {"organization_id": existing.id, "rut": ""},
            400,
            "json_fields_exclusive",
            "organization_id",
        ),
        (
            {"organization_id": str(existing.id)},
            400,
            "json_field_type",
            "organization_id",
        ),
        ({"organization_id": True}, 400, "json_field_type", "organization_id"),
        ({"organization_id": 1.5}, 400, "json_field_type", "organization_id"),
        ({"organization_id": 999_999}, 400, "organization_unknown", "organization_id"),
        (
            # The RUT the workspace already has, spelled another way.
            {"legal_name": "Ferretería Los Andes Limitada", "rut": "76086428-5"},
            400,
            "organization_exists",
            "rut",
        ),
    ]:
        error = error_of(api.post("/setup/organization", setup, body), status)
        assert (error["code"], error["field"]) == (code, field), body
        journey = api.onboarding.journey_by_order("OC-1")
        assert journey.stage is Stage.SETUP_STARTED
        assert journey.workspace == workspace
    exists = api.post(
        "/setup/organization", setup, {"legal_name": "Otra", "rut": "76.086.428-5"}
    )
    message = error_of(exists, 400)["message"]
    assert "76.086.428-5" in message
    assert "Ferretería Los Andes SpA" in message
    assert "elígela" in message

    # null is a field left out: the choice is then not mixed.
    chosen = api.post(
        "/setup/organization",
        setup,
        {"organization_id": existing.id, "legal_name": None, "rut": None},
    )
    assert chosen.status_code == 200, chosen.text
    assert chosen.json()["journey"]["organization"]["id"] == existing.id


# -- the order of checks -----------------------------------------------------------


def test_a_step_before_its_turn_is_told_so_whatever_its_fields(api: Api) -> None:
    api.onboarding.record_purchase(purchase_for("razon-social", BUYER, "OC-1"))
    wizard = api.token(WORKSPACE, "CREAR WORKSPACE")
    # Before the password: the password comes first, whatever the fields.
    early = api.post("/workspace/organization", wizard, {"rut": "1-1"})
    assert error_of(early, 409)["code"] == "password_required"
    api.set_password()
    for path, body in [
        ("/workspace/administrator", {"name": "", "email": "no es correo"}),
        ("/workspace/name", {"workspace_name": 42}),
        ("/workspace/name", {"workspace_name": "Rojas\x00"}),
        ("/workspace/organization", {"legal_name": "", "rut": "76.543.210-4"}),
    ]:
        error = error_of(api.post(path, wizard, body), 409)
        assert error["code"] == "step_order", path
        assert "Completa primero los pasos anteriores" in error["message"]
        assert api.stage("OC-1") is Stage.WORKSPACE_PENDING

    api.post("/workspace/activate", wizard, {})
    api.post("/workspace/administrator", wizard, {"name": "Camila", "email": BUYER})
    api.post("/workspace/name", wizard, {"workspace_name": "Rojas"})
    api.post(
        "/workspace/organization",
        wizard,
        {"legal_name": "Rojas SpA", "rut": "76.543.210-3"},
    )
    setup = api.token(SETUP, "INICIAR SETUP")
    for path, body in [
        ("/setup/organization", {"organization_id": "uno", "rut": "x"}),
        ("/setup/signature", {"legal_representative_rut": "1-1", "signature": "*"}),
        ("/setup/documents", {"documents": "33"}),
    ]:
        error = error_of(api.post(path, setup, body), 409)
        assert error["code"] == "step_order", path
        assert api.stage("OC-1") is Stage.SETUP_PENDING
    api.post("/setup/start", setup, {})
    pfx = make_pkcs12(password="buena")
    for path, body in [
        ("/setup/signature", {"legal_representative_rut": "1-1", "signature": "*"}),
        ("/setup/signature", {"legal_representative_rut": REP, "signature": pfx.hex()}),
        ("/setup/documents", {"documents": ["abc"]}),
    ]:
        error = error_of(api.post(path, setup, body), 409)
        assert error["code"] == "step_order", path
        assert api.stage("OC-1") is Stage.SETUP_STARTED


# -- what a 413 and a 429 say ------------------------------------------------------


def test_an_oversized_body_is_told_the_limit_of_its_endpoint(api: Api) -> None:
    api.onboarding.record_purchase(purchase_for("simple", BUYER, "OC-1"))
    password = api.token(PASSWORD, "CREAR CONTRASEÑA")
    limit = api_body_limit(api.onboarding.settings.signature_max_bytes)

    def sized(size: int) -> bytes:
        padding = size - len(b'{"email": ""}')
        return b'{"email": "' + b"x" * padding + b'"}'

    # The limit the message gives is the one enforced.
    assert error_of(api.post("/password-requests", None, sized(limit)), 400)
    for path, token in [("/password-requests", None), ("/password", password)]:
        error = error_of(api.post(path, token, sized(limit + 1)), 413)
        assert error["code"] == "request_too_large"
        assert error["field"] is None
        assert error["message"] == (
            "La solicitud es demasiado grande: el máximo es "
            f"{format_size(limit)}. Esta acción solo recibe unos pocos campos "
            "de texto."
        )
    assert api.onboarding.verify_password(BUYER, GOOD) is False

    api.set_password()
    setup = api.token(SETUP, "INICIAR SETUP")
    api.post("/setup/start", setup, {})
    api.post("/setup/organization", setup, {"legal_name": "Otra SpA", "rut": "1-9"})
    file_limit = api.onboarding.settings.signature_max_bytes
    body = {"legal_representative_rut": REP, "signature": "A" * limit}
    error = error_of(api.post("/setup/signature", setup, body), 413)
    assert (error["code"], error["field"]) == ("request_too_large", "signature")
    assert error["message"].startswith(
        f"El archivo es demasiado grande: el máximo es {format_size(file_limit)}."
    )
    assert format_size(file_limit) == "1 MB"


def waits(message: str) -> str:
    found = re.search(r"Vuelve a intentarlo en (.+)\.$", message)
    assert found, message
    return found.group(1)


def test_a_429_says_the_wait_its_retry_after_says(
    settings: Settings, catcher: SmtpCatcher
) -> None:
    with served(settings, catcher, forgot_password_per_address=1) as api:
        assert api.post("/password-requests", None, {"email": BUYER}).status_code == 202
        for moved, retry_after, said in [
            ({}, 3600, "1 hora"),
            ({"minutes": 15}, 2700, "45 minutos"),
            ({"minutes": 44, "seconds": 30}, 30, "30 segundos"),
        ]:
            api.clock.advance(**moved)
            refused = api.post("/password-requests", None, {"email": BUYER})
            error = error_of(refused, 429)
            assert refused.headers["Retry-After"] == str(retry_after)
            assert waits(error["message"]) == said

            # The page says the same.
            with WebCustomer() as web:
                page = web.open(api.url + "/olvide-mi-contrasena")
                answer = web.submit(page, "ENVIAR EMAIL", {"email": BUYER})
            assert answer.status == 429
            assert f"Vuelve a intentarlo en {said}." in answer.text


def test_the_administrator_limit_says_a_day(api: Api) -> None:
    api.onboarding.record_purchase(purchase_for("razon-social", BUYER, "OC-1"))
    api.set_password()
    wizard = api.token(WORKSPACE, "CREAR WORKSPACE")
    api.post("/workspace/activate", wizard, {})
    body = {"name": "Camila", "email": BUYER}
    for _ in range(5):
        assert api.post("/workspace/administrator", wizard, body).status_code == 200
    api.clock.advance(hours=1, minutes=30)
    refused = api.post("/workspace/administrator", wizard, body)
    error = error_of(refused, 429)
    assert refused.headers["Retry-After"] == str(22 * 3600 + 30 * 60)
    assert waits(error["message"]) == "22 horas y 30 minutos"
