"""The flash a refused post hands to the page it redirects to, over real HTTP,
as one browser (one cookie jar) meets it: refusals in two tabs or on two
links never overwrite each other; Back to an earlier refusal on the same
page still shows it; what was typed too large for a cookie is dropped
largest first, the choices kept, and the page says what was dropped; the
cookies stay few and small and never hold a password."""

from __future__ import annotations

import html
import json
import random
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from itsdangerous import URLSafeTimedSerializer

from haulmer_onboarding.cli import SUBJECTS, Stack, local_stack
from haulmer_onboarding.testing.customer import (
    Page,
    WebCustomer,
    link_in,
    wait_for_subject,
)
from haulmer_onboarding.testing.scenarios import purchase_for
from haulmer_onboarding.web.flash import COOKIE, MAX_ENTRIES, MAX_PAGES

GOOD = "Cordillera2026"
BAD_RUT = "76.123.456-9"  # wrong check digit
RUT_ERROR = 'id="rut-error"'
GONE = "enviaste otros formularios después"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with local_stack(tmp_path, seconds_per_business_day=0.05, poll_interval=0.1) as s:
        yield s


@pytest.fixture
def customer() -> Iterator[WebCustomer]:
    with WebCustomer() as web:
        yield web


def _tax_url(stack: Stack, buyer: str, order: str) -> str:
    stack.onboarding.record_purchase(purchase_for("simple", buyer, order))
    message = wait_for_subject(stack.catcher, buyer, SUBJECTS["tax"])
    return link_in(message, "SOLICITAR DOCUMENTO")


def _value(page: Page, name: str) -> str:
    found = re.search(rf'<input[^>]*name="{name}"[^>]*value="([^"]*)"', page.html)
    assert found is not None, name
    return html.unescape(found.group(1))


def _chosen(page: Page, name: str) -> list[str]:
    """The values of the checked radio buttons named ``name``."""
    tags = re.findall(rf'<input[^>]*name="{name}"[^>]*>', page.html)
    return [
        re.search(r'value="([^"]*)"', tag).group(1)  # type: ignore[union-attr]
        for tag in tags
        if " checked" in tag
    ]


def _factura(customer: WebCustomer, url: str, legal_name: str, **typed: str) -> Page:
    """A factura with a bad RUT, refused; the page it lands on."""
    page = customer.submit(
        customer.open(url),
        "SOLICITAR DOCUMENTO",
        {
            "kind": "factura",
            "legal_name": legal_name,
            "rut": BAD_RUT,
            "business_activity": "Ferretería",
            "address": "Av. Los Andes 123, Santiago",
            **typed,
        },
    )
    assert page.status == 400
    assert "?aviso=" in page.url
    return page


def _flash_cookies(customer: WebCustomer) -> dict[str, str]:
    return {
        cookie.name: cookie.value or ""
        for cookie in customer.client.cookies.jar
        if cookie.name.startswith(COOKIE)
    }


# -- two tabs, two links, Back ------------------------------------------------


def test_refusals_on_two_links_one_after_the_other_each_keep_their_own(
    stack: Stack, customer: WebCustomer
) -> None:
    tab_a = _tax_url(stack, "compras@ferreteria-los-andes.cl", "OC-A-1")
    tab_b = _tax_url(stack, "compras@panaderia-el-sol.cl", "OC-B-1")
    refused_a = _factura(customer, tab_a, "Ferretería Los Andes SpA")
    refused_b = _factura(customer, tab_b, "Panadería El Sol Ltda")
    # Reload tab A, then tab B, within seconds: each shows its own refusal
    # with what was typed there.
    for refused, name in [
        (refused_a, "Ferretería Los Andes SpA"),
        (refused_b, "Panadería El Sol Ltda"),
    ]:
        reloaded = customer.open(refused.url)
        assert reloaded.status == 400
        assert RUT_ERROR in reloaded.html
        assert "No pudimos mostrar" not in reloaded.text
        assert _value(reloaded, "legal_name") == name
        assert _value(reloaded, "rut") == BAD_RUT
        assert _chosen(reloaded, "kind") == ["factura"]
    # A tab on a linkless page (forgot password) does not disturb them.
    forgot = customer.open(stack.web_url + "/olvide-mi-contrasena")
    sent = customer.submit(forgot, "ENVIAR EMAIL", {"email": "no-es-un-correo"})
    assert sent.status == 400
    assert _value(customer.open(refused_a.url), "legal_name") == (
        "Ferretería Los Andes SpA"
    )
    assert _value(customer.open(sent.url), "email") == "no-es-un-correo"


def test_back_to_an_earlier_refusal_on_the_same_page_shows_that_one(
    stack: Stack, customer: WebCustomer
) -> None:
    url = _tax_url(stack, "compras@ferreteria-los-andes.cl", "OC-A-2")
    names = [f"Ferretería número {n} SpA" for n in range(MAX_ENTRIES + 1)]
    refused = []
    for name in names[:MAX_ENTRIES]:
        refused.append(_factura(customer, url, name))
    # Back, one page at a time: each shows the refusal it was, not the last.
    for page, name in reversed(list(zip(refused, names, strict=False))):
        back = customer.open(page.url)
        assert back.status == 400
        assert _value(back, "legal_name") == name
        assert RUT_ERROR in back.html
    # One more pushes the oldest out; the page says so truthfully.
    newest = _factura(customer, url, names[-1])
    assert _value(customer.open(newest.url), "legal_name") == names[-1]
    assert _value(customer.open(refused[1].url), "legal_name") == names[1]
    lost = customer.open(refused[0].url)
    assert lost.status == 400
    assert GONE in lost.text
    assert names[0] not in lost.html


