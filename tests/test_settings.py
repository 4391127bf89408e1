"""Settings refuse what would only fail later, and read every field's
variable from the environment."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from haulmer_onboarding import Settings

SECRET = "s" * 32
SEALING = Fernet.generate_key().decode()


def settings(**changes: object) -> Settings:
    values: dict[str, object] = {"secret_keys": (SECRET,), "sealing_keys": (SEALING,)}
    values.update(changes)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "keys", [("notakey",), (SEALING, "x" * 44), (SEALING[:-2],), ("",)]
)
def test_a_sealing_key_that_is_not_fernet_is_refused_at_once(
    keys: tuple[str, ...],
) -> None:
    with pytest.raises(ValueError, match="HAULMER_ONBOARDING_SEALING_KEYS") as caught:
        settings(sealing_keys=keys)
    for key in keys:
        if key:
            assert key not in str(caught.value)  # a secret is never echoed


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("signature_max_bytes", 0),
        ("signature_max_bytes", -1),
        ("signature_expiry_warning_days", -1),
        ("certification_business_days", 0),
        ("forgot_password_per_address", 0),
        ("smtp_timeout", 0.0),
        ("forgot_password_window", timedelta(0)),
    ],
)
def test_numbers_out_of_range_are_refused(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"HAULMER_ONBOARDING_{name.upper()}"):
        settings(**{name: value})


def test_a_zero_day_expiry_warning_is_allowed() -> None:
    assert settings(signature_expiry_warning_days=0).signature_expiry_warning_days == 0


def test_from_env_reads_every_number_and_duration() -> None:
    env = {
        "HAULMER_ONBOARDING_SECRET_KEYS": SECRET,
        "HAULMER_ONBOARDING_SEALING_KEYS": SEALING,
        "HAULMER_ONBOARDING_SIGNATURE_MAX_BYTES": "2097152",
        "HAULMER_ONBOARDING_SIGNATURE_EXPIRY_WARNING_DAYS": "45",
        "HAULMER_ONBOARDING_CERTIFICATION_BUSINESS_DAYS": "10",
        "HAULMER_ONBOARDING_SMTP_PORT": "2525",
        "HAULMER_ONBOARDING_SMTP_TIMEOUT": "2.5",
        "HAULMER_ONBOARDING_CLOCK_SKEW": "30",
        "HAULMER_ONBOARDING_FORGOT_PASSWORD_PER_ADDRESS": "3",
        "HAULMER_ONBOARDING_FORGOT_PASSWORD_PER_CLIENT": "9",
        "HAULMER_ONBOARDING_FORGOT_PASSWORD_WINDOW": "600",
        "HAULMER_ONBOARDING_LINK_MAX_AGES": "create_password=3600, start_setup=7200",
    }
    read = Settings.from_env(env)
    assert read.signature_max_bytes == 2_097_152
    assert read.signature_expiry_warning_days == 45
    assert read.certification_business_days == 10
    assert read.smtp_port == 2525
    assert read.smtp_timeout == 2.5
    assert read.clock_skew == timedelta(seconds=30)
    assert read.forgot_password_per_address == 3
    assert read.forgot_password_per_client == 9
    assert read.forgot_password_window == timedelta(minutes=10)
    assert read.link_max_ages == {
        "create_password": timedelta(hours=1),
        "start_setup": timedelta(hours=2),
    }


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("SIGNATURE_MAX_BYTES", "1MB"),
        ("SIGNATURE_MAX_BYTES", "0"),
        ("SIGNATURE_EXPIRY_WARNING_DAYS", "-3"),
        ("SMTP_TIMEOUT", "soon"),
        ("LINK_MAX_AGES", "create_password"),
        ("LINK_MAX_AGES", "create_password=una hora"),
        # Values that read as numbers or words but would break links, mail or
        # the clock later, far from the setting that caused it.
        ("LINK_MAX_AGES", "create_password=-5"),
        ("LINK_MAX_AGES", "start_setup=0"),
        ("CLOCK_SKEW", "inf"),
        ("CLOCK_SKEW", "nan"),
        ("CLOCK_SKEW", "-1"),
        ("SMTP_PORT", "70000"),
        ("SMTP_PORT", "0"),
        ("DEVELOPMENT", "maybe"),
        ("SMTP_STARTTLS", "si"),
        ("BASE_URL", "javascript:alert(1)"),
        ("BASE_URL", "haulmer.com/onboarding"),
        ("BASE_URL", "https://haulmer.com:puerto/"),
        ("CERTIFICATION_URL", "ftp://sii.example"),
        ("DATABASE_URL", "notaurl"),
        ("DATABASE_URL", "postgresql://user:s3cretpw@h:notaport/db"),
        ("BASE_URL", "https://haulmer.com/onboarding?x=1"),
        ("BASE_URL", "https://haulmer.com/onboarding#inicio"),
        ("BASE_URL", "http://exa mple.com"),
    ],
)
def test_from_env_names_the_variable_it_cannot_read(variable: str, raw: str) -> None:
    env = {
        "HAULMER_ONBOARDING_SECRET_KEYS": SECRET,
        "HAULMER_ONBOARDING_SEALING_KEYS": SEALING,
        "HAULMER_ONBOARDING_" + variable: raw,
    }
    with pytest.raises(ValueError, match="HAULMER_ONBOARDING_" + variable) as caught:
        Settings.from_env(env)
    assert "s3cretpw" not in str(caught.value)


def test_a_database_url_that_cannot_be_read_is_not_echoed() -> None:
    # The URL may carry the database's password.
    with pytest.raises(ValueError, match="DATABASE_URL") as caught:
        settings(database_url="postgres ql://admin:hunter2-secreto@db/x")
    assert "hunter2-secreto" not in str(caught.value)


@pytest.mark.parametrize(("raw", "expected"), [("on", True), ("0", False), ("", False)])
def test_flags_read_the_usual_words(raw: str, expected: bool) -> None:
    env = {
        "HAULMER_ONBOARDING_SECRET_KEYS": SECRET,
        "HAULMER_ONBOARDING_SEALING_KEYS": SEALING,
        "HAULMER_ONBOARDING_DEVELOPMENT": raw,
    }
    assert Settings.from_env(env).development is expected


def test_a_link_age_for_a_purpose_no_core_link_has_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from haulmer_onboarding import Onboarding

    ages = {"create_pasword": timedelta(hours=1), "create_password": timedelta(1)}
    database = f"sqlite:///{tmp_path / 'x.db'}"
    with caplog.at_level(logging.WARNING, logger="haulmer_onboarding"):
        Onboarding(settings(link_max_ages=ages, database_url=database)).close()
    warned = [r.getMessage() for r in caplog.records]
    assert any("'create_pasword'" in line for line in warned), warned
    assert not any("'create_password'" in line for line in warned), warned
