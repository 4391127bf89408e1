"""An in-memory certification service that speaks the SDK's contract.

Demos and tests talk to it over real HTTP instead of the SII. Certifications
live only as long as the app, and move on with the clock: each step takes
``seconds_per_business_day`` per business day it declares. Three controls
exist only here: ``fail_steps`` makes the named steps fail when their turn
ends, ``retry_steps`` makes them fail once and then pass, and
``POST /v1/certifications/{id}/advance`` ends the running step's turn at
once.

The sandbox ignores the ``Authorization`` header: it accepts any API key.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from haulmer_onboarding.certification import (
    CertificationStatus,
    CertificationStep,
    StepStatus,
)

__all__ = ["create_sandbox_app", "sandbox_endpoint"]

_NOT_FOUND = "No encontramos esa certificación."


class _BadRequest(Exception):
    """A request body the contract refuses; answered with 422."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@attrs.define
class _Certification:
    """One certification and the point its clock counts from.

    Steps before ``base_done`` are over; the next ones take their turns one
    after the other starting at ``base_time``. ``advance`` moves both.
    """

    id: str
    reference: str
    steps: tuple[CertificationStep, ...]
    base_done: int
    base_time: float
    # Steps of ``retry_steps`` whose first turn already ended in failure.
    retried: set[str] = attrs.Factory(set)


@attrs.define
class _Sandbox:
    seconds_per_business_day: float
    clock: Callable[[], float]
    fail_steps: Mapping[str, str]
    retry_steps: Mapping[str, str] = attrs.Factory(dict)
    by_id: dict[str, _Certification] = attrs.Factory(dict)
    by_reference: dict[str, _Certification] = attrs.Factory(dict)

    def ended_turns(self, cert: _Certification) -> int:
        """How many steps have seen their turn end, up to the first failure."""
        ended = cert.base_done
        if any(step.id in self.fail_steps for step in cert.steps[:ended]):
            return ended

        elapsed = self.clock() - cert.base_time
        days = 0
        for step in cert.steps[ended:]:
            days += step.business_days
            if elapsed < self.seconds_per_business_day * days:
                break
            if self._fails_once(cert, step.id):
                # Its first turn ended in failure: the step runs again from
                # that moment, showing what failed meanwhile.
                cert.retried.add(step.id)
                cert.base_done = ended
                cert.base_time += self.seconds_per_business_day * days
                return self.ended_turns(cert)
            ended += 1
            if step.id in self.fail_steps:
                break
        return ended

    def _fails_once(self, cert: _Certification, step_id: str) -> bool:
        return step_id in self.retry_steps and step_id not in cert.retried

    def advance(self, cert: _Certification) -> None:
        """End the running step's turn now; the next turn starts now."""
        ended = self.ended_turns(cert)
        running = cert.steps[ended]
        if self._fails_once(cert, running.id):
            cert.retried.add(running.id)
            cert.base_done = ended
        else:
            cert.base_done = ended + 1
        cert.base_time = self.clock()

    def status(self, cert: _Certification) -> CertificationStatus:
        ended = self.ended_turns(cert)
        failed_at = next(
            (
                index
                for index, step in enumerate(cert.steps[:ended])
                if step.id in self.fail_steps
            ),
            None,
        )

        steps = []
        for index, step in enumerate(cert.steps):
            message = None
            if failed_at is not None and index == failed_at:
                state, message = "failed", self.fail_steps[step.id]
            elif index < ended and (failed_at is None or index < failed_at):
                state = "done"
            elif index == ended and failed_at is None and step.id in cert.retried:
                # Running again after a failure: the customer still sees why.
                state, message = "failed", self.retry_steps[step.id]
            elif index == ended and failed_at is None:
                state = "running"
            else:
                state = "pending"
            steps.append(StepStatus(**step.as_dict(), state=state, message=message))

        if failed_at is not None:
            overall = "failed"
        elif ended == len(cert.steps):
            overall = "approved"
        else:
            overall = "running"
        return CertificationStatus(
            id=cert.id, reference=cert.reference, state=overall, steps=tuple(steps)
        )


def _error(
    status_code: int, code: str, message: str, field: str | None = None
) -> Response:
    body = {"code": code, "message": message, "field": field}
    return JSONResponse(body, status_code=status_code)


def _text(body: Mapping[str, Any], key: str, label: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _BadRequest(f"Indica {label}.", field=key)
    return value


def _documents(body: Mapping[str, Any]) -> list[int]:
    value = body.get("documents")
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(c, int) and not isinstance(c, bool) for c in value)
    ):
        raise _BadRequest(
            "Indica al menos un tipo de documento, por su código del SII.",
            field="documents",
        )
    return value


def _steps(body: Mapping[str, Any]) -> tuple[CertificationStep, ...]:
    value = body.get("steps")
    if not isinstance(value, list) or not value:
        raise _BadRequest("Indica al menos una etapa de certificación.", field="steps")

    steps = []
    for item in value:
        try:
            if not isinstance(item, dict):
                raise TypeError("a step must be an object")
            steps.append(CertificationStep.from_dict(item))
        except (KeyError, TypeError, ValueError) as exc:
            raise _BadRequest(
                "Cada etapa necesita id, título y días hábiles.", field="steps"
            ) from exc

    if len({step.id for step in steps}) != len(steps):
        raise _BadRequest("Hay etapas repetidas.", field="steps")
    return tuple(steps)


