"""The link pages as a browser's history meets them, over real HTTP: every
form post answers 303 to a page reached by GET (post/redirect/get), so Back,
Forward and Reload never resend a form; refusals come back beside their
fields; a tab drawn before another one moved the wizard on changes nothing;
unknown addresses and methods get Spanish pages with the same headers; the
app's files are cached sensibly; and no token reaches a server's log."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
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
from haulmer_onboarding.testing.servers import free_port
from haulmer_onboarding.testing.signatures import make_pkcs12
from haulmer_onboarding.tokens import LinkSigner
from haulmer_onboarding.web import RedactLinkTokens, create_app, redact_path
from haulmer_onboarding.web.flash import COOKIE, LOST_MESSAGE
from haulmer_onboarding.web.limits import page_body_limit

BUYER = "compras@ferreteria-los-andes.cl"
GOOD = "Cordillera2026"
STALE = "Esta página estaba desactualizada"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with local_stack(tmp_path, seconds_per_business_day=0.05, poll_interval=0.1) as s:
        yield s


@pytest.fixture
def customer() -> Iterator[WebCustomer]:
    with WebCustomer() as web:
        yield web


def _order(stack: Stack) -> str:
    return str(stack.onboarding.events(1)[0].data["order_number"])


def _password_url(stack: Stack, scenario: str = "razon-social") -> str:
    stack.onboarding.record_purchase(purchase_for(scenario, BUYER))
    created = wait_for_subject(stack.catcher, BUYER, SUBJECTS["password"])
    return link_in(created, "CREAR CONTRASEÑA")


def _wizard(stack: Stack, customer: WebCustomer) -> Page:
    """The workspace wizard at step 1, password set."""
    page = customer.open(_password_url(stack))
    customer.submit(page, "CREAR CONTRASEÑA", {"password": GOOD, "confirmation": GOOD})
    message = wait_for_subject(stack.catcher, BUYER, SUBJECTS["workspace"])
    return customer.submit(
        customer.open(link_in(message, "CREAR WORKSPACE")), "ACTIVAR"
    )


def _setup_link(stack: Stack, customer: WebCustomer) -> str:
    """The INICIAR SETUP link of a purchase without a workspace wizard,
    password set."""
    page = customer.open(_password_url(stack, "simple"))
    customer.submit(page, "CREAR CONTRASEÑA", {"password": GOOD, "confirmation": GOOD})
    message = wait_for_subject(stack.catcher, BUYER, SUBJECTS["setup"])
    return link_in(message, "INICIAR SETUP")


def _tag(html: str, name: str) -> str:
    """The opening tag of the box named ``name``."""
    found = re.search(rf'<(?:input|select)[^>]*name="{name}"[^>]*>', html)
    assert found is not None, name
    return found.group(0)


def _value(html: str, name: str) -> str:
    found = re.search(r'value="([^"]*)"', _tag(html, name))
    assert found is not None, name
    return found.group(1)


# -- post/redirect/get ----------------------------------------------------------


def test_a_refused_post_answers_303_and_reload_shows_the_same_refusal(
    stack: Stack, customer: WebCustomer
) -> None:
    url = _password_url(stack)
    page = customer.open(url)
    form = dict(page.form("CREAR CONTRASEÑA").fields)
    typed = {**form, "password": GOOD, "confirmation": GOOD + "x"}
    answer = customer.client.post(url, data=typed, follow_redirects=False)
    # Never a page in answer to a post: a redirect to one, by GET.
    assert answer.status_code == 303
    location = answer.headers["location"]
    assert location.startswith(httpx.URL(url).path + "?aviso=")
    assert COOKIE in answer.headers["set-cookie"]
    assert "httponly" in answer.headers["set-cookie"].lower()
    # What the cookie carries, decoded, is checked in test_web_flash.py.

    shown = customer.open(httpx.URL(url).join(location).__str__())
    reloaded = customer.open(shown.url)
    for refused in (shown, reloaded):
        assert refused.status == 400
        assert 'id="confirmation-error"' in refused.html
        assert GOOD not in refused.html  # passwords are never written back
    assert stack.onboarding.verify_password(BUYER, GOOD) is False

    # The page's form, sent again as it is, works and lands on a GET page.
    done = customer.client.post(
        url, data={**form, "password": GOOD, "confirmation": GOOD}
    )
    assert [r.status_code for r in done.history] == [303]
    assert done.request.method == "GET"
    assert "¡Tu contraseña está lista!" in done.text
    # Reloading the done page shows it again, and sends nothing.
    assert "¡Tu contraseña está lista!" in customer.open(str(done.url)).text


def test_every_wizard_step_is_a_redirect_to_a_get_page(
    stack: Stack, customer: WebCustomer
) -> None:
    page = _wizard(stack, customer)
    for button, data in [
        ("CREAR", {"name": "Camila Rojas", "email": BUYER}),
        ("SIGUIENTE", {"workspace_name": "Rojas"}),
        ("FINALIZAR", {"legal_name": "Rojas SpA", "rut": "76.543.210-3"}),
    ]:
        form = page.form(button)
        fields = {**dict(form.fields), **data}
        answer = customer.client.post(
            httpx.URL(page.url).join(form.action).__str__(),
            data=fields,
            follow_redirects=False,
        )
        assert answer.status_code == 303, button
        page = customer.open(
            httpx.URL(page.url).join(answer.headers["location"]).__str__()
        )
        assert page.status == 200, button
    assert "¡Tu espacio de trabajo está listo!" in page.text
    assert stack.onboarding.journey_by_order(_order(stack)).stage is Stage.SETUP_PENDING


def test_a_notice_whose_cookie_is_gone_says_so(stack: Stack) -> None:
    lost = httpx.get(stack.web_url + "/olvide-mi-contrasena?aviso=abc123")
    assert lost.status_code == 400
    assert LOST_MESSAGE.split(":")[0] in lost.text


# -- the workspace wizard: the stored administrator, stale tabs, double clicks ---


@pytest.mark.parametrize(
    ("name", "email"),
    [
        ("Camila Andrea Rojas", BUYER),  # the buyer names themself anew
        ("Valentina Soto", "valentina.soto@example.org"),  # another person
    ],
)
def test_step_one_shows_the_stored_administrator_when_returning(
    stack: Stack, customer: WebCustomer, name: str, email: str
) -> None:
    page = _wizard(stack, customer)
    assert "Paso 1 de 3" in page.text
    step2 = customer.submit(page, "CREAR", {"name": name, "email": email})
    assert "Paso 2 de 3" in step2.text
    back = customer.open(step2.url.split("?")[0] + "?paso=1")
    assert "Paso 1 de 3" in back.text
    assert _value(back.html, "name") == name
    assert _value(back.html, "email") == email


def test_a_stale_tab_changes_nothing_and_a_double_click_is_harmless(
    stack: Stack, customer: WebCustomer
) -> None:
    tab_a = _wizard(stack, customer)
    tab_b = customer.open(tab_a.url)
    saved = {"name": "Camila Rojas", "email": BUYER}
    assert "Paso 2 de 3" in customer.submit(tab_b, "CREAR", saved).text

    # Tab A still shows step 1, drawn before tab B saved it: a change sent
    # from there is refused, and the administrator stays as saved.
    stale = customer.submit(
        tab_a, "CREAR", {"name": "Otra Persona", "email": "otra@example.org"}
    )
    assert stale.status == 409
    assert STALE in stale.text
    assert "Paso 2 de 3" in stale.text  # the step the journey is at
    journey = stack.onboarding.journey_by_order(_order(stack))
    assert journey.stage is Stage.WORKSPACE_ADMIN_CREATED
    assert journey.workspace is not None
    assert journey.workspace.administrator_email == BUYER
    assert journey.workspace.administrator_name == "Camila Rojas"

    # The same step sent twice (a double click): the next step, no error.
    again = customer.submit(tab_a, "CREAR", saved)
    assert again.status == 200
    assert "Paso 2 de 3" in again.text
    assert STALE not in again.text
    assert 'class="alert"' not in again.html

    # Tab B's next step still works: it was drawn from the current journey.
    step3 = customer.submit(
        customer.open(tab_b.url), "SIGUIENTE", {"workspace_name": "Rojas"}
    )
    assert "Paso 3 de 3" in step3.text


# -- forms: novalidate, errors beside fields, the focus on the first -------------


def test_forms_leave_checks_to_the_server_and_focus_the_first_error(
    stack: Stack, customer: WebCustomer
) -> None:
    page = _wizard(stack, customer)
    assert all(" novalidate" in tag for tag in re.findall(r"<form[^>]*>", page.html))
    refused = customer.submit(page, "CREAR", {"name": "Camila", "email": "no-es"})
    assert refused.status == 400
    email = _tag(refused.html, "email")
    assert 'aria-invalid="true"' in email
    assert 'aria-describedby="email-error"' in email
    assert 'id="email-error"' in refused.html
    assert "aria-invalid" not in _tag(refused.html, "name")
    # The keyboard starts at the box in error, and only there.
    assert " autofocus" in email
    assert refused.html.count(" autofocus") == 1


def test_the_factura_form_reports_every_missing_field_at_once(
    stack: Stack, customer: WebCustomer
) -> None:
    stack.onboarding.record_purchase(purchase_for("simple", BUYER))
    tax = link_in(
        wait_for_subject(stack.catcher, BUYER, SUBJECTS["tax"]), "SOLICITAR DOCUMENTO"
    )
    page = customer.open(tax)
    blank = {"legal_name": "", "rut": "", "business_activity": "", "address": ""}
    refused = customer.submit(page, "SOLICITAR DOCUMENTO", {"kind": "factura", **blank})
    assert refused.status == 400
    for field, said in [
        ("legal_name", "Ingresa la razón social"),
        ("rut", "RUT"),
        ("business_activity", "Ingresa el giro"),
        ("address", "Ingresa la dirección"),
    ]:
        error = re.search(rf'id="{field}-error">([^<]*)<', refused.html)
        assert error is not None, field
        assert said in error.group(1), field
        assert 'aria-invalid="true"' in _tag(refused.html, field)
    assert "Revisa los 4 datos marcados" in refused.text
    assert " autofocus" in _tag(refused.html, "legal_name")
    assert refused.html.count(" autofocus") == 1
    journey = stack.onboarding.journey_by_order(_order(stack))
    assert journey.tax_document is None


# -- sizes and limits on pages -----------------------------------------------------


def test_a_too_large_form_without_a_file_is_told_the_request_limit(
    stack: Stack, customer: WebCustomer
) -> None:
    page = customer.open(stack.web_url + "/olvide-mi-contrasena")
    limit = page_body_limit(stack.onboarding.settings.signature_max_bytes)
    refused = customer.submit(
        page, "ENVIAR EMAIL", {"email": BUYER, "relleno": "x" * (limit + 1024)}
    )
    assert refused.status == 413
    assert "La solicitud es demasiado grande" in refused.text
    assert "archivo" not in refused.text.lower()
    assert "firma" not in refused.text.lower()


# -- Spanish 404 and 405 pages, headers, files ------------------------------------


def test_unknown_pages_and_methods_are_spanish_pages_with_the_same_headers(
    stack: Stack,
) -> None:
    base = stack.web_url
    missing = httpx.get(base + "/no-existe")
    wrong_method = httpx.get(base + "/setup/abc/comenzar")
    posted_to_a_page = httpx.post(base + "/workspace/abc")
    assert missing.status_code == 404
    assert "No encontramos esta página" in missing.text
    assert "Not Found" not in missing.text
    for answer in (wrong_method, posted_to_a_page):
        assert answer.status_code == 405
        assert "Esta dirección no recibe esa solicitud" in answer.text
        assert "Method Not Allowed" not in answer.text
        assert answer.headers["allow"]
    for answer in (missing, wrong_method, posted_to_a_page):
        assert '<html lang="es-CL">' in answer.text
        assert answer.headers["content-type"].startswith("text/html")
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert "default-src 'none'" in answer.headers["content-security-policy"]
        assert answer.headers["x-content-type-options"] == "nosniff"
    # The API's own unknown addresses stay JSON.
    api = httpx.get(base + "/api/v1/no-existe")
    assert api.status_code == 404
    assert api.json()["error"]["code"] == "not_found"
    # A 405 names every method the address takes, GET and POST alike.
    put = httpx.put(base + "/api/v1/password")
    assert put.status_code == 405
    assert put.json()["error"]["code"] == "method_not_allowed"
    assert set(put.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}
    deleted = httpx.delete(base + "/api/v1/setup/start")
    assert deleted.headers["allow"] == "POST"


def test_files_and_the_api_document_send_no_referrer_and_cache_sensibly(
    stack: Stack,
) -> None:
    base = stack.web_url
    page = httpx.get(base + "/olvide-mi-contrasena")
    icon = re.search(r'<link rel="icon" href="([^"]+)"', page.text)
    assert icon is not None
    assert icon.group(1) == "/static/favicon.svg"  # served here, no other host
    assert not re.findall(r'(?:href|src)="https?://', page.text)
    favicon = httpx.get(base + icon.group(1))
    assert favicon.status_code == 200
    assert favicon.headers["content-type"].startswith("image/svg+xml")
    for path in ("/static/site.css", icon.group(1)):
        answer = httpx.get(base + path)
        assert answer.status_code == 200
        assert answer.headers["referrer-policy"] == "no-referrer"
        # Revalidated on each use, so an upgrade shows at once.
        assert answer.headers["cache-control"] == "no-cache"
        etag = answer.headers["etag"]
        again = httpx.get(base + path, headers={"If-None-Match": etag})
        assert again.status_code == 304
    spec = httpx.get(base + "/api/v1/openapi.json")
    assert spec.status_code == 200
    assert spec.headers["referrer-policy"] == "no-referrer"


# -- access logs --------------------------------------------------------------------


def test_a_flask_hosts_access_log_never_shows_a_token(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    from a2wsgi import ASGIMiddleware
    from flask import Flask
    from werkzeug.middleware.dispatcher import DispatcherMiddleware
    from werkzeug.serving import make_server

    url = _password_url(stack, "simple")
    token = url.rsplit("/", 1)[1]
    host = Flask("host")
    host.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        host.wsgi_app, {"/onboarding": ASGIMiddleware(create_app(stack.onboarding))}
    )
    port = free_port()
    server = make_server("127.0.0.1", port, host, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    caplog.set_level(logging.INFO, logger="werkzeug")
    thread.start()
    try:
        base = f"http://127.0.0.1:{port}/onboarding"
        assert httpx.get(f"{base}/contrasena/{token}").status_code == 200
        httpx.get(f"{base}/setup/{token}")
        httpx.post(f"{base}/contrasena/{token}", data={"password": "x"})
    finally:
        server.shutdown()
        thread.join(10)
    lines = [r.getMessage() for r in caplog.records if r.name == "werkzeug"]
    assert len([line for line in lines if "/onboarding/" in line]) >= 3
    assert all(token not in line for line in lines)
    assert any("/onboarding/contrasena/[token]" in line for line in lines)


@pytest.mark.parametrize(
    ("msg", "args"),
    [
        # uvicorn: the client, the method, the raw path, the version, status.
        ('%s - "%s %s HTTP/%s" %d', ("127.0.0.1:5", "GET", "{path}", "1.1", 200)),
        # werkzeug: the request line as one argument.
        ('%s - - [%s] "%s" %s %s', ("127.0.0.1", "x", "GET {path} HTTP/1.1", 200, 9)),
        # gunicorn: a mapping of atoms.
        (
            '%(h)s "%(r)s" %(s)s',
            {"h": "127.0.0.1", "r": "GET {path} HTTP/1.1", "s": 200},
        ),
    ],
)
def test_every_servers_log_record_loses_the_token(
    msg: str, args: tuple[object, ...] | dict[str, object]
) -> None:
    token = "Y3JlYXRl.aBcD1234_-x.MTcwMDAwMDAw.c2lnbmF0dXJl"
    for path in (
        f"/onboarding/contrasena/{token}",
        f"/setup/{token}/firma?paso=2",
        f"/certificacion/{token[:20]}",  # a token cut short by a mail client
    ):
        filled: tuple[object, ...] | dict[str, object]
        if isinstance(args, dict):
            filled = {k: str(v).format(path=path) for k, v in args.items()}
        else:
            filled = tuple(
                a.format(path=path) if isinstance(a, str) else a for a in args
            )
        record = logging.LogRecord("x", logging.INFO, __file__, 1, msg, filled, None)
        RedactLinkTokens().filter(record)
        line = record.getMessage()
        assert token[:20] not in line, line
        assert "[token]" in line
    # The API's paths name actions, not tokens.
    assert redact_path("/api/v1/setup/start") == "/api/v1/setup/start"


def test_the_setup_wizard_refuses_a_stale_tab_and_ignores_a_double_click(
    stack: Stack, customer: WebCustomer
) -> None:
    setup = _setup_link(stack, customer)
    tab_a = customer.submit(customer.open(setup), "COMENZAR")
    assert "Paso 1 de 3" in tab_a.text
    tab_b = customer.open(setup)
    assert "Paso 2 de 3" in customer.submit(tab_b, "SIGUIENTE").text
    chosen = stack.onboarding.journey_by_order(_order(stack)).organization
    assert chosen is not None

    again = customer.submit(tab_a, "SIGUIENTE")  # the same choice, twice
    assert again.status == 200
    assert "Paso 2 de 3" in again.text
    assert STALE not in again.text

    stale = customer.submit(
        tab_a,
        "SIGUIENTE",
        {"organization": "new", "legal_name": "Otra SpA", "rut": "76.543.210-3"},
    )
    assert stale.status == 409
    assert STALE in stale.text
    assert "Paso 2 de 3" in stale.text
    journey = stack.onboarding.journey_by_order(_order(stack))
    assert journey.stage is Stage.SETUP_ORGANIZATION_CHOSEN
    assert journey.organization == chosen
    assert journey.workspace is not None
    assert len(journey.workspace.organizations) == 1


def test_a_new_organization_sent_twice_is_created_once(
    stack: Stack, customer: WebCustomer
) -> None:
    setup = _setup_link(stack, customer)
    step1 = customer.submit(customer.open(setup), "COMENZAR")
    new = {"organization": "new", "legal_name": "Rojas SpA", "rut": "76.543.210-3"}
    first = customer.submit(step1, "SIGUIENTE", new)
    second = customer.submit(step1, "SIGUIENTE", {**new, "rut": "76543210-3"})
    for answer in (first, second):
        assert answer.status == 200
        assert "Paso 2 de 3" in answer.text
    assert STALE not in second.text
    journey = stack.onboarding.journey_by_order(_order(stack))
    assert journey.organization is not None
    assert journey.organization.legal_name == "Rojas SpA"
    assert journey.workspace is not None
    assert [o.rut for o in journey.workspace.organizations].count("76543210-3") == 1


def _checked_organization(html: str) -> str:
    checked = [
        tag
        for tag in re.findall(r'<input[^>]*name="organization"[^>]*>', html)
        if " checked" in tag
    ]
    assert len(checked) == 1, checked
    found = re.search(r'value="([^"]*)"', checked[0])
    assert found is not None
    return found.group(1)


def test_going_back_in_the_setup_wizard_shows_the_answers_given(
    stack: Stack, customer: WebCustomer
) -> None:
    # Volver to step 1 shows the organization chosen (here a new one, not
    # the first of the list), and to step 2 the representative's RUT: sent
    # again as shown, the answers stay what they were.
    setup = _setup_link(stack, customer)
    step1 = customer.submit(customer.open(setup), "COMENZAR")
    first = _checked_organization(step1.html)
    new = {"organization": "new", "legal_name": "Rojas SpA", "rut": "76.543.210-3"}
    assert "Paso 2 de 3" in customer.submit(step1, "SIGUIENTE", new).text
    chosen = stack.onboarding.journey_by_order(_order(stack)).organization
    assert chosen is not None
    assert str(chosen.id) != first

    back = customer.open(setup + "?paso=1")
    assert "Paso 1 de 3" in back.text
    assert _checked_organization(back.html) == str(chosen.id)
    assert "Paso 2 de 3" in customer.submit(back, "SIGUIENTE").text
    assert stack.onboarding.journey_by_order(_order(stack)).organization == chosen

    step2 = customer.open(setup)
    step3 = customer.submit(
        step2,
        "SIGUIENTE",
        {"signature_password": "buena", "legal_representative_rut": "123456785"},
        files={
            "signature": (
                "firma.pfx",
                make_pkcs12(password="buena"),
                "application/x-pkcs12",
            )
        },
    )
    assert "Paso 3 de 3" in step3.text
    back2 = customer.open(setup + "?paso=2")
    assert "Paso 2 de 3" in back2.text
    assert _value(back2.html, "legal_representative_rut") == "12.345.678-5"
    assert "value=" not in _tag(back2.html, "signature_password")  # never shown


def test_a_token_anywhere_in_a_line_is_redacted_and_addresses_are_not() -> None:
    token, _ = LinkSigner(("una-clave-de-prueba-larga",)).issue("create_password")
    wrapped = "http%3A%2F%2Fh%2Fcontrasena%2F" + token.replace(".", "%2E")
    for line in (
        f"GET /onboarding/api/v1/password?token={token} HTTP/1.1",
        f"POST /onboarding/enlace-nuevo?t={token} HTTP/1.1",
        f"GET /x?url={wrapped} HTTP/1.1",
        f"Authorization: Bearer {token}",
        token,
    ):
        redacted = redact_path(line)
        assert token.split(".")[1] not in redacted, redacted
        assert token.split(".")[3] not in redacted, redacted
        assert "[token]" in redacted
    # Four dotted numbers after a slash are an address, not a token.
    banner = " * Running on http://127.0.0.1:8771"
    assert redact_path(banner) == banner
    assert redact_path("GET /static/site.css?v=1.2.3.4") == (
        "GET /static/site.css?v=1.2.3.4"
    )


def test_the_signature_step_sent_twice_lands_on_the_next_step(
    stack: Stack, customer: WebCustomer
) -> None:
    # A slow upload invites a second click: the same file, password and RUT
    # from the same page are not a change, while another file from that
    # page, now stale, still is refused and changes nothing.
    setup = _setup_link(stack, customer)
    step1 = customer.submit(customer.open(setup), "COMENZAR")
    step2 = customer.submit(step1, "SIGUIENTE")
    assert "Paso 2 de 3" in step2.text
    pfx = make_pkcs12(password="buena")
    fields = {"signature_password": "buena", "legal_representative_rut": "12345678-5"}

    def upload(data: bytes) -> Page:
        return customer.submit(
            step2,
            "SIGUIENTE",
            fields,
            files={"signature": ("firma.pfx", data, "application/x-pkcs12")},
        )

    first = upload(pfx)
    loaded = stack.onboarding.journey_by_order(_order(stack)).signature
    assert loaded is not None
    second = upload(pfx)
    for answer in (first, second):
        assert answer.status == 200
        assert "Paso 3 de 3" in answer.text
    assert STALE not in second.text

    other = upload(make_pkcs12(password="buena", holder_name="Otra Persona Soto"))
    assert other.status == 409
    assert STALE in other.text
    journey = stack.onboarding.journey_by_order(_order(stack))
    assert journey.signature == loaded


def test_every_bad_box_of_a_wizard_step_is_marked_at_once(
    stack: Stack, customer: WebCustomer
) -> None:
    page = _wizard(stack, customer)
    refused = customer.submit(page, "CREAR", {"name": "", "email": ""})
    assert refused.status == 400
    assert "Revisa los 2 datos marcados" in refused.text
    for box in ("name", "email"):
        assert 'aria-invalid="true"' in _tag(refused.html, box), box
    # The keyboard starts at the first, in the page's order.
    assert " autofocus" in _tag(refused.html, "name")
    assert refused.html.count(" autofocus") == 1
    assert stack.onboarding.journey_by_order(_order(stack)).workspace is not None

    tabbed = customer.submit(page, "CREAR", {"name": "A\tB", "email": "malo"})
    assert "Revisa los 2 datos marcados" in tabbed.text
    step2 = customer.submit(
        page, "CREAR", {"name": "Camila Rojas", "email": "camila@example.cl"}
    )
    step3 = customer.submit(step2, "SIGUIENTE", {"workspace_name": "Rojas"})
    last = customer.submit(
        step3, "FINALIZAR", {"legal_name": "", "rut": "12.345.678-0"}
    )
    assert "Revisa los 2 datos marcados" in last.text
    for box in ("legal_name", "rut"):
        assert 'aria-invalid="true"' in _tag(last.html, box), box