def test_back_to_the_first_refusal_of_workspace_step_one(
    stack: Stack, customer: WebCustomer
) -> None:
    buyer = "compras@ferreteria-los-andes.cl"
    stack.onboarding.record_purchase(purchase_for("razon-social", buyer))
    created = wait_for_subject(stack.catcher, buyer, SUBJECTS["password"])
    page = customer.open(link_in(created, "CREAR CONTRASEÑA"))
    customer.submit(page, "CREAR CONTRASEÑA", {"password": GOOD, "confirmation": GOOD})
    message = wait_for_subject(stack.catcher, buyer, SUBJECTS["workspace"])
    wizard = customer.submit(
        customer.open(link_in(message, "CREAR WORKSPACE")), "ACTIVAR"
    )
    first = customer.submit(
        wizard, "CREAR", {"name": "Camila Rojas", "email": "camila-sin-arroba"}
    )
    second = customer.submit(
        first, "CREAR", {"name": "Camila Andrea Rojas", "email": "otra-sin-arroba"}
    )
    assert (first.status, second.status) == (400, 400)
    back = customer.open(first.url)
    assert back.status == 400
    assert _value(back, "name") == "Camila Rojas"
    assert _value(back, "email") == "camila-sin-arroba"
    assert 'id="email-error"' in back.html
    assert _value(customer.open(second.url), "email") == "otra-sin-arroba"


# -- what does not fit ---------------------------------------------------------


def _cjk(seed: int, length: int = 1000) -> str:
    """``length`` varied CJK characters: they compress poorly, as real text."""
    rng = random.Random(seed)
    return "".join(chr(0x4E00 + rng.randrange(20000)) for _ in range(length))


def test_an_oversize_factura_keeps_the_choice_and_says_what_was_dropped(
    stack: Stack, customer: WebCustomer
) -> None:
    url = _tax_url(stack, "compras@ferreteria-los-andes.cl", "OC-A-3")
    refused = _factura(
        customer,
        url,
        _cjk(1),
        business_activity=_cjk(2),
        address=_cjk(3),
    )
    for page in (refused, customer.open(refused.url)):
        assert _chosen(page, "kind") == ["factura"]  # not Boleta again
        assert RUT_ERROR in page.html
        assert _value(page, "rut") == BAD_RUT
        assert (
            "No pudimos conservar lo que escribiste en razón social, giro y "
            "dirección; escríbelo de nuevo." in page.text
        )
        assert _value(page, "legal_name") == ""


def test_the_largest_value_is_dropped_first_and_the_small_ones_kept(
    stack: Stack, customer: WebCustomer
) -> None:
    url = _tax_url(stack, "compras@ferreteria-los-andes.cl", "OC-A-4")
    refused = _factura(customer, url, _cjk(4))
    assert _chosen(refused, "kind") == ["factura"]
    assert _value(refused, "legal_name") == ""
    assert _value(refused, "business_activity") == "Ferretería"
    assert _value(refused, "address") == "Av. Los Andes 123, Santiago"
    assert (
        "No pudimos conservar lo que escribiste en razón social; escríbelo de nuevo."
        in refused.text
    )
    # What fits is kept whole, never cut short, and no note is shown.
    long_name = "Comercializadora " + "y Distribuidora " * 30 + "SpA"
    kept = _factura(customer, url, long_name)
    assert _value(kept, "legal_name") == long_name
    assert "No pudimos conservar" not in kept.text


# -- what the cookies hold -----------------------------------------------------


def test_the_cookie_never_holds_a_password(stack: Stack, customer: WebCustomer) -> None:
    buyer = "compras@ferreteria-los-andes.cl"
    stack.onboarding.record_purchase(purchase_for("razon-social", buyer))
    created = wait_for_subject(stack.catcher, buyer, SUBJECTS["password"])
    page = customer.open(link_in(created, "CREAR CONTRASEÑA"))
    for typo in ("x", "y"):
        page = customer.submit(
            page, "CREAR CONTRASEÑA", {"password": GOOD, "confirmation": GOOD + typo}
        )
        assert page.status == 400
    (value,) = _flash_cookies(customer).values()
    # Read what the signed cookie carries (its signature is not checked here).
    _, payload = URLSafeTimedSerializer("any").loads_unsafe(value)
    carried = json.dumps(payload, ensure_ascii=False)
    assert len(payload) == 2  # both refusals are there ...
    assert "confirmation" in carried  # ... with the field they name ...
    assert GOOD not in carried  # ... but never what was typed in it
    assert "csrf" not in carried
    assert "token" not in carried.lower()


def test_a_browser_keeps_few_small_flash_cookies(
    stack: Stack, customer: WebCustomer
) -> None:
    urls = [
        _tax_url(stack, f"compras{n}@ferreteria-los-andes.cl", f"OC-C-{n}")
        for n in range(MAX_PAGES + 2)
    ]
    refused = [_factura(customer, url, _cjk(10 + n, 400)) for n, url in enumerate(urls)]
    cookies = _flash_cookies(customer)
    assert len(cookies) == MAX_PAGES
    assert all(len(name) + len(value) < 4000 for name, value in cookies.items())
    # The newest pages still show their refusal; the oldest says it is gone.
    assert RUT_ERROR in customer.open(refused[-1].url).html
    lost = customer.open(refused[0].url)
    assert lost.status == 400
    assert GONE in lost.text
    assert httpx.get(refused[-1].url).status_code == 400  # no cookie: gone too
