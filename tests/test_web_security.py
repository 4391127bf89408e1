"""The pages' defences over real HTTP: a CSRF token in every form and
refused posts that change nothing, private headers on every answer, and no
secret in any log line."""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from haulmer_onboarding import Stage
from haulmer_onboarding.cli import SUBJECTS, Stack, local_stack
from haulmer_onboarding.testing.customer import (
    Page,
    WebCustomer,
    link_in,
    wait_for_subject,
)
from haulmer_onboarding.testing.scenarios import purchase_for
from haulmer_onboarding.testing.signatures import make_pkcs12
from haulmer_onboarding.web.csrf import COOKIE

BUYER = "compras@ferreteria-los-andes.cl"
GOOD = "Cordillera2026"
SIGNATURE_PASSWORD = "clave-de-la-firma-9"
REFUSED = "No hicimos ningún cambio"

# The holder RUT make_pkcs12 writes, typed as the legal representative's.
REP = "12.345.678-5"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with local_stack(tmp_path, seconds_per_business_day=0.05, poll_interval=0.1) as s:
        yield s


@pytest.fixture
def customer() -> Iterator[WebCustomer]:
    with WebCustomer() as web:
        yield web


class _Labels(HTMLParser):
    """Boxes a person cannot name: no ``<label for>``, not inside a label."""

    def __init__(self) -> None:
        super().__init__()
        self.labelled: set[str] = set()
        self.boxes: list[tuple[str, bool]] = []
        self.tabindex: list[str] = []
        self._in_label = 0

    def handle_starttag(self, tag: str, attrs_: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs_}
        if a.get("tabindex", "0") not in {"0", "-1"}:
            self.tabindex.append(tag)
        if tag == "label":
            self._in_label += 1
            self.labelled.add(a.get("for", ""))
        elif tag in {"input", "select", "textarea"} and a.get("type") != "hidden":
            self.boxes.append((a.get("id", ""), self._in_label > 0))

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self._in_label -= 1

    def unnamed(self) -> list[str]:
        return [
            box for box, inside in self.boxes if not inside and box not in self.labelled
        ]


def forms_without_token(page: Page) -> list[str]:
    return [
        form.action
        for form in page.forms()
        if form.method == "POST" and not dict(form.fields).get("csrf_token")
    ]


def test_every_form_of_the_journey_carries_a_csrf_token(
    stack: Stack, customer: WebCustomer
) -> None:
    stack.onboarding.record_purchase(purchase_for("razon-social", BUYER))
    seen: list[Page] = []

    def see(page: Page) -> Page:
        assert page.status < 400, page.text
        seen.append(page)
        return page

    tax = see(customer.open(link_in(_mail(stack, "tax"), "SOLICITAR DOCUMENTO")))
    see(customer.open(stack.web_url + "/olvide-mi-contrasena"))
    page = see(customer.open(link_in(_mail(stack, "password"), "CREAR CONTRASEÑA")))
    customer.submit(page, "CREAR CONTRASEÑA", {"password": GOOD, "confirmation": GOOD})
    page = see(customer.open(link_in(_mail(stack, "workspace"), "CREAR WORKSPACE")))
    page = see(customer.submit(page, "ACTIVAR"))
    page = see(customer.submit(page, "CREAR", {"name": "Camila", "email": BUYER}))
    page = see(customer.submit(page, "SIGUIENTE", {"workspace_name": "Rojas"}))
    customer.submit(page, "FINALIZAR", {"legal_name": "Rojas SpA", "rut": "76543210-3"})
    page = see(customer.open(link_in(_mail(stack, "setup"), "INICIAR SETUP")))
    page = see(customer.submit(page, "COMENZAR"))
    page = see(customer.submit(page, "SIGUIENTE"))
    pfx = make_pkcs12(password="buena")
    page = see(
        customer.submit(
            page,
            "SIGUIENTE",
            {"legal_representative_rut": REP, "signature_password": "buena"},
            files={"signature": ("firma.pfx", pfx, "application/x-pkcs12")},
        )
    )
    assert "Paso 3 de 3" in page.text
    forms = [form for page in seen for form in page.forms() if form.method == "POST"]
    assert len(forms) == len(seen) == 11
    assert [f for page in seen for f in forms_without_token(page)] == []
    # Every box has a label, and the focus follows the page's order.
    for page in seen:
        labels = _Labels()
        labels.feed(page.html)
        assert labels.unnamed() == [], page.url
        assert labels.tabindex == [], page.url
    # A form's token is bound to its own link: another link's is refused.
    assert tax.form("SOLICITAR").fields != page.form("SIGUIENTE").fields


def _mail(stack: Stack, key: str) -> object:
    return wait_for_subject(stack.catcher, BUYER, SUBJECTS[key])


