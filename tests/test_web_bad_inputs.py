"""Every page's bad inputs over real HTTP: each is answered beside its field
(the message right after the field, the field marked invalid and pointing
at it) with a 400, and the journey is left exactly as it was."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from html.parser import HTMLParser

import attrs
import pytest

from haulmer_onboarding import (
    CertificationStep,
    DtePolicy,
    Onboarding,
    Plugins,
    Product,
    Purchase,
    PurchaseItem,
    Settings,
    Stage,
    hookimpl,
)
from haulmer_onboarding.testing.clock import MovableClock
from haulmer_onboarding.testing.customer import Page, WebCustomer, link_in
from haulmer_onboarding.testing.scenarios import purchase_for
from haulmer_onboarding.testing.servers import free_port, serve_in_thread
from haulmer_onboarding.testing.signatures import make_pkcs12
from haulmer_onboarding.testing.smtp import SmtpCatcher
from haulmer_onboarding.web import create_app

BUYER = "compras@ferreteria-los-andes.cl"
GOOD = "Cordillera2026"
PASSWORD = "[Haulmer Accounts] Crea tu nueva contraseña"
WORKSPACE = "[Workspace] Crea tu nuevo espacio de trabajo"
SETUP = "¡Habilita tu organización para emitir documentos!"
TAX = "¿Boleta o factura?"

# The holder RUT make_pkcs12 writes, typed as the legal representative's.
REP = "12.345.678-5"


class ExportsOnly:
    """A product whose documents are all optional, so that choosing none is
    possible on the page (every shipped product requires one)."""

    product = Product(code="exporta", name="Exporta", item_codes={"EXP-1"})

    @hookimpl
    def onboarding_products(self) -> Sequence[Product]:
        return [self.product]

    @hookimpl
    def onboarding_dte_policy(
        self, product: str, purchase: Purchase
    ) -> DtePolicy | None:
        return DtePolicy(optional={110, 111, 112}) if product == "exporta" else None

    @hookimpl
    def onboarding_certification_steps(
        self, product: str, documents: frozenset[int]
    ) -> Sequence[CertificationStep] | None:
        if product != "exporta":
            return None
        return [CertificationStep("postulacion", "Postulación", 1)]


EXPORTS = Purchase(
    order_number="OC-EXPORTA-1",
    email=BUYER,
    buyer_name="Camila Rojas",
    items=(PurchaseItem("EXP-1", "Exporta Plan Anual", 1, 99_900),),
    legal_name="Exportadora del Sur SpA",
    rut="76.086.428-5",
)


@attrs.define
class Site:
    onboarding: Onboarding
    catcher: SmtpCatcher
    clock: MovableClock
    url: str

    def link(self, subject: str, button: str, to: str = BUYER) -> str:
        """The newest link under ``button`` of an email ``subject``, once the
        worker's part is done."""
        self.onboarding.process_password_requests()
        self.onboarding.relay().deliver_pending()
        found = [
            m
            for m in self.catcher.messages
            if m.subject.startswith(subject) and to in m.rcpt_tos
        ]
        assert found, f"no email {subject!r}"
        return link_in(found[-1], button)

    def stage(self, order_number: str) -> Stage:
        return self.onboarding.journey_by_order(order_number).stage


@pytest.fixture
def site(settings: Settings, catcher: SmtpCatcher) -> Iterator[Site]:
    port = free_port()
    clock = MovableClock()
    facade = Onboarding(
        attrs.evolve(settings, base_url=f"http://127.0.0.1:{port}", clock=clock),
        plugins=Plugins(extra=[ExportsOnly()]),
    )
    facade.create_tables()
    with serve_in_thread(create_app(facade), port=port) as server:
        yield Site(facade, catcher, clock, server.url)
    facade.close()


@pytest.fixture
def customer() -> Iterator[WebCustomer]:
    with WebCustomer() as web:
        yield web


