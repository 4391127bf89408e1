"""The core's rules for typed text, called as Python callers call the facade:
free text is one line of visible characters, a password holds no control
character, and neither can smuggle a lone surrogate into the database. A
429's words say the wait its ``retry_after`` says."""

from __future__ import annotations

import attrs
import pytest
from argon2 import PasswordHasher

from haulmer_onboarding import (
    NotFoundError,
    Onboarding,
    PasswordError,
    RateLimited,
    ValidationError,
    passwords,
)
from haulmer_onboarding.testing.customer import link_in
from haulmer_onboarding.testing.scenarios import purchase_for
from haulmer_onboarding.testing.smtp import SmtpCatcher

BUYER = "compras@ferreteria-los-andes.cl"
GOOD = "Cordillera2026"
PASSWORD = "[Haulmer Accounts] Crea tu nueva contraseña"


@pytest.mark.parametrize(
    ("changes", "code", "said"),
    [
        ({"buyer_name": "Camila\x00Rojas"}, "buyer_name_invalid_character", "U+0000"),
        ({"buyer_name": "Camila \ud800"}, "buyer_name_invalid_character", "U+D800"),
        (
            {"legal_name": "Ferretería \u202eSpA"},
            "legal_name_invalid_character",
            "control de dirección del texto (U+202E)",
        ),
        (
            {"legal_name": "Ferretería\u2029Los Andes"},
            "legal_name_invalid_character",
            "salto de línea",
        ),
        ({"order_number": "OC-1\t"}, "order_number_invalid_character", "tabulación"),
    ],
)
def test_a_purchase_with_invisible_characters_is_refused_and_not_recorded(
    onboarding: Onboarding, changes: dict[str, str], code: str, said: str
) -> None:
    purchase = attrs.evolve(purchase_for("simple", BUYER, "OC-1"), **changes)
    with pytest.raises(ValidationError) as refused:
        onboarding.record_purchase(purchase)
    assert refused.value.code == code
    assert said in refused.value.message
    assert "Usa una sola línea" in refused.value.message
    with pytest.raises(NotFoundError):
        onboarding.journey_by_order("OC-1")


def test_spaces_of_every_width_are_one_space(onboarding: Onboarding) -> None:
    purchase = attrs.evolve(
        purchase_for("simple", BUYER, "OC-1"),
        legal_name="\u00a0Ferretería\u2003 Los\u00a0Andes SpA ",
    )
    journey = onboarding.record_purchase(purchase)
    assert journey.organization is not None
    assert journey.organization.legal_name == "Ferretería Los Andes SpA"


def test_a_password_with_a_control_character_or_a_lone_surrogate_is_refused(
    onboarding: Onboarding, catcher: SmtpCatcher
) -> None:
    onboarding.record_purchase(purchase_for("simple", BUYER, "OC-1"))
    onboarding.relay().deliver_pending()
    (message,) = [m for m in catcher.messages if m.subject == PASSWORD]
    token = link_in(message, "CREAR CONTRASEÑA").rsplit("/", 1)[1]
    for typed in (GOOD + "\x00", GOOD + "\t", "Cordillera\n2026", GOOD + "\udc80"):
        with pytest.raises(PasswordError) as refused:
            onboarding.set_password(token, typed, typed)
        assert refused.value.code == "password_invalid_character"
        assert refused.value.field == "password"
        assert onboarding.verify_password(BUYER, typed) is False
    assert onboarding.journey_by_order("OC-1").buyer.has_password is False
    # A format character is fine in a password: it is never shown, and an
    # emoji sequence is joined with one.
    joined = "Cordillera2026\U0001f469\u200d\U0001f4bb"
    onboarding.set_password(token, joined, joined)
    assert onboarding.verify_password(BUYER, joined)


def test_a_hash_made_before_the_rule_still_opens_its_account() -> None:
    old = PasswordHasher().hash("Cordillera\t2026")
    assert passwords.verify_password(old, "Cordillera\t2026")
    assert passwords.verify_password(old, "Cordillera\t2026\ud800") is False


def test_check_step_knows_every_step_and_no_other(onboarding: Onboarding) -> None:
    with pytest.raises(ValueError, match="no step is called"):
        onboarding.check_step("abc.def", "skip_everything")


@pytest.mark.parametrize(
    ("retry_after", "said"),
    [
        (0, "1 segundo"),
        (1, "1 segundo"),
        (59, "59 segundos"),
        (60, "1 minuto"),
        (61, "2 minutos"),
        (3600, "1 hora"),
        (3601, "1 hora y 1 minuto"),
        (5400, "1 hora y 30 minutos"),
        (86400, "24 horas"),
    ],
)
def test_a_rate_limit_says_its_wait_never_shorter_than_retry_after(
    retry_after: int, said: str
) -> None:
    error = RateLimited(retry_after=retry_after)
    assert error.message == (
        f"Hiciste demasiadas solicitudes. Vuelve a intentarlo en {said}."
    )
    assert error.retry_after == retry_after
