"""Post-enablement actions: what a product does once the SII said yes.

A product plugin declares its actions (OpenFactura issues the
organization's API key, SimpleBoleta an activation code, Tuu activates the
point of sale). Each is a call to the product's own service over HTTP. The
journey records one row per action when the organization is enabled; the
worker runs due rows, retries failures with backoff and records the outcome
once. An action must be idempotent on the service's side: it receives an
``idempotency_key`` that stays the same across retries, so a call repeated
after a crash is recognized rather than done twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import attrs
import httpx

__all__ = [
    "ActionContext",
    "ActionFailed",
    "ActionResult",
    "EnablementAction",
    "backoff",
    "is_transient",
    "service_client",
]

#: How many times an action is tried before it is left for an operator:
#: with the backoff below, about three hours of trying.
MAX_ATTEMPTS = 20


@attrs.frozen
class ActionContext:
    """What an action knows when it runs.

    ``http`` is a client for the product's service: its base URL and
    credentials come from ``Settings.services[product]``.
    """

    product: str
    order_number: str
    legal_name: str
    rut: str
    documents: frozenset[int]
    administrator_email: str
    idempotency_key: str
    http: httpx.Client
    settings: Mapping[str, str]

    def post(self, path: str, body: Mapping[str, Any], *fields: str) -> dict[str, str]:
        """POST ``body`` to the product's service with this action's
        idempotency key; return the answer's text ``fields``.

        An HTTP error status raises ``httpx.HTTPStatusError`` (the core
        decides whether to try again); an answer that is not a JSON object
        with those non-empty text fields raises ``ActionFailed``, worth
        trying again: it may be a passing fault of the service.
        """
        response = self.http.post(
            path, json=dict(body), headers={"Idempotency-Key": self.idempotency_key}
        )
        response.raise_for_status()
        try:
            answer = response.json()
        except ValueError as exc:
            raise ActionFailed(f"the {self.product} answer is not JSON") from exc
        if not isinstance(answer, dict):
            raise ActionFailed(f"the {self.product} answer is not a JSON object")
        found: dict[str, str] = {}
        for field in fields:
            value = answer.get(field)
            if not isinstance(value, str) or not value:
                raise ActionFailed(f"the {self.product} answer has no text {field!r}")
            found[field] = value
        return found


@attrs.frozen
class ActionResult:
    """A successful action: a Spanish sentence for the customer's email and
    the facts worth keeping (nothing secret: both are stored)."""

    summary: str
    data: Mapping[str, str] = attrs.field(factory=dict)


class ActionFailed(Exception):
    """An action that cannot succeed as it is (``permanent``) or not now."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@attrs.frozen
class EnablementAction:
    """One action of a product: a stable id, a Spanish title, and ``run``."""

    id: str
    title: str
    run: Callable[[ActionContext], ActionResult]


def is_transient(error: BaseException) -> bool:
    """Whether trying again later may succeed."""
    if isinstance(error, ActionFailed):
        return not error.permanent
    if isinstance(error, httpx.HTTPStatusError):
        status = error.response.status_code
        return status >= 500 or status in (408, 425, 429)
    return isinstance(error, httpx.TransportError)


def backoff(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failure: 2 s doubling, at most
    10 minutes."""
    return timedelta(seconds=min(2 * 2 ** max(attempts - 1, 0), 600))


def service_client(
    settings: Mapping[str, Any], *, timeout: float = 10.0
) -> httpx.Client:
    """An HTTP client for a product service from its settings.

    ``url`` is the base URL; ``api_key``, when given, goes in
    ``Authorization: Bearer``.
    """
    headers = {}
    if settings.get("api_key"):
        headers["Authorization"] = f"Bearer {settings['api_key']}"
    return httpx.Client(
        base_url=str(settings.get("url", "")), headers=headers, timeout=timeout
    )