def sandbox_endpoint(
    path: str, respond: Callable[[Mapping[str, Any]], Mapping[str, Any]]
) -> Route:
    """A POST route for a product service's sandbox.

    The body must be a JSON object; ``respond`` gets it with the path's
    parameters added and returns the JSON answer (201). A request repeating
    an ``Idempotency-Key`` gets the first answer again (200), as a real
    service must do for a post-enablement action retried after a crash.
    """
    answers: dict[str, Mapping[str, Any]] = {}

    async def endpoint(request: Request) -> Response:
        key = request.headers.get("idempotency-key")
        if not key:
            return _error(422, "idempotency_key_missing", "Falta Idempotency-Key.")
        if key in answers:
            return JSONResponse(dict(answers[key]), status_code=200)
        try:
            body = await request.json()
        except ValueError:
            return _error(422, "invalid_json", "El cuerpo no es JSON válido.")
        if not isinstance(body, dict):
            return _error(422, "invalid_body", "El cuerpo debe ser un objeto JSON.")
        answer = respond({**body, **request.path_params})
        answers[key] = answer
        return JSONResponse(dict(answer), status_code=201)

    return Route(path, endpoint, methods=["POST"])


def create_sandbox_app(
    *,
    seconds_per_business_day: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    fail_steps: Mapping[str, str] | None = None,
    retry_steps: Mapping[str, str] | None = None,
    services: Mapping[str, Sequence[BaseRoute]] | None = None,
) -> Starlette:
    """A Starlette app serving the certification contract from memory.

    ``clock`` is read on every request, so a test can move time by hand;
    ``fail_steps`` maps a step id to the Spanish message its failure shows.
    ``retry_steps`` maps a step id to the message of a failure it has once:
    when its first turn ends it shows ``failed`` with that message while it
    runs again (the certification stays ``running``), then passes.
    ``services`` mounts each product's sandbox routes at ``/<product>``.
    """
    sandbox = _Sandbox(
        seconds_per_business_day=seconds_per_business_day,
        clock=clock,
        fail_steps=dict(fail_steps or {}),
        retry_steps=dict(retry_steps or {}),
    )

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def start(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(422, "invalid_json", "El cuerpo no es JSON válido.")
        if not isinstance(body, dict):
            return _error(422, "invalid_body", "El cuerpo debe ser un objeto JSON.")

        try:
            reference = _text(body, "reference", "la referencia")
            _text(body, "rut", "el RUT")
            _text(body, "legal_name", "la razón social")
            _text(body, "signature_fingerprint", "la huella de la firma")
            _documents(body)
            steps = _steps(body)
        except _BadRequest as exc:
            return _error(422, "invalid_body", exc.message, exc.field)

        key = request.headers.get("Idempotency-Key")
        if key is not None and key != reference:
            message = "La llave de idempotencia no coincide con la referencia."
            return _error(422, "idempotency_key_mismatch", message, "reference")

        existing = sandbox.by_reference.get(reference)
        if existing is not None:
            return JSONResponse(sandbox.status(existing).as_dict(), status_code=200)

        cert = _Certification(
            id=f"cert_{uuid.uuid4().hex}",
            reference=reference,
            steps=steps,
            base_done=0,
            base_time=sandbox.clock(),
        )
        sandbox.by_id[cert.id] = cert
        sandbox.by_reference[reference] = cert
        return JSONResponse(sandbox.status(cert).as_dict(), status_code=201)

    async def show(request: Request) -> Response:
        cert = sandbox.by_id.get(request.path_params["certification_id"])
        if cert is None:
            return _error(404, "not_found", _NOT_FOUND)
        return JSONResponse(sandbox.status(cert).as_dict())

    async def advance(request: Request) -> Response:
        cert = sandbox.by_id.get(request.path_params["certification_id"])
        if cert is None:
            return _error(404, "not_found", _NOT_FOUND)
        if sandbox.status(cert).state != "running":
            return _error(409, "finished", "La certificación ya terminó.")

        sandbox.advance(cert)
        return JSONResponse(sandbox.status(cert).as_dict())

    async def http_error(request: Request, exc: Exception) -> Response:
        # Unknown paths and methods answer JSON too, like the rest of the API.
        if isinstance(exc, HTTPException):
            return _error(exc.status_code, "http_error", str(exc.detail))
        return _error(500, "internal_error", "Error interno del sandbox.")

    routes: list[BaseRoute] = [
        Route("/health", health, methods=["GET"]),
        Route("/v1/certifications", start, methods=["POST"]),
        Route("/v1/certifications/{certification_id}", show, methods=["GET"]),
        Route(
            "/v1/certifications/{certification_id}/advance", advance, methods=["POST"]
        ),
    ]
    for product, product_routes in (services or {}).items():
        routes.append(Mount(f"/{product}", routes=list(product_routes)))
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})