class _Form(HTMLParser):
    """The page as a keyboard user meets it: fields, labels, buttons and
    field errors, in order, with each tag's attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.items: list[tuple[str, str, dict[str, str]]] = []
        self.errors: dict[str, str] = {}
        self._error: str | None = None

    def handle_starttag(self, tag: str, attrs_: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs_}
        if tag in {"input", "select", "textarea"} and a.get("type") != "hidden":
            self.items.append(("field", a.get("name", ""), a))
        elif tag == "label" and a.get("for"):
            self.items.append(("field", a["for"], a))
        elif tag == "button":
            self.items.append(("button", "", a))
        elif tag == "fieldset":
            self.items.append(("group", "", a))
        elif tag == "p" and a.get("id", "").endswith("-error"):
            self.items.append(("error", a["id"], a))
            self._error = a["id"]

    def handle_data(self, data: str) -> None:
        if self._error:
            self.errors[self._error] = self.errors.get(self._error, "") + data

    def handle_endtag(self, tag: str) -> None:
        if tag == "p":
            self._error = None


def beside(page: Page, field: str) -> str:
    """The error shown beside ``field``: right after its last box, before any
    other field or button, and named by the field (or its group) in
    ``aria-describedby`` with ``aria-invalid``. Fails if there is none."""
    form = _Form()
    form.feed(page.html)
    error_id = f"{field}-error"
    items = form.items
    last = max(i for i, (kind, name, _) in enumerate(items) if name == field)
    after = next((name for kind, name, _ in items[last + 1 :] if kind != "group"), None)
    assert after == error_id, f"{field!r} is followed by {after!r}, not its error"
    marked = [
        a for kind, _, a in items if error_id in a.get("aria-describedby", "").split()
    ]
    assert marked, f"nothing points at {error_id}"
    assert all(a.get("aria-invalid") == "true" for a in marked)
    return " ".join(form.errors[error_id].split())


def to_password_page(site: Site, customer: WebCustomer, scenario: str) -> Page:
    site.onboarding.record_purchase(purchase_for(scenario, BUYER, "OC-1"))
    return customer.open(site.link(PASSWORD, "CREAR CONTRASEÑA"))


def set_password(site: Site, customer: WebCustomer) -> None:
    page = customer.open(site.link(PASSWORD, "CREAR CONTRASEÑA"))
    done = customer.submit(
        page, "CREAR CONTRASEÑA", {"password": GOOD, "confirmation": GOOD}
    )
    assert done.status == 200


# -- CREAR CONTRASEÑA -----------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "confirmation", "field", "said"),
    [
        (GOOD, "Cordillera2025", "confirmation", "no coinciden"),
        ("Corta1a", "Corta1a", "password", "al menos 8 caracteres"),
        ("cordillera2026", "cordillera2026", "password", "mayúscula"),
        ("CORDILLERA2026", "CORDILLERA2026", "password", "minúscula"),
        ("Cordillera", "Cordillera", "password", "número"),
        ("", "", "password", "al menos 8 caracteres"),
    ],
)
def test_a_weak_or_mismatched_password_is_answered_beside_its_box(
    site: Site,
    customer: WebCustomer,
    password: str,
    confirmation: str,
    field: str,
    said: str,
) -> None:
    page = to_password_page(site, customer, "simple")
    refused = customer.submit(
        page, "CREAR CONTRASEÑA", {"password": password, "confirmation": confirmation}
    )
    assert refused.status == 400
    assert said in beside(refused, field)
    # Nothing changed: no password, and the link still opens its page.
    assert site.onboarding.verify_password(BUYER, password) is False
    assert site.onboarding.journey_by_order("OC-1").buyer.has_password is False
    assert customer.open(page.url).status == 200
    # The typed password is never sent back in the page.
    if password:
        assert password not in refused.html


def test_the_password_check_script_is_served_and_referenced(
    site: Site, customer: WebCustomer
) -> None:
    page = to_password_page(site, customer, "simple")
    assert '<script src="/static/password.js" defer></script>' in page.html
    assert 'data-min-length="8"' in page.html
    for rule in ("length", "lower", "upper", "digit"):
        assert f'data-rule="{rule}"' in page.html
    assert 'id="confirmation-match"' in page.html

    script = customer.client.get(site.url + "/static/password.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert 'normalize("NFKC")' in script.text
    assert "Las contraseñas no coinciden." in script.text

    response = customer.client.get(page.url)
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "style-src 'self'" in policy
    assert "unsafe-inline" not in policy
    # Nothing is fetched from another host: no CDN, no web font.
    assert re.findall(r'(?:src|href)="(?:https?:)?//', page.html) == []
    assert "<style" not in page.html
    assert " style=" not in page.html
    css = customer.client.get(site.url + "/static/site.css")
    assert css.status_code == 200
    assert "@import" not in css.text
    assert "url(" not in css.text


# -- ¿Olvidó su contraseña? -----------------------------------------------------


@pytest.mark.parametrize(
    ("email", "said"),
    [
        ("", "Ingresa tu correo"),
        ("compras@@ferreteria.cl", "correo electrónico válido"),
    ],
)
def test_forgot_password_refuses_a_bad_address_beside_it(
    site: Site, customer: WebCustomer, email: str, said: str
) -> None:
    site.onboarding.record_purchase(purchase_for("simple", BUYER, "OC-1"))
    site.link(PASSWORD, "CREAR CONTRASEÑA")
    before = len(site.catcher.messages)
    page = customer.open(site.url + "/olvide-mi-contrasena")
    refused = customer.submit(page, "ENVIAR EMAIL", {"email": email})
    assert refused.status == 400
    assert said in beside(refused, "email")
    assert site.onboarding.process_password_requests() == 0
    site.onboarding.relay().deliver_pending()
    assert len(site.catcher.messages) == before


# -- the purchase's tax document ------------------------------------------------


def test_the_tax_document_page_refuses_incomplete_or_bad_company_data(
    site: Site, customer: WebCustomer
) -> None:
    site.onboarding.record_purchase(purchase_for("simple", BUYER, "OC-1"))
    page = customer.open(site.link(TAX, "SOLICITAR DOCUMENTO"))
    company = {
        "kind": "factura",
        "legal_name": "Ferretería Los Andes SpA",
        "rut": "76.086.428-5",
        "business_activity": "Venta de artículos de ferretería",
        "address": "Av. Los Andes 123, Santiago",
    }
    for changes, field, said in [
        ({"legal_name": ""}, "legal_name", "Ingresa la razón social"),
        ({"rut": "76.086.428-K"}, "rut", "dígito verificador"),
        ({"rut": "setenta y seis"}, "rut", "RUT"),
        ({"rut": "66.666.666-6"}, "rut", "receptor de boletas"),
        ({"business_activity": " "}, "business_activity", "Ingresa el giro"),
        ({"address": ""}, "address", "Ingresa la dirección"),
        ({"kind": "cheque"}, "kind", "Elige boleta o factura"),
    ]:
        refused = customer.submit(page, "SOLICITAR DOCUMENTO", {**company, **changes})
        assert refused.status == 400, changes
        assert said in beside(refused, field), changes
        # What was typed stays in the form.
        for name, value in company.items():
            if name not in changes and name != "kind":
                assert f'value="{value}"' in refused.html, name
        assert site.onboarding.journey_by_order("OC-1").tax_document is None

    done = customer.submit(page, "SOLICITAR DOCUMENTO", company)
    assert done.status == 200
    assert "Ferretería Los Andes SpA (76.086.428-5)" in done.text
    requested = site.onboarding.journey_by_order("OC-1").tax_document
    assert requested is not None
    assert (requested.kind, requested.rut) == ("factura", "76086428-5")


# -- CREAR WORKSPACE --------------------------------------------------------------


def test_the_workspace_wizard_refuses_an_invalid_rut_beside_it(
    site: Site, customer: WebCustomer
) -> None:
    site.onboarding.record_purchase(purchase_for("razon-social", BUYER, "OC-1"))
    set_password(site, customer)
    page = customer.submit(
        customer.open(site.link(WORKSPACE, "CREAR WORKSPACE")), "ACTIVAR"
    )
    page = customer.submit(page, "CREAR", {"name": "Camila", "email": BUYER})
    page = customer.submit(page, "SIGUIENTE", {"workspace_name": "Rojas"})
    for rut, said in [
        ("76.543.210-4", "dígito verificador"),
        ("", "Ingresa el RUT"),
        ("60.803.000-K", "Servicio de Impuestos Internos"),
    ]:
        refused = customer.submit(
            page, "FINALIZAR", {"legal_name": "Rojas SpA", "rut": rut}
        )
        assert refused.status == 400
        assert "Paso 3 de 3" in refused.text
        assert said in beside(refused, "rut")
        assert 'value="Rojas SpA"' in refused.html
        assert site.stage("OC-1") is Stage.WORKSPACE_NAMED
    assert not [m for m in site.catcher.messages if m.subject == SETUP]


# -- INICIAR SETUP ----------------------------------------------------------------


def test_each_setup_step_answers_its_bad_input_beside_the_field(
    site: Site, customer: WebCustomer
) -> None:
    site.onboarding.record_purchase(EXPORTS)
    set_password(site, customer)
    setup = site.link(SETUP, "INICIAR SETUP")
    page = customer.submit(customer.open(setup), "COMENZAR")
    assert "Paso 1 de 3" in page.text

    # Step 1: a new organization with an invalid RUT.
    refused = customer.submit(
        page,
        "SIGUIENTE",
        {"organization": "new", "legal_name": "Otra SpA", "rut": "12.345.678-9"},
    )
    assert refused.status == 400
    assert "dígito verificador" in beside(refused, "rut")
    assert site.stage(EXPORTS.order_number) is Stage.SETUP_STARTED
    workspace = site.onboarding.journey_by_order(EXPORTS.order_number).workspace
    assert workspace is not None
    assert len(workspace.organizations) == 1
    page = customer.submit(page, "SIGUIENTE")
    assert "Paso 2 de 3" in page.text

    # Step 2: no file, a file that is not a PKCS#12, a wrong password, none.
    # The password box is not required: a file may have no password.
    box = re.search(r'<input id="signature_password"[^>]*>', page.html)
    assert box is not None
    assert " required" not in box.group(0)
    pfx = make_pkcs12(password="buena")
    for files, password, field, said in [
        (None, "buena", "signature", "Selecciona el archivo"),
        (
            {"signature": ("firma.pfx", b"%PDF-1.4 una factura", "application/pdf")},
            "buena",
            "signature",
            "no es una firma electrónica",
        ),
        (
            {"signature": ("firma.pfx", b"", "application/x-pkcs12")},
            "buena",
            "signature",
            "está vacío",
        ),
        (
            {"signature": ("firma.pfx", pfx, "application/x-pkcs12")},
            "mala",
            "signature_password",
            "no es posible recuperarla",
        ),
        (
            # No password typed: asked for, not "buy a new signature".
            {"signature": ("firma.pfx", pfx, "application/x-pkcs12")},
            "",
            "signature_password",
            "Ingresa la contraseña de tu firma electrónica.",
        ),
    ]:
        refused = customer.submit(
            page,
            "SIGUIENTE",
            {"legal_representative_rut": REP, "signature_password": password},
            files=files,
        )
        assert refused.status == 400, said
        assert said in beside(refused, field)
        # The signature's password is never sent back.
        assert 'value="mala"' not in refused.html
        journey = site.onboarding.journey_by_order(EXPORTS.order_number)
        assert journey.stage is Stage.SETUP_ORGANIZATION_CHOSEN
        assert journey.signature is None
    page = customer.submit(
        page,
        "SIGUIENTE",
        {"legal_representative_rut": REP, "signature_password": "buena"},
        files={"signature": ("firma.pfx", pfx, "application/x-pkcs12")},
    )
    assert "Paso 3 de 3" in page.text

    # Step 3: no document chosen.
    refused = customer.submit(page, "SIGUIENTE", {"documents": []})
    assert refused.status == 400
    assert "Elige al menos un documento" in beside(refused, "documents")
    refused = customer.submit(page, "SIGUIENTE", {"documents": ["39"]})
    assert refused.status == 400
    assert "no incluye" in beside(refused, "documents")
    journey = site.onboarding.journey_by_order(EXPORTS.order_number)
    assert journey.stage is Stage.SETUP_SIGNATURE_LOADED
    assert journey.documents == frozenset()
    done = customer.submit(page, "SIGUIENTE", {"documents": ["110"]})
    assert "La certificación ante el SII ha comenzado" in done.text
    assert site.onboarding.journey_by_order(EXPORTS.order_number).documents == {110}


# -- the wizard: reloads, a return days later, back and forward, skipping -------


def test_the_wizard_survives_reloads_returns_and_history_and_cannot_be_skipped(
    site: Site, customer: WebCustomer
) -> None:
    site.onboarding.record_purchase(purchase_for("razon-social", BUYER, "OC-1"))
    set_password(site, customer)
    url = site.link(WORKSPACE, "CREAR WORKSPACE")
    step1 = customer.submit(customer.open(url), "ACTIVAR")
    assert "Paso 1 de 3" in step1.text
    assert "Paso 1 de 3" in customer.open(url).text  # a reload

    # Editing the URL or posting a later step's form skips nothing.
    assert "Paso 1 de 3" in customer.open(url + "?paso=3").text
    token = dict(step1.form("CREAR").fields)["csrf_token"]
    for action, data in [
        ("nombre", {"workspace_name": "Saltado"}),
        ("organizacion", {"legal_name": "Saltada SpA", "rut": "76.543.210-3"}),
    ]:
        skipped = customer.client.post(
            f"{url}/{action}", data={**data, "csrf_token": token}
        )
        assert skipped.status_code == 409
        assert "Completa primero los pasos anteriores" in skipped.text
        assert site.stage("OC-1") is Stage.WORKSPACE_ACTIVATED
    unknown = customer.client.post(f"{url}/saltar", data={"csrf_token": token})
    assert unknown.status_code == 404

    step2 = customer.submit(step1, "CREAR", {"name": "Camila", "email": BUYER})
    step3 = customer.submit(step2, "SIGUIENTE", {"workspace_name": "Rojas"})
    assert "Paso 3 de 3" in step3.text

    # Ten days later, from the same email: the same step, the same answers.
    site.clock.advance(days=10)
    later = customer.open(url)
    assert "Paso 3 de 3" in later.text
    back = customer.open(url + "?paso=2")  # the page's Volver link
    assert "Paso 2 de 3" in back.text
    assert 'value="Rojas"' in back.html
    assert "Paso 3 de 3" in customer.open(url).text  # forward again

    # An old form sent again (browser back, then SIGUIENTE) changes the
    # answer and lands on the furthest step, not an earlier one.
    again = customer.submit(back, "SIGUIENTE", {"workspace_name": "Rojas y Cía"})
    assert "Paso 3 de 3" in again.text
    workspace = site.onboarding.journey_by_order("OC-1").workspace
    assert workspace is not None
    assert workspace.name == "Rojas y Cía"
    stale = customer.submit(step1, "CREAR", {"name": "Camila", "email": BUYER})
    assert "Paso 3 de 3" in stale.text
    assert site.stage("OC-1") is Stage.WORKSPACE_NAMED

    # Past the link's fourteen days, the page offers a new link instead.
    site.clock.advance(days=5)
    expired = customer.open(url)
    assert expired.status == 410
    assert "ENVIAR UN NUEVO ENLACE" in expired.text
    assert site.stage("OC-1") is Stage.WORKSPACE_NAMED


def test_setup_steps_cannot_be_skipped_or_pointed_elsewhere(
    site: Site, customer: WebCustomer
) -> None:
    site.onboarding.record_purchase(EXPORTS)
    set_password(site, customer)
    url = site.link(SETUP, "INICIAR SETUP")
    welcome = customer.open(url)
    token = dict(welcome.form("COMENZAR").fields)["csrf_token"]
    pfx = make_pkcs12(password="buena")
    early = customer.client.post(
        f"{url}/firma",
        data={
            "csrf_token": token,
            "legal_representative_rut": REP,
            "signature_password": "buena",
        },
        files={"signature": ("firma.pfx", pfx, "application/x-pkcs12")},
    )
    assert early.status_code == 409
    early = customer.client.post(
        f"{url}/documentos", data={"csrf_token": token, "documents": "110"}
    )
    assert early.status_code == 409
    assert site.stage(EXPORTS.order_number) is Stage.SETUP_PENDING

    step1 = customer.submit(welcome, "COMENZAR")
    # A form edited to name an organization of another workspace.
    for organization in ("999999", "-1", "1e3"):
        refused = customer.submit(step1, "SIGUIENTE", {"organization": organization})
        assert refused.status == 400
        assert site.stage(EXPORTS.order_number) is Stage.SETUP_STARTED
    assert "Elige una organización" in beside(
        customer.submit(step1, "SIGUIENTE", {"organization": "999999"}),
        "organization",
    )
    assert "Paso 1 de 3" in customer.open(url + "?paso=3").text


# -- invisible and control characters, the organization step's repeats ----------


def test_control_and_bidi_characters_are_refused_beside_their_field(
    site: Site, customer: WebCustomer
) -> None:
    site.onboarding.record_purchase(purchase_for("razon-social", BUYER, "OC-1"))
    page = customer.open(site.link(PASSWORD, "CREAR CONTRASEÑA"))
    refused = customer.submit(
        page, "CREAR CONTRASEÑA", {"password": GOOD + "\x00", "confirmation": GOOD}
    )
    assert refused.status == 400
    assert "carácter de control (U+0000)" in beside(refused, "password")
    assert site.onboarding.journey_by_order("OC-1").buyer.has_password is False
    set_password(site, customer)

    step1 = customer.submit(
        customer.open(site.link(WORKSPACE, "CREAR WORKSPACE")), "ACTIVAR"
    )
    refused = customer.submit(step1, "CREAR", {"name": "Camila\tRojas", "email": BUYER})
    assert refused.status == 400
    assert "El nombre del administrador tiene una tabulación" in beside(refused, "name")
    assert site.stage("OC-1") is Stage.WORKSPACE_ACTIVATED
    step2 = customer.submit(step1, "CREAR", {"name": "Camila Rojas", "email": BUYER})
    refused = customer.submit(step2, "SIGUIENTE", {"workspace_name": "Rojas\u202eApS"})
    assert refused.status == 400
    assert "control de dirección del texto (U+202E)" in beside(
        refused, "workspace_name"
    )
    assert site.stage("OC-1") is Stage.WORKSPACE_ADMIN_CREATED
    workspace = site.onboarding.journey_by_order("OC-1").workspace
    assert workspace is not None
    assert workspace.name is None

    tax = customer.open(site.link(TAX, "SOLICITAR DOCUMENTO"))
    refused = customer.submit(
        tax,
        "SOLICITAR DOCUMENTO",
        {
            "kind": "factura",
            "legal_name": "Ferretería\u200b Los Andes SpA",
            "rut": "76.086.428-5",
            "business_activity": "Ferretería",
            "address": "Av. Los Andes 123, Santiago",
        },
    )
    assert refused.status == 400
    assert "carácter invisible (U+200B)" in beside(refused, "legal_name")
    assert site.onboarding.journey_by_order("OC-1").tax_document is None


def test_a_new_organization_with_a_known_rut_is_refused_naming_it(
    site: Site, customer: WebCustomer
) -> None:
    site.onboarding.record_purchase(EXPORTS)
    set_password(site, customer)
    page = customer.submit(customer.open(site.link(SETUP, "INICIAR SETUP")), "COMENZAR")
    refused = customer.submit(
        page,
        "SIGUIENTE",
        {"organization": "new", "legal_name": "Otro Nombre SpA", "rut": "76086428-5"},
    )
    assert refused.status == 400
    said = beside(refused, "rut")
    assert "ya tiene la organización con RUT 76.086.428-5" in said
    assert "(Exportadora del Sur SpA): elígela en la lista" in said
    journey = site.onboarding.journey_by_order(EXPORTS.order_number)
    assert journey.stage is Stage.SETUP_STARTED
    assert journey.workspace is not None
    assert len(journey.workspace.organizations) == 1


def test_a_step_posted_before_its_turn_is_told_so_before_its_fields(
    site: Site, customer: WebCustomer
) -> None:
    site.onboarding.record_purchase(EXPORTS)
    set_password(site, customer)
    url = site.link(SETUP, "INICIAR SETUP")
    welcome = customer.open(url)
    token = dict(welcome.form("COMENZAR").fields)["csrf_token"]
    for action, data in [
        ("organizacion", {"organization": "new", "legal_name": "", "rut": "1-1"}),
        ("firma", {"legal_representative_rut": "no es un RUT"}),
        ("documentos", {"documents": "999"}),
    ]:
        early = customer.client.post(
            f"{url}/{action}", data={**data, "csrf_token": token}
        )
        assert early.status_code == 409, action
        assert "Completa primero los pasos anteriores" in early.text
        assert site.stage(EXPORTS.order_number) is Stage.SETUP_PENDING
