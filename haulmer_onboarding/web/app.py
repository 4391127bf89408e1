"""The link handlers: the pages behind each email's button, as an ASGI app.

A ``GET`` reads the link and shows the page for where the journey stands; it
never consumes a link, so mail scanners and previews change nothing. A
``POST`` turns the form into one call on the facade and redirects back to
the page (post/redirect/get), or shows the form again with the error beside
its field. The app works under any path prefix it is mounted at.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from haulmer_onboarding.dte import DteType
from haulmer_onboarding.errors import (
    LinkError,
    LinkExpired,
    LinkInvalid,
    LinkSuperseded,
    LinkUsed,
    LinkWrongPurpose,
    OnboardingError,
    RateLimited,
    SignatureError,
    StepOrderError,
    ValidationError,
)
from haulmer_onboarding.journey import RENEWABLE, Onboarding
from haulmer_onboarding.models import Journey, Purchase, Stage
from haulmer_onboarding.tokens import Purpose
from haulmer_onboarding.web.intake import intake_routes

__all__ = ["create_app"]

_LINK_STATUS: dict[type[LinkError], int] = {
    LinkInvalid: 404,
    LinkWrongPurpose: 404,
    LinkExpired: 410,
    LinkUsed: 410,
    LinkSuperseded: 410,
}
_LINK_TITLES: dict[type[LinkError], str] = {
    LinkInvalid: "Enlace no válido",
    LinkWrongPurpose: "Enlace no válido",
    LinkExpired: "Enlace expirado",
    LinkUsed: "Enlace ya usado",
    LinkSuperseded: "Enlace reemplazado",
}
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
}

#: The page that says a link's step is complete, by purpose.
_DONE_PAGES = {
    Purpose.CREATE_PASSWORD: "password_done",
    Purpose.CREATE_WORKSPACE: "workspace_done",
    Purpose.START_SETUP: "setup_done",
    Purpose.TAX_DOCUMENT: "tax_document_done",
}

_WIZARD_STEP = {
    Stage.WORKSPACE_PENDING: 0,
    Stage.WORKSPACE_ACTIVATED: 1,
    Stage.WORKSPACE_ADMIN_CREATED: 2,
    Stage.WORKSPACE_NAMED: 3,
}
_SETUP_STEP = {
    Stage.SETUP_PENDING: 0,
    Stage.SETUP_STARTED: 1,
    Stage.SETUP_ORGANIZATION_CHOSEN: 2,
    Stage.SETUP_SIGNATURE_LOADED: 3,
}

Mailbox = Callable[[], Sequence[Any]]
#: Sample purchases the development mailbox can record: key -> (label, make)
Scenarios = Mapping[str, tuple[str, Callable[[str], Purchase]]]


async def _form(request: Request, max_part_size: int = 64 * 1024) -> FormData:
    """The request's form, or a ``ValidationError`` in Spanish."""
    try:
        return await request.form(max_part_size=max_part_size)
    except (MultiPartException, HTTPException) as exc:
        raise ValidationError(
            "No pudimos leer el formulario enviado. Vuelve a intentarlo desde "
            "la página.",
            code="form_unreadable",
        ) from exc


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _requested_step(request: Request, reached: int) -> int:
    """The step a page shows: where the journey is, or an earlier one."""
    asked = request.query_params.get("paso", "")
    if asked in {"1", "2", "3"} and int(asked) < reached:
        return int(asked)
    return reached


