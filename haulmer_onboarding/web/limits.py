"""The request body limit: a signature file is the largest thing posted.

``BodyLimit`` wraps the whole app; the page or API handler that reads a
body too large gets ``TooLarge`` raised at its first read, and answers it
with its own 413 (the signature step shows the message beside the file's
box; the API answers JSON).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from haulmer_onboarding.errors import SignatureError, ValidationError
from haulmer_onboarding.signatures import format_size

__all__ = [
    "BodyLimit",
    "TooLarge",
    "api_body_limit",
    "page_body_limit",
    "request_too_large_error",
    "route_path",
    "too_large_error",
]

# What a request carries besides the signature file: form fields, JSON keys.
_FORM_ROOM = 64 * 1024


def api_body_limit(signature_max_bytes: int) -> int:
    """The most bytes an API request may send: the largest signature file in
    base64 (4 bytes for every 3), plus room for the other fields."""
    return signature_max_bytes * 4 // 3 + _FORM_ROOM


def page_body_limit(signature_max_bytes: int) -> int:
    """The most bytes a page's form may send: the largest signature file,
    plus room for the other fields."""
    return signature_max_bytes + _FORM_ROOM


def request_too_large_error(max_bytes: int) -> ValidationError:
    """What a too large request to an action without a file is told."""
    return ValidationError(
        f"La solicitud es demasiado grande: el máximo es {format_size(max_bytes)}. "
        "Esta acción solo recibe unos pocos campos de texto.",
        code="request_too_large",
    )


def too_large_error(max_bytes: int) -> SignatureError:
    """What a too large request is told: the signature file's own limit."""
    return SignatureError(
        f"El archivo es demasiado grande: el máximo es "
        f"{format_size(max_bytes)}. Una firma electrónica (.pfx o .p12) pesa "
        "unos pocos KB; revisa que hayas elegido el archivo correcto.",
        code="request_too_large",
        field="signature",
    )


class TooLarge(Exception):
    """Raised by ``BodyLimit`` when a handler reads a body past the limit."""


def route_path(scope: Scope) -> str:
    """The request's path below where the app is mounted."""
    path: str = scope["path"]
    root: str = scope.get("root_path") or ""
    return path[len(root) :] if root and path.startswith(root) else path


class BodyLimit:
    """Refuses request bodies over their limit with a 413 answer.

    ``limit`` gives the most bytes a request may send (it depends on the
    path: the API carries the signature file in base64). A body is refused
    when the handler first reads it: at once when its ``Content-Length``
    says it is too large, else as soon as the bytes counted so far pass the
    limit, so an upload can never fill the server's memory or disk beyond
    it. The handler's app answers the ``TooLarge`` it raises (with the
    page around the field); this answers only when the app could not.
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: Callable[[Scope], int],
        too_large: Callable[[Scope], Response],
    ) -> None:
        self.app = app
        self.limit = limit
        self.too_large = too_large

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.limit(scope)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"")
        oversized = declared.isdigit() and int(declared) > max_bytes

        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            if oversized:
                raise TooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise TooLarge
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except TooLarge:
            if not started:
                await self.too_large(scope)(scope, receive, send)
