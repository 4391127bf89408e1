"""Settings of an onboarding deployment, from code or from the environment."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import attrs
import sqlalchemy as sa
from cryptography.fernet import Fernet

__all__ = ["Settings"]

_ENV_PREFIX = "HAULMER_ONBOARDING_"
_MIN_KEY_LENGTH = 16


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _number(variable: str, raw: str, kind: type[int] | type[float]) -> int | float:
    try:
        value = kind(raw.strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        what = "a whole number" if kind is int else "a number"
        raise ValueError(f"{variable} must be {what}, not {raw!r}")
    return value


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def _flag(variable: str, raw: str) -> bool:
    word = raw.strip().lower()
    if word not in _TRUE | _FALSE:
        raise ValueError(
            f"{variable} must be one of 1, true, yes, on or 0, false, no, off, "
            f"not {raw!r}"
        )
    return word in _TRUE


def _web_url(name: str, value: str) -> str | None:
    """Why ``value`` is not an http(s) address with a host, or ``None``."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        return (
            f"Settings.{name} is not an address ({exc}) "
            f"(environment: {_ENV_PREFIX}{name.upper()})"
        )
    if (
        parts.scheme not in {"http", "https"}
        or not parts.hostname
        or parts.query
        or parts.fragment
        or any(char.isspace() for char in value)
    ):
        return (
            f"Settings.{name} must be an http:// or https:// address with a "
            "host, and no query, fragment or space (links are added after "
            f"it), not {value!r} (environment: {_ENV_PREFIX}{name.upper()})"
        )
    return None


def _durations(variable: str, raw: str) -> dict[str, timedelta]:
    """``purpose=seconds`` pairs, comma separated."""
    ages: dict[str, timedelta] = {}
    for item in _split(raw):
        purpose, equals, seconds = item.partition("=")
        if not equals or not purpose.strip():
            raise ValueError(
                f"{variable} lists purpose=seconds pairs, comma separated "
                f"(create_password=259200,start_setup=604800), not {item!r}"
            )
        value = _number(variable, seconds, float)
        ages[purpose.strip()] = timedelta(seconds=value)
    return ages


# Settings read as numbers from the environment: name, type, and whether the
# value is a duration in seconds.
_NUMBERS: tuple[tuple[str, type[int] | type[float], bool], ...] = (
    ("smtp_port", int, False),
    ("smtp_timeout", float, False),
    ("clock_skew", float, True),
    ("certification_business_days", int, False),
    ("signature_max_bytes", int, False),
    ("signature_expiry_warning_days", int, False),
    ("forgot_password_per_address", int, False),
    ("forgot_password_per_client", int, False),
    ("forgot_password_window", float, True),
    ("webhook_tolerance", float, True),
)


