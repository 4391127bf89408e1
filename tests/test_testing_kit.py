"""The journey testing kit, loaded as users load it: through ``pytest11``."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

# pytester's in-process runs forget the modules first imported inside them;
# Alembic's ``context`` must outlive them, since the migrations' env.py reads
# the proxy Alembic installed on the module object it imported first.
import alembic.context  # noqa: F401
import pytest

from haulmer_onboarding import Stage
from haulmer_onboarding.testing.scenario import JourneyExpectationError, JourneyKit
from haulmer_onboarding.testing.scenarios import purchase_for

pytest_plugins = ["pytester"]

BUYER = "compras@ferreteria-los-andes.cl"
PASSWORD_EMAIL = "[Haulmer Accounts] Crea tu nueva contraseña"
SETUP_EMAIL = "¡Habilita tu organización para emitir documentos!"

# What a product team writes: nothing imported from the kit but sample data.
A_GUIDE_SUITE = """
import pytest

from haulmer_onboarding import Stage
from haulmer_onboarding.testing.scenarios import purchase_for

BUYER = "compras@ferreteria-los-andes.cl"


def test_the_customer_follows_the_guide(journey_kit):
    kit = journey_kit
    journey = kit.purchase(purchase_for("simple", BUYER, "OC-GUIA-1"))

    email = kit.mailbox.expect("[Haulmer Accounts] Crea tu nueva contraseña", to=BUYER)
    page = kit.customer.click(email, "CREAR CONTRASEÑA")
    page = page.press(
        "CREAR CONTRASEÑA", password="Cordillera2026", confirmation="Cordillera2026"
    )
    assert page.title == "¡Tu contraseña está lista!"

    email = kit.mailbox.expect(
        "¡Habilita tu organización para emitir documentos!", to=BUYER
    )
    page = kit.customer.click(email, "INICIAR SETUP")
    page = page.press("COMENZAR").press("SIGUIENTE")
    page = page.press(
        "SIGUIENTE",
        legal_representative_rut="12.345.678-5",
        signature=kit.signature(),
        signature_password=kit.signature_password,
    )
    page = page.press("SIGUIENTE", documents=[33, 61])
    assert page.title == "La certificación ante el SII ha comenzado"
    kit.mailbox.expect("Comenzó la certificación de Ferretería Los Andes SpA")
    kit.run_worker_once()  # the worker submits it to the service

    # A business day of the sandbox ends the first step.
    kit.clock.advance(days=1)
    kit.run_worker_once()
    kit.mailbox.expect("Avance de la certificación de Ferretería Los Andes SpA")

    journey = kit.finish_certification(journey)
    assert journey.stage is Stage.ENABLED
    assert journey.documents == {33, 61}
    kit.mailbox.expect("¡Ferretería Los Andes SpA ya puede emitir", to=BUYER)

    # OpenFactura's post-enablement action runs against the kit's sandbox.
    kit.run_worker_once()
    (action,) = kit.onboarding.enablement_actions(journey.id)
    assert action["state"] == "done"
    kit.mailbox.expect("Ferretería Los Andes SpA: API key de OpenFactura")


def test_one_call_walks_a_new_legal_name_to_enabled(journey_kit):
    purchase = purchase_for("razon-social", BUYER, "OC-GUIA-2")
    journey = journey_kit.walk_to_enabled(purchase)
    assert journey.stage is Stage.ENABLED
    assert journey.workspace.organizations[0].legal_name == "Organización de Prueba SpA"


@pytest.mark.journey_kit(live_server=True)
def test_the_pages_can_be_served_live(journey_kit):
    journey_kit.purchase(purchase_for("simple", BUYER, "OC-GUIA-3"))
    email = journey_kit.mailbox.expect("[Haulmer Accounts] Crea tu nueva contraseña")
    page = journey_kit.customer.click(email, "CREAR CONTRASEÑA")
    assert page.url.startswith("http://127.0.0.1:")
    assert page.title == "Crea tu nueva contraseña"
"""

AN_EMAIL_THAT_NEVER_COMES = """
from haulmer_onboarding.testing.scenarios import purchase_for