class _Pages:
    def __init__(
        self, onboarding: Onboarding, mailbox: Mailbox | None, scenarios: Scenarios
    ) -> None:
        self.onboarding = onboarding
        self.mailbox = mailbox
        self.scenarios = scenarios

    def render(
        self, name: str, context: Mapping[str, Any], status: int = 200
    ) -> HTMLResponse:
        defaults = {"error": None, "show_forgot": False}
        html = self.onboarding.renderer.page(name, {**defaults, **context})
        return HTMLResponse(html, status_code=status, headers=_HEADERS)

    async def link_error(
        self, request: Request, error: LinkError, purpose: str
    ) -> HTMLResponse:
        """The page for a link that cannot be used; an expired one offers a
        new link (by POST: a GET never sends email)."""
        kind = type(error)
        if isinstance(error, LinkExpired):
            try:
                expired = await self.call(
                    self.onboarding.expired_link,
                    request.path_params["token"],
                    purpose,
                )
            except LinkError as other:
                error, kind = other, type(other)
            else:
                return self.render(
                    "link_expired",
                    {
                        "error": error,
                        "expired": expired,
                        "renewable": purpose in RENEWABLE,
                        "action": request.url_for("renew_link").path,
                        "token": request.path_params["token"],
                    },
                    410,
                )
        if kind is LinkUsed and purpose in _DONE_PAGES:
            try:
                done = await self.call(
                    self.onboarding.completed_link,
                    request.path_params["token"],
                    purpose,
                )
            except LinkError:
                pass
            else:
                context = {
                    "customer": done.customer,
                    "journey": done.journey,
                    "already_used": True,
                }
                return self.render(_DONE_PAGES[purpose], context, 410)
        return self.render(
            "error",
            {
                "title": _LINK_TITLES.get(kind, "Enlace no válido"),
                "error": error,
                "show_forgot": purpose == Purpose.CREATE_PASSWORD,
                "forgot_url": request.url_for("forgot_password").path,
            },
            _LINK_STATUS.get(kind, 404),
        )

    async def renew_link(self, request: Request) -> Response:
        form = await _form(request)
        token, purpose = _text(form, "token"), _text(form, "purpose")
        try:
            renewed = await self.call(self.onboarding.renew_link, token, purpose)
        except LinkError as exc:
            return self.render(
                "error",
                {
                    "title": _LINK_TITLES.get(type(exc), "Enlace no válido"),
                    "error": exc,
                    "show_forgot": False,
                },
                _LINK_STATUS.get(type(exc), 404),
            )
        return self.render("link_renewed", {"renewed": renewed})

    def too_large(self, max_bytes: int) -> Response:
        error = SignatureError(
            f"El archivo es demasiado grande: el máximo es "
            f"{max_bytes // 1024} KB. Una firma electrónica (.pfx o .p12) pesa "
            "unos pocos KB; revisa que hayas elegido el archivo correcto.",
            code="request_too_large",
            field="signature",
        )
        return self.render(
            "error", {"title": "Archivo demasiado grande", "error": error}, 413
        )

    def order_error(self, error: StepOrderError) -> HTMLResponse:
        return self.render(
            "error",
            {"title": "Todavía no", "error": error, "show_forgot": False},
            409,
        )

    async def call(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await run_in_threadpool(func, *args, **kwargs)

    # -- CREAR CONTRASEÑA ----------------------------------------------------

    async def password(self, request: Request) -> Response:
        token = request.path_params["token"]
        try:
            link = await self.call(
                self.onboarding.open_link, token, Purpose.CREATE_PASSWORD
            )
        except LinkError as exc:
            return await self.link_error(request, exc, Purpose.CREATE_PASSWORD)

        context = {"customer": link.customer, "action": request.url.path}
        if request.method != "POST":
            return self.render("password", context)

        form = await _form(request)
        try:
            customer = await self.call(
                self.onboarding.set_password,
                token,
                _text(form, "password"),
                _text(form, "confirmation"),
            )
        except LinkError as exc:
            return await self.link_error(request, exc, Purpose.CREATE_PASSWORD)
        except OnboardingError as exc:
            return self.render("password", {**context, "error": exc}, 400)
        return self.render("password_done", {"customer": customer})

    async def forgot_password(self, request: Request) -> Response:
        context: dict[str, Any] = {"action": request.url.path, "sent": False}
        if request.method == "POST":
            form = await _form(request)
            email = _text(form, "email").strip()
            client = request.client.host if request.client else None
            try:
                await self.call(
                    self.onboarding.request_password_email, email, client=client
                )
            except RateLimited as exc:
                response = self.render("forgot", {**context, "error": exc}, 429)
                response.headers["Retry-After"] = str(exc.retry_after)
                return response
            except ValidationError as exc:
                return self.render("forgot", {**context, "error": exc}, 400)
            context.update(sent=True, email=email)
        return self.render("forgot", context)

    # -- CREAR WORKSPACE ---------------------------------------------------

    async def workspace(self, request: Request) -> Response:
        token = request.path_params["token"]
        try:
            link = await self.call(
                self.onboarding.open_link, token, Purpose.CREATE_WORKSPACE
            )
        except LinkError as exc:
            return await self.link_error(request, exc, Purpose.CREATE_WORKSPACE)
        assert link.journey is not None
        return self._workspace_page(request, link.journey)

    def _workspace_page(
        self,
        request: Request,
        journey: Journey,
        *,
        error: OnboardingError | None = None,
        values: Mapping[str, str] | None = None,
        step: int | None = None,
        status: int = 200,
    ) -> HTMLResponse:
        if journey.stage not in _WIZARD_STEP:
            return self.render("workspace_done", {"journey": journey})
        reached = _WIZARD_STEP[journey.stage]
        workspace = journey.workspace
        defaults = {
            "name": journey.buyer.name,
            "email": (workspace and workspace.administrator_email)
            or journey.buyer.email,
            "workspace_name": (workspace and workspace.name) or "",
            "legal_name": "",
            "rut": "",
        }
        token = request.path_params["token"]
        return self.render(
            "workspace",
            {
                "journey": journey,
                "step": step if step is not None else _requested_step(request, reached),
                "action": str(request.url_for("workspace", token=token).path),
                "error": error,
                "values": {**defaults, **(values or {})},
            },
            status,
        )

    async def workspace_action(self, request: Request) -> Response:
        token = request.path_params["token"]
        action = request.path_params["action"]
        form = await _form(request)
        values = {k: _text(form, k) for k in form}
        facade = self.onboarding
        steps: dict[str, tuple[int, Callable[[], Journey]]] = {
            "activar": (0, lambda: facade.activate_workspace(token)),
            "administrador": (
                1,
                lambda: facade.create_workspace_administrator(
                    token, values.get("email", ""), values.get("name", "")
                ),
            ),
            "nombre": (
                2,
                lambda: facade.name_workspace(token, values.get("workspace_name", "")),
            ),
            "organizacion": (
                3,
                lambda: facade.finish_workspace(
                    token, values.get("legal_name", ""), values.get("rut", "")
                ),
            ),
        }
        if action not in steps:
            return Response(status_code=404)
        step, call = steps[action]
        try:
            journey = await self.call(call)
        except LinkError as exc:
            return await self.link_error(request, exc, Purpose.CREATE_WORKSPACE)
        except StepOrderError as exc:
            return self.order_error(exc)
        except OnboardingError as exc:
            try:
                link = await self.call(
                    facade.open_link, token, Purpose.CREATE_WORKSPACE
                )
            except LinkError as dead:
                return await self.link_error(request, dead, Purpose.CREATE_WORKSPACE)
            assert link.journey is not None
            return self._workspace_page(
                request, link.journey, error=exc, values=values, step=step, status=400
            )
        if journey.stage is Stage.SETUP_PENDING:
            return self.render("workspace_done", {"journey": journey})
        return RedirectResponse(request.url_for("workspace", token=token).path, 303)

    # -- INICIAR SETUP -----------------------------------------------------

    async def setup(self, request: Request) -> Response:
        token = request.path_params["token"]
        try:
            link = await self.call(
                self.onboarding.open_link, token, Purpose.START_SETUP
            )
        except LinkError as exc:
            return await self.link_error(request, exc, Purpose.START_SETUP)
        assert link.journey is not None
        return await self._setup_page(request, link.journey)

    async def _setup_page(
        self,
        request: Request,
        journey: Journey,
        *,
        error: OnboardingError | None = None,
        values: Mapping[str, str] | None = None,
        step: int | None = None,
        status: int = 200,
    ) -> HTMLResponse:
        if journey.stage not in _SETUP_STEP:
            return self.render("setup_done", {"journey": journey})
        reached = _SETUP_STEP[journey.stage]
        offer = await self.call(self.onboarding.document_offer, journey)
        token = request.path_params["token"]
        return self.render(
            "setup",
            {
                "journey": journey,
                "step": step if step is not None else _requested_step(request, reached),
                "action": str(request.url_for("setup", token=token).path),
                "error": error,
                "values": {"legal_name": "", "rut": "", **(values or {})},
                "offer": offer,
                "titles": {code.value: code.title for code in DteType},
            },
            status,
        )

    async def setup_action(self, request: Request) -> Response:
        token = request.path_params["token"]
        action = request.path_params["action"]
        facade = self.onboarding
        # The link is checked before the form is read: an upload behind a
        # dead link is never parsed.
        try:
            await self.call(facade.open_link, token, Purpose.START_SETUP)
        except LinkError as exc:
            return await self.link_error(request, exc, Purpose.START_SETUP)
        form = await _form(request)
        values = {k: _text(form, k) for k in form if k != "signature_password"}
        step = {"comenzar": 0, "organizacion": 1, "firma": 2, "documentos": 3}.get(
            action
        )
        if step is None:
            return Response(status_code=404)
        try:
            journey = await self._setup_call(token, action, form)
        except LinkError as exc:
            return await self.link_error(request, exc, Purpose.START_SETUP)
        except StepOrderError as exc:
            return self.order_error(exc)
        except OnboardingError as exc:
            try:
                link = await self.call(facade.open_link, token, Purpose.START_SETUP)
            except LinkError as dead:
                return await self.link_error(request, dead, Purpose.START_SETUP)
            assert link.journey is not None
            return await self._setup_page(
                request, link.journey, error=exc, values=values, step=step, status=400
            )
        if journey.stage not in _SETUP_STEP:
            return self.render("setup_done", {"journey": journey})
        return RedirectResponse(request.url_for("setup", token=token).path, 303)

    async def _setup_call(self, token: str, action: str, form: FormData) -> Journey:
        facade = self.onboarding
        if action == "comenzar":
            return await self.call(facade.begin_setup, token)  # type: ignore[no-any-return]
        if action == "organizacion":
            chosen = _text(form, "organization")
            if chosen.isascii() and chosen.isdigit() and len(chosen) < 19:
                return await self.call(  # type: ignore[no-any-return]
                    facade.choose_organization, token, organization_id=int(chosen)
                )
            return await self.call(  # type: ignore[no-any-return]
                facade.choose_organization,
                token,
                legal_name=_text(form, "legal_name"),
                rut=_text(form, "rut"),
            )
        if action == "firma":
            upload = form.get("signature")
            if not isinstance(upload, UploadFile):
                raise SignatureError(
                    "Selecciona el archivo de tu firma electrónica (.pfx o .p12).",
                    code="signature_missing",
                    field="signature",
                )
            data = await upload.read()
            return await self.call(  # type: ignore[no-any-return]
                facade.upload_signature, token, data, _text(form, "signature_password")
            )
        codes = [c for c in form.getlist("documents") if isinstance(c, str)]
        return await self.call(facade.choose_documents, token, codes)  # type: ignore[no-any-return]

    # -- the purchase's tax document ---------------------------------------

    async def tax_document(self, request: Request) -> Response:
        token = request.path_params["token"]
        try:
            link = await self.call(
                self.onboarding.open_link, token, Purpose.TAX_DOCUMENT
            )
        except LinkError as exc:
            return await self.link_error(request, exc, Purpose.TAX_DOCUMENT)
        context: dict[str, Any] = {
            "journey": link.journey,
            "action": request.url.path,
            "values": {
                "kind": "boleta",
                "legal_name": "",
                "rut": "",
                "business_activity": "",
                "address": "",
            },
        }
        if request.method != "POST":
            return self.render("tax_document", context)

        form = await _form(request)
        values = {k: _text(form, k) for k in form}
        try:
            journey = await self.call(
                self.onboarding.request_tax_document,
                token,
                kind=values.get("kind", ""),
                legal_name=values.get("legal_name", ""),
                rut=values.get("rut", ""),
                business_activity=values.get("business_activity", ""),
                address=values.get("address", ""),
            )
        except LinkError as exc:
            return await self.link_error(request, exc, Purpose.TAX_DOCUMENT)
        except OnboardingError as exc:
            context["values"].update(values)
            return self.render("tax_document", {**context, "error": exc}, 400)
        return self.render("tax_document_done", {"journey": journey})

    # -- certification status ----------------------------------------------

    async def certification(self, request: Request) -> Response:
        token = request.path_params["token"]
        try:
            journey = await self.call(self.onboarding.certification_view, token)
        except LinkError as exc:
            return await self.link_error(request, exc, Purpose.CERTIFICATION_STATUS)
        return self.render("certification", {"journey": journey})

    # -- development mailbox -----------------------------------------------

    async def dev_mailbox(self, request: Request) -> Response:
        assert self.mailbox is not None
        messages = [
            {
                "number": number,
                "to": message.to,
                "subject": message.subject,
                "links": re.findall(r"https?://\S+", message.text()),
            }
            for number, message in enumerate(self.mailbox(), start=1)
        ]
        return self.render(
            "dev_mailbox",
            {
                "messages": messages,
                "scenarios": [(key, s[0]) for key, s in self.scenarios.items()],
                "purchase_action": request.url_for("dev_purchase").path,
            },
        )

    async def dev_purchase(self, request: Request) -> Response:
        form = await _form(request)
        scenario = self.scenarios.get(_text(form, "scenario"))
        if scenario is None:
            return Response("escenario desconocido", status_code=400)
        purchase = scenario[1](_text(form, "email"))
        try:
            await self.call(self.onboarding.record_purchase, purchase)
        except OnboardingError as exc:
            return Response(exc.message, status_code=400)
        return RedirectResponse(request.url_for("dev_mailbox").path, 303)


class _TooLarge(Exception):
    """Raised by ``BodyLimit`` while a handler reads a body past the limit;
    the app answers it with the 413 page."""


class BodyLimit:
    """Refuses request bodies over ``max_bytes`` with a 413 page.

    A declared ``Content-Length`` is refused before anything is read; a body
    without one is counted as it streams, so an upload can never fill the
    server's memory or disk beyond the limit.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        too_large: Callable[[int], Response],
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.too_large = too_large

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self.too_large(self.max_bytes)(scope, receive, send)
            return

        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _TooLarge:
            if not started:
                await self.too_large(self.max_bytes)(scope, receive, send)


def _route(
    path: str,
    endpoint: Callable[[Request], Awaitable[Response]],
    name: str,
    methods: Sequence[str] = ("GET", "HEAD"),
) -> Route:
    return Route(path, endpoint, name=name, methods=list(methods))


def create_app(
    onboarding: Onboarding,
    *,
    mailbox: Mailbox | None = None,
    scenarios: Scenarios | None = None,
) -> Starlette:
    """The link handlers of ``onboarding`` as a Starlette app.

    ``mailbox`` and ``scenarios`` (development only) list the caught emails
    on ``/_dev/correos`` and let a person record sample purchases there; they
    are ignored unless ``settings.development`` is set.
    """
    pages = _Pages(onboarding, mailbox, scenarios or {})
    both = ("GET", "HEAD", "POST")
    routes = [
        _route("/contrasena/{token}", pages.password, "password", both),
        _route("/olvide-mi-contrasena", pages.forgot_password, "forgot_password", both),
        _route("/enlace-nuevo", pages.renew_link, "renew_link", ("POST",)),
        _route("/workspace/{token}", pages.workspace, "workspace"),
        _route(
            "/workspace/{token}/{action}",
            pages.workspace_action,
            "workspace_action",
            ("POST",),
        ),
        _route("/setup/{token}", pages.setup, "setup"),
        _route(
            "/setup/{token}/{action}", pages.setup_action, "setup_action", ("POST",)
        ),
        _route(
            "/documento-tributario/{token}", pages.tax_document, "tax_document", both
        ),
        _route("/certificacion/{token}", pages.certification, "certification"),
        *intake_routes(onboarding),
    ]
    if onboarding.settings.development and mailbox is not None:
        routes += [
            _route("/_dev/correos", pages.dev_mailbox, "dev_mailbox"),
            _route("/_dev/compras", pages.dev_purchase, "dev_purchase", ("POST",)),
        ]

    async def unhandled(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, OnboardingError)
        return pages.render(
            "error", {"title": "No pudimos continuar", "error": exc}, 400
        )

    async def too_large(request: Request, exc: Exception) -> Response:
        return pages.too_large(limit)

    # Forms are small; the largest body is a signature file and its form.
    limit = onboarding.settings.signature_max_bytes + 64 * 1024
    app = Starlette(
        routes=routes,
        exception_handlers={OnboardingError: unhandled, _TooLarge: too_large},
    )
    return BodyLimit(app, limit, pages.too_large)  # type: ignore[return-value]
