"""The SDK's exceptions.

Every error a customer can cause carries a stable ``code`` for programs (the
JSON API, logs, tests) and a ``message`` in Chilean Spanish that a page can
show as it is. Each also subclasses the built-in it resembles, so callers
that only know Python's exceptions can still catch it::

    OnboardingError(Exception)
    ├── LinkError(ValueError)               a link that cannot be used
    │   ├── LinkInvalid                     bad signature, mangled, unknown
    │   ├── LinkExpired                     signed, but too old
    │   ├── LinkWrongPurpose                made for another step
    │   └── LinkUsed                        already used
    │       └── LinkSuperseded              replaced by a newer link
    ├── StepOrderError(RuntimeError)        a step before its turn
    ├── ValidationError(ValueError)         a form value the rules refuse
    │   ├── PasswordError                   the password policy
    │   ├── RutError                        a RUT that is not one
    │   ├── SignatureError                  a PKCS#12 that cannot be used
    │   └── DocumentsError                  a DTE choice the policy refuses
    ├── RateLimited(RuntimeError)           too many requests, try later
    ├── NotFoundError(LookupError)          no such purchase or record
    ├── ConflictError(RuntimeError)         contradicting product rules
    ├── PluginError(RuntimeError)           a plugin broke the contract
    └── CertificationServiceError(ConnectionError)
                                            the certification service failed
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar


class OnboardingError(Exception):
    """Base of every error the SDK raises on purpose.

    ``code`` is stable across releases; ``message`` is Spanish text for the
    customer; ``field`` names the form field at fault, when there is one.
    """

    code: ClassVar[str] = "onboarding_error"
    default_message: ClassVar[str] = "No pudimos completar la operación."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message or self.default_message
        if code is not None:
            self.code = code  # type: ignore[misc]
        self.field = field
        super().__init__(self.message)

    def as_dict(self) -> dict[str, str | None]:
        """The error as the JSON API returns it."""
        return {"code": self.code, "message": self.message, "field": self.field}


class LinkError(OnboardingError, ValueError):
    code = "link_invalid"
    default_message = "El enlace no es válido."


class LinkInvalid(LinkError):
    """Not a genuine link: tampered, mangled, unknown, or from the future.

    ``reason`` says which, for logs and tests; the customer sees one message.
    """

    code = "link_invalid"
    default_message = (
        "El enlace no es válido. Revisa que lo hayas copiado completo desde el correo."
    )

    def __init__(self, message: str | None = None, *, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class LinkExpired(LinkError):
    """A genuine link past its time; a new one may be sent."""

    code = "link_expired"
    default_message = "El enlace expiró. Puedes pedir uno nuevo."

    def __init__(
        self,
        message: str | None = None,
        *,
        purpose: str = "",
        jti: str = "",
        issued_at: datetime | None = None,
        expired_at: datetime | None = None,
    ) -> None:
        super().__init__(message)
        self.purpose = purpose
        self.jti = jti
        self.issued_at = issued_at
        self.expired_at = expired_at


class LinkWrongPurpose(LinkError):
    """A genuine link made for another step."""

    code = "link_wrong_purpose"
    default_message = "Este enlace es para otro paso del proceso."

    def __init__(
        self, message: str | None = None, *, expected: str = "", actual: str = ""
    ) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class LinkUsed(LinkError):
    """A link whose step was already done with it, or that its state killed."""

    code = "link_used"
    default_message = (
        "Este enlace ya fue usado. Si necesitas uno nuevo, pídelo desde el "
        "último correo que recibiste."
    )

    def __init__(
        self, message: str | None = None, *, used_at: datetime | None = None
    ) -> None:
        super().__init__(message)
        self.used_at = used_at


class LinkSuperseded(LinkUsed):
    """A link replaced by a newer one of the same purpose."""

    code = "link_superseded"
    default_message = (
        "Este enlace fue reemplazado por uno más reciente. Usa el enlace del "
        "último correo que te enviamos."
    )


class StepOrderError(OnboardingError, RuntimeError):
    code = "step_order"
    default_message = "Este paso todavía no está disponible."


class ValidationError(OnboardingError, ValueError):
    code = "invalid"
    default_message = "Revisa los datos ingresados."


class FieldErrors(ValidationError):
    """Several fields of one form refused at once, in the form's order.

    ``code``, ``message`` and ``field`` are the first one's, so a caller
    that reads one error reads the first; ``errors`` holds them all (the
    pages mark each field, the JSON API lists them under ``errors``).
    """

    def __init__(self, errors: Sequence[ValidationError]) -> None:
        first = errors[0]
        super().__init__(first.message, code=first.code, field=first.field)
        self.errors = tuple(errors)

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(super().as_dict())
        data["errors"] = [error.as_dict() for error in self.errors]
        return data


class PasswordError(ValidationError):
    code = "password_invalid"
    default_message = (
        "La contraseña debe tener al menos 8 caracteres e incluir letras "
        "minúsculas, mayúsculas y números."
    )


class RutError(ValidationError):
    code = "rut_invalid"
    default_message = "El RUT no es válido."


class SignatureError(ValidationError):
    code = "signature_invalid"
    default_message = "No pudimos leer la firma electrónica."


class DocumentsError(ValidationError):
    code = "documents_invalid"
    default_message = "La selección de documentos no es válida."


class RateLimited(OnboardingError, RuntimeError):
    """Too many requests of one kind; ``retry_after`` is in seconds.

    The default message says the same wait as ``retry_after`` (which an
    HTTP answer sends as ``Retry-After``), rounded up to the minute past
    one minute: "Vuelve a intentarlo en 1 hora y 5 minutos."
    """

    code = "rate_limited"
    default_message = "Hiciste demasiadas solicitudes."

    def __init__(self, message: str | None = None, *, retry_after: int = 60) -> None:
        wait = _spanish_wait(retry_after)
        super().__init__(
            message or f"{self.default_message} Vuelve a intentarlo en {wait}."
        )
        self.retry_after = retry_after


def _spanish_wait(seconds: int) -> str:
    """A wait as a Spanish sentence says it: ``30 segundos``, ``45 minutos``,
    ``1 hora``, ``22 horas y 30 minutos``; never shorter than ``seconds``."""

    def count(number: int, one: str, many: str) -> str:
        return f"{number} {one if number == 1 else many}"

    if seconds < 60:
        return count(max(seconds, 1), "segundo", "segundos")
    hours, minutes = divmod(-(-seconds // 60), 60)
    if not hours:
        return count(minutes, "minuto", "minutos")
    said = count(hours, "hora", "horas")
    return f"{said} y {count(minutes, 'minuto', 'minutos')}" if minutes else said


class NotFoundError(OnboardingError, LookupError):
    code = "not_found"
    default_message = "No encontramos lo que buscas."


class ConflictError(OnboardingError, RuntimeError):
    code = "conflict"
    default_message = (
        "Los servicios comprados tienen reglas incompatibles. Contacta a soporte."
    )


class PluginError(OnboardingError, RuntimeError):
    code = "plugin_error"
    default_message = "Un complemento del sistema no respondió como se esperaba."


class CertificationServiceError(OnboardingError, ConnectionError):
    code = "certification_unavailable"
    default_message = (
        "El servicio de certificación no está disponible. Reintentaremos "
        "automáticamente."
    )
