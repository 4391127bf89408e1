"""The journey as `demo` walks it: emails over SMTP, pages over HTTP."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest

from haulmer_onboarding import Stage
from haulmer_onboarding.cli import SUBJECTS, Stack, local_stack
from haulmer_onboarding.testing.customer import WebCustomer, link_in, wait_for_subject
from haulmer_onboarding.testing.scenarios import purchase_for
from haulmer_onboarding.testing.signatures import make_pkcs12

BUYER = "compras@ferreteria-los-andes.cl"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with local_stack(tmp_path, seconds_per_business_day=0.05, poll_interval=0.1) as s:
        yield s


@pytest.fixture
def customer() -> Iterator[WebCustomer]:
    web = WebCustomer()
    yield web
    web.close()


def test_demo_command_completes_the_journey(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "haulmer_onboarding.cli",
            "demo",
            "--keep",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    subjects = [line for line in lines if "✉" in line]
    for number, key in enumerate(SUBJECTS.values(), start=1):
        assert f"#{number} «{key}»" in subjects[number - 1]
    assert "final state: enabled" in result.stdout
    assert lines[-1].endswith("is enabled to issue documents")
    assert (tmp_path / "onboarding.db").exists()


def test_demo_scenarios_for_a_plain_purchase_and_simpleboleta() -> None:
    for scenario in ("simple", "simpleboleta"):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "haulmer_onboarding.cli",
                "demo",
                "--scenario",
                scenario,
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert SUBJECTS["workspace"] not in result.stdout


def test_pages_walk_the_journey_and_show_errors_in_spanish(
    stack: Stack, customer: WebCustomer
) -> None:
    journey = stack.onboarding.record_purchase(purchase_for("razon-social", BUYER))

    created = wait_for_subject(stack.catcher, BUYER, SUBJECTS["password"])
    url = link_in(created, "CREAR CONTRASEÑA")
    assert url.startswith(stack.web_url + "/contrasena/")
    # Scanners fetch links with HEAD and GET first: nothing is consumed.
    assert httpx.head(url).status_code == 200
    page = customer.open(url)
    assert page.status == 200
    assert page.text.count("Crea tu nueva contraseña") == 1
    page = customer.submit(
        page, "CREAR CONTRASEÑA", {"password": "corta", "confirmation": "corta"}
    )
    assert page.status == 400
    assert "al menos 8 caracteres" in page.text
    page = customer.submit(
        page,
        "CREAR CONTRASEÑA",
        {"password": "Cordillera2026", "confirmation": "Cordillera2026"},
    )
    assert page.status == 200
    assert "¡Tu contraseña está lista!" in page.text
    again = customer.open(url)
    assert again.status == 410
    assert "ya fue usado" in again.text

    message = wait_for_subject(stack.catcher, BUYER, SUBJECTS["workspace"])
    page = customer.open(link_in(message, "CREAR WORKSPACE"))
    page = customer.submit(page, "ACTIVAR")
    assert "Paso 1 de 3" in page.text
    page = customer.submit(page, "CREAR", {"name": "Camila", "email": "no-es-correo"})
    assert page.status == 400
    assert "correo electrónico válido" in page.text
    page = customer.submit(page, "CREAR", {"name": "Camila", "email": BUYER})
    page = customer.submit(page, "SIGUIENTE", {"workspace_name": "Rojas"})
    assert "Paso 3 de 3" in page.text
    page = customer.submit(
        page, "FINALIZAR", {"legal_name": "Rojas SpA", "rut": "76.543.210-4"}
    )
    assert page.status == 400
    assert "dígito verificador" in page.text
    assert 'aria-invalid="true"' in page.html
    page = customer.submit(
        page, "FINALIZAR", {"legal_name": "Rojas SpA", "rut": "76.543.210-3"}
    )
    assert "¡Tu espacio de trabajo está listo!" in page.text

    message = wait_for_subject(stack.catcher, BUYER, SUBJECTS["setup"])
    setup_url = link_in(message, "INICIAR SETUP")
    page = customer.submit(customer.open(setup_url), "COMENZAR")
    page = customer.submit(page, "SIGUIENTE")
    page = customer.submit(
        page,
        "SIGUIENTE",
        {"signature_password": "otra", "legal_representative_rut": "12.345.678-5"},
        files={
            "signature": (
                "firma.pfx",
                make_pkcs12(password="buena"),
                "application/x-pkcs12",
            )
        },
    )
    assert page.status == 400
    assert "no es posible recuperarla" in page.text
    page = customer.submit(
        customer.open(setup_url),
        "SIGUIENTE",
        {"signature_password": "buena", "legal_representative_rut": "12.345.678-5"},
        files={
            "signature": (
                "firma.pfx",
                make_pkcs12(password="buena"),
                "application/x-pkcs12",
            )
        },
    )
    assert page.status == 200
    assert "Paso 3 de 3" in page.text
    assert "predeterminados" in page.text
    assert page.html.count("disabled") == 2
    page = customer.submit(page, "SIGUIENTE")
    assert "La certificación ante el SII ha comenzado" in page.text
    # The done page leads to the certification's progress.
    found = re.search(r'href="([^"]+)">VER CERTIFICACIÓN<', page.html)
    assert found is not None
    progress = customer.open(urljoin(page.url, found.group(1)))
    assert progress.status == 200
    assert "Certificación de Rojas SpA" in progress.text
    assert "Avance de la certificación" in progress.html

    enabled = wait_for_subject(
        stack.catcher, BUYER, "¡Rojas SpA ya puede emitir", timeout=60
    )
    status = customer.open(link_in(enabled, "VER DETALLE"))
    assert status.status == 200
    assert "habilitada" in status.text
    assert stack.onboarding.journey(journey.id).stage is Stage.ENABLED


def test_link_pages_are_private_and_bad_links_say_so(
    stack: Stack, customer: WebCustomer
) -> None:
    stack.onboarding.record_purchase(purchase_for("simple", BUYER))
    created = wait_for_subject(stack.catcher, BUYER, SUBJECTS["password"])
    response = httpx.get(link_in(created, "CREAR CONTRASEÑA"))
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in response.headers["content-security-policy"]

    broken = customer.open(stack.web_url + "/contrasena/abc.def")
    assert broken.status == 404
    assert "no es válido" in broken.text
    wrong = customer.open(
        link_in(created, "CREAR CONTRASEÑA").replace("/contrasena/", "/setup/")
    )
    assert wrong.status == 404
    assert "otro paso" in wrong.text


def test_forgot_password_page_answers_the_same_for_any_address(
    stack: Stack, customer: WebCustomer
) -> None:
    stack.onboarding.record_purchase(purchase_for("simple", BUYER))
    wait_for_subject(stack.catcher, BUYER, SUBJECTS["password"])
    page = customer.open(stack.web_url + "/olvide-mi-contrasena")
    known = customer.submit(
        page, "ENVIAR EMAIL", {"email": " Compras@Ferreteria-Los-Andes.cl"}
    )
    unknown = customer.submit(page, "ENVIAR EMAIL", {"email": "nadie@example.cl"})
    assert known.status == unknown.status == 200
    assert known.text.replace(
        "Compras@Ferreteria-Los-Andes.cl", "X"
    ) == unknown.text.replace("nadie@example.cl", "X")
    second = [m for m in stack.catcher.wait_for(6) if m.subject == SUBJECTS["password"]]
    assert len(second) == 2
