"""The emails as a mail client sees them: subjects, parts and links."""

from __future__ import annotations

import email
import email.policy
import os
import re
from typing import Any

import pytest

from haulmer_onboarding import Onboarding, Settings
from haulmer_onboarding.testing.customer import link_in
from haulmer_onboarding.testing.scenarios import purchase_for
from haulmer_onboarding.testing.smtp import SmtpCatcher

from .conftest import SEED

BUYER = "ana.perez@example.cl"
GOOD = "Cordillera2026"


def seed_subjects() -> list[str]:
    """The six subjects of the customer's guide, typographic quotes removed."""
    path = next(SEED.glob("*.txt"), None)
    if path is None:
        # CI always has the guide beside the project: there, its absence fails.
        if os.environ.get("CI"):
            pytest.fail(f"the customer's guide is missing from {SEED}")
        pytest.skip("the customer's guide is not beside the project")
    text = path.read_text(encoding="utf-8")
    listed = text.split("recibir los siguientes correos", 1)[1].split("(1)", 1)[0]
    subjects = []
    for line in listed.splitlines():
        match = re.match(r"\s*\d+\.\s+(.*)", line)
        if match is None:
            continue
        subject = re.sub(r"\s*\((?:SOLO|Se indica)[^)]*\)", "", match.group(1))
        subject = subject.strip().rstrip(".").strip()
        subjects.append(re.sub(r"[\"“”]", "", subject))
    return subjects


def test_subjects_are_the_guides_word_for_word(
    onboarding: Onboarding, catcher: SmtpCatcher
) -> None:
    expected = seed_subjects()
    assert len(expected) == 6
    onboarding.record_purchase(purchase_for("razon-social", BUYER))
    onboarding.relay().deliver_pending()
    onboarding.record_purchase(purchase_for("simple", "otra@example.cl"))
    onboarding.relay().deliver_pending()
    subjects = [m.subject for m in catcher.messages]
    assert subjects[:5] == expected[:5]
    assert subjects[-1] == expected[5]


def test_raw_messages_decode_to_the_exact_link(
    onboarding: Onboarding, catcher: SmtpCatcher
) -> None:
    onboarding.record_purchase(purchase_for("razon-social", BUYER))
    onboarding.relay().deliver_pending()
    message = catcher.messages[3]
    parsed = email.message_from_bytes(message.raw, policy=email.policy.default)

    assert parsed["Message-ID"]
    assert parsed.get_content_type() == "multipart/alternative"
    parts = {part.get_content_type(): part for part in parsed.iter_parts()}
    assert set(parts) == {"text/plain", "text/html"}
    # No quoted-printable anywhere: soft line breaks cannot mangle a link.
    assert all(p["Content-Transfer-Encoding"] == "base64" for p in parts.values())

    url = link_in(message, "CREAR CONTRASEÑA")
    text = parts["text/plain"].get_content()
    html = parts["text/html"].get_content()
    assert url in text.splitlines()
    assert f'href="{url}"' in html
    token = url.rsplit("/", 1)[1]
    assert re.fullmatch(r"[A-Za-z0-9_.\-]+", token)
    # Every raw line fits SMTP's limit.
    assert max(len(line) for line in message.raw.split(b"\r\n")) <= 998


def test_text_and_html_carry_the_same_facts(
    onboarding: Onboarding, catcher: SmtpCatcher
) -> None:
    onboarding.record_purchase(purchase_for("simple", BUYER, "OC-555"))
    onboarding.relay().deliver_pending()
    payment = catcher.messages[1]
    assert "OC-555" in payment.text()
    assert "OC-555" in payment.html()
    assert "$249.900" in payment.text()


class _PasswordSetMeanwhile(Onboarding):
    """A deployment where the buyer sets a password (another request, on
    another worker) after a purchase's emails were rendered and before its
    transaction writes them."""

    password_token: str | None = None

    def _prepare_purchase(self, *args: Any) -> Any:
        prepared = super()._prepare_purchase(*args)
        if self.password_token is not None:
            self.set_password(self.password_token, GOOD, GOOD)
        return prepared


def test_emails_rendered_before_a_change_are_not_the_ones_queued(
    settings: Settings, catcher: SmtpCatcher
) -> None:
    onboarding = _PasswordSetMeanwhile(settings)
    onboarding.create_tables()
    onboarding.record_purchase(purchase_for("simple", BUYER, "OC-1"))
    onboarding.relay().deliver_pending()
    first = catcher.messages
    password = next(m for m in first if "CREAR CONTRASEÑA" in m.text())
    onboarding.password_token = link_in(password, "CREAR CONTRASEÑA").rsplit("/")[-1]
    catcher.clear()

    # Rendered with a CREAR CONTRASEÑA email, recorded after the password
    # was set: the transaction sees it and that email is not queued.
    journey = onboarding.record_purchase(purchase_for("simple", BUYER, "OC-2"))
    onboarding.relay().deliver_pending()
    second = catcher.messages
    assert len(first) == 5
    assert len(second) == 4
    assert not any("CREAR CONTRASEÑA" in m.text() for m in second)
    assert journey.buyer.has_password
    # The links in what was sent work; the unsent one was never recorded.
    setup = next(m for m in second if "INICIAR SETUP" in m.text())
    token = link_in(setup, "INICIAR SETUP").rsplit("/")[-1]
    assert onboarding.open_link(token, "start_setup").journey == journey
    onboarding.close()
