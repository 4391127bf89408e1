"""The whole journey as a customer lives it, in Chromium.

Each email's button is read from the SMTP server that caught it and opened
in the browser; forms are filled by their visible labels and sent with the
buttons the customer's guide names. Every page is saved under
``artifacts/screenshots/`` (see docs/testing.md).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from haulmer_onboarding import Stage
from haulmer_onboarding.testing.scenarios import new_legal_name
from haulmer_onboarding.testing.signatures import make_pkcs12

BUYER = "compras@ferreteria-los-andes.cl"
PASSWORD = "Cordillera2026"
SIGNATURE_PASSWORD = "firma-Representante-1"
LEGAL_NAME = "Rojas y Compañía SpA"
SUBJECTS = {
    "tax": "¿Boleta o factura? Obtén tu documento tributario por la compra en HAULMER",
    "password": "[Haulmer Accounts] Crea tu nueva contraseña",
    "workspace": "[Workspace] Crea tu nuevo espacio de trabajo",
    "setup": "¡Habilita tu organización para emitir documentos!",
    "started": f"Comenzó la certificación de {LEGAL_NAME} ante el SII",
    "progress": f"Avance de la certificación de {LEGAL_NAME}",
    "enabled": f"¡{LEGAL_NAME} ya puede emitir documentos electrónicos!",
}
#: A RUT written the way programs store it (conftest.py checks every page).
UNDOTTED_RUT = re.compile(r"(?<![\d.])\d{7,9}-[\dkK](?![\w])")
#: Every page of the journey, in the order the customer sees them.
PAGES = [
    "tax-document",
    "tax-document-done",
    "forgot-password",
    "forgot-password-sent",
    "create-password",
    "create-password-done",
    "workspace-activate",
    "workspace-step1-administrator",
    "workspace-step2-name",
    "workspace-step3-organization",
    "workspace-done",
    "setup-start",
    "setup-step1-organization",
    "setup-step2-signature",
    "setup-step3-documents",
    "setup-done",
    "certification-started",
    "certification-progress",
    "certification-enabled",
]


def split_codes(page: Page) -> list[str]:
    """The codes like "DTE-33" that the page shows over two lines."""
    return page.evaluate(
        """() => {
            const split = [];
            const walker = document.createTreeWalker(document.body,
                                                     NodeFilter.SHOW_TEXT);
            for (let node; (node = walker.nextNode());) {
                for (const m of node.data.matchAll(/DTE-\\d+/g)) {
                    const range = document.createRange();
                    range.setStart(node, m.index);
                    range.setEnd(node, m.index + m[0].length);
                    const tops = new Set([...range.getClientRects()]
                        .map(r => Math.round(r.top)));
                    if (tops.size > 1) split.push(m[0]);
                }
            }
            return split;
        }"""
    )


def heading(page: Page) -> str:
    return page.locator("h1").inner_text().strip()


@pytest.mark.journey_kit(live_server=True, timeout=10)
@pytest.mark.parametrize("viewport_kind", ["desktop", "phone"])
def test_the_customer_clicks_through_the_whole_journey(
    journey_kit, screens, browser_page, tmp_path: Path, viewport_kind: str
) -> None:
    kit = journey_kit
    page, offline = browser_page
    journey = kit.purchase(new_legal_name(BUYER))
    base_url = kit.onboarding.settings.base_url

    # Email 3: the purchase's tax document.
    email = kit.mailbox.expect(SUBJECTS["tax"], to=BUYER)
    screens.open(email.link("SOLICITAR DOCUMENTO"), "tax-document")
    page.get_by_label("Factura (completa los datos de tu empresa)").check()
    page.get_by_label("Razón social", exact=True).fill(LEGAL_NAME)
    page.get_by_label("RUT", exact=True).fill("76.543.210-3")
    page.get_by_label("Giro").fill("Venta al por mayor de artículos de ferretería")
    page.get_by_label("Dirección").fill("Av. Los Andes 1234, Santiago")
    screens.press("SOLICITAR DOCUMENTO", "tax-document-done")
    expect(page.locator("main")).to_contain_text(f"{LEGAL_NAME} (76.543.210-3)")

    # Email 4 did not come? ¿Olvidó su contraseña? sends it again.
    kit.mailbox.expect(SUBJECTS["password"], to=BUYER)
    screens.open(f"{base_url}/olvide-mi-contrasena", "forgot-password")
    expect(page.get_by_role("heading", level=1)).to_have_text("¿Olvidó su contraseña?")
    page.get_by_label("Correo electrónico").fill(BUYER)
    screens.press("ENVIAR EMAIL", "forgot-password-sent")
    expect(page.get_by_role("status")).to_contain_text(SUBJECTS["password"])
    kit.run_worker_once()

    # CREAR CONTRASEÑA: two boxes, the rule, the confirmation.
    email = kit.mailbox.expect(SUBJECTS["password"], to=BUYER)
    screens.open(email.link("CREAR CONTRASEÑA"), "create-password")
    expect(page.locator("#password-rule")).to_contain_text("Al menos 8 caracteres")
    # The rule is checked as the customer types, before anything is sent.
    rule = page.locator("#password-rules li")
    page.get_by_label("Nueva contraseña").fill("abc")
    expect(rule.filter(has_text="Letras minúsculas")).to_have_class("met")
    expect(rule.filter(has_text="Al menos 8 caracteres")).to_have_class("unmet")
    expect(rule.filter(has_text="Números")).to_have_class("unmet")
    page.get_by_label("Repite la contraseña").fill("abd")
    expect(page.locator("#confirmation-match")).to_have_text(
        "Las contraseñas no coinciden."
    )
    page.get_by_label("Nueva contraseña").fill(PASSWORD)
    expect(rule.and_(page.locator(".met"))).to_have_count(4)
    page.get_by_label("Repite la contraseña").fill(PASSWORD)
    expect(page.locator("#confirmation-match")).to_have_text(
        "Las contraseñas coinciden."
    )
    screens.press("CREAR CONTRASEÑA", "create-password-done")
    assert heading(page) == "¡Tu contraseña está lista!"

    # CREAR WORKSPACE: ACTIVAR, then its three steps.
    email = kit.mailbox.expect(SUBJECTS["workspace"], to=BUYER)
    screens.open(email.link("CREAR WORKSPACE"), "workspace-activate")
    screens.press("ACTIVAR", "workspace-step1-administrator")
    expect(page.get_by_text("Paso 1 de 3")).to_be_visible()
    page.get_by_label("Nombre").fill("Camila Rojas")
    page.get_by_label("Correo electrónico").fill(BUYER)
    screens.press("CREAR", "workspace-step2-name")
    expect(page.get_by_text("Paso 2 de 3")).to_be_visible()
    page.get_by_label("Nombre del espacio de trabajo").fill("Rojas")
    screens.press("SIGUIENTE", "workspace-step3-organization")
    expect(page.get_by_text("Paso 3 de 3")).to_be_visible()
    page.get_by_label("Nombre de tu organización (razón social)").fill(LEGAL_NAME)
    page.get_by_label("RUT").fill("76.543.210-3")
    screens.press("FINALIZAR", "workspace-done")
    assert heading(page) == "¡Tu espacio de trabajo está listo!"

    # INICIAR SETUP: COMENZAR, the organization, the signature, the documents.
    email = kit.mailbox.expect(SUBJECTS["setup"], to=BUYER)
    screens.open(email.link("INICIAR SETUP"), "setup-start")
    screens.press("COMENZAR", "setup-step1-organization")
    # The organization made in the workspace comes first, already chosen.
    chosen = page.get_by_role("radio", name=LEGAL_NAME)
    expect(chosen).to_be_checked()
    expect(chosen).to_have_accessible_name(f"{LEGAL_NAME} (76.543.210-3)")
    expect(page.get_by_label("Crear una nueva organización")).not_to_be_checked()
    screens.press("SIGUIENTE", "setup-step2-signature")

    signature = tmp_path / "firma-representante.p12"
    signature.write_bytes(
        make_pkcs12(password=SIGNATURE_PASSWORD, holder_rut="12.345.678-5")
    )
    page.get_by_label("RUT del representante legal").fill("12.345.678-5")
    # The file box's own words come from the browser's language ("Choose
    # File"): a Spanish hint, read with the box, says what to choose.
    file_box = page.get_by_label("Carga tu firma electrónica")
    expect(file_box).to_have_accessible_description(
        re.compile(r"\.pfx o \.p12, de hasta 1 MB\.")
    )
    expect(page.locator("#signature-hint")).to_be_visible()
    size = file_box.bounding_box()
    assert size is not None
    assert size["height"] >= 40, f"the file button is {size['height']} px high"
    file_box.set_input_files(signature)
    page.get_by_label("Contraseña de la firma").fill(SIGNATURE_PASSWORD)
    screens.press("SIGUIENTE", "setup-step3-documents")
    assert heading(page) == "Documentos que emitirá tu organización"

    # A point of sale was bought: facturas and boletas are locked in.
    boxes = page.get_by_role("checkbox")
    locked = [
        boxes.nth(i).get_attribute("value")
        for i in range(boxes.count())
        if boxes.nth(i).is_disabled()
    ]
    assert sorted(locked) == ["33", "39"]
    for code in locked:
        box = page.locator(f"input[type=checkbox][value='{code}']")
        expect(box).to_be_checked()
        expect(box).to_be_disabled()
    expect(page.get_by_text("predeterminados")).to_be_visible()
    # Each locked box says why, in words a screen reader reads with it.
    for i in range(boxes.count()):
        box = boxes.nth(i)
        name = box.evaluate("e => e.labels[0].innerText")
        assert ("requerido por tu punto de venta" in name) == box.is_disabled(), name
    # Each box sits on the first line of its label, however many it takes.
    offsets = page.evaluate(
        """() => [...document.querySelectorAll('label.check')].map(l =>
            l.control.getBoundingClientRect().top - l.getBoundingClientRect().top)"""
    )
    assert all(0 <= offset <= 8 for offset in offsets), offsets
    # A code such as DTE-33 is never split at its hyphen, even on a phone.
    assert split_codes(page) == []
    # The locked documents are sent with the form although their boxes are
    # disabled; and the server keeps them even from a form that drops them.
    sent = page.evaluate(
        "() => new FormData(document.querySelector('form[action$=documentos]'))"
        ".getAll('documents')"
    )
    assert {"33", "39"} <= set(sent), sent
    page.evaluate(
        "() => document.querySelectorAll('input[type=hidden][name=documents]')"
        ".forEach(e => e.remove())"
    )
    screens.press("SIGUIENTE", "setup-done")
    assert {33, 39} <= kit.journey(1).documents
    assert heading(page) == "La certificación ante el SII ha comenzado"

    # The certification: its status page as it starts, moves and ends.
    kit.run_worker_once()
    email = kit.mailbox.expect(SUBJECTS["started"], to=BUYER)
    screens.open(email.link("VER AVANCE"), "certification-started")
    progress = page.get_by_role("progressbar", name="Avance de la certificación")
    expect(progress).to_have_attribute("value", "0")
    expect(page.get_by_text("Fecha estimada de término")).to_be_visible()
    expect(page.locator("li.running")).to_have_count(1)
    expect(page.locator("li.running")).to_contain_text("en curso")

    kit.clock.advance(days=1)
    kit.run_worker_once()
    email = kit.mailbox.expect(SUBJECTS["progress"], to=BUYER)
    screens.open(email.link("VER AVANCE"), "certification-progress")
    expect(progress).to_have_attribute("value", "1")
    expect(page.locator("li.done")).to_have_count(1)
    expect(page.locator("li.running")).to_have_count(1)

    assert kit.finish_certification(journey).stage is Stage.ENABLED
    email = kit.mailbox.expect(SUBJECTS["enabled"], to=BUYER)
    screens.open(email.link("VER DETALLE"), "certification-enabled")
    expect(page.get_by_text("habilitada para emitir")).to_be_visible()
    steps = page.locator("ol.status li")
    expect(page.locator("ol.status li.done")).to_have_count(steps.count())

    # A screenshot of every page, and nothing fetched from outside.
    names = [path.stem.split("-", 1)[1] for path in screens.saved]
    assert names == PAGES
    for path in screens.saved:
        assert path.stat().st_size > 0, path
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    assert offline.seen, "the browser made no request at all"
    assert all(offline.is_local(url) for url in offline.seen), offline.seen
    # The emails write every RUT with its dots too.
    for email in kit.mailbox.emails:
        assert UNDOTTED_RUT.findall(email.text + email.html) == [], email.subject
    print(f"screenshots of {viewport_kind}: {screens.folder}")