def test_posts_not_from_our_page_are_refused_and_change_nothing(
    stack: Stack, customer: WebCustomer
) -> None:
    stack.onboarding.record_purchase(purchase_for("simple", BUYER))
    tax_url = link_in(_mail(stack, "tax"), "SOLICITAR DOCUMENTO")
    url = link_in(_mail(stack, "password"), "CREAR CONTRASEÑA")
    page = customer.open(url)
    own = dict(page.form("CREAR CONTRASEÑA").fields)["csrf_token"]
    other = dict(customer.open(tax_url).form("SOLICITAR").fields)["csrf_token"]
    typed = {"password": GOOD, "confirmation": GOOD}
    for data, headers in [
        (typed, {}),  # no token
        ({**typed, "csrf_token": ""}, {}),
        ({**typed, "csrf_token": "x" + own}, {}),  # tampered
        ({**typed, "csrf_token": other}, {}),  # another link's page
        ({**typed, "csrf_token": own}, {"Sec-Fetch-Site": "cross-site"}),
        ({**typed, "csrf_token": own}, {"Sec-Fetch-Site": "same-site"}),
    ]:
        refused = httpx.post(url, data=data, headers=headers, follow_redirects=True)
        # Post/redirect/get: the refusal is a page reached by GET.
        assert [r.status_code for r in refused.history] == [303], data
        assert refused.status_code == 403, data
        assert REFUSED in refused.text
        assert "nuestra página" in refused.text
        assert refused.headers["cache-control"] == "no-store"
    assert stack.onboarding.verify_password(BUYER, GOOD) is False
    assert customer.open(url).status == 200
    # The page's own form, sent as a browser sends it, works.
    done = httpx.post(
        url,
        data={**typed, "csrf_token": own},
        headers={"Sec-Fetch-Site": "same-origin"},
        follow_redirects=True,
    )
    assert [r.status_code for r in done.history] == [303]
    assert done.status_code == 200
    assert stack.onboarding.verify_password(BUYER, GOOD)


def test_wizard_posts_without_a_token_change_nothing(
    stack: Stack, customer: WebCustomer
) -> None:
    stack.onboarding.record_purchase(purchase_for("simple", BUYER))
    page = customer.open(link_in(_mail(stack, "password"), "CREAR CONTRASEÑA"))
    customer.submit(page, "CREAR CONTRASEÑA", {"password": GOOD, "confirmation": GOOD})
    setup = link_in(_mail(stack, "setup"), "INICIAR SETUP")
    refused = httpx.post(setup + "/comenzar", follow_redirects=True)
    assert [r.status_code for r in refused.history] == [303]
    assert refused.status_code == 403
    assert REFUSED in refused.text
    # It leads back to the page, where a fresh form waits.
    assert f'href="{httpx.URL(setup).path}"' in refused.text
    journey = stack.onboarding.journey_by_order(
        stack.onboarding.events(1)[0].data["order_number"]
    )
    assert journey.stage is Stage.SETUP_PENDING


def test_the_linkless_form_is_bound_to_the_browser_cookie(
    stack: Stack, customer: WebCustomer
) -> None:
    url = stack.web_url + "/olvide-mi-contrasena"
    page = customer.open(url)
    cookie = customer.client.cookies.get(COOKIE)
    assert cookie
    assert len(cookie) >= 32
    response = customer.client.get(url)
    set_cookie = response.headers.get("set-cookie", "")
    assert set_cookie == ""  # the browser's value is kept, not replaced
    token = dict(page.form("ENVIAR EMAIL").fields)["csrf_token"]

    # Another browser (no cookie, or its own) cannot use this page's token.
    without = httpx.post(
        url, data={"email": BUYER, "csrf_token": token}, follow_redirects=True
    )
    assert without.status_code == 403
    assert "cookie" in without.text
    with WebCustomer() as stranger:
        stranger.open(url)
        theirs = stranger.client.post(url, data={"email": BUYER, "csrf_token": token})
    assert theirs.status_code == 403
    assert REFUSED in theirs.text
    assert stack.onboarding.process_password_requests() == 0

    sent = customer.submit(page, "ENVIAR EMAIL", {"email": BUYER})
    assert sent.status == 200
    fresh = httpx.get(url)
    attributes = fresh.headers["set-cookie"].lower()
    for attribute in ("httponly", "samesite=strict", "path=/"):
        assert attribute in attributes