def test_the_administrator_gets_the_setup_email(journey_kit):
    journey_kit.purchase(purchase_for("simple", "compras@example.cl", "OC-7"))
    journey_kit.mailbox.expect(
        "¡Habilita tu organización para emitir documentos!", to="otra@example.cl"
    )
"""

A_LINK_TO_AN_ERROR_PAGE = """
from haulmer_onboarding.testing.scenarios import purchase_for


def test_the_password_link_still_works_after_four_days(journey_kit):
    journey_kit.purchase(purchase_for("simple", "compras@example.cl", "OC-8"))
    email = journey_kit.mailbox.expect("[Haulmer Accounts] Crea tu nueva contraseña")
    journey_kit.clock.advance(days=4)
    journey_kit.customer.click(email, "CREAR CONTRASEÑA")
"""


def test_pytest_finds_the_plugin_through_its_entry_point(
    request: pytest.FixtureRequest,
) -> None:
    (entry,) = [
        ep for ep in entry_points(group="pytest11") if ep.name == "haulmer_onboarding"
    ]
    assert entry.value == "haulmer_onboarding.testing.pytest_plugin"
    assert request.config.pluginmanager.hasplugin("haulmer_onboarding")


def test_importing_the_plugin_starts_nothing() -> None:
    heavy = [
        "sqlalchemy",
        "starlette",
        "cryptography",
        "httpx",
        "haulmer_onboarding.journey",
        "haulmer_onboarding.sandbox",
        "aiosmtpd",
        "uvicorn",
        "anyio.from_thread",
        "haulmer_onboarding.web",
        "haulmer_onboarding.worker",
        "haulmer_onboarding.testing.scenario",
        "haulmer_onboarding.testing.smtp",
    ]
    code = (
        "import sys, threading\n"
        "import haulmer_onboarding.testing.pytest_plugin\n"
        f"print([m for m in {heavy!r} if m in sys.modules])\n"
        "print(threading.active_count())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert done.stdout.split("\n")[:2] == ["[]", "1"]


def test_the_fixtures_are_listed_under_their_own_names(
    pytester: pytest.Pytester,
) -> None:
    result = pytester.runpytest("--fixtures")
    listed = result.stdout.str()
    fixtures = [
        "journey_kit",
        "kit_onboarding",
        "kit_settings",
        "kit_mailbox",
        "kit_customer",
        "kit_sandbox",
        "kit_plugins",
        "kit_clock",
        "kit_pkcs12",
    ]
    for name in fixtures:
        assert f"{name} -- " in listed or f"\n{name}\n" in listed, name
    # The SDK's own suite names its fixtures like this; the kit must not.
    for taken in ("catcher", "sandbox", "settings", "onboarding"):
        assert f"\n{taken} -- " not in listed


def test_a_suite_written_with_the_kit_walks_journeys(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_guide=A_GUIDE_SUITE)
    result = pytester.runpytest("-q")
    result.assert_outcomes(passed=3)


def test_an_email_that_never_arrives_shows_the_mailbox_and_the_journey(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_setup=AN_EMAIL_THAT_NEVER_COMES)
    result = pytester.runpytest("-o", "journey_kit_timeout=0.2")
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert (
        "no email «¡Habilita tu organización para emitir documentos!» to "
        "otra@example.cl arrived within 0.2 s"
    ) in output
    assert "mailbox (5 emails):" in output
    assert "#1 «Haulmer - Compra exitosa» → compras@example.cl" in output
    assert f"#4 «{PASSWORD_EMAIL}» → compras@example.cl" in output
    assert f"#5 «{SETUP_EMAIL}» → compras@example.cl" in output
    assert (
        "OC-7 (journey 1): stage setup_pending; documents none; "
        "certification not started"
    ) in output


def test_a_link_to_an_error_page_shows_the_status_and_the_spanish_error(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_link=A_LINK_TO_AN_ERROR_PAGE)
    result = pytester.runpytest("-o", "journey_kit_timeout=0.2")
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*«CREAR CONTRASEÑA» of email #4 led to http://onboarding.test/"
            "contrasena/*: answered 410, expected a page without error",
            "*  page «Este enlace expiró»",
            "*says: Por seguridad, los enlaces de nuestros correos duran un "
            "tiempo limitado.",
        ]
    )
    assert "mailbox (5 emails):" in output
    assert "OC-8 (journey 1): stage setup_pending" in output


def test_expect_gives_the_new_email_after_a_link_is_renewed(
    journey_kit: JourneyKit,
) -> None:
    kit = journey_kit
    kit.purchase(purchase_for("simple", BUYER))
    first = kit.mailbox.expect(PASSWORD_EMAIL, to=BUYER.upper())
    kit.clock.advance(days=4)

    expired = kit.customer.click(first, "CREAR CONTRASEÑA", status=410)
    renewed = expired.press("ENVIAR UN NUEVO ENLACE")
    assert "c*****@ferreteria-los-andes.cl" in renewed.text

    second = kit.mailbox.expect(PASSWORD_EMAIL)
    assert second.number > first.number
    assert second.link("CREAR CONTRASEÑA") != first.link("CREAR CONTRASEÑA")
    assert len(kit.mailbox.find(PASSWORD_EMAIL, to=BUYER)) == 2


def test_a_form_error_fails_the_test_unless_it_is_expected(
    journey_kit: JourneyKit,
) -> None:
    kit = journey_kit
    kit.purchase(purchase_for("simple", BUYER, "OC-FORM"))
    page = kit.customer.click(kit.mailbox.expect(PASSWORD_EMAIL), "CREAR CONTRASEÑA")

    with pytest.raises(JourneyExpectationError) as failed:
        page.press("CREAR CONTRASEÑA", password="corta", confirmation="corta")
    message = str(failed.value)
    assert (
        "pressing «CREAR CONTRASEÑA» on http://onboarding.test/contrasena/" in message
    )
    assert "answered 400, expected a page without error" in message
    assert "says: La contraseña debe tener al menos 8 caracteres" in message
    assert "OC-FORM (journey 1): stage setup_pending" in message

    again = page.press(
        "CREAR CONTRASEÑA", status=400, password="corta", confirmation="corta"
    )
    assert again.alerts == ["La contraseña debe tener al menos 8 caracteres."]


def test_a_missing_button_names_the_ones_there_are(journey_kit: JourneyKit) -> None:
    kit = journey_kit
    kit.purchase(purchase_for("simple", BUYER))
    email = kit.mailbox.expect(PASSWORD_EMAIL)

    with pytest.raises(
        JourneyExpectationError, match="its buttons: «CREAR CONTRASEÑA»"
    ):
        kit.customer.click(email, "INICIAR SETUP")
    page = kit.customer.click(email, "CREAR CONTRASEÑA")
    with pytest.raises(
        JourneyExpectationError, match="its buttons: «CREAR CONTRASEÑA ➜»"
    ):
        page.press("COMENZAR")


@pytest.mark.journey_kit(fail_steps={"set_pruebas": "El SII rechazó el set."})
def test_a_failing_sandbox_step_ends_the_walk_in_failure(
    journey_kit: JourneyKit,
) -> None:
    journey = journey_kit.walk_to_enabled(purchase_for("simple", BUYER, "OC-SII"))

    assert journey.stage is Stage.CERTIFICATION_FAILED
    assert journey.certification is not None
    assert journey.certification["state"] == "failed"
    journey_kit.mailbox.expect("La certificación de Ferretería Los Andes SpA")
    assert (
        "OC-SII (journey 1): stage certification_failed; documents 33; "
        "certification failed (postulacion done, set_pruebas failed, "
    ) in journey_kit.report()


def test_any_failed_kit_test_shows_the_mailbox_and_journeys(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        from haulmer_onboarding.testing.scenarios import purchase_for

        def test_plain_assert(journey_kit):
            journey_kit.purchase(purchase_for("simple", "ana@example.cl", "OC-9"))
            journey_kit.run_worker_once()
            assert journey_kit.journey(1).stage.value == "enabled"
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*journey kit*", "*#1 «Haulmer - Compra exitosa»*", "*OC-9*setup_pending*"]
    )
