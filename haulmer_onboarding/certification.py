"""The SII certification of a company, as a remote service sees it.

No public Haulmer API covers certification, so this module defines the HTTP
contract the SDK speaks, and ``haulmer_onboarding.sandbox`` serves it:

``POST /v1/certifications``
    Body: ``reference``, ``rut``, ``legal_name``, ``documents`` (SII codes),
    ``steps`` (``{"id", "title", "business_days"}`` each) and
    ``signature_fingerprint``. Answers 201 with the new certification, or
    200 with the existing one when the ``reference`` is already known; the
    ``Idempotency-Key`` header carries the same reference.
``GET /v1/certifications/{id}``
    Answers 200 with the certification as it stands.

A certification is ``{"id", "reference", "state", "steps"}``; each step adds
``state`` and ``message`` to its declaration. Errors are
``{"code", "message"}`` with a 4xx or 5xx status; ``message`` is Spanish.

``CertificationClient`` turns every failure into ``CertificationServiceError``:
code ``certification_unavailable`` when the service cannot be reached or
answers nonsense, ``certification_rejected`` when it refuses the request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Final
from urllib.parse import quote

import attrs
import httpx

from haulmer_onboarding.errors import CertificationServiceError

__all__ = [
    "CERTIFICATION_STATES",
    "STEP_STATES",
    "CertificationClient",
    "CertificationStatus",
    "CertificationStep",
    "StepStatus",
]

logger = logging.getLogger("haulmer_onboarding")

STEP_STATES: Final = frozenset({"pending", "running", "done", "failed"})
CERTIFICATION_STATES: Final = frozenset({"running", "approved", "failed"})

_UNAVAILABLE: Final = "certification_unavailable"
_REJECTED: Final = "certification_rejected"
_REJECTED_MESSAGE: Final = (
    "El servicio de certificación rechazó la solicitud. Contacta a soporte."
)


def _non_negative(
    instance: object, attribute: attrs.Attribute[int], value: int
) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must not be negative, got {value}")


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise TypeError(f"{key!r} must be a string, got {type(value).__name__}")
    return value


def _whole(data: Mapping[str, Any], key: str) -> int:
    value = data[key]
    # bool is an int to Python, but never a count of days in JSON.
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{key!r} must be an integer, got {type(value).__name__}")
    return value


@attrs.frozen
class CertificationStep:
    """One stage of a certification, as a product plugin declares it.

    ``title`` is Spanish and shown to the customer; ``business_days`` is how
    long the SII usually takes over it.
    """

    id: str = attrs.field(validator=attrs.validators.min_len(1))
    title: str = attrs.field(validator=attrs.validators.min_len(1))
    business_days: int = attrs.field(
        validator=[attrs.validators.instance_of(int), _non_negative]
    )

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "business_days": self.business_days}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CertificationStep:
        """Raise ``KeyError``, ``TypeError`` or ``ValueError`` on a bad shape."""
        return cls(
            id=_text(data, "id"),
            title=_text(data, "title"),
            business_days=_whole(data, "business_days"),
        )


@attrs.frozen
class StepStatus:
    """Where one step stands; ``message`` says in Spanish what the customer
    must do, and is set when the step ``failed``."""

    id: str
    title: str
    business_days: int
    state: str = attrs.field(validator=attrs.validators.in_(STEP_STATES))
    message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "business_days": self.business_days,
            "state": self.state,
            "message": self.message,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StepStatus:
        """Raise ``KeyError``, ``TypeError`` or ``ValueError`` on a bad shape."""
        message = data.get("message")
        if message is not None and not isinstance(message, str):
            raise TypeError("'message' must be a string or null")
        return cls(
            id=_text(data, "id"),
            title=_text(data, "title"),
            business_days=_whole(data, "business_days"),
            state=_text(data, "state"),
            message=message,
        )


@attrs.frozen
class CertificationStatus:
    """A certification as the service reports it.

    ``state`` is ``running`` until every step is done (``approved``) or one
    step failed (``failed``); ``steps`` keep the declared order.
    """

    id: str
    reference: str
    state: str = attrs.field(validator=attrs.validators.in_(CERTIFICATION_STATES))
    steps: tuple[StepStatus, ...]

    @property
    def done_count(self) -> int:
        return sum(1 for step in self.steps if step.state == "done")

    @property
    def current_step(self) -> StepStatus | None:
        """The first step not done (running or failed); None once approved."""
        return next((step for step in self.steps if step.state != "done"), None)

    @property
    def progress(self) -> float:
        """The share of steps done, from 0.0 to 1.0."""
        if not self.steps:
            return 0.0
        return self.done_count / len(self.steps)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "reference": self.reference,
            "state": self.state,
            "steps": [step.as_dict() for step in self.steps],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CertificationStatus:
        """Raise ``KeyError``, ``TypeError`` or ``ValueError`` on a bad shape."""
        steps = data["steps"]
        if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
            raise TypeError("'steps' must be a list of objects")
        return cls(
            id=_text(data, "id"),
            reference=_text(data, "reference"),
            state=_text(data, "state"),
            steps=tuple(StepStatus.from_dict(step) for step in steps),
        )


class CertificationClient:
    """A synchronous client of the certification service.

    Both calls are safe to repeat (``start`` is idempotent by ``reference``),
    so connection errors, timeouts and 5xx answers are retried ``retries``
    times, waiting ``backoff`` seconds and then twice as long each time.
    The API key travels in the ``Authorization`` header and is never logged.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        retries: int = 2,
        backoff: float = 0.2,
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries must not be negative, got {retries}")
        headers = {"Accept": "application/json"}
        if api_key is not None:
            headers["Authorization"] = f"Bearer {api_key}"
        self._retries = retries
        self._backoff = backoff
        self._http = httpx.Client(
            base_url=base_url, headers=headers, timeout=timeout, transport=transport
        )

    def start(
        self,
        *,
        reference: str,
        rut: str,
        legal_name: str,
        documents: Sequence[int],
        steps: Sequence[CertificationStep],
        signature_fingerprint: str,
    ) -> CertificationStatus:
        """Start the certification of ``reference``, or return the one the
        service already has for it."""
        body = {
            "reference": reference,
            "rut": rut,
            "legal_name": legal_name,
            "documents": list(documents),
            "steps": [step.as_dict() for step in steps],
            "signature_fingerprint": signature_fingerprint,
        }
        response = self._send(
            "POST",
            "/v1/certifications",
            json=body,
            headers={"Idempotency-Key": reference},
        )
        status = self._parse(response)

        logger.info(
            "certification %s for reference %s is %s",
            status.id,
            status.reference,
            status.state,
        )
        return status

    def status(self, certification_id: str) -> CertificationStatus:
        """The certification as it stands now."""
        path = f"/v1/certifications/{quote(certification_id, safe='')}"
        return self._parse(self._send("GET", path))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CertificationClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _send(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """One call with its retries; a 5xx, 408, 429 or a transport error is
        retried, another 4xx becomes ``certification_rejected``."""
        cause: Exception | None = None
        for attempt in range(self._retries + 1):
            if attempt:
                time.sleep(self._backoff * 2 ** (attempt - 1))

            try:
                response = self._http.request(method, path, json=json, headers=headers)
            except httpx.RequestError as exc:
                cause, reason = exc, type(exc).__name__
            else:
                # 429 and 408 are "not now", like a 5xx: tried again.
                if response.status_code < 500 and response.status_code not in (
                    408,
                    429,
                ):
                    return self._check(method, path, response)
                cause, reason = None, f"HTTP {response.status_code}"

            if attempt < self._retries:
                logger.info(
                    "certification service: %s %s failed (%s), retrying",
                    method,
                    path,
                    reason,
                )

        logger.warning(
            "certification service unavailable: %s %s failed %d times (%s)",
            method,
            path,
            self._retries + 1,
            reason,
        )
        raise CertificationServiceError(code=_UNAVAILABLE) from cause

    def _check(
        self, method: str, path: str, response: httpx.Response
    ) -> httpx.Response:
        if response.is_success:
            return response
        if not response.is_client_error:
            # A redirect or an informational answer is not in the contract.
            logger.warning(
                "certification service: %s %s answered HTTP %d",
                method,
                path,
                response.status_code,
            )
            raise CertificationServiceError(code=_UNAVAILABLE)

        message, field = _REJECTED_MESSAGE, None
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            if isinstance(body.get("message"), str) and body["message"].strip():
                message = body["message"]
            if isinstance(body.get("field"), str):
                field = body["field"]

        logger.warning(
            "certification service rejected %s %s with HTTP %d",
            method,
            path,
            response.status_code,
        )
        raise CertificationServiceError(message, code=_REJECTED, field=field)

    def _parse(self, response: httpx.Response) -> CertificationStatus:
        try:
            data = response.json()
            if not isinstance(data, dict):
                raise TypeError("the body is not a JSON object")
            return CertificationStatus.from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            logger.warning(
                "certification service: malformed answer to %s %s (%s)",
                response.request.method,
                response.request.url.path,
                type(exc).__name__,
            )
            raise CertificationServiceError(code=_UNAVAILABLE) from exc
