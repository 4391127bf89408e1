"""The whole journey through the facade, with real SMTP and a real sandbox."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa

from haulmer_onboarding import (
    DocumentsError,
    LinkInvalid,
    LinkUsed,
    LinkWrongPurpose,
    Onboarding,
    PasswordError,
    Purpose,
    RutError,
    SignatureError,
    Stage,
    StepOrderError,
)
from haulmer_onboarding.store import outbox
from haulmer_onboarding.testing.customer import link_in
from haulmer_onboarding.testing.scenarios import purchase_for
from haulmer_onboarding.testing.servers import RunningServer
from haulmer_onboarding.testing.signatures import make_pkcs12
from haulmer_onboarding.testing.smtp import CaughtMessage, SmtpCatcher
from haulmer_onboarding.web import RedactLinkTokens

from .conftest import advance_certification

BUYER = "Camila.Rojas@Example.CL"
BUYER_NORMALIZED = "camila.rojas@example.cl"
PURCHASE = "Haulmer - Compra exitosa"
PAYMENT = "Haulmer - Pago Confirmado"
TAX = "¿Boleta o factura? Obtén tu documento tributario por la compra en HAULMER"
PASSWORD = "[Haulmer Accounts] Crea tu nueva contraseña"
WORKSPACE = "[Workspace] Crea tu nuevo espacio de trabajo"
SETUP = "¡Habilita tu organización para emitir documentos!"
GOOD_PASSWORD = "Cordillera2026"


def deliver(onboarding: Onboarding, catcher: SmtpCatcher) -> list[CaughtMessage]:
    """Run the relay once and return everything the SMTP server has."""
    onboarding.process_password_requests()
    onboarding.relay().deliver_pending()
    return catcher.messages


def token(message: CaughtMessage, button: str) -> str:
    return link_in(message, button).rsplit("/", 1)[1]


def last(messages: list[CaughtMessage], subject: str) -> CaughtMessage:
    return [m for m in messages if m.subject == subject][-1]


def set_password(onboarding: Onboarding, catcher: SmtpCatcher, email: str) -> None:
    messages = [m for m in deliver(onboarding, catcher) if email in m.rcpt_tos]
    link = token(last(messages, PASSWORD), "CREAR CONTRASEÑA")
    onboarding.set_password(link, GOOD_PASSWORD, GOOD_PASSWORD)


def finish_certification(
    onboarding: Onboarding, sandbox: RunningServer, journey_id: int
) -> None:
    onboarding.poll_certifications()  # the worker submits it
    journey = onboarding.journey(journey_id)
    assert journey.certification is not None
    certification_id = journey.certification["id"]
    assert certification_id, "the certification was not submitted to the service"
    for _ in journey.certification["steps"]:
        advance_certification(sandbox, certification_id)
        onboarding.poll_certifications()


def test_new_legal_name_journey_sends_every_email_in_order(
    onboarding: Onboarding, catcher: SmtpCatcher, sandbox: RunningServer
) -> None:
    journey = onboarding.record_purchase(purchase_for("razon-social", BUYER, "OC-1001"))
    assert journey.stage is Stage.WORKSPACE_PENDING
    assert journey.products == ("openfactura", "tuu")

    messages = deliver(onboarding, catcher)
    assert [m.subject for m in messages] == [
        PURCHASE,
        PAYMENT,
        TAX,
        PASSWORD,
        WORKSPACE,
    ]
    assert {m.to for m in messages} == {BUYER_NORMALIZED}
    assert "OC-1001" in messages[1].text()

    onboarding.request_tax_document(
        token(messages[2], "SOLICITAR DOCUMENTO"), kind="boleta"
    )
    onboarding.set_password(
        token(messages[3], "CREAR CONTRASEÑA"), GOOD_PASSWORD, GOOD_PASSWORD
    )
    assert onboarding.verify_password(" CAMILA.ROJAS@example.cl", GOOD_PASSWORD)

    wizard = token(messages[4], "CREAR WORKSPACE")
    onboarding.activate_workspace(wizard)
    onboarding.create_workspace_administrator(wizard, BUYER, "Camila Rojas")
    onboarding.name_workspace(wizard, "Rojas y Cía")
    journey = onboarding.finish_workspace(wizard, "Comercial Rojas Ltda.", "76543210-3")
    assert journey.stage is Stage.SETUP_PENDING
    assert journey.organization is not None
    assert journey.organization.rut == "76543210-3"

    messages = deliver(onboarding, catcher)
    assert messages[5].subject == SETUP
    assert messages[5].to == BUYER_NORMALIZED
    setup = token(messages[5], "INICIAR SETUP")
    onboarding.begin_setup(setup)
    onboarding.choose_organization(setup, organization_id=journey.organization.id)
    onboarding.upload_signature(
        setup, make_pkcs12(password="clave-firma"), "clave-firma"
    )

    offer = onboarding.document_offer(journey)
    assert offer.locked
    assert offer.required == {33, 39}
    journey = onboarding.choose_documents(setup, [])
    assert journey.stage is Stage.CERTIFYING
    assert journey.documents == {33, 39}

    finish_certification(onboarding, sandbox, journey.id)
    journey = onboarding.journey(journey.id)
    assert journey.stage is Stage.ENABLED
    assert journey.certification is not None
    assert journey.certification["state"] == "approved"

    subjects = [m.subject for m in deliver(onboarding, catcher)]
    assert subjects[:6] == [PURCHASE, PAYMENT, TAX, PASSWORD, WORKSPACE, SETUP]
    assert subjects[6].startswith("Comenzó la certificación de Comercial Rojas")
    assert any(s.startswith("Avance de la certificación") for s in subjects[7:-1])
    assert (
        subjects[-1]
        == "¡Comercial Rojas Ltda. ya puede emitir documentos electrónicos!"
    )

    kinds = [e.kind for e in onboarding.events(journey.id) if e.kind != "email_queued"]
    assert kinds[:7] == [
        "purchase_recorded",
        "tax_document_requested",
        "password_set",
        "workspace_activated",
        "workspace_administrator_set",
        "workspace_named",
        "workspace_finished",
    ]
    assert kinds[-1] == "organization_enabled"


def test_plain_purchase_skips_the_workspace_email(
    onboarding: Onboarding, catcher: SmtpCatcher, sandbox: RunningServer
) -> None:
    journey = onboarding.record_purchase(purchase_for("simple", BUYER, "OC-2001"))
    assert journey.stage is Stage.SETUP_PENDING
    assert journey.organization is not None
    assert journey.organization.legal_name == "Ferretería Los Andes SpA"

    messages = deliver(onboarding, catcher)
    assert [m.subject for m in messages] == [PURCHASE, PAYMENT, TAX, PASSWORD, SETUP]

    onboarding.set_password(
        token(messages[3], "CREAR CONTRASEÑA"), GOOD_PASSWORD, GOOD_PASSWORD
    )
    setup = token(messages[4], "INICIAR SETUP")
    onboarding.begin_setup(setup)
    onboarding.choose_organization(setup, organization_id=journey.organization.id)
    onboarding.upload_signature(setup, make_pkcs12(password="x1"), "x1")
    offer = onboarding.document_offer(journey)
    assert not offer.locked
    journey = onboarding.choose_documents(setup, ["33", "61", "56"])
    assert journey.documents == {33, 56, 61}

    finish_certification(onboarding, sandbox, journey.id)
    assert onboarding.journey(journey.id).stage is Stage.ENABLED


def test_simpleboleta_alone_enables_boletas(
    onboarding: Onboarding, catcher: SmtpCatcher, sandbox: RunningServer
) -> None:
    journey = onboarding.record_purchase(purchase_for("simpleboleta", BUYER))
    set_password(onboarding, catcher, BUYER_NORMALIZED)
    setup = token(last(catcher.messages, SETUP), "INICIAR SETUP")
    onboarding.begin_setup(setup)
    assert journey.organization is not None
    onboarding.choose_organization(setup, organization_id=journey.organization.id)
    onboarding.upload_signature(setup, make_pkcs12(password="x1"), "x1")
    journey = onboarding.choose_documents(setup, [39])
    assert journey.documents == {39}
    assert journey.certification is not None
    steps = [s["id"] for s in journey.certification["steps"]]
    assert steps == ["postulacion", "set_boletas", "declaracion"]
    finish_certification(onboarding, sandbox, journey.id)
    assert onboarding.journey(journey.id).stage is Stage.ENABLED


def test_another_administrator_receives_the_later_instructions(
    onboarding: Onboarding, catcher: SmtpCatcher
) -> None:
    onboarding.record_purchase(purchase_for("razon-social", BUYER))
    set_password(onboarding, catcher, BUYER_NORMALIZED)
    wizard = token(last(catcher.messages, WORKSPACE), "CREAR WORKSPACE")
    onboarding.activate_workspace(wizard)
    onboarding.create_workspace_administrator(wizard, "Admin@Rojas.CL", "Pedro Soto")
    onboarding.name_workspace(wizard, "Rojas")
    onboarding.finish_workspace(wizard, "Rojas SpA", "76.543.210-3")

    messages = deliver(onboarding, catcher)
    to_admin = [m.subject for m in messages if m.to == "admin@rojas.cl"]
    assert to_admin == [PASSWORD, SETUP]
    assert [m.subject for m in messages].count(SETUP) == 1

    # The setup waits for the administrator's own password.
    setup = token(last(messages, SETUP), "INICIAR SETUP")
    with pytest.raises(StepOrderError) as info:
        onboarding.begin_setup(setup)
    assert info.value.code == "password_required"
    set_password(onboarding, catcher, "admin@rojas.cl")
    assert onboarding.begin_setup(setup).stage is Stage.SETUP_STARTED


def test_recording_the_same_order_twice_makes_one_journey(
    onboarding: Onboarding, catcher: SmtpCatcher
) -> None:
    first = onboarding.record_purchase(purchase_for("simple", BUYER, "OC-7"))
    again = onboarding.record_purchase(purchase_for("simple", BUYER, "OC-7"))
    assert again.id == first.id
    assert len(deliver(onboarding, catcher)) == 5


# -- bad input: a clear error with a code, and nothing changed ---------------


def outbox_size(onboarding: Onboarding) -> int:
    with onboarding.store.begin() as conn:
        return int(
            conn.execute(sa.select(sa.func.count()).select_from(outbox)).scalar_one()
        )


def test_workspace_before_password_is_refused_and_changes_nothing(
    onboarding: Onboarding, catcher: SmtpCatcher
) -> None:
    journey = onboarding.record_purchase(purchase_for("razon-social", BUYER))
    wizard = token(last(deliver(onboarding, catcher), WORKSPACE), "CREAR WORKSPACE")
    with pytest.raises(StepOrderError) as info:
        onboarding.activate_workspace(wizard)
    assert info.value.code == "password_required"
    assert "CREAR CONTRASEÑA" in info.value.message
    assert onboarding.journey(journey.id).stage is Stage.WORKSPACE_PENDING


def test_steps_cannot_be_skipped(onboarding: Onboarding, catcher: SmtpCatcher) -> None:
    journey = onboarding.record_purchase(purchase_for("razon-social", BUYER))
    set_password(onboarding, catcher, BUYER_NORMALIZED)
    wizard = token(last(catcher.messages, WORKSPACE), "CREAR WORKSPACE")
    onboarding.activate_workspace(wizard)
    with pytest.raises(StepOrderError):
        onboarding.finish_workspace(wizard, "Rojas SpA", "76543210-3")
    assert onboarding.journey(journey.id).stage is Stage.WORKSPACE_ACTIVATED


def test_a_weak_password_is_refused_and_the_link_still_works(
    onboarding: Onboarding, catcher: SmtpCatcher
) -> None:
    onboarding.record_purchase(purchase_for("simple", BUYER))
    link = token(last(deliver(onboarding, catcher), PASSWORD), "CREAR CONTRASEÑA")
    for weak, code in [
        ("corta1A", "password_too_short"),
        ("sinmayusculas1", "password_missing_uppercase"),
        ("SinNumeros", "password_missing_digit"),
    ]:
        with pytest.raises(PasswordError) as info:
            onboarding.set_password(link, weak, weak)
        assert info.value.code == code
    with pytest.raises(PasswordError) as info:
        onboarding.set_password(link, GOOD_PASSWORD, GOOD_PASSWORD + "x")
    assert info.value.code == "password_mismatch"
    assert not onboarding.verify_password(BUYER, GOOD_PASSWORD)

    onboarding.set_password(link, GOOD_PASSWORD, GOOD_PASSWORD)
    assert onboarding.verify_password(BUYER, GOOD_PASSWORD)
    with pytest.raises(LinkUsed):
        onboarding.set_password(link, "Otra2026clave", "Otra2026clave")
    assert onboarding.verify_password(BUYER, GOOD_PASSWORD)


def test_a_bad_rut_is_refused_and_changes_nothing(
    onboarding: Onboarding, catcher: SmtpCatcher
) -> None:
    journey = onboarding.record_purchase(purchase_for("razon-social", BUYER))
    set_password(onboarding, catcher, BUYER_NORMALIZED)
    wizard = token(last(catcher.messages, WORKSPACE), "CREAR WORKSPACE")
    onboarding.activate_workspace(wizard)
    onboarding.create_workspace_administrator(wizard, BUYER, "Camila")
    onboarding.name_workspace(wizard, "Rojas")
    before = outbox_size(onboarding)
    with pytest.raises(RutError) as info:
        onboarding.finish_workspace(wizard, "Rojas SpA", "76.543.210-4")
    assert info.value.code == "rut_check_digit"
    assert info.value.field == "rut"
    assert onboarding.journey(journey.id).stage is Stage.WORKSPACE_NAMED
    assert outbox_size(onboarding) == before
    # The same link finishes the wizard once the RUT is right.
    finished = onboarding.finish_workspace(wizard, "Rojas SpA", "76.543.210-3")
    assert finished.stage is Stage.SETUP_PENDING


def test_a_wrong_signature_password_is_refused_and_changes_nothing(
    onboarding: Onboarding, catcher: SmtpCatcher
) -> None:
    journey = onboarding.record_purchase(purchase_for("simple", BUYER))
    set_password(onboarding, catcher, BUYER_NORMALIZED)
    setup = token(last(catcher.messages, SETUP), "INICIAR SETUP")
    onboarding.begin_setup(setup)
    assert journey.organization is not None
    onboarding.choose_organization(setup, organization_id=journey.organization.id)
    pfx = make_pkcs12(password="la-correcta")
    with pytest.raises(SignatureError) as info:
        onboarding.upload_signature(setup, pfx, "otra")
    assert info.value.code == "signature_wrong_password"
    assert "no es posible recuperarla" in info.value.message
    current = onboarding.journey(journey.id)
    assert current.stage is Stage.SETUP_ORGANIZATION_CHOSEN
    assert current.signature is None
    with pytest.raises(SignatureError) as info:
        onboarding.upload_signature(setup, b"-----BEGIN CERTIFICATE-----\n", "x")
    assert info.value.code == "signature_not_pkcs12"


def test_point_of_sale_documents_are_fixed_and_the_rest_selectable(
    onboarding: Onboarding, catcher: SmtpCatcher
) -> None:
    onboarding.record_purchase(purchase_for("razon-social", BUYER))
    set_password(onboarding, catcher, BUYER_NORMALIZED)
    wizard = token(last(catcher.messages, WORKSPACE), "CREAR WORKSPACE")
    onboarding.activate_workspace(wizard)
    onboarding.create_workspace_administrator(wizard, BUYER, "Camila")
    onboarding.name_workspace(wizard, "Rojas")
    journey = onboarding.finish_workspace(wizard, "Rojas SpA", "76.543.210-3")
    setup = token(last(deliver(onboarding, catcher), SETUP), "INICIAR SETUP")
    onboarding.begin_setup(setup)
    assert journey.organization is not None
    onboarding.choose_organization(setup, organization_id=journey.organization.id)
    onboarding.upload_signature(setup, make_pkcs12(password="x1"), "x1")

    offer = onboarding.document_offer(journey)
    assert offer.locked
    assert offer.required == {33, 39}
    assert {61, 56, 52} <= offer.optional
    with pytest.raises(DocumentsError) as info:
        onboarding.choose_documents(setup, [61, 999])
    assert info.value.code == "documents_unknown"
    assert onboarding.journey(journey.id).stage is Stage.SETUP_SIGNATURE_LOADED

    # Leaving out a fixed document does not remove it.
    chosen = onboarding.choose_documents(setup, [61])
    assert chosen.documents == {33, 39, 61}


def test_documents_a_product_does_not_offer_are_refused(
    onboarding: Onboarding, catcher: SmtpCatcher
) -> None:
    journey = onboarding.record_purchase(purchase_for("simpleboleta", BUYER))
    set_password(onboarding, catcher, BUYER_NORMALIZED)
    setup = token(last(catcher.messages, SETUP), "INICIAR SETUP")
    onboarding.begin_setup(setup)
    assert journey.organization is not None
    onboarding.choose_organization(setup, organization_id=journey.organization.id)
    onboarding.upload_signature(setup, make_pkcs12(password="x1"), "x1")
    with pytest.raises(DocumentsError) as info:
        onboarding.choose_documents(setup, [39, 33])
    assert info.value.code == "documents_not_offered"
    assert onboarding.journey(journey.id).stage is Stage.SETUP_SIGNATURE_LOADED


def test_unknown_and_misdirected_links_are_refused(
    onboarding: Onboarding, catcher: SmtpCatcher
) -> None:
    onboarding.record_purchase(purchase_for("razon-social", BUYER))
    messages = deliver(onboarding, catcher)
    password_link = token(messages[3], "CREAR CONTRASEÑA")
    with pytest.raises(LinkInvalid):
        onboarding.open_link("not-a-token", Purpose.CREATE_PASSWORD)
    with pytest.raises(LinkInvalid):
        onboarding.open_link(password_link[:-2] + "xx", Purpose.CREATE_PASSWORD)
    with pytest.raises(LinkWrongPurpose):
        onboarding.activate_workspace(password_link)
    assert onboarding.open_link(password_link, Purpose.CREATE_PASSWORD).customer


def test_forgot_password_resends_email_four_and_kills_the_old_link(
    onboarding: Onboarding, catcher: SmtpCatcher
) -> None:
    onboarding.record_purchase(purchase_for("simple", BUYER))
    old = token(last(deliver(onboarding, catcher), PASSWORD), "CREAR CONTRASEÑA")

    onboarding.request_password_email("  CAMILA.rojas@EXAMPLE.cl ")
    onboarding.request_password_email("nadie@example.cl")
    messages = deliver(onboarding, catcher)
    resent = [m for m in messages if m.subject == PASSWORD]
    assert len(resent) == 2
    assert all(m.to == BUYER_NORMALIZED for m in resent)

    with pytest.raises(LinkUsed):
        onboarding.set_password(old, GOOD_PASSWORD, GOOD_PASSWORD)
    new = token(resent[-1], "CREAR CONTRASEÑA")
    onboarding.set_password(new, GOOD_PASSWORD, GOOD_PASSWORD)
    assert onboarding.verify_password(BUYER, GOOD_PASSWORD)


def test_no_secret_reaches_the_log(
    onboarding: Onboarding,
    catcher: SmtpCatcher,
    sandbox: RunningServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    journey = onboarding.record_purchase(purchase_for("simple", BUYER))
    messages = deliver(onboarding, catcher)
    password_link = token(messages[3], "CREAR CONTRASEÑA")
    setup = token(messages[4], "INICIAR SETUP")
    onboarding.set_password(password_link, GOOD_PASSWORD, GOOD_PASSWORD)
    onboarding.begin_setup(setup)
    assert journey.organization is not None
    onboarding.choose_organization(setup, organization_id=journey.organization.id)
    with pytest.raises(SignatureError):
        onboarding.upload_signature(setup, make_pkcs12(password="SecretoFirma1"), "no")
    onboarding.upload_signature(
        setup, make_pkcs12(password="SecretoFirma1"), "SecretoFirma1"
    )
    onboarding.choose_documents(setup, [33])
    finish_certification(onboarding, sandbox, journey.id)
    deliver(onboarding, catcher)

    # Every logger of the SDK's process, not only ours: libraries log URLs.
    # "mail.log" is the SMTP server's own, the customer's mail provider here.
    logged = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith("mail.log")
    )
    assert "journey" in logged
    assert "email sent" in logged
    for secret in (
        GOOD_PASSWORD,
        "SecretoFirma1",
        password_link,
        setup,
        BUYER_NORMALIZED,
    ):
        assert secret not in logged


def test_access_log_lines_lose_their_link_tokens(
    onboarding: Onboarding, catcher: SmtpCatcher
) -> None:
    onboarding.record_purchase(purchase_for("simple", BUYER))
    url = link_in(deliver(onboarding, catcher)[3], "CREAR CONTRASEÑA")
    path = url.removeprefix("http://127.0.0.1:9")
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", path, "1.1", 200),
        None,
    )
    RedactLinkTokens().filter(record)
    line = record.getMessage()
    assert token(deliver(onboarding, catcher)[3], "CREAR CONTRASEÑA") not in line
    assert '"GET /contrasena/[token] HTTP/1.1" 200' in line
