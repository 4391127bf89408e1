"""The pages a customer meets when something goes wrong, in Chromium.

An expired link, a used one, a link that never was, a form refused for
CSRF, an upload too large, a form the server could not read, and the
development mailbox's refusals: each is a page like the others (Spanish,
one heading, no sideways scrolling on a phone), saved under
``artifacts/screenshots/``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, Route, expect

from haulmer_onboarding.cli import local_stack
from haulmer_onboarding.signatures import format_size
from haulmer_onboarding.testing.scenarios import plain
from haulmer_onboarding.web.limits import page_body_limit

BUYER = "compras@ferreteria-los-andes.cl"
PASSWORD_EMAIL = "[Haulmer Accounts] Crea tu nueva contraseña"
TAX_EMAIL = "¿Boleta o factura? Obtén tu documento tributario por la compra en HAULMER"

LONG_ADDRESS = "administracion.contabilidad@ferreteria-los-andes-del-sur.cl"
VIEWPORTS = pytest.mark.parametrize("viewport_kind", ["desktop", "phone"])


def heading(page: Page) -> str:
    return page.locator("h1").inner_text().strip()


def broken_addresses(page: Page) -> list[str]:
    """The email addresses on the page that run over two lines (such as
    "ferreteria-los-" and "andes.cl") although one line could hold them."""
    return page.evaluate(
        """() => [...document.querySelectorAll('.address')].filter(e => {
            const tops = new Set([...e.getClientRects()]
                .map(r => Math.round(r.top)));
            return tops.size > 1
                || e.getBoundingClientRect().height > 1.6 * parseFloat(
                    getComputedStyle(e).lineHeight || '24');
        }).map(e => e.textContent)"""
    )


def send_with_plain_submit(page: Page, form: str) -> None:
    """Send ``form`` as the browser would, skipping its own checks
    (``required``, ``type=email``) as an old browser or a tampered page
    does."""
    page.evaluate("(selector) => document.querySelector(selector).submit()", form)


@VIEWPORTS
@pytest.mark.journey_kit(live_server=True, timeout=10)
def test_link_and_form_refusals_are_pages_that_fit_a_phone(
    journey_kit, screens, browser_page, viewport_kind: str
) -> None:
    kit = journey_kit
    page, _ = browser_page
    base_url = kit.onboarding.settings.base_url
    kit.purchase(plain(BUYER))

    # A link that never was: its own page, and the way to a new email.
    screens.open(f"{base_url}/contrasena/no-es-un-enlace", "invalid-link", status=404)
    assert heading(page) == "Enlace no válido"
    expect(page.get_by_role("link", name="¿Olvidó su contraseña?")).to_be_visible()

    # A form whose CSRF token was tampered with: 403, nothing changed, and
    # the way back to a fresh form.
    password_url = kit.mailbox.expect(PASSWORD_EMAIL, to=BUYER).link("CREAR CONTRASEÑA")
    url = password_url
    screens.open(url, "create-password")
    page.locator("input[name=csrf_token]").evaluate("e => e.value = 'falsificado'")
    page.get_by_label("Nueva contraseña").fill(kit.password)
    page.get_by_label("Repite la contraseña").fill(kit.password)
    screens.press("CREAR CONTRASEÑA", "csrf-refused", status=403)
    assert heading(page) == "No hicimos ningún cambio"
    back = page.get_by_role("link", name="Volver a la página")
    expect(back).to_be_visible()
    assert not kit.journey(1).buyer.has_password

    # A body the server cannot read (a proxy mangled it): the generic page.
    back.click()

    def mangle(route: Route) -> None:
        route.continue_(
            headers={**route.request.headers, "content-type": "multipart/form-data"},
            post_data=b"--x\r\nroto",
        )

    page.route(url, mangle)
    page.get_by_label("Nueva contraseña").fill(kit.password)
    page.get_by_label("Repite la contraseña").fill(kit.password)
    screens.press("CREAR CONTRASEÑA", "form-unreadable", status=400)
    page.unroute(url)
    assert heading(page) == "No pudimos continuar"
    expect(page.get_by_role("alert")).to_contain_text("No pudimos leer el formulario")

    # A request past the size limit: 413, told in Spanish with the limit.
    screens.open(f"{base_url}/olvide-mi-contrasena", "forgot-password")
    limit = kit.onboarding.settings.signature_max_bytes
    page.evaluate(
        """(size) => { const extra = document.createElement('input');
            extra.type = 'hidden'; extra.name = 'relleno';
            extra.value = 'x'.repeat(size);
            document.querySelector('form').append(extra); }""",
        limit + 128 * 1024,
    )
    page.get_by_label("Correo electrónico").fill(BUYER)
    screens.press("ENVIAR EMAIL", "too-large", status=413)
    # This form takes no file: the request's limit, not the signature's.
    assert heading(page) == "Solicitud demasiado grande"
    expect(page.get_by_role("alert")).to_contain_text(
        f"el máximo es {format_size(page_body_limit(limit))}."
    )
    expect(page.get_by_role("alert")).not_to_contain_text("archivo")

    # A used link: its step's done page, saying the link was used.
    url = kit.mailbox.expect(TAX_EMAIL, to=BUYER).link("SOLICITAR DOCUMENTO")
    screens.open(url, "tax-document")
    screens.press("SOLICITAR DOCUMENTO", "tax-document-done")
    screens.open(url, "used-link", status=410)
    # Told under the heading, as news rather than as an error.
    note = page.get_by_role("status")
    expect(note).to_have_text("Este enlace ya fue usado: este paso ya está completo.")
    expect(page.locator("h1 + .info")).to_have_count(1)
    expect(page.get_by_role("alert")).to_have_count(0)

    # An expired link: the page offers a new one, and sends it.
    kit.clock.advance(days=4)
    screens.open(password_url, "expired-link", status=410)
    assert heading(page) == "Este enlace expiró"
    assert broken_addresses(page) == []
    screens.press("ENVIAR UN NUEVO ENLACE", "link-renewed")
    assert heading(page) == "Te enviamos un enlace nuevo"
    assert broken_addresses(page) == []


@VIEWPORTS
def test_the_development_mailbox_refuses_with_a_page(
    screens, browser_page, tmp_path: Path, viewport_kind: str
) -> None:
    page, _ = browser_page
    with local_stack(tmp_path, development=True) as dev:
        mailbox = f"{dev.web_url}/_dev/correos"
        screens.open(mailbox, "dev-mailbox")

        # A scenario that is not in the list (an edited form).
        page.locator("#scenario option").first.evaluate("o => o.value = 'no-existe'")
        screens.press("REGISTRAR COMPRA", "dev-unknown-scenario", status=400)
        assert heading(page) == "No registramos la compra"
        expect(page.get_by_role("alert")).to_have_text(
            "Elige una de las compras de prueba de la lista."
        )
        page.get_by_role("link", name="Volver a la página").click()
        assert page.url == mailbox

        # An address the SDK refuses, sent past the browser's own check.
        page.get_by_label("Correo del comprador").fill("no-es-un-correo")
        with page.expect_navigation() as navigation:
            send_with_plain_submit(page, "form")
        assert navigation.value is not None
        assert navigation.value.status == 400
        screens.shoot("dev-bad-email")
        assert heading(page) == "No registramos la compra"
        expect(page.get_by_role("alert")).to_contain_text("correo")
        assert dev.onboarding.events(1) == []

        # A purchase recorded: its emails listed, long addresses and all,
        # in a table that fits the screen, under a heading smaller than h1.
        page.get_by_role("link", name="Volver a la página").click()
        page.get_by_label("Correo del comprador").fill(LONG_ADDRESS)
        screens.press("REGISTRAR COMPRA", "dev-mailbox-purchase")
        for _ in range(50):
            if page.locator("td").count():
                break
            page.wait_for_timeout(200)
            page.reload()
        expect(page.get_by_role("cell", name=LONG_ADDRESS).first).to_be_visible()
        screens.shoot("dev-mailbox-with-emails")
        sizes = page.evaluate(
            """() => ['h1', 'h2'].map(t => parseFloat(
                getComputedStyle(document.querySelector(t)).fontSize))"""
        )
        assert sizes[1] < sizes[0], f"h2 is not smaller than h1: {sizes}"
        broken = page.evaluate(
            """() => [...document.querySelectorAll('th, td a')].filter(e => {
                const range = document.createRange();
                range.selectNodeContents(e);
                return new Set([...range.getClientRects()]
                    .map(r => Math.round(r.top))).size > 1;
            }).map(e => e.textContent)"""
        )
        assert broken == [], f"words split over lines: {broken}"
