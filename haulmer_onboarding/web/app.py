"""The link handlers: the pages behind each email's button, as an ASGI app.

A ``GET`` reads the link and shows the page for where the journey stands; it
never consumes a link, so mail scanners and previews change nothing. A
``POST`` must carry the CSRF token of its page (``csrf.py``); it turns the
form into one call on the facade and redirects back to the page
(post/redirect/get), or shows the form again with the error beside its
field. The JSON API (``api.py``) is mounted at ``/api/v1`` and the pages'
stylesheet and script at ``/static``. The app works under any path prefix
it is mounted at (docs/web.md).
"""

from __future__ import annotations

import asyncio
import contextvars
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

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
from haulmer_onboarding.passwords import MIN_LENGTH
from haulmer_onboarding.rut import dotted
from haulmer_onboarding.signatures import format_size
from haulmer_onboarding.snapshots import LinkSnapshot
from haulmer_onboarding.tokens import Purpose
from haulmer_onboarding.web._common import (
    LINK_STATUS,
    SETUP_STEP,
    WIZARD_STEP,
    error_status,
)
from haulmer_onboarding.web.api import api_routes, error_json
from haulmer_onboarding.web.csrf import (
    CsrfGuard,
    CsrfRefused,
    link_binding,
    set_browser_cookie,
)
from haulmer_onboarding.web.intake import intake_routes
from haulmer_onboarding.web.limits import (
    BodyLimit,
    TooLarge,
    route_path,
    too_large_error,
)
from haulmer_onboarding.web.pagecache import PageCache

__all__ = ["create_app"]

_STATIC = Path(__file__).parent / "static"
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
    # Styles and the password check are files served by the app itself:
    # nothing inline, nothing from another host.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
}

#: How many link pages a process keeps (a few kB each; pagecache.py).
KEPT_PAGES = 1024
#: How many threads read link pages at most: about as many reads as the
#: PostgreSQL pool has connections (5, and 10 more under load); on SQLite
#: each of these threads keeps a connection.
READERS = 16
_T = TypeVar("_T")
#: The ``?paso=`` values a wizard page may be asked for.
_STEPS = frozenset({"1", "2", "3"})
#: Where a page about to be kept has its form token: a kept page is served
#: with a token signed for each request in its place. Letters, digits and
#: hyphens, which HTML escaping leaves as they are.
_CSRF_SLOT = "csrf-slot-" + secrets.token_hex(16)
#: The headers every page carries, in the form a response keeps them.
_PLAIN_HEADERS = frozenset(
    {b"content-length", b"content-type", *(k.lower().encode() for k in _HEADERS)}
)

