"""The JSON API over real HTTP: the pages' actions, their errors, its
OpenAPI document, and how it refuses what a cross-site page could send."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from openapi_spec_validator import validate
from schemathesis.specs.openapi.checks import (
    ignored_auth,
    positive_data_acceptance,
)

from haulmer_onboarding import Stage
from haulmer_onboarding.cli import SUBJECTS, Stack, local_stack
from haulmer_onboarding.testing.customer import WebCustomer, link_in, wait_for_subject
from haulmer_onboarding.testing.scenarios import purchase_for
from haulmer_onboarding.testing.signatures import make_pkcs12

BUYER = "compras@ferreteria-los-andes.cl"
GOOD = "Cordillera2026"

# The holder RUT make_pkcs12 writes: the legal representative the customer types.
REP = "12.345.678-5"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with local_stack(tmp_path, seconds_per_business_day=0.05, poll_interval=0.1) as s:
        yield s


@pytest.fixture
def api(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.web_url + "/api/v1", timeout=30) as client:
        yield client


def token_of(stack: Stack, subject: str, button: str, to: str = BUYER) -> str:
    message = wait_for_subject(stack.catcher, to, SUBJECTS[subject])
    return link_in(message, button).rsplit("/", 1)[1]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error_of(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"] == "application/json"
    error: dict[str, Any] = response.json()["error"]
    return error


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_the_openapi_document_is_valid_and_served_where_the_app_is() -> None:
    # Validated as served, in a test of its own below; here the document the
    # code builds for a prefix names that prefix.
    from haulmer_onboarding.web.openapi import openapi_document

    document = openapi_document("/onboarding/api/v1")
    validate(document)  # type: ignore[arg-type]
    assert document["servers"] == [{"url": "/onboarding/api/v1"}]


def test_the_served_document_validates_and_lists_every_action(
    api: httpx.Client,
) -> None:
    response = api.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    validate(document)
    operations = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
    }
    assert operations == {
        ("GET", "/password"),
        ("POST", "/password"),
        ("POST", "/password-requests"),
        ("POST", "/link-renewals"),
        ("GET", "/workspace"),
        ("POST", "/workspace/activate"),
        ("POST", "/workspace/administrator"),
        ("POST", "/workspace/name"),
        ("POST", "/workspace/organization"),
        ("GET", "/setup"),
        ("POST", "/setup/start"),
        ("POST", "/setup/organization"),
        ("POST", "/setup/signature"),
        ("POST", "/setup/documents"),
        ("GET", "/tax-document"),
        ("POST", "/tax-document"),
        ("GET", "/certification"),
    }


def test_the_api_walks_the_whole_journey_and_refuses_bad_input(
    stack: Stack, api: httpx.Client
) -> None:
    journey = stack.onboarding.record_purchase(purchase_for("razon-social", BUYER))
    facade = stack.onboarding

    # CREAR CONTRASEÑA: the rule is given to the frontend, and checked here.
    password = token_of(stack, "password", "CREAR CONTRASEÑA")
    page = api.get("/password", headers=bearer(password))
    assert page.status_code == 200
    assert page.json()["customer"]["email"] == BUYER
    assert page.json()["password_rule"]["min_length"] == 8
    for typed, again, code, field in [
        (GOOD, GOOD + "x", "password_mismatch", "confirmation"),
        ("cordillera2026", "cordillera2026", "password_missing_uppercase", "password"),
        ("Corta1", "Corta1", "password_too_short", "password"),
    ]:
        refused = api.post(
            "/password",
            headers=bearer(password),
            json={"password": typed, "confirmation": again},
        )
        assert refused.status_code == 400
        error = error_of(refused)
        assert (error["code"], error["field"]) == (code, field)
        assert "contraseña" in error["message"]
    for body, field in [({"password": GOOD}, "confirmation"), ({}, "password")]:
        missing = api.post("/password", headers=bearer(password), json=body)
        assert missing.status_code == 400
        error = error_of(missing)
        assert (error["code"], error["field"]) == ("json_field_missing", field)
        assert f"Falta el campo {field}." in error["message"]
    assert facade.verify_password(BUYER, GOOD) is False
    done = api.post(
        "/password",
        headers=bearer(password),
        json={"password": GOOD, "confirmation": GOOD},
    )
    assert done.status_code == 200
    assert done.json()["customer"]["has_password"] is True
    assert facade.verify_password(BUYER, GOOD)
    assert error_of(api.get("/password", headers=bearer(password)))["code"] == (
        "link_used"
    )

    # CREAR WORKSPACE, with an invalid RUT refused beside its field.
    workspace = token_of(stack, "workspace", "CREAR WORKSPACE")
    auth = bearer(workspace)
    assert api.get("/workspace", headers=auth).json()["step"] == 0
    early = api.post("/workspace/name", headers=auth, json={"workspace_name": "X"})
    assert early.status_code == 409
    assert error_of(early)["code"] == "step_order"
    assert api.post("/workspace/activate", headers=auth, json={}).json()["step"] == 1
    both = api.post(
        "/workspace/administrator", headers=auth, json={"name": "", "email": "x"}
    )
    assert both.status_code == 400
    assert error_of(both)["field"] == "name"  # the first, in the form's order
    assert [e["field"] for e in error_of(both)["errors"]] == ["name", "email"]
    step = api.post(
        "/workspace/administrator",
        headers=auth,
        json={"name": "Camila Rojas", "email": BUYER},
    )
    assert step.json()["step"] == 2
    api.post("/workspace/name", headers=auth, json={"workspace_name": "Rojas"})
    bad_rut = api.post(
        "/workspace/organization",
        headers=auth,
        json={"legal_name": "Rojas SpA", "rut": "76.543.210-4"},
    )
    assert bad_rut.status_code == 400
    assert error_of(bad_rut)["code"] == "rut_check_digit"
    assert error_of(bad_rut)["field"] == "rut"
    assert facade.journey(journey.id).stage is Stage.WORKSPACE_NAMED
    finished = api.post(
        "/workspace/organization",
        headers=auth,
        json={"legal_name": "Rojas SpA", "rut": "76.543.210-3"},
    )
    assert finished.json()["journey"]["stage"] == "setup_pending"
    assert finished.json()["step"] is None

    # INICIAR SETUP: bad files and a wrong password change nothing.
    setup = bearer(token_of(stack, "setup", "INICIAR SETUP"))
    api.post("/setup/start", headers=setup, json={})
    chosen = api.post(
        "/setup/organization",
        headers=setup,
        json={"organization_id": finished.json()["journey"]["organization"]["id"]},
    )
    assert chosen.json()["step"] == 2
    pfx = make_pkcs12(password="buena")
    # One byte over a multiple of three ends its base64 in "==" (a newline
    # after the file is left out, as OpenSSL leaves it).
    padded = b64(pfx + b"\n" * ((1 - len(pfx)) % 3))
    assert padded.endswith("==")
    unpadded = padded.rstrip("=")
    for body, code, field in [
        (
            {"legal_representative_rut": REP, "signature_password": "buena"},
            "signature_missing",
            "signature",
        ),
        (
            {
                "legal_representative_rut": REP,
                "signature": "no es base64!",
                "signature_password": "x",
            },
            "signature_not_base64",
            "signature",
        ),
        (
            {
                "legal_representative_rut": REP,
                "signature": b64(pfx)[:40] + "*" + b64(pfx)[40:],
                "signature_password": "x",
            },
            "signature_not_base64",
            "signature",
        ),
        (
            # The password is never echoed in a 500: a NUL opens no file.
            {
                "legal_representative_rut": REP,
                "signature": b64(pfx),
                "signature_password": "bue\x00na",
            },
            "signature_wrong_password",
            "signature_password",
        ),
        (
            {"legal_representative_rut": REP, "signature": b64(pfx)},
            "signature_password_missing",
            "signature_password",
        ),
        (
            # Unpadded base64 is read: the password is what is wrong.
            {
                "legal_representative_rut": REP,
                "signature": unpadded,
                "signature_password": "otra",
            },
            "signature_wrong_password",
            "signature_password",
        ),
        (
            {
                "legal_representative_rut": REP,
                "signature": b64(b"%PDF-1.4 no es una firma"),
                "signature_password": "x",
            },
            "signature_not_pkcs12",
            "signature",
        ),
        (
            {
                "legal_representative_rut": REP,
                "signature": b64(pfx),
                "signature_password": "otra",
            },
            "signature_wrong_password",
            "signature_password",
        ),
        (
            {"signature": b64(pfx), "signature_password": "buena"},
            "rut_empty",
            "legal_representative_rut",
        ),
        (
            {
                "legal_representative_rut": "11.111.111-1",
                "signature": b64(pfx),
                "signature_password": "buena",
            },
            "signature_rut_mismatch",
            "signature",
        ),
    ]:
        refused = api.post("/setup/signature", headers=setup, json=body)
        assert refused.status_code == 400
        assert (error_of(refused)["code"], error_of(refused)["field"]) == (
            code,
            field,
        )
    assert facade.journey(journey.id).stage is Stage.SETUP_ORGANIZATION_CHOSEN
    assert facade.journey(journey.id).signature is None
    # What `base64 firma.pfx` prints: 76-column lines ending in newlines.
    wrapped = base64.encodebytes(pfx).decode("ascii")
    assert "\n" in wrapped.strip()
    loaded = api.post(
        "/setup/signature",
        headers=setup,
        json={
            "legal_representative_rut": REP,
            "signature": wrapped,
            "signature_password": "buena",
        },
    )
    assert loaded.status_code == 200
    answer = api.get("/setup", headers=setup).json()
    assert answer["step"] == 3
    assert answer["offer"]["locked"] is True
    assert set(answer["offer"]["required"]) == {33, 39}
    started = api.post("/setup/documents", headers=setup, json={"documents": []})
    assert started.status_code == 200
    assert started.json()["journey"]["stage"] == "certifying"
    assert started.json()["journey"]["documents"] == [33, 39]


def test_a_bad_tax_document_or_document_code_is_refused(
    stack: Stack, api: httpx.Client
) -> None:
    journey = stack.onboarding.record_purchase(purchase_for("simple", BUYER))
    tax = bearer(token_of(stack, "tax", "SOLICITAR DOCUMENTO"))
    assert api.get("/tax-document", headers=tax).json()["journey"]["id"] == journey.id
    for body, code, field in [
        ({"kind": "cheque"}, "tax_document_kind", "kind"),
        (
            {"kind": "factura", "rut": "76.086.428-5"},
            "legal_name_missing",
            "legal_name",
        ),
        (
            {
                "kind": "factura",
                "legal_name": "Ferretería Los Andes SpA",
                "rut": "76.086.428-K",
                "business_activity": "Ferretería",
                "address": "Av. Los Andes 123, Santiago",
            },
            "rut_check_digit",
            "rut",
        ),
    ]:
        refused = api.post("/tax-document", headers=tax, json=body)
        assert refused.status_code == 400
        assert (error_of(refused)["code"], error_of(refused)["field"]) == (
            code,
            field,
        )
    assert stack.onboarding.journey(journey.id).tax_document is None

    password = token_of(stack, "password", "CREAR CONTRASEÑA")
    api.post(
        "/password",
        headers=bearer(password),
        json={"password": GOOD, "confirmation": GOOD},
    )
    setup = bearer(token_of(stack, "setup", "INICIAR SETUP"))
    api.post("/setup/start", headers=setup, json={})
    organization = stack.onboarding.journey(journey.id).workspace
    assert organization is not None
    api.post(
        "/setup/organization",
        headers=setup,
        json={"organization_id": organization.organizations[0].id},
    )
    api.post(
        "/setup/signature",
        headers=setup,
        json={
            "legal_representative_rut": REP,
            "signature": b64(make_pkcs12(password="b")),
            "signature_password": "b",
        },
    )
    # "No document chosen" is a page test (test_web_bad_inputs): every
    # shipped product requires one, so it needs a product of its own.
    for codes, code in [(["abc"], "documents_unknown"), ("33", "json_field_type")]:
        refused = api.post("/setup/documents", headers=setup, json={"documents": codes})
        assert refused.status_code == 400
        assert error_of(refused)["code"] == code
        assert error_of(refused)["field"] == "documents"
    assert stack.onboarding.journey(journey.id).stage is Stage.SETUP_SIGNATURE_LOADED


def test_the_api_and_the_page_answer_the_same_error(
    stack: Stack, api: httpx.Client
) -> None:
    stack.onboarding.record_purchase(purchase_for("simple", BUYER))
    message = wait_for_subject(stack.catcher, BUYER, SUBJECTS["password"])
    url = link_in(message, "CREAR CONTRASEÑA")
    token = url.rsplit("/", 1)[1]
    with WebCustomer() as web:
        page = web.submit(
            web.open(url),
            "CREAR CONTRASEÑA",
            {"password": "CORDILLERA2026", "confirmation": "CORDILLERA2026"},
        )
    answer = api.post(
        "/password",
        headers=bearer(token),
        json={"password": "CORDILLERA2026", "confirmation": "CORDILLERA2026"},
    )
    error = error_of(answer)
    assert answer.status_code == page.status == 400
    assert error["code"] == "password_missing_lowercase"
    assert error["message"] in page.text
    assert f'id="{error["field"]}-error"' in page.html


def test_what_a_cross_site_page_could_send_is_refused(
    stack: Stack, api: httpx.Client
) -> None:
    stack.onboarding.record_purchase(purchase_for("simple", BUYER))
    token = token_of(stack, "password", "CREAR CONTRASEÑA")
    # An HTML form can send these types, and no other: each is refused.
    for kind, body in [
        ("application/x-www-form-urlencoded", f"password={GOOD}&confirmation={GOOD}"),
        ("text/plain", f'{{"password": "{GOOD}", "confirmation": "{GOOD}"}}'),
        ("multipart/form-data; boundary=x", "--x--"),
    ]:
        refused = api.post(
            "/password",
            headers={**bearer(token), "Content-Type": kind},
            content=body.encode(),
        )
        assert refused.status_code == 415
        assert error_of(refused)["code"] == "json_required"
    # No CORS preflight is answered, so a browser never sends the real post.
    preflight = api.options(
        "/password",
        headers={
            "Origin": "https://evil.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,authorization",
        },
    )
    assert "access-control-allow-origin" not in preflight.headers
    assert stack.onboarding.verify_password(BUYER, GOOD) is False

    missing = api.post("/password", json={"password": GOOD, "confirmation": GOOD})
    assert missing.status_code == 401
    assert error_of(missing)["code"] == "link_missing"
    garbage = api.post(
        "/password",
        headers=bearer("abc.def"),
        json={"password": GOOD, "confirmation": GOOD},
    )
    assert garbage.status_code == 404
    assert error_of(garbage)["code"] == "link_invalid"
    not_object = api.post(
        "/password",
        headers={**bearer(token), "Content-Type": "application/json"},
        content=b"[1, 2]",
    )
    assert not_object.status_code == 400
    assert error_of(not_object)["code"] == "json_invalid"
    wrong_type = api.post(
        "/password", headers=bearer(token), json={"password": 12345678}
    )
    assert error_of(wrong_type)["field"] == "password"
    assert stack.onboarding.verify_password(BUYER, GOOD) is False


def test_forgot_password_and_link_renewal_over_the_api(
    stack: Stack, api: httpx.Client
) -> None:
    stack.onboarding.record_purchase(purchase_for("simple", BUYER))
    wait_for_subject(stack.catcher, BUYER, SUBJECTS["password"])
    known = api.post("/password-requests", json={"email": BUYER.upper()})
    unknown = api.post("/password-requests", json={"email": "nadie@example.cl"})
    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()
    empty = api.post("/password-requests", json={"email": " "})
    assert empty.status_code == 400
    assert (error_of(empty)["code"], error_of(empty)["field"]) == (
        "email_missing",
        "email",
    )
    renewal = api.post(
        "/link-renewals", headers=bearer("abc.def"), json={"purpose": "start_setup"}
    )
    assert renewal.status_code == 404


def test_an_oversized_api_body_gets_a_json_413(stack: Stack, api: httpx.Client) -> None:
    limit = stack.onboarding.settings.signature_max_bytes
    refused = api.post("/password-requests", json={"email": "A" * (limit * 2)})
    assert refused.status_code == 413
    assert error_of(refused)["code"] == "request_too_large"
    # Behind a dead link the body is never read: the link is what is wrong.
    body = {"signature": "A" * (limit * 2), "signature_password": "x"}
    dead = api.post("/setup/signature", headers=bearer("abc.def"), json=body)
    assert dead.status_code == 404
    assert error_of(dead)["code"] == "link_invalid"


# -- the OpenAPI document against the running API ------------------------------


def test_every_answer_matches_the_document(stack: Stack) -> None:
    """schemathesis calls every operation of the served document with
    generated requests; every answer must be documented and match its schema,
    and none may be a server error.

    Schema-valid data may still be refused with a documented 400: a RUT's
    check digit, the password rule or a PKCS#12 file cannot be written in
    JSON Schema, so the check that expects it accepted is left out."""
    stack.onboarding.record_purchase(purchase_for("razon-social", BUYER))
    schema = schemathesis.openapi.from_url(stack.web_url + "/api/v1/openapi.json")
    called = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @hypothesis.given(case=operation.as_strategy())
        @hypothesis.settings(
            max_examples=15,
            deadline=None,
            database=None,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
        def answers_as_documented(case: Any) -> None:
            case.call_and_validate(
                excluded_checks=[positive_data_acceptance],
            )

        answers_as_documented()
        called.append(operation.label)
    assert len(called) == 17


def test_each_successful_answer_matches_the_document(stack: Stack) -> None:
    """The journey walked through the served document's own operations: each
    2xx answer is checked against its schema, as the errors are above."""
    stack.onboarding.record_purchase(purchase_for("razon-social", BUYER))
    schema = schemathesis.openapi.from_url(stack.web_url + "/api/v1/openapi.json")
    pfx = make_pkcs12(password="buena")

    def call(method: str, path: str, token: str, body: Any = None) -> Any:
        operation = schema[path][method]
        headers = {"Authorization": f"Bearer {token}"}
        if body is None:
            case = operation.Case(headers=headers)
        else:
            case = operation.Case(headers=headers, body=body)
        # A link that is not genuine is answered 404, as its page is; the
        # check expecting 401 for a forged credential is left out.
        response = case.call_and_validate(
            excluded_checks=[positive_data_acceptance, ignored_auth]
        )
        assert 200 <= response.status_code < 300, response.text
        return response.json()

    tax = token_of(stack, "tax", "SOLICITAR DOCUMENTO")
    call("GET", "/tax-document", tax)
    call("POST", "/tax-document", tax, {"kind": "boleta"})
    password = token_of(stack, "password", "CREAR CONTRASEÑA")
    call("GET", "/password", password)
    call("POST", "/password", password, {"password": GOOD, "confirmation": GOOD})
    wizard = token_of(stack, "workspace", "CREAR WORKSPACE")
    call("GET", "/workspace", wizard)
    call("POST", "/workspace/activate", wizard, {})
    call("POST", "/workspace/administrator", wizard, {"name": "Ana", "email": BUYER})
    call("POST", "/workspace/name", wizard, {"workspace_name": "Rojas"})
    finished = call(
        "POST",
        "/workspace/organization",
        wizard,
        {"legal_name": "Rojas SpA", "rut": "76.543.210-3"},
    )
    setup = token_of(stack, "setup", "INICIAR SETUP")
    call("GET", "/setup", setup)
    call("POST", "/setup/start", setup, {})
    organization = finished["journey"]["organization"]["id"]
    call("POST", "/setup/organization", setup, {"organization_id": organization})
    call(
        "POST",
        "/setup/signature",
        setup,
        {
            "legal_representative_rut": REP,
            "signature": b64(pfx),
            "signature_password": "buena",
        },
    )
    started = call("POST", "/setup/documents", setup, {"documents": [33, 39]})
    assert started["journey"]["stage"] == "certifying"
    progress = wait_for_subject(stack.catcher, BUYER, "Comenzó la certificación")
    status = call(
        "GET", "/certification", link_in(progress, "VER AVANCE").rsplit("/", 1)[1]
    )
    assert status["journey"]["certification"]["steps"]
