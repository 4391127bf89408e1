"""The guide's OpenRetail plugin, installed as users install plugins, runs
a whole journey."""

from __future__ import annotations

import importlib
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import attrs
import pytest

from haulmer_onboarding import (
    Onboarding,
    Plugins,
    Purchase,
    PurchaseItem,
    Settings,
    Stage,
)
from haulmer_onboarding.sandbox import create_sandbox_app
from haulmer_onboarding.testing.journey import JourneyWalker
from haulmer_onboarding.testing.servers import RunningServer, serve_in_thread
from haulmer_onboarding.testing.smtp import SmtpCatcher

ROOT = Path(__file__).resolve().parents[1]


def test_the_guides_plugin_installs_and_runs_a_whole_journey(
    tmp_path: Path,
    settings: Settings,
    catcher: SmtpCatcher,
    sandbox: RunningServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    site = tmp_path / "site"
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
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    names = {ep.name for ep in entry_points(group="haulmer_onboarding")}
    assert "openretail" in names

    plugins = Plugins()
    assert plugins.products_for_items(["OR-TIENDA"]) == ("openretail",)
    services = create_sandbox_app(services=plugins.sandbox_routes())
    with serve_in_thread(services) as service:
        facade = Onboarding(
            attrs.evolve(
                settings,
                services={"openretail": {"url": f"{service.url}/openretail"}},
            ),
            plugins=plugins,
        )
        facade.create_tables()
        purchase = Purchase(
            order_number="OC-OR-1",
            email="tienda@example.cl",
            buyer_name="Marta Díaz",
            items=[PurchaseItem("OR-TIENDA", "OpenRetail Tienda", 1, 39_900)],
            legal_name="Tienda Marta SpA",
            rut="76.086.428-5",
        )
        walker = JourneyWalker(facade, catcher, sandbox.url)
        journey = walker.to_enabled(purchase, documents=(61,))
        assert journey.stage is Stage.ENABLED
        assert journey.documents == {33, 39, 61}
        assert journey.certification is not None
        assert [s["id"] for s in journey.certification["steps"]] == [
            "postulacion",
            "set_pruebas",
            "set_boletas",
            "declaracion",
        ]
        assert facade.run_enablement_actions() == 1

    (action,) = facade.enablement_actions(journey.id)
    assert action["state"] == "done"
    assert action["result"]["store_id"].startswith("OR-")
    subjects = [m.subject for m in walker.deliver()]
    assert "Tienda Marta SpA: Tu tienda en OpenRetail" in subjects
