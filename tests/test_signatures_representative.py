"""The legal representative's RUT at step 2 of INICIAR SETUP.

The customer types it next to the signature file: a certificate of anybody
else is refused beside the file, a RUT that does not parse beside the RUT,
and neither changes the journey. Through the facade and through the page.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from haulmer_onboarding import Onboarding, SignatureError, Stage
from haulmer_onboarding.cli import SUBJECTS, Stack, local_stack
from haulmer_onboarding.errors import RutError
from haulmer_onboarding.testing.customer import (
    Page,
    WebCustomer,
    link_in,
    wait_for_subject,
)
from haulmer_onboarding.testing.journey import JourneyWalker
from haulmer_onboarding.testing.scenarios import purchase_for
from haulmer_onboarding.testing.signatures import make_pkcs12
from haulmer_onboarding.testing.smtp import SmtpCatcher

BUYER = "compras@ferreteria-los-andes.cl"
GOOD = "Cordillera2026"
PASSWORD = "firma-1234"
# The signature is Camila's; the legal representative may be someone else.
CAMILA = "15.678.901-1"
OTHER = "11.111.111-1"


@pytest.fixture(scope="module")
def camila() -> bytes:
    return make_pkcs12(
        holder_name="Camila Rojas Fuentes", holder_rut=CAMILA, password=PASSWORD
    )


# --- Through the facade ------------------------------------------------------


def at_signature_step(onboarding: Onboarding, catcher: SmtpCatcher) -> tuple[int, str]:
    """A journey at step 2: its id and INICIAR SETUP token."""
    walker = JourneyWalker(onboarding, catcher, "http://127.0.0.1:9")
    journey = onboarding.record_purchase(purchase_for("simple", BUYER))
    onboarding.set_password(
        walker.token(BUYER, SUBJECTS["password"], "CREAR CONTRASEÑA"), GOOD, GOOD
    )
    setup = walker.token(BUYER, SUBJECTS["setup"], "INICIAR SETUP")
    onboarding.begin_setup(setup)
    assert journey.workspace is not None
    onboarding.choose_organization(
        setup, organization_id=journey.workspace.organizations[0].id
    )
    return journey.id, setup


def test_the_representative_s_own_signature_is_kept_with_the_rut(
    onboarding: Onboarding, catcher: SmtpCatcher, camila: bytes
) -> None:
    _, setup = at_signature_step(onboarding, catcher)
    journey = onboarding.upload_signature(setup, camila, PASSWORD, "15678901-1")
    assert journey.stage is Stage.SETUP_SIGNATURE_LOADED
    assert journey.signature is not None
    assert journey.signature["legal_representative_rut"] == "15678901-1"
    assert journey.signature["holder_rut"] == "15678901-1"


def test_another_person_s_signature_is_refused_and_changes_nothing(
    onboarding: Onboarding, catcher: SmtpCatcher, camila: bytes
) -> None:
    journey_id, setup = at_signature_step(onboarding, catcher)

    with pytest.raises(SignatureError) as caught:
        onboarding.upload_signature(setup, camila, PASSWORD, OTHER)
    assert caught.value.code == "signature_rut_mismatch"
    assert caught.value.field == "signature"
    assert "15.678.901-1" in caught.value.message
    assert "11.111.111-1" in caught.value.message
    assert "representante legal" in caught.value.message

    after = onboarding.journey(journey_id)
    assert after.stage is Stage.SETUP_ORGANIZATION_CHOSEN
    assert after.signature is None
    # The right RUT then goes through with the same link.
    onboarding.upload_signature(setup, camila, PASSWORD, CAMILA)


@pytest.mark.parametrize(
    ("typed", "code"),
    [
        ("", "rut_empty"),
        ("   ", "rut_empty"),
        ("15.678.901", "rut_format"),
        ("15.678.901-2", "rut_check_digit"),
    ],
)
def test_a_bad_representative_rut_is_refused_beside_its_field(
    onboarding: Onboarding,
    catcher: SmtpCatcher,
    camila: bytes,
    typed: str,
    code: str,
) -> None:
    journey_id, setup = at_signature_step(onboarding, catcher)
    with pytest.raises(RutError) as caught:
        onboarding.upload_signature(setup, camila, PASSWORD, typed)
    assert caught.value.code == code
    assert caught.value.field == "legal_representative_rut"
    if code == "rut_empty":
        assert caught.value.message == "Ingresa el RUT del representante legal."
    assert onboarding.journey(journey_id).signature is None


def test_a_program_that_does_not_ask_checks_no_holder(
    onboarding: Onboarding, catcher: SmtpCatcher, camila: bytes
) -> None:
    _, setup = at_signature_step(onboarding, catcher)
    journey = onboarding.upload_signature(setup, camila, PASSWORD)
    assert journey.signature is not None
    assert journey.signature["legal_representative_rut"] is None


def test_the_walker_types_the_holder_s_rut(
    onboarding: Onboarding, catcher: SmtpCatcher, camila: bytes
) -> None:
    walker = JourneyWalker(onboarding, catcher, "http://127.0.0.1:9")
    purchase = purchase_for("simple", BUYER)
    journey, _ = walker.to_signature(purchase, camila, PASSWORD)
    assert journey.signature is not None
    assert journey.signature["legal_representative_rut"] == "15678901-1"


# --- Through the page --------------------------------------------------------


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with local_stack(tmp_path, seconds_per_business_day=0.05, poll_interval=0.1) as s:
        yield s


@pytest.fixture
def customer() -> Iterator[WebCustomer]:
    web = WebCustomer()
    yield web
    web.close()


def signature_page(stack: Stack, customer: WebCustomer) -> tuple[int, Page]:
    """A journey at step 2: its id and the page."""
    journey = stack.onboarding.record_purchase(purchase_for("simple", BUYER))
    created = wait_for_subject(stack.catcher, BUYER, SUBJECTS["password"])
    page = customer.open(link_in(created, "CREAR CONTRASEÑA"))
    customer.submit(page, "CREAR CONTRASEÑA", {"password": GOOD, "confirmation": GOOD})
    setup = link_in(
        wait_for_subject(stack.catcher, BUYER, SUBJECTS["setup"]), "INICIAR SETUP"
    )
    page = customer.submit(customer.open(setup), "COMENZAR")
    page = customer.submit(page, "SIGUIENTE")
    assert "RUT del representante legal" in page.text
    return journey.id, page


def upload(customer: WebCustomer, page: Page, representative: str, pfx: bytes) -> Page:
    return customer.submit(
        page,
        "SIGUIENTE",
        {"legal_representative_rut": representative, "signature_password": PASSWORD},
        files={"signature": ("camila.pfx", pfx, "application/x-pkcs12")},
    )


def test_the_page_refuses_another_person_s_signature_then_takes_the_right_one(
    stack: Stack, customer: WebCustomer, camila: bytes
) -> None:
    journey_id, page = signature_page(stack, customer)

    refused = upload(customer, page, OTHER, camila)
    assert refused.status == 400
    assert "es del RUT 15.678.901-1 y no del RUT 11.111.111-1" in refused.text
    # Beside the file, and the typed RUT is kept in its box.
    assert 'id="signature-error"' in refused.html
    assert 'value="11.111.111-1"' in refused.html
    assert stack.onboarding.journey(journey_id).signature is None

    accepted = upload(customer, refused, "15678901-1", camila)
    assert accepted.status == 200
    assert "Paso 3 de 3" in accepted.text
    journey = stack.onboarding.journey(journey_id)
    assert journey.signature is not None
    assert journey.signature["legal_representative_rut"] == "15678901-1"


@pytest.mark.parametrize(
    ("typed", "said"),
    [
        ("", "Ingresa el RUT del representante legal."),
        ("15.678.901-2", "debería ser 1"),
    ],
)
def test_the_page_shows_a_bad_representative_rut_beside_its_field(
    stack: Stack, customer: WebCustomer, camila: bytes, typed: str, said: str
) -> None:
    journey_id, page = signature_page(stack, customer)
    refused = upload(customer, page, typed, camila)
    assert refused.status == 400
    assert said in refused.text
    assert 'id="legal_representative_rut-error"' in refused.html
    assert 'aria-describedby="legal_representative_rut-error"' in refused.html
    assert stack.onboarding.journey(journey_id).signature is None
