"""The plugin contract as plugins use it: errors at start-up, validation,
templates, observers, blocking, and the listing command."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import attrs
import pytest

from haulmer_onboarding import (
    JourneyEvent,
    Onboarding,
    PluginError,
    Plugins,
    Rut,
    SignatureError,
    SignatureInfo,
    ValidationError,
    hookimpl,
)
from haulmer_onboarding.testing.journey import JourneyWalker
from haulmer_onboarding.testing.scenarios import purchase_for
from haulmer_onboarding.testing.servers import RunningServer
from haulmer_onboarding.testing.smtp import SmtpCatcher

BUYER = "ana@example.cl"


class Misspelled:
    @hookimpl
    def onboarding_prodcts(self) -> list[object]:
        return []


def test_a_misspelled_hook_stops_start_up_naming_it() -> None:
    with pytest.raises(PluginError) as info:
        Plugins(load_entry_points=False, extra=[Misspelled()])
    assert info.value.code == "plugin_unknown_hook"
    assert "onboarding_prodcts" in str(info.value)


def with_plugin(onboarding: Onboarding, plugin: object) -> Onboarding:
    facade = Onboarding(onboarding.settings, plugins=Plugins(extra=[plugin]))
    facade.create_tables()
    return facade


class NoCooperatives:
    """Refuses organizations whose razón social says Cooperativa."""

    @hookimpl
    def onboarding_validate_organization(
        self, legal_name: str, rut: Rut, products: Sequence[str]
    ) -> None:
        if "cooperativa" in legal_name.lower():
            raise ValidationError(
                "Este plan no está disponible para cooperativas.",
                code="cooperatives_not_served",
                field="legal_name",
            )


def test_a_plugin_can_refuse_an_organization(onboarding: Onboarding) -> None:
    facade = with_plugin(onboarding, NoCooperatives())
    purchase = attrs.evolve(
        purchase_for("simple", BUYER), legal_name="Cooperativa Los Andes"
    )
    with pytest.raises(ValidationError) as info:
        facade.record_purchase(purchase)
    assert info.value.code == "cooperatives_not_served"
    assert facade.record_purchase(purchase_for("simple", BUYER)).id


class OnlyHolder:
    """Accepts only the signature of one person."""

    @hookimpl
    def onboarding_validate_signature(
        self, signature: SignatureInfo, products: Sequence[str]
    ) -> None:
        if signature.holder_rut is None or str(signature.holder_rut) != "11111111-1":
            raise SignatureError(
                "La firma debe ser del representante legal registrado.",
                code="signature_not_representative",
                field="signature",
            )


def test_a_plugin_can_refuse_a_signature(
    onboarding: Onboarding, catcher: SmtpCatcher, sandbox: RunningServer
) -> None:
    facade = with_plugin(onboarding, OnlyHolder())
    walker = JourneyWalker(facade, catcher, sandbox.url)
    with pytest.raises(SignatureError) as info:
        walker.to_enabled(purchase_for("simple", BUYER))
    assert info.value.code == "signature_not_representative"


class Observer:
    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl
    def onboarding_journey_event(self, event: JourneyEvent) -> None:
        self.seen.append(event.kind)
        if event.kind == "password_set":
            raise RuntimeError("an analytics outage")


def test_observers_see_committed_events_and_cannot_break_a_step(
    onboarding: Onboarding, catcher: SmtpCatcher, sandbox: RunningServer
) -> None:
    observer = Observer()
    facade = with_plugin(onboarding, observer)
    journey = JourneyWalker(facade, catcher, sandbox.url).to_enabled(
        purchase_for("simple", BUYER)
    )
    assert observer.seen[0] == "purchase_recorded"
    assert "password_set" in observer.seen
    assert observer.seen[-1] in {"organization_enabled", "email_queued"}
    assert "organization_enabled" in observer.seen
    assert facade.journey(journey.id).buyer.has_password


class Templates:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @hookimpl
    def onboarding_template_dirs(self) -> Sequence[str]:
        return [str(self.folder)]


def write(folder: Path, name: str, text: str) -> None:
    (folder / "emails").mkdir(parents=True, exist_ok=True)
    (folder / "emails" / name).write_text(text, encoding="utf-8")


def test_templates_come_from_the_app_then_plugins_then_the_core(
    onboarding: Onboarding, catcher: SmtpCatcher, tmp_path: Path
) -> None:
    plugin_dir, app_dir = tmp_path / "plugin", tmp_path / "app"
    write(plugin_dir, "payment_confirmed.subject.txt", "Pago recibido (plugin)")
    write(plugin_dir, "purchase_succeeded.subject.txt", "Compra (plugin)")
    write(app_dir, "purchase_succeeded.subject.txt", "Compra (aplicación)")
    facade = Onboarding(
        attrs.evolve(onboarding.settings, template_dirs=(str(app_dir),)),
        plugins=Plugins(extra=[Templates(plugin_dir)]),
    )
    facade.create_tables()
    facade.record_purchase(purchase_for("simple", BUYER))
    facade.relay().deliver_pending()
    subjects = [m.subject for m in catcher.messages]
    assert subjects[:3] == [
        "Compra (aplicación)",
        "Pago recibido (plugin)",
        "¿Boleta o factura? Obtén tu documento tributario por la compra en HAULMER",
    ]


def run_cli(*args: str, env: dict[str, str] | None = None) -> str:
    import os

    result = subprocess.run(
        [sys.executable, "-m", "haulmer_onboarding.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_plugins_command_lists_versions_and_hooks() -> None:
    listed = json.loads(run_cli("plugins", "--json"))
    by_name = {p["name"]: p for p in listed}
    assert {"openfactura", "simpleboleta", "tuu"} <= set(by_name)
    assert "onboarding_enablement_actions" in by_name["tuu"]["hooks"]
    assert by_name["tuu"]["version"] == "0.1.0"
    text = run_cli("plugins")
    assert "openfactura 0.1.0: onboarding_certification_steps" in text


def test_a_plugin_can_be_blocked_by_name() -> None:
    listed = json.loads(
        run_cli("plugins", "--json", env={"HAULMER_ONBOARDING_BLOCKED_PLUGINS": "tuu"})
    )
    assert "tuu" not in {p["name"] for p in listed}
    plugins = Plugins(blocked=["tuu"])
    assert "tuu" not in plugins.products
    assert plugins.products_for_items(["TUU-POS"]) == ()