@attrs.frozen(kw_only=True)
class Settings:
    """Everything a deployment chooses; only the keys have no default.

    ``secret_keys`` sign links, newest first: the first signs, all verify.
    ``certification_business_days`` caps the expected date promised to a
    customer (the SII's "up to 7 business days"), counted in Chile's calendar.
    ``services`` holds each product service's ``url`` and ``api_key`` by
    product code, for post-enablement actions (environment:
    ``HAULMER_ONBOARDING_SERVICE_<PRODUCT>_URL`` and ``..._API_KEY``).
    ``forgot_password_per_address`` and ``forgot_password_per_client`` cap
    the ¿Olvidó su contraseña? requests per ``forgot_password_window``.
    ``sealing_keys`` are Fernet keys sealing signature files at rest, newest
    first as well. ``base_url`` is where the web app is reachable from a
    customer's mailbox; links in emails start with it.
    ``webhook_secrets`` authenticate the purchase webhook, newest first: a
    request signed with any of them is accepted, so a shop can move to a new
    secret without a gap. ``webhook_tolerance`` is how far a signed
    timestamp may be from the server's clock (environment: seconds).
    """

    secret_keys: tuple[str, ...]
    sealing_keys: tuple[str, ...]
    database_url: str = "sqlite:///haulmer_onboarding.db"
    base_url: str = "http://127.0.0.1:8000"
    mail_from: str = "Haulmer <no-reply@haulmer.com>"
    #: Where a customer's answer to an email goes (the sender is no-reply).
    reply_to: str | None = "Soporte Haulmer <soporte@haulmer.com>"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: str | None = attrs.field(default=None, repr=False)
    smtp_starttls: bool = False
    smtp_timeout: float = 10.0
    certification_url: str = "http://127.0.0.1:8001"
    certification_api_key: str | None = attrs.field(default=None, repr=False)
    link_max_ages: Mapping[str, timedelta] = attrs.field(factory=dict)
    clock_skew: timedelta = timedelta(seconds=60)
    certification_business_days: int = 7
    signature_max_bytes: int = 1_048_576
    signature_expiry_warning_days: int = 30
    forgot_password_per_address: int = 5
    forgot_password_per_client: int = 20
    forgot_password_window: timedelta = timedelta(hours=1)
    services: Mapping[str, Mapping[str, str]] = attrs.field(factory=dict, repr=False)
    template_dirs: tuple[str, ...] = ()
    webhook_secrets: tuple[str, ...] = attrs.field(default=(), repr=False)
    webhook_tolerance: timedelta = timedelta(minutes=5)
    blocked_plugins: tuple[str, ...] = ()
    development: bool = False
    clock: Callable[[], datetime] = attrs.field(default=_utcnow, repr=False)

    def __attrs_post_init__(self) -> None:
        if not self.secret_keys:
            raise ValueError(
                "Settings.secret_keys needs at least one key "
                f"(environment: {_ENV_PREFIX}SECRET_KEYS)"
            )
        if any(len(key) < _MIN_KEY_LENGTH for key in self.secret_keys):
            raise ValueError(
                f"each of Settings.secret_keys needs {_MIN_KEY_LENGTH} characters "
                "or more; make one with: python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'"
            )
        if any(len(key) < _MIN_KEY_LENGTH for key in self.webhook_secrets):
            raise ValueError(
                f"each of Settings.webhook_secrets needs {_MIN_KEY_LENGTH} "
                "characters or more"
            )
        make_one = (
            "make one with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'"
        )
        if not self.sealing_keys or not all(self.sealing_keys):
            raise ValueError(
                "Settings.sealing_keys needs at least one Fernet key "
                f"(environment: {_ENV_PREFIX}SEALING_KEYS); {make_one}"
            )
        for position, key in enumerate(self.sealing_keys, start=1):
            try:
                Fernet(key)
            except (ValueError, TypeError):
                # The key itself is never echoed: it is a secret.
                raise ValueError(
                    f"Settings.sealing_keys: key number {position} is not a "
                    "Fernet key (32 bytes in URL-safe base64, 44 characters) "
                    f"(environment: {_ENV_PREFIX}SEALING_KEYS); {make_one}"
                ) from None
        minimums = {
            "signature_max_bytes": 1,
            "signature_expiry_warning_days": 0,
            "certification_business_days": 1,
            "forgot_password_per_address": 1,
            "forgot_password_per_client": 1,
        }
        for name, least in minimums.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(
                    f"Settings.{name} must be a whole number of at least {least}, "
                    f"not {value!r} (environment: {_ENV_PREFIX}{name.upper()})"
                )
        if isinstance(self.smtp_port, bool) or self.smtp_port not in range(1, 65536):
            raise ValueError(
                "Settings.smtp_port must be a port from 1 to 65535, not "
                f"{self.smtp_port!r} (environment: {_ENV_PREFIX}SMTP_PORT)"
            )
        for name in ("base_url", "certification_url"):
            if (problem := _web_url(name, getattr(self, name))) is not None:
                raise ValueError(problem)
        try:
            sa.make_url(self.database_url).port  # noqa: B018 - checks the port
        except (sa.exc.ArgumentError, ValueError):
            # The URL may hold a password: it is not echoed.
            raise ValueError(
                "Settings.database_url is not a database URL such as "
                "sqlite:///onboarding.db or postgresql+psycopg://user@host/name "
                f"(environment: {_ENV_PREFIX}DATABASE_URL)"
            ) from None
        if self.clock_skew < timedelta(0):
            raise ValueError(
                "Settings.clock_skew must be 0 seconds or more "
                f"(environment: {_ENV_PREFIX}CLOCK_SKEW, in seconds)"
            )
        for purpose, age in self.link_max_ages.items():
            if age <= timedelta(0):
                raise ValueError(
                    f"Settings.link_max_ages[{purpose!r}] must be more than 0 "
                    f"seconds (environment: {_ENV_PREFIX}LINK_MAX_AGES)"
                )
        for name in ("smtp_timeout",):
            if not getattr(self, name) > 0:
                raise ValueError(
                    f"Settings.{name} must be more than 0 seconds "
                    f"(environment: {_ENV_PREFIX}{name.upper()})"
                )
        for name in ("forgot_password_window", "webhook_tolerance"):
            if getattr(self, name) <= timedelta(0):
                raise ValueError(
                    f"Settings.{name} must be more than 0 seconds "
                    f"(environment: {_ENV_PREFIX}{name.upper()}, in seconds)"
                )

    @staticmethod
    def blocked_plugins_from_env(
        environ: Mapping[str, str] | None = None,
    ) -> tuple[str, ...]:
        """The plugins ``HAULMER_ONBOARDING_BLOCKED_PLUGINS`` names."""
        env = os.environ if environ is None else environ
        return _split(env.get(_ENV_PREFIX + "BLOCKED_PLUGINS", ""))

    @staticmethod
    def webhook_secrets_from_env(
        environ: Mapping[str, str] | None = None,
    ) -> tuple[str, ...]:
        """The secrets ``HAULMER_ONBOARDING_WEBHOOK_SECRETS`` lists."""
        env = os.environ if environ is None else environ
        return _split(env.get(_ENV_PREFIX + "WEBHOOK_SECRETS", ""))

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: object
    ) -> Settings:
        """Settings from ``HAULMER_ONBOARDING_*`` variables, then overrides.

        Lists (keys, template folders, blocked plugins) are comma separated;
        durations (``CLOCK_SKEW``, ``FORGOT_PASSWORD_WINDOW``) are seconds;
        ``LINK_MAX_AGES`` is ``purpose=seconds`` pairs. A value that is not
        a number raises ``ValueError`` naming its variable.
        """
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}

        def get(name: str) -> str | None:
            return env.get(_ENV_PREFIX + name.upper())

        lists = ("secret_keys", "sealing_keys", "webhook_secrets")
        for name in (*lists, "template_dirs", "blocked_plugins"):
            raw = get(name)
            if raw is not None:
                values[name] = _split(raw)
        for name in (
            "database_url",
            "base_url",
            "mail_from",
            "reply_to",
            "smtp_host",
            "smtp_username",
            "smtp_password",
            "certification_url",
            "certification_api_key",
        ):
            raw = get(name)
            if raw is not None:
                values[name] = raw
        for name, kind, seconds in _NUMBERS:
            if (raw := get(name)) is not None:
                number = _number(_ENV_PREFIX + name.upper(), raw, kind)
                values[name] = timedelta(seconds=number) if seconds else number
        if (raw := get("link_max_ages")) is not None:
            values["link_max_ages"] = _durations(_ENV_PREFIX + "LINK_MAX_AGES", raw)
        for name in ("smtp_starttls", "development"):
            if (raw := get(name)) is not None:
                values[name] = _flag(_ENV_PREFIX + name.upper(), raw)

        services: dict[str, dict[str, str]] = {}
        for name, value in env.items():
            if name.startswith(_ENV_PREFIX + "SERVICE_"):
                rest = name.removeprefix(_ENV_PREFIX + "SERVICE_")
                for field in ("URL", "API_KEY"):
                    if rest.endswith("_" + field):
                        product = rest.removesuffix("_" + field).lower()
                        services.setdefault(product, {})[field.lower()] = value
        if services:
            values["services"] = services

        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
