"""The public face: what product plugins and applications may import."""

from __future__ import annotations

import ast
from pathlib import Path

import haulmer_onboarding

ROOT = Path(__file__).resolve().parents[1]


def test_every_public_name_is_importable_and_sorted() -> None:
    names = haulmer_onboarding.__all__
    assert names == sorted(names)
    for name in names:
        assert getattr(haulmer_onboarding, name) is not None


def test_product_plugins_import_only_the_public_face() -> None:
    public = set(haulmer_onboarding.__all__)
    for path in ROOT.glob("plugins/*/haulmer_*/**/*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            if module and module.startswith("haulmer_onboarding"):
                assert module == "haulmer_onboarding", path
                assert {a.name for a in node.names} <= public, path  # type: ignore[attr-defined]
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("haulmer_onboarding."), path


def test_leaf_modules_import_nothing_above_them() -> None:
    for name in ("tokens", "rut", "dte", "text"):
        tree = ast.parse((ROOT / "haulmer_onboarding" / f"{name}.py").read_text())
        imported = {
            node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
        }
        project = {m for m in imported if m.startswith("haulmer_onboarding")}
        assert project <= {"haulmer_onboarding.errors"}, (name, project)


def test_web_and_cli_never_touch_the_store() -> None:
    for path in [
        *ROOT.glob("haulmer_onboarding/web/*.py"),
        ROOT / "haulmer_onboarding/cli.py",
    ]:
        source = path.read_text(encoding="utf-8")
        assert "haulmer_onboarding.store" not in source, path
        assert "pm.hook" not in source, path