def test_every_answer_is_private(stack: Stack, customer: WebCustomer) -> None:
    stack.onboarding.record_purchase(purchase_for("simple", BUYER))
    url = link_in(_mail(stack, "password"), "CREAR CONTRASEÑA")
    token = url.rsplit("/", 1)[1]
    answers = [
        httpx.get(url),
        httpx.get(stack.web_url + "/contrasena/abc.def"),
        httpx.post(url, data={}),
        httpx.get(stack.web_url + "/olvide-mi-contrasena"),
        httpx.get(
            stack.web_url + "/api/v1/password",
            headers={"Authorization": f"Bearer {token}"},
        ),
    ]
    for answer in answers:
        assert answer.headers["cache-control"] == "no-store", answer.url
        assert answer.headers["referrer-policy"] == "no-referrer", answer.url
    for answer in answers[:4]:
        policy = answer.headers["content-security-policy"]
        assert "default-src 'none'" in policy
        assert "frame-ancestors 'none'" in policy
        assert "form-action 'self'" in policy
        assert answer.headers["x-content-type-options"] == "nosniff"


def test_no_token_password_or_file_reaches_any_log(
    stack: Stack, customer: WebCustomer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    stack.onboarding.record_purchase(purchase_for("simple", BUYER))
    url = link_in(_mail(stack, "password"), "CREAR CONTRASEÑA")
    page = customer.open(url)
    customer.submit(page, "CREAR CONTRASEÑA", {"password": GOOD, "confirmation": "x"})
    customer.submit(page, "CREAR CONTRASEÑA", {"password": GOOD, "confirmation": GOOD})
    setup = link_in(_mail(stack, "setup"), "INICIAR SETUP")
    page = customer.submit(
        customer.submit(customer.open(setup), "COMENZAR"), "SIGUIENTE"
    )
    pfx = make_pkcs12(password=SIGNATURE_PASSWORD)
    upload = {"signature": ("firma.pfx", pfx, "application/x-pkcs12")}
    wrong = customer.submit(
        page,
        "SIGUIENTE",
        {"legal_representative_rut": REP, "signature_password": "otra-clave-7"},
        files=upload,
    )
    assert wrong.status == 400
    done = customer.submit(
        page,
        "SIGUIENTE",
        {"legal_representative_rut": REP, "signature_password": SIGNATURE_PASSWORD},
        files=upload,
    )
    assert "Paso 3 de 3" in done.text
    api = httpx.post(
        stack.web_url + "/api/v1/setup/signature",
        headers={"Authorization": "Bearer " + setup.rsplit("/", 1)[1]},
        json={
            "signature": base64.b64encode(pfx).decode(),
            "legal_representative_rut": REP,
            "signature_password": "clave-por-la-api-3",
        },
    )
    assert api.status_code == 400  # a wrong password, through the API
    assert api.json()["error"]["code"] == "signature_wrong_password"

    # Everything the app and its servers logged; the test's own HTTP client
    # (on this thread) writes the URLs it fetches, as any client would.
    main = threading.get_ident()
    logged = "\n".join(
        f"{r.name} {r.getMessage()} {r.exc_text or ''}"
        for r in caplog.records
        if not (r.thread == main and r.name.startswith(("httpx", "httpcore")))
    )
    assert "signature_loaded" in logged  # the journey was logged
    secrets = [
        url.rsplit("/", 1)[1],
        setup.rsplit("/", 1)[1],
        GOOD,
        SIGNATURE_PASSWORD,
        "otra-clave-7",
        "clave-por-la-api-3",
        base64.b64encode(pfx[:48]).decode()[:40],
        pfx[100:124].hex(),
        repr(pfx[100:124])[2:-1],
    ]
    for secret in secrets:
        assert secret not in logged


def test_the_development_mailbox_form_is_protected_too(tmp_path: Path) -> None:
    with local_stack(tmp_path, development=True) as dev, WebCustomer() as web:
        page = web.open(dev.web_url + "/_dev/correos")
        assert forms_without_token(page) == []
        forged = httpx.post(
            dev.web_url + "/_dev/compras",
            data={"scenario": "simple", "email": BUYER},
            follow_redirects=True,
        )
        assert forged.status_code == 403
        assert REFUSED in forged.text
        assert dev.onboarding.events(1) == []
        done = web.submit(page, "REGISTRAR COMPRA", {"email": BUYER})
        assert done.status == 200
        assert dev.onboarding.events(1)[0].kind == "purchase_recorded"


def test_a_refused_renewal_offers_no_dead_end(stack: Stack) -> None:
    refused = httpx.post(
        stack.web_url + "/enlace-nuevo",
        data={"token": "abc", "purpose": "x"},
        follow_redirects=True,
    )
    assert refused.status_code == 403
    assert REFUSED in refused.text
    assert "Volver a la página" not in refused.text
    forgot = httpx.post(
        stack.web_url + "/olvide-mi-contrasena",
        data={"email": BUYER},
        follow_redirects=True,
    )
    assert forgot.status_code == 403
    assert 'href="/olvide-mi-contrasena"' in forgot.text
