"""Purchase intake over HTTP: the webhook a shop in any language can call.

A shop ``POST``s a purchase as JSON to ``/webhooks/purchases`` with one
header::

    Haulmer-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>

The HMAC is keyed by a webhook secret the shop and the deployment share,
over the bytes ``<t>.`` followed by the body exactly as sent. Several
``v1=`` entries may be given (one per secret while a shop moves to a new
one); the request is accepted when any of them matches any configured
secret. A signature whose ``t`` is further from the server's clock than
``Settings.webhook_tolerance`` is refused, so a captured request cannot be
played again later; played again within the window, it can only repeat
itself, and the purchase is recorded once.

The answer is JSON: ``201`` with the new journey, ``200`` with the journey
an earlier delivery of the same order recorded (nothing is sent again), or
a 4xx ``{"error": {"code", "message", "field"}}`` with a stable code. The
codes are listed in ``docs/intake.md``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import anyio.to_thread
import sqlalchemy.exc
from anyio import CapacityLimiter
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from haulmer_onboarding.errors import ConflictError, OnboardingError
from haulmer_onboarding.journey import Onboarding
from haulmer_onboarding.models import Journey, Purchase, PurchaseItem

__all__ = [
    "MAX_BODY_BYTES",
    "SIGNATURE_HEADER",
    "WebhookRefused",
    "intake_routes",
    "purchase_from_json",
    "sign",
    "signature_header",
    "verify",
]

logger = logging.getLogger("haulmer_onboarding")

SIGNATURE_HEADER = "Haulmer-Signature"
#: A purchase is a few hundred bytes; a body past this is not one.
MAX_BODY_BYTES = 64 * 1024
_MAX_ITEMS = 100
_HEX_DIGEST_LENGTH = 64


class WebhookRefused(OnboardingError, PermissionError):
    """A webhook request the intake refuses; ``status`` is its HTTP status."""

    code = "webhook_refused"

    def __init__(
        self, status: int, code: str, message: str, field: str | None = None
    ) -> None:
        super().__init__(message, code=code, field=field)
        self.status = status


# -- the signature ---------------------------------------------------------


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """The hex ``v1`` signature of ``body`` at ``timestamp`` under ``secret``."""
    signed = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def signature_header(
    body: bytes, secrets: str | Sequence[str], timestamp: int | None = None
) -> str:
    """The ``Haulmer-Signature`` value for ``body``, signed now (or at
    ``timestamp``) with each of ``secrets``."""
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    when = int(time.time()) if timestamp is None else timestamp
    return ",".join([f"t={when}", *(f"v1={sign(body, k, when)}" for k in keys)])


def _unauthorized(code: str, message: str) -> WebhookRefused:
    return WebhookRefused(401, code, message)


def _parse_header(value: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    signatures: list[str] = []
    for part in value.split(","):
        key, sep, item = part.strip().partition("=")
        if not sep:
            continue
        if key == "t" and item.isdigit() and len(item) <= 12:
            timestamp = int(item)
        elif key == "v1":
            signatures.append(item.lower())
        # Other keys (a later scheme) are ignored, as the docs promise.
    if timestamp is None or not signatures:
        raise _unauthorized(
            "signature_malformed",
            f"La cabecera {SIGNATURE_HEADER} debe tener la forma "
            "t=<segundos unix>,v1=<firma hexadecimal>.",
        )
    return timestamp, signatures


def verify(
    header: str | None,
    body: bytes,
    secrets: Sequence[str],
    *,
    now: float,
    tolerance: float,
) -> int:
    """Check ``header`` against ``body``; return its timestamp.

    Raises ``WebhookRefused`` (401) when the header is missing or malformed,
    when no signature matches any of ``secrets`` (compared in constant
    time), or when the timestamp is more than ``tolerance`` seconds from
    ``now``.
    """
    if not header:
        raise _unauthorized(
            "signature_missing", f"Falta la cabecera {SIGNATURE_HEADER}."
        )
    timestamp, given = _parse_header(header)

    expected = [sign(body, secret, timestamp) for secret in secrets]
    matched = False
    for candidate in given:
        for digest in expected:
            # No early exit: every pair costs the same.
            matched |= hmac.compare_digest(candidate, digest)
    if not matched:
        raise _unauthorized(
            "signature_invalid",
            "La firma no corresponde al cuerpo enviado con ningún secreto vigente.",
        )

    if timestamp < now - tolerance:
        raise _unauthorized(
            "signature_expired",
            f"La firma es de hace más de {int(tolerance)} segundos; firma el "
            "envío de nuevo con la hora actual.",
        )
    if timestamp > now + tolerance:
        raise _unauthorized(
            "signature_from_future",
            f"La firma tiene una hora más de {int(tolerance)} segundos "
            "adelantada; revisa el reloj del servidor que la firma.",
        )
    return timestamp


# -- the body --------------------------------------------------------------


def _invalid(field: str, message: str, code: str = "field_invalid") -> WebhookRefused:
    return WebhookRefused(422, code, message, field)


def _text(data: Mapping[str, Any], key: str, path: str, limit: int) -> str:
    value = data.get(key)
    if value is None:
        raise _invalid(path, f"Falta el campo {path}.", "field_missing")
    if not isinstance(value, str):
        raise _invalid(path, f"El campo {path} debe ser texto.")
    if len(value) > limit:
        raise _invalid(path, f"El campo {path} supera {limit} caracteres.")
    return value


def _integer(
    data: Mapping[str, Any], key: str, path: str, default: int, low: int, high: int
) -> int:
    value = data.get(key, default)
    # JSON true is a Python int: refuse it explicitly.
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(path, f"El campo {path} debe ser un número entero.")
    if not low <= value <= high:
        raise _invalid(path, f"El campo {path} debe estar entre {low} y {high}.")
    return value


def _no_unknown(data: Mapping[str, Any], known: set[str], prefix: str) -> None:
    # A misspelt optional field would otherwise start the wrong journey.
    unknown = sorted(set(data) - known)
    if unknown:
        path = prefix + unknown[0]
        raise _invalid(path, f"El campo {path} no existe.", "field_unknown")


_PURCHASE_FIELDS = {
    "order_number",
    "email",
    "buyer_name",
    "items",
    "legal_name",
    "rut",
    "changes_legal_name",
    "paid_at",
}
_ITEM_FIELDS = {"code", "name", "quantity", "unit_price"}


def _item(value: Any, index: int) -> PurchaseItem:
    prefix = f"items[{index}]"
    if not isinstance(value, dict):
        raise _invalid(prefix, f"{prefix} debe ser un objeto.")
    _no_unknown(value, _ITEM_FIELDS, prefix + ".")
    return PurchaseItem(
        code=_text(value, "code", prefix + ".code", 64),
        name=_text(value, "name", prefix + ".name", 200),
        quantity=_integer(value, "quantity", prefix + ".quantity", 1, 1, 10_000),
        unit_price=_integer(value, "unit_price", prefix + ".unit_price", 0, 0, 10**12),
    )


def _paid_at(data: Mapping[str, Any]) -> datetime | None:
    value = data.get("paid_at")
    if value is None:
        return None
    message = (
        "El campo paid_at debe ser una fecha ISO 8601 con zona horaria, por "
        "ejemplo 2026-12-03T15:04:05-03:00."
    )
    if not isinstance(value, str):
        raise _invalid("paid_at", message)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise _invalid("paid_at", message) from None
    if when.tzinfo is None:
        raise _invalid("paid_at", message)
    return when


def purchase_from_json(data: Any) -> Purchase:
    """The ``Purchase`` a webhook body describes; ``WebhookRefused`` (422)
    names the first field at fault."""
    if not isinstance(data, dict):
        raise WebhookRefused(
            400, "body_not_object", "El cuerpo debe ser un objeto JSON."
        )
    _no_unknown(data, _PURCHASE_FIELDS, "")
    items = data.get("items")
    if items is None:
        raise _invalid("items", "Falta el campo items.", "field_missing")
    if not isinstance(items, list):
        raise _invalid("items", "El campo items debe ser una lista.")
    if len(items) > _MAX_ITEMS:
        raise _invalid("items", f"Una compra tiene a lo más {_MAX_ITEMS} productos.")
    changes = data.get("changes_legal_name", False)
    if not isinstance(changes, bool):
        raise _invalid(
            "changes_legal_name", "changes_legal_name debe ser true o false."
        )
    return Purchase(
        order_number=_text(data, "order_number", "order_number", 64),
        email=_text(data, "email", "email", 320),
        buyer_name=_text(data, "buyer_name", "buyer_name", 200),
        items=tuple(_item(item, i) for i, item in enumerate(items)),
        legal_name=_optional_text(data, "legal_name", 200),
        rut=_optional_text(data, "rut", 20),
        changes_legal_name=changes,
        paid_at=_paid_at(data),
    )


def _optional_text(data: Mapping[str, Any], key: str, limit: int) -> str:
    return "" if data.get(key) is None else _text(data, key, key, limit)


# -- the route ------------------------------------------------------------


def _error(exc: OnboardingError, status: int) -> JSONResponse:
    return JSONResponse({"error": exc.as_dict()}, status_code=status)


_BUSY = WebhookRefused(
    503,
    "temporarily_unavailable",
    "No pudimos registrar la compra en este momento; reintenta en unos "
    "segundos con la misma orden.",
)


_BROKEN = WebhookRefused(
    500,
    "internal_error",
    "No pudimos registrar la compra por un error nuestro; reintenta más tarde "
    "con la misma orden.",
)


def _status_of(exc: OnboardingError) -> int:
    if isinstance(exc, WebhookRefused):
        return exc.status
    if isinstance(exc, ConflictError) and exc.code == "purchase_conflict":
        return 409
    # Every other error the facade raises about a purchase is about its
    # content: a RUT, an address, an unknown product, contradicting rules.
    return 422


async def _read_body(request: Request) -> bytes:
    too_large = WebhookRefused(
        413,
        "body_too_large",
        f"El cuerpo supera {MAX_BODY_BYTES // 1024} KB; una compra pesa mucho menos.",
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise too_large
    return bytes(body)


class _Intake:
    def __init__(self, onboarding: Onboarding) -> None:
        self.onboarding = onboarding
        # SQLite takes one writer at a time: purchases wait their turn here,
        # first come first served, rather than in SQLite's busy loop, where
        # a burst starves other writers (the relay) past their timeout.
        # PostgreSQL takes them side by side, up to its pool's size.
        sqlite = onboarding.store.url.startswith("sqlite")
        self.writers = CapacityLimiter(1 if sqlite else 15)

    def _check(self, request: Request, body: bytes) -> None:
        settings = self.onboarding.settings
        if not settings.webhook_secrets:
            raise WebhookRefused(
                503,
                "webhook_not_configured",
                "Este servidor no tiene secretos de webhook configurados.",
            )
        verify(
            request.headers.get(SIGNATURE_HEADER),
            body,
            settings.webhook_secrets,
            now=self.onboarding.clock().timestamp(),
            tolerance=settings.webhook_tolerance.total_seconds(),
        )
        kind = request.headers.get("content-type", "").partition(";")[0]
        if kind.strip().lower() != "application/json":
            raise WebhookRefused(
                415,
                "content_type_unsupported",
                "El cuerpo debe enviarse como application/json.",
            )

    async def record(self, purchase: Purchase) -> tuple[Journey, bool]:
        receive = self.onboarding.receive_purchase
        try:
            return await anyio.to_thread.run_sync(
                receive, purchase, limiter=self.writers
            )
        except sqlalchemy.exc.IntegrityError:
            # PostgreSQL: another delivery of the same order committed
            # between this one's lookup and its insert. It is there now, so
            # this delivery is a repeat (or a conflict) like any other.
            return await anyio.to_thread.run_sync(
                receive, purchase, limiter=self.writers
            )

    async def purchases(self, request: Request) -> JSONResponse:
        client = request.client.host if request.client else "?"
        try:
            body = await _read_body(request)
            self._check(request, body)
            try:
                data = json.loads(body)
            except (ValueError, RecursionError):  # nested past the stack
                raise WebhookRefused(
                    400, "body_not_json", "El cuerpo no es JSON válido en UTF-8."
                ) from None
            purchase = purchase_from_json(data)
            journey, created = await self.record(purchase)
        except OnboardingError as exc:
            status = _status_of(exc)
            # The code says what was wrong; the header and body are never
            # logged (a signature is a secret's output).
            logger.warning(
                "purchase webhook refused with %s %s (from %s)",
                status,
                exc.code,
                client,
            )
            return _error(exc, status)
        except sqlalchemy.exc.OperationalError:
            # The database did not answer in time (a lock held too long, a
            # connection lost): nothing was recorded, and the shop's retry
            # will be answered as the first delivery would have been.
            logger.warning(
                "purchase webhook answered 503: the database is busy or gone"
            )
            response = _error(_BUSY, 503)
            response.headers["Retry-After"] = "2"
            return response
        except Exception:
            logger.exception("purchase webhook failed; answered 500")
            return _error(_BROKEN, 500)

        if created:
            logger.info(
                "purchase webhook: order %s recorded as journey %s",
                journey.order_number,
                journey.id,
            )
        else:
            logger.info(
                "purchase webhook: order %s delivered again; journey %s unchanged",
                journey.order_number,
                journey.id,
            )
        return JSONResponse(
            {
                "journey_id": journey.id,
                "order_number": journey.order_number,
                "stage": journey.stage.value,
                "created": created,
            },
            status_code=201 if created else 200,
        )


def intake_routes(onboarding: Onboarding) -> list[Route]:
    """The purchase webhook's route, to add to an app's routes."""
    intake = _Intake(onboarding)
    return [
        Route(
            "/webhooks/purchases",
            intake.purchases,
            name="purchase_webhook",
            methods=["POST"],
        )
    ]
