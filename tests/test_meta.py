"""The docs and the tests keep up with the contract and the public face."""

from __future__ import annotations

import re
from pathlib import Path

import haulmer_onboarding
from haulmer_onboarding.hookspecs import HookSpecs

ROOT = Path(__file__).resolve().parents[1]
HOOKS = sorted(name for name in vars(HookSpecs) if name.startswith("onboarding_"))


def test_every_hook_is_documented() -> None:
    guide = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    missing = [hook for hook in HOOKS if f"`{hook}(" not in guide]
    assert not missing


def test_every_hook_has_a_test() -> None:
    tests = [
        *ROOT.glob("tests/test_*.py"),
        *ROOT.glob("plugins/*/tests/test_*.py"),
    ]
    text = "\n".join(
        path.read_text(encoding="utf-8")
        for path in tests
        if path.name != "test_meta.py"
    )
    untested = [hook for hook in HOOKS if hook not in text]
    assert not untested


def test_the_public_face_is_what_the_docs_list() -> None:
    page = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `(\w+)` \|", page, flags=re.M))
    assert documented == set(haulmer_onboarding.__all__)
