from __future__ import annotations

import unicodedata

import pytest
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError

from haulmer_onboarding.errors import PasswordError
from haulmer_onboarding.passwords import (
    check_policy,
    hash_password,
    needs_rehash,
    verify_password,
)


@pytest.mark.parametrize(
    "password", ["Secreta123", "Contraseña1", "aB3aB3aB", "Mi clave es 4 palabras"]
)
def test_policy_accepts_good_passwords(password: str) -> None:
    check_policy(password, password)


@pytest.mark.parametrize(
    ("password", "code", "message"),
    [
        ("Ab1", "password_too_short", "al menos 8 caracteres"),
        ("Abcdef1", "password_too_short", "al menos 8 caracteres"),
        ("ABCDEFG1", "password_missing_lowercase", "letra minúscula"),
        ("ÑANDÚ1234", "password_missing_lowercase", "letra minúscula"),
        ("abcdefg1", "password_missing_uppercase", "letra mayúscula"),
        ("Abcdefgh", "password_missing_digit", "un número"),
        ("Aa1" * 342, "password_too_long", "más de 1024 caracteres"),
    ],
)
def test_policy_names_the_rule_broken(password: str, code: str, message: str) -> None:
    with pytest.raises(PasswordError) as caught:
        check_policy(password, password)
    assert caught.value.code == code
    assert caught.value.field == "password"
    assert message in caught.value.message


def test_policy_accepts_exactly_the_limits() -> None:
    check_policy("Abcdefg1", "Abcdefg1")
    longest = "Aa1" * 341 + "x"
    assert len(longest) == 1024
    check_policy(longest, longest)


def test_policy_wants_the_confirmation_to_match() -> None:
    with pytest.raises(PasswordError) as caught:
        check_policy("Secreta123", "Secreta124")
    assert caught.value.code == "password_mismatch"
    assert caught.value.field == "confirmation"
    assert caught.value.message.startswith("Las contraseñas no coinciden.")


def test_policy_reports_the_password_before_the_confirmation() -> None:
    with pytest.raises(PasswordError) as caught:
        check_policy("corta", "otra")
    assert caught.value.code == "password_too_short"


def test_accents_typed_differently_are_the_same_password() -> None:
    composed = unicodedata.normalize("NFC", "Contraseña1")
    decomposed = unicodedata.normalize("NFD", "Contraseña1")
    assert composed != decomposed
    check_policy(decomposed, composed)
    assert verify_password(hash_password(composed), decomposed)


def test_password_errors_are_value_errors() -> None:
    with pytest.raises(ValueError, match="mayúscula"):
        check_policy("secreta123", "secreta123")


def test_hash_and_verify() -> None:
    hashed = hash_password("Secreta123")
    assert hashed.startswith("$argon2id$")
    assert "Secreta123" not in hashed
    assert hash_password("Secreta123") != hashed
    assert verify_password(hashed, "Secreta123")
    assert not verify_password(hashed, "secreta123")
    assert not verify_password(hashed, "")
    assert not verify_password(hashed, "Secreta123" * 200)


def test_hash_refuses_a_password_past_the_limit() -> None:
    with pytest.raises(PasswordError) as caught:
        hash_password("Aa1" * 400)
    assert caught.value.code == "password_too_long"


def test_verify_shows_a_damaged_hash() -> None:
    with pytest.raises(InvalidHashError) as caught:
        verify_password("not-a-hash", "Secreta123")
    assert isinstance(caught.value, ValueError)


def test_needs_rehash() -> None:
    assert not needs_rehash(hash_password("Secreta123"))
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    old = weak.hash("Secreta123")
    assert needs_rehash(old)
    assert verify_password(old, "Secreta123")