#: The page that says a link's step is complete, by purpose.
_DONE_PAGES = {
    Purpose.CREATE_PASSWORD: "password_done",
    Purpose.CREATE_WORKSPACE: "workspace_done",
    Purpose.START_SETUP: "setup_done",
    Purpose.TAX_DOCUMENT: "tax_document_done",
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
        self.csrf = CsrfGuard(onboarding.settings.secret_keys)
        # In development templates are read again when they change on disk,
        # which a kept page would hide.
        development = onboarding.settings.development
        self.kept = PageCache(0 if development else KEPT_PAGES)
        self.readers = ThreadPoolExecutor(READERS, thread_name_prefix="link-pages")
        # Every RUT a page shows is dotted, as customers write it.
        onboarding.renderer.environment.filters["rut"] = dotted

    def render(
        self,
        request: Request,
        name: str,
        context: Mapping[str, Any],
        status: int = 200,
    ) -> HTMLResponse:
        """The page ``name``; a form behind a link gets its CSRF token."""
        token = request.path_params.get("token")
        defaults = {
            "error": None,
            "show_forgot": False,
            "back_url": None,
            "static": (request.scope.get("root_path") or "") + "/static",
            "csrf_token": (
                getattr(request.state, "csrf_slot", None)
                or (self.csrf.token(link_binding(token)) if token else "")
            ),
        }
        html = self.onboarding.renderer.page(name, {**defaults, **context})
        return HTMLResponse(html, status_code=status, headers=_HEADERS)

    def check_csrf(
        self, request: Request, form: FormData, token: str | None = None
    ) -> None:
        """Raise ``CsrfRefused`` unless ``form`` came from our page: the page
        of the link ``token``, or a linkless page in this browser."""
        if token is None:
            self.csrf.check_browser(request, form)
        else:
            self.csrf.check(request, form, link_binding(token), max_age=None)

    def browser_form(
        self, request: Request, name: str, context: Mapping[str, Any], status: int
    ) -> HTMLResponse:
        """A linkless page with a form, bound to the browser's cookie."""
        csrf_token, new_cookie = self.csrf.browser_token(request)
        response = self.render(
            request, name, {**context, "csrf_token": csrf_token}, status
        )
        if new_cookie is not None:
            set_browser_cookie(request, response, new_cookie)
        return response

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
                    request,
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
                return self.render(request, _DONE_PAGES[purpose], context, 410)
        return self.render(
            request,
            "error",
            {
                "title": _LINK_TITLES.get(kind, "Enlace no válido"),
                "error": error,
                "show_forgot": purpose == Purpose.CREATE_PASSWORD,
                "forgot_url": request.url_for("forgot_password").path,
            },
            LINK_STATUS.get(kind, 404),
        )

    async def renew_link(self, request: Request) -> Response:
        form = await _form(request)
        token, purpose = _text(form, "token"), _text(form, "purpose")
        self.check_csrf(request, form, token)
        try:
            renewed = await self.call(self.onboarding.renew_link, token, purpose)
        except LinkError as exc:
            return self.render(
                request,
                "error",
                {
                    "title": _LINK_TITLES.get(type(exc), "Enlace no válido"),
                    "error": exc,
                    "show_forgot": False,
                },
                LINK_STATUS.get(type(exc), 404),
            )
        return self.render(request, "link_renewed", {"renewed": renewed})

    def too_large(self, scope: Scope) -> Response:
        """The 413 answer, where no page can be shown around it."""
        error = too_large_error(self.onboarding.settings.signature_max_bytes)
        request = Request(scope)
        if route_path(scope).startswith("/api/"):
            return error_json(error, 413)
        return self.render(
            request, "error", {"title": "Archivo demasiado grande", "error": error}, 413
        )

    async def too_large_page(self, request: Request) -> Response:
        """The 413 answer; for the signature step, its page with the error
        beside the file's box."""
        token = request.path_params.get("token")
        if request.path_params.get("action") != "firma" or token is None:
            return self.too_large(request.scope)
        try:
            link = await self.call(
                self.onboarding.open_link, token, Purpose.START_SETUP
            )
        except LinkError as exc:
            return await self.link_error(request, exc, Purpose.START_SETUP)
        assert link.journey is not None
        error = too_large_error(self.onboarding.settings.signature_max_bytes)
        return await self._setup_page(
            request, link.journey, error=error, step=2, status=413
        )

    def order_error(self, request: Request, error: StepOrderError) -> HTMLResponse:
        return self.render(
            request,
            "error",
            {"title": "Todavía no", "error": error, "show_forgot": False},
            409,
        )

    async def call(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await run_in_threadpool(func, *args, **kwargs)

    async def link_page(
        self,
        request: Request,
        purpose: str,
        draw: Callable[[Request, LinkSnapshot], HTMLResponse],
    ) -> Response:
        """A link's page for a GET: the link and what it acts on read now,
        in one statement; the page kept for exactly that state, or drawn by
        ``draw`` (from the snapshot and the request's path and ``?paso=``
        only) and kept. A dead link gets its error page, never kept.

        A kept page holds no form token: each answer gets one signed for
        it, as a page drawn for it would. A request with any other query
        than ``?paso=`` is drawn for itself and not kept.
        """
        token = request.path_params["token"]
        asked = request.query_params.get("paso", "")
        keep = request.query_params.keys() <= {"paso"}
        key = (
            purpose,
            request.scope.get("root_path") or "",
            request.scope["path"],
            asked if asked in _STEPS else "",
        )

        def page() -> HTMLResponse:
            # One trip to a reader thread: the hop costs more than the page.
            snapshot = self.onboarding.link_snapshot(token, purpose)
            if not keep:
                return draw(request, snapshot)
            csrf_token = self.csrf.token(link_binding(token)).encode()
            pieces = self.kept.get(key, snapshot.state)
            if pieces is not None:
                return HTMLResponse(csrf_token.join(pieces), headers=_HEADERS)
            request.state.csrf_slot = _CSRF_SLOT
            try:
                response = draw(request, snapshot)
            finally:
                del request.state.csrf_slot
            pieces = tuple(bytes(response.body).split(_CSRF_SLOT.encode()))
            if response.status_code == 200 and _plain(response):
                self.kept.put(key, snapshot.state, pieces)
            return _with_body(response, csrf_token.join(pieces))

        try:
            return await self.read(page)
        except LinkError as exc:
            return await self.link_error(request, exc, purpose)

    async def read(self, func: Callable[[], _T]) -> _T:
        """``func``'s answer, run on one of the link pages' reader threads.

        The read blocks (a disk, a database server), so it never runs on the
        event loop; a plain executor rather than Starlette's threadpool
        (anyio), whose limiter and cancel scope cost about as much as a kept
        page's whole read (docs/benchmarks.md). Context variables go along,
        as with ``run_in_threadpool``.
        """
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        return await loop.run_in_executor(self.readers, context.run, func)

    # -- CREAR CONTRASEÑA ----------------------------------------------------

    async def password(self, request: Request) -> Response:
        if request.method != "POST":
            return await self.link_page(
                request, Purpose.CREATE_PASSWORD, self._password_page
            )
        token = request.path_params["token"]
        try:
            link = await self.call(
                self.onboarding.open_link, token, Purpose.CREATE_PASSWORD
            )
        except LinkError as exc:
            return await self.link_error(request, exc, Purpose.CREATE_PASSWORD)

        context = {
            "customer": link.customer,
            "action": request.url.path,
            "min_length": MIN_LENGTH,
        }
        form = await _form(request)
        self.check_csrf(request, form, token)
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
            return self.render(request, "password", {**context, "error": exc}, 400)
        return self.render(request, "password_done", {"customer": customer})

    def _password_page(self, request: Request, snapshot: LinkSnapshot) -> HTMLResponse:
        context = {
            "customer": snapshot.customer(),
            "action": request.url.path,
            "min_length": MIN_LENGTH,
        }
        return self.render(request, "password", context)

    async def forgot_password(self, request: Request) -> Response:
        context: dict[str, Any] = {
            "action": request.url.path,
            "sent": False,
            "email": "",
        }
        if request.method == "POST":
            form = await _form(request)
            self.check_csrf(request, form)
            email = _text(form, "email").strip()
            client = request.client.host if request.client else None
            try:
                await self.call(
                    self.onboarding.request_password_email, email, client=client
                )
            except RateLimited as exc:
                response = self.browser_form(
                    request, "forgot", {**context, "error": exc}, 429
                )
                response.headers["Retry-After"] = str(exc.retry_after)
                return response
            except ValidationError as exc:
                values = {"email": email}
                return self.browser_form(
                    request, "forgot", {**context, "error": exc, **values}, 400
                )
            context.update(sent=True, email=email)
        return self.browser_form(request, "forgot", context, 200)

    # -- CREAR WORKSPACE ---------------------------------------------------

    async def workspace(self, request: Request) -> Response:
        return await self.link_page(
            request,
            Purpose.CREATE_WORKSPACE,
            lambda request, snapshot: self._workspace_page(request, _journey(snapshot)),
        )

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
        if journey.stage not in WIZARD_STEP:
            return self.render(request, "workspace_done", {"journey": journey})
        reached = WIZARD_STEP[journey.stage]
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
            request,
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
        facade = self.onboarding
        try:
            await self.call(facade.open_link, token, Purpose.CREATE_WORKSPACE)
        except LinkError as exc:
            return await self.link_error(request, exc, Purpose.CREATE_WORKSPACE)
        form = await _form(request)
        self.check_csrf(request, form, token)
        values = {k: _text(form, k) for k in form}
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
            return self.order_error(request, exc)
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
            return self.render(request, "workspace_done", {"journey": journey})
        return RedirectResponse(request.url_for("workspace", token=token).path, 303)

    # -- INICIAR SETUP -----------------------------------------------------

    async def setup(self, request: Request) -> Response:
        return await self.link_page(
            request,
            Purpose.START_SETUP,
            lambda request, snapshot: self._setup_page_now(
                request, _journey(snapshot), snapshot=snapshot
            ),
        )

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
        return await self.call(  # type: ignore[no-any-return]
            self._setup_page_now,
            request,
            journey,
            error=error,
            values=values,
            step=step,
            status=status,
        )

    def _setup_page_now(
        self,
        request: Request,
        journey: Journey,
        *,
        error: OnboardingError | None = None,
        values: Mapping[str, str] | None = None,
        step: int | None = None,
        status: int = 200,
        snapshot: LinkSnapshot | None = None,
    ) -> HTMLResponse:
        """The setup page of ``journey``; blocks (reads the offer, unless
        ``journey`` comes from ``snapshot``)."""
        if journey.stage not in SETUP_STEP:
            return self.render(request, "setup_done", {"journey": journey})
        reached = SETUP_STEP[journey.stage]
        offer = self.onboarding.document_offer(journey, snapshot)
        token = request.path_params["token"]
        return self.render(
            request,
            "setup",
            {
                "signature_max": format_size(
                    self.onboarding.settings.signature_max_bytes
                ),
                "journey": journey,
                "step": step if step is not None else _requested_step(request, reached),
                "action": str(request.url_for("setup", token=token).path),
                "error": error,
                "values": {
                    "legal_name": "",
                    "rut": "",
                    "legal_representative_rut": "",
                    **(values or {}),
                },
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
        self.check_csrf(request, form, token)
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
            return self.order_error(request, exc)
        except OnboardingError as exc:
            try:
                link = await self.call(facade.open_link, token, Purpose.START_SETUP)
            except LinkError as dead:
                return await self.link_error(request, dead, Purpose.START_SETUP)
            assert link.journey is not None
            return await self._setup_page(
                request, link.journey, error=exc, values=values, step=step, status=400
            )
        if journey.stage not in SETUP_STEP:
            return self.render(request, "setup_done", {"journey": journey})
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
                # A step before its turn is told so, file or no file.
                await self.call(facade.check_step, token, "upload_signature")
                raise SignatureError(
                    "Selecciona el archivo de tu firma electrónica (.pfx o .p12).",
                    code="signature_missing",
                    field="signature",
                )
            data = await upload.read()
            return await self.call(  # type: ignore[no-any-return]
                facade.upload_signature,
                token,
                data,
                _text(form, "signature_password"),
                _text(form, "legal_representative_rut"),
            )
        codes = [c for c in form.getlist("documents") if isinstance(c, str)]
        return await self.call(facade.choose_documents, token, codes)  # type: ignore[no-any-return]

    # -- the purchase's tax document ---------------------------------------

    async def tax_document(self, request: Request) -> Response:
        if request.method != "POST":
            return await self.link_page(
                request,
                Purpose.TAX_DOCUMENT,
                lambda request, snapshot: self.render(
                    request,
                    "tax_document",
                    _tax_document_context(request, _journey(snapshot)),
                ),
            )
        token = request.path_params["token"]
        try:
            link = await self.call(
                self.onboarding.open_link, token, Purpose.TAX_DOCUMENT
            )
        except LinkError as exc:
            return await self.link_error(request, exc, Purpose.TAX_DOCUMENT)
        context = _tax_document_context(request, link.journey)
        form = await _form(request)
        self.check_csrf(request, form, token)
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
            return self.render(request, "tax_document", {**context, "error": exc}, 400)
        return self.render(request, "tax_document_done", {"journey": journey})

    # -- certification status ----------------------------------------------

    async def certification(self, request: Request) -> Response:
        return await self.link_page(
            request,
            Purpose.CERTIFICATION_STATUS,
            lambda request, snapshot: self.render(
                request, "certification", {"journey": _journey(snapshot)}
            ),
        )

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
        return self.browser_form(
            request,
            "dev_mailbox",
            {
                "messages": messages,
                "scenarios": [(key, s[0]) for key, s in self.scenarios.items()],
                "purchase_action": request.url_for("dev_purchase").path,
            },
            200,
        )

    async def dev_purchase(self, request: Request) -> Response:
        form = await _form(request)
        self.check_csrf(request, form)
        scenario = self.scenarios.get(_text(form, "scenario"))
        try:
            if scenario is None:
                raise ValidationError(
                    "Elige una de las compras de prueba de la lista.",
                    code="scenario_unknown",
                    field="scenario",
                )
            purchase = scenario[1](_text(form, "email"))
            await self.call(self.onboarding.record_purchase, purchase)
        except OnboardingError as exc:
            # The same page as every other refusal, with the way back.
            context = {
                "title": "No registramos la compra",
                "error": exc,
                "back_url": request.url_for("dev_mailbox").path,
            }
            return self.render(request, "error", context, 400)
        return RedirectResponse(request.url_for("dev_mailbox").path, 303)


def _plain(response: Response) -> bool:
    """Whether ``response`` carries only the pages' own headers (no cookie,
    nothing said to this request alone), so that it may be kept."""
    return all(name in _PLAIN_HEADERS for name, _ in response.raw_headers)


def _with_body(response: HTMLResponse, body: bytes) -> HTMLResponse:
    """``response`` with ``body`` in place of its own, headers kept."""
    response.body = body
    response.raw_headers = [
        (name, value)
        for name, value in response.raw_headers
        if name != b"content-length"
    ] + [(b"content-length", str(len(body)).encode())]
    return response


def _journey(snapshot: LinkSnapshot) -> Journey:
    journey = snapshot.journey()
    assert journey is not None
    return journey


def _tax_document_context(request: Request, journey: Journey | None) -> dict[str, Any]:
    return {
        "journey": journey,
        "action": request.url.path,
        "values": {
            "kind": "boleta",
            "legal_name": "",
            "rut": "",
            "business_activity": "",
            "address": "",
        },
    }


def _back(request: Request) -> str | None:
    """The page a refused form was on, where a fresh form waits."""
    path = request.url.path
    if "action" in request.path_params:
        return path.rsplit("/", 1)[0]
    route = request.scope.get("route")
    return path if "GET" in (getattr(route, "methods", None) or ()) else None


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
        Mount("/api/v1", routes=api_routes(onboarding)),
        Mount("/static", StaticFiles(directory=_STATIC), name="static"),
        *intake_routes(onboarding),
    ]
    if onboarding.settings.development and mailbox is not None:
        routes += [
            _route("/_dev/correos", pages.dev_mailbox, "dev_mailbox"),
            _route("/_dev/compras", pages.dev_purchase, "dev_purchase", ("POST",)),
        ]

    async def unhandled(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, OnboardingError)
        if isinstance(exc, CsrfRefused):
            context = {"title": "No hicimos ningún cambio", "back_url": _back(request)}
        else:
            context = {"title": "No pudimos continuar"}
        return pages.render(
            request, "error", {**context, "error": exc}, error_status(exc)
        )

    async def too_large(request: Request, exc: Exception) -> Response:
        return await pages.too_large_page(request)

    # Forms are small; the largest body is a signature file and its form, or
    # the same file in base64 inside the API's JSON.
    page_limit = onboarding.settings.signature_max_bytes + 64 * 1024
    api_limit = onboarding.settings.signature_max_bytes * 4 // 3 + 64 * 1024

    def limit(scope: Scope) -> int:
        return api_limit if route_path(scope).startswith("/api/") else page_limit

    # The body limit is the app's own middleware, not a wrapper around it: a
    # host that mounts the app finds its routes through it, so the pages'
    # own links (``url_for``) resolve under the host's prefix.
    return Starlette(
        routes=routes,
        middleware=[Middleware(BodyLimit, limit=limit, too_large=pages.too_large)],
        exception_handlers={OnboardingError: unhandled, TooLarge: too_large},
    )
