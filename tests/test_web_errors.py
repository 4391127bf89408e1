"""Bad input over HTTP: a clear Spanish page with the right status, never a
500, and nothing changed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs
import httpx
import pytest

from haulmer_onboarding import ConflictError, Onboarding, Rut, RutError, Stage
from haulmer_onboarding.cli import SUBJECTS, Stack, local_stack
from haulmer_onboarding.signatures import format_size
from haulmer_onboarding.testing.customer import (
    Page,
    WebCustomer,
    link_in,
    wait_for_subject,
)
from haulmer_onboarding.testing.scenarios import purchase_for
from haulmer_onboarding.testing.signatures import make_pkcs12

BUYER = "compras@ferreteria-los-andes.cl"
GOOD = "Cordillera2026"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with local_stack(tmp_path, seconds_per_business_day=0.05, poll_interval=0.1) as s:
        yield s


@pytest.fixture
def customer() -> Iterator[WebCustomer]:
    web = WebCustomer()
    yield web
    web.close()


def open_wizard(stack: Stack, customer: WebCustomer) -> Page:
    """A razón social purchase, password set, workspace wizard at step 1."""
    stack.onboarding.record_purchase(purchase_for("razon-social", BUYER))
    created = wait_for_subject(stack.catcher, BUYER, SUBJECTS["password"])
    page = customer.open(link_in(created, "CREAR CONTRASEÑA"))
    customer.submit(page, "CREAR CONTRASEÑA", {"password": GOOD, "confirmation": GOOD})
    message = wait_for_subject(stack.catcher, BUYER, SUBJECTS["workspace"])
    return customer.submit(
        customer.open(link_in(message, "CREAR WORKSPACE")), "ACTIVAR"
    )


@pytest.mark.parametrize(
    "address",
    [
        "<script>@x.cl",
        "a@b.cl,c@d.cl",
        "a@@x.cl",
        "a..b@x.cl",
        "a@x.cl;b@y.cl",
        "ñandú@x.cl",
        "a(b)@x.cl",
        "",
    ],
)
def test_malformed_administrator_addresses_are_refused(
    stack: Stack, customer: WebCustomer, address: str
) -> None:
    page = open_wizard(stack, customer)
    refused = customer.submit(page, "CREAR", {"name": "Camila", "email": address})
    assert refused.status == 400
    assert "correo electrónico" in refused.text
    assert "Paso 1 de 3" in refused.text
    journey = stack.onboarding.journey_by_order(
        stack.onboarding.events(1)[0].data["order_number"]
    )
    assert journey.stage is Stage.WORKSPACE_ACTIVATED


def test_posts_behind_dead_links_say_so_before_judging_the_form(
    stack: Stack,
) -> None:
    url = stack.web_url
    for path, data in [
        ("/setup/garbage/documentos", {"documents": "abc"}),
        ("/workspace/garbage/organizacion", {"rut": "x"}),
        ("/contrasena/garbage", {"password": "x", "confirmation": "y"}),
        ("/documento-tributario/garbage", {"kind": "factura", "rut": "1"}),
    ]:
        response = httpx.post(url + path, data=data, follow_redirects=True)
        # Post/redirect/get: the link's own page says why.
        assert [r.status_code for r in response.history] == [303], path
        assert response.request.method == "GET"
        assert response.status_code == 404, path
        assert "no es válido" in response.text


def test_a_huge_upload_is_refused_before_it_is_read(
    stack: Stack, customer: WebCustomer
) -> None:
    limit = stack.onboarding.settings.signature_max_bytes
    body = b"x" * (limit + 200_000)
    # Behind a dead link the upload is never read: the link is the answer.
    dead = httpx.post(
        stack.web_url + "/setup/garbage/firma",
        files={"signature": ("firma.pfx", body, "application/x-pkcs12")},
        follow_redirects=True,
    )
    assert [r.status_code for r in dead.history] == [303]
    assert dead.status_code == 404
    assert "no es válido" in dead.text

    stack.onboarding.record_purchase(purchase_for("simple", BUYER))
    created = wait_for_subject(stack.catcher, BUYER, SUBJECTS["password"])
    page = customer.open(link_in(created, "CREAR CONTRASEÑA"))
    customer.submit(page, "CREAR CONTRASEÑA", {"password": GOOD, "confirmation": GOOD})
    setup = link_in(
        wait_for_subject(stack.catcher, BUYER, SUBJECTS["setup"]), "INICIAR SETUP"
    )
    page = customer.submit(
        customer.submit(customer.open(setup), "COMENZAR"), "SIGUIENTE"
    )

    # A declared Content-Length over the limit: the signature step again,
    # the message beside the file's box.
    declared = customer.submit(
        page,
        "SIGUIENTE",
        {"signature_password": "x"},
        files={"signature": ("firma.pfx", body, "application/x-pkcs12")},
    )
    assert declared.status == 413
    assert "Paso 2 de 3" in declared.text
    assert 'id="signature-error"' in declared.html
    assert f"el máximo es {format_size(limit)}." in declared.text

    # Without a Content-Length the body is counted as it streams.
    def chunks() -> Iterator[bytes]:
        yield (
            b"--b\r\nContent-Disposition: form-data; name=signature; "
            b'filename="firma.pfx"\r\n\r\n'
        )
        for _ in range(40):
            yield b"y" * 65_536
        yield b"\r\n--b--\r\n"

    streamed = httpx.post(
        setup + "/firma",
        content=chunks(),
        headers={"Content-Type": "multipart/form-data; boundary=b"},
        follow_redirects=True,
    )
    assert [r.status_code for r in streamed.history] == [303]
    assert streamed.status_code == 413
    assert "demasiado grande" in streamed.text
    assert 'id="signature-error"' in streamed.text
    journey = stack.onboarding.journey_by_order(
        stack.onboarding.events(1)[0].data["order_number"]
    )
    assert journey.stage is Stage.SETUP_ORGANIZATION_CHOSEN
    assert journey.signature is None


def test_a_used_link_shows_its_step_done(stack: Stack, customer: WebCustomer) -> None:
    stack.onboarding.record_purchase(purchase_for("simple", BUYER))
    message = wait_for_subject(stack.catcher, BUYER, SUBJECTS["tax"])
    url = link_in(message, "SOLICITAR DOCUMENTO")
    page = customer.open(url)
    done = customer.submit(page, "SOLICITAR DOCUMENTO", {"kind": "boleta"})
    assert done.status == 200
    # A double click, a reload, a return from the email.
    again = customer.submit(page, "SOLICITAR DOCUMENTO", {"kind": "boleta"})
    reopened = customer.open(url)
    for later in (again, reopened):
        assert later.status == 410
        assert "ya fue usado" in later.text
        assert "Recibimos tu solicitud" in later.text


def test_unreadable_forms_get_a_spanish_answer(stack: Stack) -> None:
    response = httpx.post(
        stack.web_url + "/olvide-mi-contrasena",
        content=b"--x\r\nbroken",
        headers={"Content-Type": "multipart/form-data"},  # no boundary
        follow_redirects=True,
    )
    assert [r.status_code for r in response.history] == [303]
    assert response.status_code == 400
    assert "No pudimos leer el formulario" in response.text


def test_forgot_password_asks_for_an_address(
    stack: Stack, customer: WebCustomer
) -> None:
    page = customer.open(stack.web_url + "/olvide-mi-contrasena")
    empty = customer.submit(page, "ENVIAR EMAIL", {"email": "  "})
    assert empty.status == 400
    assert "Ingresa tu correo" in empty.text


def test_the_same_order_with_other_data_is_a_conflict(onboarding: Onboarding) -> None:
    onboarding.record_purchase(purchase_for("simple", "a@example.cl", "OC-9"))
    with pytest.raises(ConflictError) as info:
        onboarding.record_purchase(purchase_for("simpleboleta", "b@example.cl", "OC-9"))
    assert info.value.code == "purchase_conflict"


@pytest.mark.parametrize("rut", ["60.803.000-K", "66666666-6", "88.888.888-8"])
def test_reserved_ruts_cannot_name_an_organization(
    onboarding: Onboarding, rut: str
) -> None:
    purchase = purchase_for("simple", "a@example.cl")
    with pytest.raises(RutError) as info:
        onboarding.record_purchase(attrs.evolve(purchase, rut=rut))
    assert info.value.code == "rut_reserved"


def test_a_served_folder_keeps_its_links_across_restarts(tmp_path: Path) -> None:
    with local_stack(tmp_path) as first:
        first.onboarding.record_purchase(purchase_for("simple", BUYER))
        message = wait_for_subject(first.catcher, BUYER, SUBJECTS["password"])
        token = link_in(message, "CREAR CONTRASEÑA").rsplit("/", 1)[1]
    with local_stack(tmp_path) as second:
        page = httpx.get(f"{second.web_url}/contrasena/{token}")
    assert page.status_code == 200
    assert "Crea tu nueva contraseña" in page.text


def test_demo_refuses_options_that_do_not_apply() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "haulmer_onboarding.cli",
            "demo",
            "--scenario",
            "simple",
            "--admin-email",
            "x@example.cl",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "razon-social" in result.stderr


def test_odd_digits_in_the_url_or_form_are_not_a_crash(
    stack: Stack, customer: WebCustomer
) -> None:
    page = open_wizard(stack, customer)
    odd = customer.open(page.url + "?paso=²")
    assert odd.status == 200
    assert "Paso 1 de 3" in odd.text
    huge = "9" * 5000 + "-9"
    for path, data in [
        ("/organizacion", {"legal_name": "X SpA", "rut": huge}),
    ]:
        # The form's own CSRF token: only the RUT is odd.
        token = dict(page.form("CREAR").fields)["csrf_token"]
        response = httpx.post(
            page.url.split("?")[0] + path,
            data={**data, "csrf_token": token},
            follow_redirects=True,
        )
        assert response.status_code in {400, 409}
        assert "Internal Server Error" not in response.text


def test_a_five_thousand_digit_rut_is_a_format_error() -> None:
    with pytest.raises(RutError) as info:
        Rut.parse("9" * 5000 + "-9")
    assert info.value.code == "rut_format"


def test_the_administrator_cannot_be_changed_without_end(
    stack: Stack, customer: WebCustomer
) -> None:
    page = open_wizard(stack, customer)
    statuses = []
    for number in range(7):
        answer = customer.submit(
            page, "CREAR", {"name": "X", "email": f"otro{number}@example.org"}
        )
        statuses.append(answer.status)
        page = customer.open(page.url.split("?")[0] + "?paso=1")
    assert statuses[:5] == [200] * 5
    # Past the cap: 429 with the wait, in the header and in the words, as
    # the API answers.
    assert statuses[5:] == [429, 429]
    reloaded = customer.client.get(answer.url)
    assert reloaded.status_code == 429
    assert int(reloaded.headers["retry-after"]) > 0
    assert "Vuelve a intentarlo en" in answer.text
    assert "Paso 1 de 3" in answer.text
    # No account was emailed while the wizard was open.
    to_others = [m for m in stack.catcher.messages if "example.org" in m.to]
    assert to_others == []


def test_a_signature_expiring_soon_is_accepted_with_a_warning_shown(
    stack: Stack, customer: WebCustomer
) -> None:
    stack.onboarding.record_purchase(purchase_for("simple", BUYER))
    created = wait_for_subject(stack.catcher, BUYER, SUBJECTS["password"])
    page = customer.open(link_in(created, "CREAR CONTRASEÑA"))
    customer.submit(page, "CREAR CONTRASEÑA", {"password": GOOD, "confirmation": GOOD})
    setup = link_in(
        wait_for_subject(stack.catcher, BUYER, SUBJECTS["setup"]), "INICIAR SETUP"
    )
    page = customer.submit(
        customer.submit(customer.open(setup), "COMENZAR"), "SIGUIENTE"
    )
    soon = datetime.now(UTC) + timedelta(days=10)
    pfx = make_pkcs12(password="buena", not_after=soon)
    page = customer.submit(
        page,
        "SIGUIENTE",
        {"signature_password": "buena", "legal_representative_rut": "12.345.678-5"},
        files={"signature": ("firma.pfx", pfx, "application/x-pkcs12")},
    )
    assert page.status == 200
    assert "Paso 3 de 3" in page.text
    assert soon.strftime("%d-%m-%Y") in page.text
