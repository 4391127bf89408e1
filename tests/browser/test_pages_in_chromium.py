"""What the pages owe a customer in a real browser, beyond the happy path.

Keyboard only, errors beside their field, a wizard that survives a reload
and the back and forward buttons, a certification that failed, and pages
that fetch nothing from the internet.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Locator, Page, expect

from haulmer_onboarding import Stage
from haulmer_onboarding.testing.scenarios import new_legal_name, plain

BUYER = "compras@ferreteria-los-andes.cl"
PASSWORD_EMAIL = "[Haulmer Accounts] Crea tu nueva contraseña"
WORKSPACE_EMAIL = "[Workspace] Crea tu nuevo espacio de trabajo"

pytestmark = pytest.mark.journey_kit(live_server=True, timeout=10)


def focused(page: Page) -> dict[str, str]:
    """The element that has the keyboard's focus, and how it shows it."""
    return page.evaluate(
        """() => {
            const e = document.activeElement;
            const style = getComputedStyle(e);
            return {tag: e.tagName.toLowerCase(), id: e.id || '',
                    type: e.getAttribute('type') || '',
                    outline: style.outlineStyle, width: style.outlineWidth,
                    color: style.outlineColor, border: style.borderTopColor};
        }"""
    )


def contrast(
    css_color: str, background: tuple[int, int, int] = (255, 255, 255)
) -> float:
    """The WCAG contrast ratio of an ``rgb(...)`` colour against
    ``background``."""

    def luminance(rgb: tuple[int, ...]) -> float:
        linear = [
            c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
            for c in (v / 255 for v in rgb)
        ]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    rgb = tuple(int(v) for v in re.findall(r"[\d.]+", css_color)[:3])
    high, low = sorted((luminance(rgb), luminance(background)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def assert_error_beside(page: Page, field: Locator, message: str) -> None:
    """``message`` is shown right under ``field``, tied to it for a screen
    reader (``aria-invalid`` and ``aria-describedby``)."""
    __tracebackhide__ = True
    expect(field).to_have_attribute("aria-invalid", "true")
    described = field.get_attribute("aria-describedby") or ""
    errors = [page.locator(f"[id='{name}']") for name in described.split()]
    shown = [error for error in errors if message in error.inner_text()]
    assert shown, f"no error «{message}» described by {field}: {described!r}"
    error = shown[0]
    expect(error).to_be_visible()
    box, under = field.bounding_box(), error.bounding_box()
    assert box is not None
    assert under is not None
    gap = under["y"] - (box["y"] + box["height"])
    assert 0 <= gap <= 24, f"the error is {gap:.0f} px away from its field"
    # Nothing else sits between the field and its error.
    between = page.evaluate(
        """([field, error]) => {
            let n = field.nextElementSibling, seen = [];
            while (n && n !== error) { if (n.offsetParent) seen.push(n.outerHTML);
                                       n = n.nextElementSibling; }
            return n === error ? seen : null;
        }""",
        [field.element_handle(), error.element_handle()],
    )
    assert between is not None, "the error does not follow its field"
    # Only the field's own help may: its hint, and the live rule checks.
    helpers = ('class="hint"', 'class="rules"', 'class="match')
    assert all(any(h in html for h in helpers) for html in between), between


def set_password_over_http(kit) -> None:
    """The first step done without the browser, to reach the wizards."""
    email = kit.mailbox.expect(PASSWORD_EMAIL, to=BUYER)
    page = kit.customer.click(email, "CREAR CONTRASEÑA")
    page.press("CREAR CONTRASEÑA", password=kit.password, confirmation=kit.password)


def open_workspace_wizard(kit, screens) -> None:
    """A purchase that changes the razón social, its password set over
    HTTP, and the browser at step 1 of the workspace wizard."""
    kit.purchase(new_legal_name(BUYER))
    set_password_over_http(kit)
    email = kit.mailbox.expect(WORKSPACE_EMAIL, to=BUYER)
    screens.open(email.link("CREAR WORKSPACE"), "workspace-activate")
    screens.press("ACTIVAR", "workspace-step1-administrator")


def test_the_password_page_works_with_the_keyboard_alone(
    journey_kit, screens, browser_page
) -> None:
    kit = journey_kit
    page, _ = browser_page
    kit.purchase(plain(BUYER))
    email = kit.mailbox.expect(PASSWORD_EMAIL, to=BUYER)
    screens.open(email.link("CREAR CONTRASEÑA"), "create-password")

    # Tab walks the fields in reading order, each showing its focus.
    order = []
    for _ in range(10):
        page.keyboard.press("Tab")
        now = focused(page)
        assert now["outline"] != "none", now
        assert now["width"] != "0px", now
        # The focus ring and a box's edge stand out from the white page
        # (WCAG 1.4.11: 3:1 at least).
        assert contrast(now["color"]) >= 3, now
        if now["tag"] == "input":
            assert contrast(now["border"]) >= 3, now
        order.append(now["id"] or f"{now['tag']}[{now['type']}]")
        if now["type"] == "submit":
            break
    assert order.index("password") < order.index("confirmation"), order
    assert order[-1] == "button[submit]", order

    # Back to the first box, type both and send with Enter.
    page.keyboard.press("Shift+Tab")
    while focused(page)["id"] != "password":
        page.keyboard.press("Shift+Tab")
    page.keyboard.type(kit.password)
    while focused(page)["id"] != "confirmation":
        page.keyboard.press("Tab")
    page.keyboard.type(kit.password)
    with page.expect_navigation() as navigation:
        page.keyboard.press("Enter")
    assert navigation.value is not None
    assert navigation.value.status == 200
    screens.shoot("create-password-done")
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "¡Tu contraseña está lista!"
    )
    assert kit.journey(1).buyer.has_password


def test_errors_are_shown_beside_their_field(
    journey_kit, screens, browser_page
) -> None:
    kit = journey_kit
    page, _ = browser_page
    kit.purchase(new_legal_name(BUYER))
    email = kit.mailbox.expect(PASSWORD_EMAIL, to=BUYER)
    screens.open(email.link("CREAR CONTRASEÑA"), "create-password")

    # Two different passwords: the second box says so, whether the page
    # checks it before sending or the server answers.
    page.get_by_label("Nueva contraseña").fill("Cordillera2026")
    page.get_by_label("Repite la contraseña").fill("Cordillera2062")
    page.get_by_role("button", name="CREAR CONTRASEÑA").click()
    confirmation = page.get_by_label("Repite la contraseña")
    assert_error_beside(page, confirmation, "no coinciden")
    screens.shoot("create-password-mismatch")
    # Both boxes come back empty (a password never travels back in a page),
    # and the page says to type both again (docs/web.md).
    expect(page.get_by_label("Nueva contraseña")).to_have_value("")
    expect(confirmation).to_have_value("")
    expect(page.locator("#retype")).to_have_text(
        re.compile("escribe ambas contraseñas de nuevo")
    )
    assert not kit.journey(1).buyer.has_password

    # A typo in the RUT's check digit, told beside the RUT.
    page.get_by_label("Nueva contraseña").fill(kit.password)
    page.get_by_label("Repite la contraseña").fill(kit.password)
    screens.press("CREAR CONTRASEÑA", "create-password-done")
    email = kit.mailbox.expect(WORKSPACE_EMAIL, to=BUYER)
    screens.open(email.link("CREAR WORKSPACE"), "workspace-activate")
    screens.press("ACTIVAR", "workspace-step1-administrator")
    screens.press("CREAR", "workspace-step2-name")
    page.get_by_label("Nombre del espacio de trabajo").fill("Rojas")
    screens.press("SIGUIENTE", "workspace-step3-organization")
    page.get_by_label("Nombre de tu organización (razón social)").fill("Rojas SpA")
    page.get_by_label("RUT").fill("76.543.210-4")
    screens.press("FINALIZAR", "workspace-rut-error", status=400)
    rut = page.get_by_label("RUT")
    assert_error_beside(page, rut, "dígito verificador")
    # What the customer typed is kept, and the focus can go straight back.
    expect(rut).to_have_value("76.543.210-4")
    expect(page.get_by_label("Nombre de tu organización (razón social)")).to_have_value(
        "Rojas SpA"
    )


def step_of(page: Page) -> str:
    """The wizard step a page shows: its "Paso N de 3" or its heading."""
    steps = page.locator(".steps")
    if steps.count():
        return steps.inner_text().split("·")[0].strip()
    return page.locator("h1").inner_text().strip()


def test_a_wizard_survives_reload_back_and_forward(
    journey_kit, screens, browser_page
) -> None:
    kit = journey_kit
    page, _ = browser_page
    open_workspace_wizard(kit, screens)
    page.get_by_label("Nombre").fill("Camila Rojas")
    screens.press("CREAR", "workspace-step2-name")
    assert step_of(page) == "Paso 2 de 3"

    # A reload shows the same step, asks nothing and sends nothing again.
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.reload()
    assert step_of(page) == "Paso 2 de 3"

    # Back and forward never resend a form: every history entry is a GET
    # of the link, which shows the step the journey stands at.
    page.go_back()
    assert step_of(page) == "Paso 2 de 3"
    page.go_forward()
    assert step_of(page) == "Paso 2 de 3"

    # "Volver" shows an earlier step with what was saved; back and forward
    # move between it and the current step.
    page.get_by_role("link", name="Volver").click()
    assert step_of(page) == "Paso 1 de 3"
    expect(page.get_by_label("Nombre")).to_have_value("Camila Rojas")
    page.go_back()
    assert step_of(page) == "Paso 2 de 3"
    page.go_forward()
    assert step_of(page) == "Paso 1 de 3"
    page.reload()
    assert step_of(page) == "Paso 1 de 3"
    screens.shoot("workspace-step1-again")

    # Changing step 1 again moves on as before.
    page.get_by_label("Nombre").fill("Camila Rojas Pérez")
    screens.press("CREAR", "workspace-step2-again")
    page.get_by_label("Nombre del espacio de trabajo").fill("Rojas")
    screens.press("SIGUIENTE", "workspace-step3")
    page.reload()
    assert step_of(page) == "Paso 3 de 3"
    page.get_by_label("Nombre de tu organización (razón social)").fill("Rojas SpA")
    page.get_by_label("RUT").fill("76.543.210-3")
    screens.press("FINALIZAR", "workspace-done")

    # Once finished, going back shows that it is finished, not a stale form.
    page.go_back()
    assert step_of(page) == "¡Tu espacio de trabajo está listo!"
    page.reload()
    assert step_of(page) == "¡Tu espacio de trabajo está listo!"
    assert dialogs == []
    journey = kit.onboarding.journey(1)
    assert journey.stage is Stage.SETUP_PENDING
    assert journey.workspace is not None
    assert journey.workspace.name == "Rojas"
    assert [o.legal_name for o in journey.workspace.organizations] == ["Rojas SpA"]


def test_a_refused_form_survives_reload_back_and_forward_without_resending(
    journey_kit, screens, browser_page
) -> None:
    kit = journey_kit
    page, _ = browser_page
    open_workspace_wizard(kit, screens)
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    # The browser does not check the address itself (novalidate): the
    # server's Spanish message comes back beside the box, which has the focus.
    page.get_by_label("Correo electrónico").fill("no-es-un-correo")
    screens.press("CREAR", "workspace-step1-refused", status=400)
    box = page.get_by_label("Correo electrónico")
    assert_error_beside(page, box, "correo electrónico válido")
    expect(box).to_be_focused()
    assert len(posts) == 1

    # Reload asks nothing, sends nothing, and shows the same refusal.
    reloaded = page.reload()
    assert reloaded is not None
    assert reloaded.request.method == "GET"
    assert reloaded.status == 400
    assert_error_beside(page, box, "correo electrónico válido")
    expect(box).to_have_value("no-es-un-correo")

    # Back and forward move between GET pages only.
    page.go_back()
    assert step_of(page) == "Paso 1 de 3"
    page.go_forward()
    assert step_of(page) == "Paso 1 de 3"
    assert len(posts) == 1
    assert dialogs == []
    assert kit.journey(1).stage is Stage.WORKSPACE_ACTIVATED


@pytest.mark.journey_kit(
    live_server=True,
    timeout=10,
    fail_steps={"set_pruebas": "El SII rechazó el set de pruebas: faltan folios."},
)
def test_a_failed_certification_says_which_step_and_what_to_do(
    journey_kit, screens, browser_page
) -> None:
    kit = journey_kit
    page, _ = browser_page
    journey = kit.walk_to_enabled(plain(BUYER))
    assert journey.stage is Stage.CERTIFICATION_FAILED
    email = kit.mailbox.expect("La certificación de Ferretería Los Andes SpA", to=BUYER)
    screens.open(email.link("VER DETALLE"), "certification-failed")
    failed = page.locator("ol.status li.failed")
    expect(failed).to_have_count(1)
    expect(failed).to_contain_text("Set de pruebas")
    expect(failed).to_contain_text("faltan folios")
    expect(page.get_by_text("Revisa la etapa marcada")).to_be_visible()
    progress = page.get_by_role("progressbar", name="Avance de la certificación")
    expect(progress).to_have_attribute("value", "1")


def test_no_page_fetches_anything_from_the_internet(
    journey_kit, screens, browser_page
) -> None:
    kit = journey_kit
    page, offline = browser_page
    kit.purchase(plain(BUYER))
    email = kit.mailbox.expect(PASSWORD_EMAIL, to=BUYER)
    screens.open(email.link("CREAR CONTRASEÑA"), "create-password")
    screens.open(
        f"{kit.onboarding.settings.base_url}/olvide-mi-contrasena", "forgot-password"
    )

    # Nothing in the markup points outside: no CDN, no web font, no script.
    outside = page.evaluate(
        """() => [...document.querySelectorAll('[src], [href]')]
            .map(e => e.getAttribute('src') || e.getAttribute('href'))
            .filter(u => /^(https?:)?\\/\\//.test(u))
            .concat([...document.querySelectorAll('style')]
                .flatMap(s => s.textContent.match(/(@import|url\\()[^;]*/g) || []))"""
    )
    assert outside == []
    fonts = page.evaluate("() => [...document.fonts].map(f => f.family)")
    assert fonts == []
    assert offline.seen
    assert all(offline.is_local(url) for url in offline.seen)

    # The guard is real: a page that went to a CDN would be caught.
    with pytest.raises(PlaywrightError, match="ERR_INTERNET_DISCONNECTED"):
        page.goto("https://cdn.example.com/haulmer.css")
    assert offline.refused == ["https://cdn.example.com/haulmer.css"]
    offline.refused.clear()  # expected here; any other test fails on it
