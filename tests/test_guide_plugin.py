"""The guide's OpenRetail plugin, installed as users install plugins, runs
a whole journey on the journey kit."""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from haulmer_onboarding import Plugins, Purchase, PurchaseItem, Stage
from haulmer_onboarding.testing.scenario import JourneyKit

ROOT = Path(__file__).resolve().parents[1]
BUYER = "tienda@example.cl"
PURCHASE = Purchase(
    order_number="OC-OR-1",
    email=BUYER,
    buyer_name="Marta Díaz",
    items=[PurchaseItem("OR-TIENDA", "OpenRetail Tienda", 1, 39_900)],
    legal_name="Tienda Marta SpA",
    rut="76.086.428-5",
)


@pytest.fixture(scope="module")
def openretail_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """examples/openretail installed with pip into a folder on ``sys.path``."""
    site = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(ROOT / "examples" / "openretail"),
        ],
        check=True,
        timeout=300,
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(site))
        importlib.invalidate_caches()
        yield site


@pytest.fixture
def kit_plugins(openretail_site: Path) -> Plugins:
    """The kit's plugins once OpenRetail is installed: the kit's SDK knows
    the product and its sandbox serves OpenRetail's routes."""
    return Plugins()


def test_the_plugin_is_found_through_its_entry_point(kit_plugins: Plugins) -> None:
    names = {ep.name for ep in entry_points(group="haulmer_onboarding")}
    assert "openretail" in names
    assert kit_plugins.products_for_items(["OR-TIENDA"]) == ("openretail",)


def test_the_customer_walks_the_guide_and_the_store_opens(
    journey_kit: JourneyKit,
) -> None:
    kit = journey_kit
    journey = kit.purchase(PURCHASE)

    email = kit.mailbox.expect("[Haulmer Accounts] Crea tu nueva contraseña", to=BUYER)
    page = kit.customer.click(email, "CREAR CONTRASEÑA")
    page = page.press(
        "CREAR CONTRASEÑA", password=kit.password, confirmation=kit.password
    )
    assert page.title == "¡Tu contraseña está lista!"

    email = kit.mailbox.expect(
        "¡Habilita tu organización para emitir documentos!", to=BUYER
    )
    page = kit.customer.click(email, "INICIAR SETUP")
    page = page.press("COMENZAR")
    assert page.title == "Elige tu organización"
    page = page.press("SIGUIENTE")
    page = page.press(
        "SIGUIENTE",
        legal_representative_rut="12.345.678-5",
        signature=kit.signature(),
        signature_password=kit.signature_password,
    )
    assert page.title == "Documentos que emitirá tu organización"
    # Facturas and boletas are required; the credit note is offered checked.
    page = page.press("SIGUIENTE")
    assert page.title == "La certificación ante el SII ha comenzado"

    journey = kit.finish_certification(journey)
    assert journey.stage is Stage.ENABLED
    assert journey.documents == {33, 39, 61}
    assert journey.certification is not None
    assert [s["id"] for s in journey.certification["steps"]] == [
        "postulacion",
        "set_pruebas",
        "set_boletas",
        "declaracion",
    ]
    kit.mailbox.expect("¡Tienda Marta SpA ya puede emitir documentos", to=BUYER)

    kit.run_worker_once()
    (action,) = kit.onboarding.enablement_actions(journey.id)
    assert action["state"] == "done"
    assert action["result"]["store_id"].startswith("OR-")
    kit.mailbox.expect("Tienda Marta SpA: Tu tienda en OpenRetail", to=BUYER)


def test_one_call_walks_the_journey_without_the_credit_note(
    journey_kit: JourneyKit,
) -> None:
    journey = journey_kit.walk_to_enabled(PURCHASE)

    assert journey.stage is Stage.ENABLED
    assert journey.documents == {33, 39}
    journey_kit.run_worker_once()
    # The action is done once: running the worker again opens no second store.
    journey_kit.run_worker_once()
    (action,) = journey_kit.onboarding.enablement_actions(journey.id)
    assert action["state"] == "done"
    assert action["attempts"] == 1
    assert len(journey_kit.mailbox.find("Tienda Marta SpA: Tu tienda")) == 1
