"""The JSON API: the pages' actions, for single-page frontends.

Every action of a page is here, under ``/api/v1``, calling the same facade
method, so the same rules and the same errors apply. An email link's token
travels in ``Authorization: Bearer <token>`` (never in the path, so access
logs cannot write it down). Every ``POST`` must be
``Content-Type: application/json``: a form on another site cannot send that
type, and the app answers no CORS preflight, so no other site can make a
browser call the API (the JSON API's answer to CSRF).

An error answers ``{"error": {"code", "message", "field"}}``: the SDK's
stable code, the Spanish sentence the page would show, and the field at
fault, with the status the page would have. The OpenAPI document is served
at ``/api/v1/openapi.json``.

A ``POST`` behind a link is checked in the order a customer would want to
hear about it: the link (dead links are told whatever the body), the
step's turn, then the body (its type, its JSON), then its fields.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from haulmer_onboarding import passwords
from haulmer_onboarding.errors import (
    LinkInvalid,
    OnboardingError,
    RateLimited,
    SignatureError,
    ValidationError,
)
from haulmer_onboarding.journey import Onboarding
from haulmer_onboarding.models import Journey
from haulmer_onboarding.tokens import Purpose
from haulmer_onboarding.web._common import (
    SETUP_STEP,
    WIZARD_STEP,
    customer_json,
    error_status,
    journey_json,
    offer_json,
)
from haulmer_onboarding.web.limits import (
    TooLarge,
    api_body_limit,
    request_too_large_error,
    too_large_error,
)
from haulmer_onboarding.web.openapi import openapi_document

__all__ = ["api_routes", "error_json"]

_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
_PASSWORD_RULE = "Al menos 8 caracteres, con letras minúsculas, mayúsculas y números."


class JsonRequired(ValidationError):
    code = "json_required"
    default_message = (
        "Envía el cuerpo como JSON, con el encabezado Content-Type: application/json."
    )


class LinkMissing(LinkInvalid):
    code = "link_missing"
    default_message = (
        "Falta el enlace: envía su token en el encabezado "
        "Authorization: Bearer <token>."
    )


def error_json(error: OnboardingError, status: int | None = None) -> JSONResponse:
    response = JSONResponse(
        {"error": error.as_dict()},
        status_code=status or _status(error),
        headers=_HEADERS,
    )
    if isinstance(error, RateLimited):
        response.headers["Retry-After"] = str(error.retry_after)
    return response


def _status(error: OnboardingError) -> int:
    if isinstance(error, JsonRequired):
        return 415
    if isinstance(error, LinkMissing):
        return 401
    return error_status(error)


def _answer(data: Mapping[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(dict(data), status_code=status, headers=_HEADERS)


def _token(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise LinkMissing(reason="no bearer token")
    return token.strip()


def _json_invalid(
    message: str = "El cuerpo no es un objeto JSON válido.",
) -> ValidationError:
    return ValidationError(message, code="json_invalid")


async def _body(request: Request) -> dict[str, Any]:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise JsonRequired()
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except RecursionError:
        raise _json_invalid(
            "El cuerpo JSON tiene demasiados niveles anidados: envía un objeto "
            "con los campos de la acción."
        ) from None
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        raise _json_invalid()
    if _has_lone_surrogate(data):
        raise _json_invalid(
            "El cuerpo JSON trae un carácter que no es texto válido (un "
            "escape \\ud800 a \\udfff sin su pareja). Envía el texto en UTF-8."
        )
    return data


def _has_lone_surrogate(data: dict[str, Any]) -> bool:
    """Whether a key or a string anywhere in ``data`` holds a lone surrogate:
    JSON's escapes can write one, UTF-8 cannot carry it. Walked without
    recursion, as ``data`` can be nested as deep as the parser allows."""
    pending: list[Any] = [data]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value)
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
        elif (
            isinstance(value, str)
            and not value.isprintable()
            and any("\ud800" <= char <= "\udfff" for char in value)
        ):
            return True
    return False


def _text(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValidationError(
            f"El campo {name} debe ser texto.", code="json_field_type", field=name
        )
    return value


def _required_text(data: Mapping[str, Any], name: str, message: str) -> str:
    """The text field ``name``, refused with ``json_field_missing`` when the
    request left it out (an empty string is the field's own business)."""
    if data.get(name) is None:
        raise ValidationError(
            f"{message} Falta el campo {name}.",
            code="json_field_missing",
            field=name,
        )
    return _text(data, name)


def _journey_answer(
    journey: Journey, steps: Mapping[Any, int], **extra: Any
) -> dict[str, Any]:
    return {"journey": journey_json(journey), "step": steps.get(journey.stage), **extra}


Handler = Callable[[Request], Awaitable[Response]]

#: The facade method behind each wizard action of the API.
_WORKSPACE_STEPS = {
    "activate": "activate_workspace",
    "administrator": "create_workspace_administrator",
    "name": "name_workspace",
    "organization": "finish_workspace",
}
_SETUP_STEPS = {
    "start": "begin_setup",
    "organization": "choose_organization",
    "signature": "upload_signature",
    "documents": "choose_documents",
}


class _Api:
    def __init__(self, onboarding: Onboarding) -> None:
        self.onboarding = onboarding

    async def call(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await run_in_threadpool(func, *args, **kwargs)

    async def checked(self, request: Request, step: str) -> str:
        """The request's link token, once the link and the turn of ``step``
        (a facade method's name) are known to be good: before the body."""
        token = _token(request)
        await self.call(self.onboarding.check_step, token, step)
        return token

    async def journey(self, request: Request, purpose: str) -> Journey:
        link = await self.call(self.onboarding.open_link, _token(request), purpose)
        assert link.journey is not None
        return link.journey  # type: ignore[no-any-return]

    # -- CREAR CONTRASEÑA ------------------------------------------------------

    async def password(self, request: Request) -> Response:
        link = await self.call(
            self.onboarding.open_link, _token(request), Purpose.CREATE_PASSWORD
        )
        rule = {"min_length": passwords.MIN_LENGTH, "message": _PASSWORD_RULE}
        return _answer(
            {"customer": customer_json(link.customer), "password_rule": rule}
        )

    async def set_password(self, request: Request) -> Response:
        token = await self.checked(request, "set_password")
        data = await _body(request)
        customer = await self.call(
            self.onboarding.set_password,
            token,
            _required_text(data, "password", "Ingresa la contraseña."),
            _required_text(data, "confirmation", "Repite la contraseña."),
        )
        return _answer({"customer": customer_json(customer)})

    async def forgot_password(self, request: Request) -> Response:
        data = await _body(request)
        client = request.client.host if request.client else None
        await self.call(
            self.onboarding.request_password_email,
            _text(data, "email").strip(),
            client=client,
        )
        message = (
            "Si el correo está registrado en una compra, te enviamos el correo "
            "«[Haulmer Accounts] Crea tu nueva contraseña»."
        )
        return _answer({"message": message}, 202)

    async def renew_link(self, request: Request) -> Response:
        token = await self.checked(request, "renew_link")
        data = await _body(request)
        renewed = await self.call(
            self.onboarding.renew_link, token, _text(data, "purpose")
        )
        return _answer({"recipient_hint": renewed.recipient_hint}, 202)

    # -- CREAR WORKSPACE -----------------------------------------------------

    async def workspace(self, request: Request) -> Response:
        journey = await self.journey(request, Purpose.CREATE_WORKSPACE)
        return _answer(_journey_answer(journey, WIZARD_STEP))

    async def workspace_action(self, request: Request, action: str) -> Response:
        token = await self.checked(request, _WORKSPACE_STEPS[action])
        data = await _body(request)
        facade = self.onboarding
        calls: dict[str, Callable[[], Journey]] = {
            "activate": lambda: facade.activate_workspace(token),
            "administrator": lambda: facade.create_workspace_administrator(
                token, _text(data, "email"), _text(data, "name")
            ),
            "name": lambda: facade.name_workspace(token, _text(data, "workspace_name")),
            "organization": lambda: facade.finish_workspace(
                token, _text(data, "legal_name"), _text(data, "rut")
            ),
        }
        journey = await self.call(calls[action])
        return _answer(_journey_answer(journey, WIZARD_STEP))

    # -- INICIAR SETUP ---------------------------------------------------------

    async def setup(self, request: Request) -> Response:
        journey = await self.journey(request, Purpose.START_SETUP)
        offer = None
        if journey.stage in SETUP_STEP:
            offer = offer_json(await self.call(self.onboarding.document_offer, journey))
        return _answer(_journey_answer(journey, SETUP_STEP, offer=offer))

    async def setup_action(self, request: Request, action: str) -> Response:
        token = await self.checked(request, _SETUP_STEPS[action])
        data = await _body(request)
        facade = self.onboarding
        if action == "start":
            journey = await self.call(facade.begin_setup, token)
        elif action == "organization":
            journey = await self.call(self._organization, token, data)
        elif action == "signature":
            journey = await self.call(
                facade.upload_signature,
                token,
                _signature_file(data),
                _text(data, "signature_password"),
                _text(data, "legal_representative_rut"),
            )
        else:
            journey = await self.call(facade.choose_documents, token, _documents(data))
        return _answer(_journey_answer(journey, SETUP_STEP))

    def _organization(self, token: str, data: Mapping[str, Any]) -> Journey:
        """``organization_id``, or ``legal_name`` and ``rut``: never both (a
        field sent as ``null`` is one left out)."""
        chosen = data.get("organization_id")
        if chosen is None:
            return self.onboarding.choose_organization(
                token, legal_name=_text(data, "legal_name"), rut=_text(data, "rut")
            )
        if any(data.get(name) is not None for name in ("legal_name", "rut")):
            raise ValidationError(
                "Envía organization_id para elegir una organización de tu "
                "espacio de trabajo, o legal_name y rut para crear una nueva, "
                "pero no ambos.",
                code="json_fields_exclusive",
                field="organization_id",
            )
        if not isinstance(chosen, int) or isinstance(chosen, bool):
            raise ValidationError(
                "El campo organization_id debe ser un número entero: el id de "
                "una organización de tu espacio de trabajo.",
                code="json_field_type",
                field="organization_id",
            )
        try:
            return self.onboarding.choose_organization(token, organization_id=chosen)
        except ValidationError as error:
            # The page's field is "organization"; the API's is this one.
            if error.field == "organization":
                error.field = "organization_id"
            raise

    # -- the purchase's tax document, and the certification --------------------

    async def tax_document(self, request: Request) -> Response:
        journey = await self.journey(request, Purpose.TAX_DOCUMENT)
        return _answer({"journey": journey_json(journey)})

    async def request_tax_document(self, request: Request) -> Response:
        token = await self.checked(request, "request_tax_document")
        data = await _body(request)
        journey = await self.call(
            self.onboarding.request_tax_document,
            token,
            kind=_text(data, "kind"),
            legal_name=_text(data, "legal_name"),
            rut=_text(data, "rut"),
            business_activity=_text(data, "business_activity"),
            address=_text(data, "address"),
        )
        return _answer({"journey": journey_json(journey)})

    async def certification(self, request: Request) -> Response:
        journey = await self.call(self.onboarding.certification_view, _token(request))
        return _answer({"journey": journey_json(journey)})

    async def openapi(self, request: Request) -> Response:
        # Below the API's Mount, root_path is the prefix plus /api/v1.
        return JSONResponse(openapi_document(request.scope["root_path"]))


def _signature_file(data: Mapping[str, Any]) -> bytes:
    encoded = _text(data, "signature")
    if not encoded:
        raise SignatureError(
            "Selecciona el archivo de tu firma electrónica (.pfx o .p12).",
            code="signature_missing",
            field="signature",
        )
    # The base64 tool writes 76-column lines, and some encoders drop the
    # padding: both are the same bytes. Any other character is refused.
    compact = "".join(encoded.split())
    compact += "=" * (-len(compact) % 4 if len(compact) % 4 != 1 else 0)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(
            "El campo signature debe traer el archivo en base64.",
            code="signature_not_base64",
            field="signature",
        ) from None


def _documents(data: Mapping[str, Any]) -> list[int | str]:
    codes = data.get("documents", [])
    if not isinstance(codes, list) or not all(
        isinstance(c, int | str) and not isinstance(c, bool) for c in codes
    ):
        raise ValidationError(
            "El campo documents debe ser una lista de códigos de DTE.",
            code="json_field_type",
            field="documents",
        )
    return codes


def _guarded(handler: Handler, too_large: OnboardingError) -> Handler:
    """Answers the SDK's errors as JSON, with the page's status, and a body
    over the limit with 413 and ``too_large``."""

    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except OnboardingError as error:
            return error_json(error)
        except TooLarge:
            return error_json(too_large, 413)

    return guarded


def api_routes(onboarding: Onboarding) -> list[Route]:
    """The API's routes, relative to where it is mounted (``/api/v1``)."""
    api = _Api(onboarding)
    file_limit = onboarding.settings.signature_max_bytes
    # The signature's step is told the file's own limit; the others, which
    # take a few text fields, the request's.
    request_too_large = request_too_large_error(api_body_limit(file_limit))

    def route(path: str, **by_method: Handler) -> Route:
        """One route per path, so that a 405 names every method it takes."""
        too_large = request_too_large
        if path == "/setup/signature":
            too_large = too_large_error(file_limit)
        handlers = {m.upper(): _guarded(h, too_large) for m, h in by_method.items()}
        if "GET" in handlers:
            handlers["HEAD"] = handlers["GET"]

        async def endpoint(request: Request) -> Response:
            return await handlers[request.method](request)

        return Route(path, endpoint, methods=list(handlers))

    def step(
        handler: Callable[[Request, str], Awaitable[Response]], action: str
    ) -> Handler:
        async def bound(request: Request) -> Response:
            return await handler(request, action)

        return bound

    return [
        Route("/openapi.json", api.openapi, methods=["GET", "HEAD"], name="openapi"),
        route("/password", get=api.password, post=api.set_password),
        route("/password-requests", post=api.forgot_password),
        route("/link-renewals", post=api.renew_link),
        route("/workspace", get=api.workspace),
        *(
            route(f"/workspace/{action}", post=step(api.workspace_action, action))
            for action in ("activate", "administrator", "name", "organization")
        ),
        route("/setup", get=api.setup),
        *(
            route(f"/setup/{action}", post=step(api.setup_action, action))
            for action in ("start", "organization", "signature", "documents")
        ),
        route("/tax-document", get=api.tax_document, post=api.request_tax_document),
        route("/certification", get=api.certification),
    ]
