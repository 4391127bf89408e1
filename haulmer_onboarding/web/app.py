"""The link handlers: the pages behind each email's button, as an ASGI app.

A ``GET`` reads the link and shows the page for where the journey stands; it
never consumes a link, so mail scanners and previews change nothing. A
``POST`` must carry the CSRF token of its page (``csrf.py``); it turns the
form into one call on the facade and always answers ``303`` to a ``GET``
page (post/redirect/get): the next step, the done page, or the same form
with each refusal beside its field, carried there by a signed flash
(``flash.py``). The JSON API (``api.py``) is mounted at ``/api/v1`` and the
pages' stylesheet, script and icon at ``/static``. The app works under any
path prefix it is mounted at (docs/web.md).
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import attrs
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
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from haulmer_onboarding.dte import DteType
from haulmer_onboarding.errors import (
    FieldErrors,
    LinkError,
    LinkExpired,
    LinkInvalid,
    LinkSuperseded,
    LinkUsed,
    LinkWrongPurpose,
    NotFoundError,
    OnboardingError,
    RateLimited,
    SignatureError,
    StepOrderError,
    ValidationError,
)
from haulmer_onboarding.journey import RENEWABLE, Onboarding
from haulmer_onboarding.models import Journey, Purchase, Stage
from haulmer_onboarding.passwords import MIN_LENGTH
from haulmer_onboarding.rut import Rut, dotted
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
from haulmer_onboarding.web.flash import Flash, Flashes
from haulmer_onboarding.web.intake import intake_routes
from haulmer_onboarding.web.limits import (
    BodyLimit,
    TooLarge,
    page_body_limit,
    request_too_large_error,
    route_path,
    too_large_error,
)
from haulmer_onboarding.web.pagecache import PageCache
from haulmer_onboarding.web.redact import install as redact_access_logs

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


def _shown_step(request: Request, reached: int, flash: Flash | None) -> int:
    """The step a wizard page shows, the refused one first."""
    if flash is not None and flash.step is not None and flash.step <= reached:
        return flash.step
    return _requested_step(request, reached)


def _refused(flash: Flash | None) -> Flash | None:
    """``flash`` when it carries a refusal for the page to show."""
    return flash if flash is not None and flash.kind == "error" else None


def _page_binding(path: str) -> str:
    """What a flash for the linkless page at ``path`` is bound to."""
    return "page:" + path


def wizard_state(journey: Journey) -> str:
    """A digest of everything a wizard's pages show and change.

    Each wizard form carries the digest of the journey it was drawn from; a
    form drawn before another tab moved the journey on no longer matches.
    """
    workspace = journey.workspace
    parts = [
        journey.stage.value,
        attrs.asdict(workspace) if workspace else None,
        journey.organization.id if journey.organization else None,
        sorted(journey.documents),
        journey.signature,
    ]
    encoded = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(encoded).hexdigest()[:24]


def _same(typed: str, saved: str | None) -> bool:
    return (
        " ".join(typed.split()).casefold() == " ".join((saved or "").split()).casefold()
    )


def _already_saved(journey: Journey, wizard: str, step: int, form: FormData) -> bool:
    """Whether ``form`` for ``step`` repeats what the journey already holds
    and is behind it: a second click on a button, not a stale change."""
    reached = (WIZARD_STEP if wizard == "workspace" else SETUP_STEP).get(journey.stage)
    if reached is None or step >= reached:
        return False
    saved: dict[str, str | None] = {}
    workspace = journey.workspace
    if wizard == "workspace" and step == 1 and workspace is not None:
        saved = {
            "name": workspace.administrator_name,
            "email": workspace.administrator_email,
        }
    elif wizard == "workspace" and step == 2 and workspace is not None:
        saved = {"workspace_name": workspace.name}
    elif wizard == "setup" and step == 1 and journey.organization is not None:
        chosen = journey.organization
        if _text(form, "organization") == "new":
            # The new organization of a first click, typed again.
            try:
                same_rut = str(Rut.parse(_text(form, "rut"))) == chosen.rut
            except ValidationError:
                return False
            return same_rut and _same(_text(form, "legal_name"), chosen.legal_name)
        saved = {"organization": str(chosen.id)}
    elif step != 0:
        return False
    return all(_same(_text(form, name), value) for name, value in saved.items())


#: The factura's boxes, in the page's order, and how a missing one is named.
_FACTURA_TEXT = {
    "legal_name": "la razón social",
    "business_activity": "el giro",
    "address": "la dirección",
}


def _factura_errors(values: Mapping[str, str]) -> list[ValidationError]:
    """Every missing or unreadable box of a factura at once, in the page's
    order; the facade judges the rest (lengths, reserved RUTs)."""
    errors: list[ValidationError] = []
    for name in ("legal_name", "rut", "business_activity", "address"):
        value = values.get(name, "")
        if name == "rut":
            try:
                Rut.parse(value)
            except ValidationError as exc:
                exc.field = "rut"
                errors.append(exc)
        elif not value.strip():
            errors.append(
                ValidationError(
                    f"Ingresa {_FACTURA_TEXT[name]}.",
                    code=f"{name}_missing",
                    field=name,
                )
            )
    return errors


class StaleForm(ValidationError):
    """A wizard form drawn before the journey moved on in another tab."""

    code = "form_stale"
    default_message = (
        "Esta página estaba desactualizada: el proceso avanzó o cambió en otra "
        "pestaña o ventana, así que no guardamos este envío. Te mostramos el "
        "paso en que vas; revisa los datos y continúa desde aquí."
    )


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
        self.flashes = Flashes(onboarding.settings.secret_keys)
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
            "errors": (),
            "show_forgot": False,
            "back_url": None,
            "static": _app_root(request.scope) + "/static",
            "csrf_token": (
                getattr(request.state, "csrf_slot", None)
                or (self.csrf.token(link_binding(token)) if token else "")
            ),
        }
        html = self.onboarding.renderer.page(name, {**defaults, **context})
        response = HTMLResponse(html, status_code=status, headers=_HEADERS)
        # A page showing a 429 says when to try again, as the API does.
        flash: Flash | None = getattr(request.state, "flash", None)
        if status == 429 and flash is not None and flash.retry_after is not None:
            response.headers["Retry-After"] = str(flash.retry_after)
        return response

    def flash(self, request: Request) -> Flash | None:
        """The flash this page was redirected with, if any."""
        token = request.path_params.get("token")
        binding = link_binding(token) if token else _page_binding(request.url.path)
        flash = self.flashes.read(request, binding)
        request.state.flash = flash
        return flash

    def titled(self, request: Request, flash: Flash | None) -> Response | None:
        """The error page for a refusal that names no field and comes with a
        title (a form not from our page, one the server could not read),
        leading back to a fresh form; ``None`` for any other flash."""
        if flash is None or flash.kind != "error" or flash.title is None:
            return None
        context = {
            "title": flash.title,
            "error": flash.error,
            "back_url": request.url.path,
        }
        return self.render(request, "error", context, flash.status)

    def refuse(
        self,
        request: Request,
        page: str,
        errors: OnboardingError | Sequence[OnboardingError],
        status: int,
        **flash: Any,
    ) -> Response:
        """``303`` to ``page``, which shows ``errors`` (post/redirect/get)."""
        if isinstance(errors, FieldErrors):
            errors = errors.errors
        token = request.path_params.get("token")
        binding = link_binding(token) if token else _page_binding(page)
        refusal = Flash.refusal(errors, status, **flash)
        return self.flashes.redirect(request, page, binding, refusal)

    def done(
        self, request: Request, page: str, values: Mapping[str, str] | None = None
    ) -> Response:
        """``303`` to the done page at ``page``, told it was just done."""
        token = request.path_params.get("token")
        binding = link_binding(token) if token else _page_binding(page)
        flash = Flash(kind="done", values=dict(values or {}))
        return self.flashes.redirect(request, page, binding, flash)

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
                # Just done by this browser's post: the step's page, not a
                # note that the link was used.
                flash = self.flash(request)
                just_done = flash is not None and flash.kind == "done"
                context = {
                    "customer": done.customer,
                    "journey": done.journey,
                    "already_used": not just_done,
                    **self._done_extras(request, purpose),
                }
                status = 200 if just_done else 410
                return self.render(request, _DONE_PAGES[purpose], context, status)
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

    def _done_extras(self, request: Request, purpose: str) -> dict[str, Any]:
        """What a done page links to besides its text."""
        if purpose != Purpose.START_SETUP:
            return {}
        token = request.path_params["token"]
        url = request.url_for("setup_certification", token=token).path
        return {"certification_url": url}

    async def renew_link(self, request: Request) -> Response:
        form = await _form(request)
        token, purpose = _text(form, "token"), _text(form, "purpose")
        self.check_csrf(request, form, token)
        page = request.url_for("link_renewed").path
        try:
            renewed = await self.call(self.onboarding.renew_link, token, purpose)
        except LinkError as exc:
            title = _LINK_TITLES.get(type(exc), "Enlace no válido")
            status = LINK_STATUS.get(type(exc), 404)
            return self.refuse(request, page, exc, status, title=title)
        return self.done(request, page, {"recipient_hint": renewed.recipient_hint})

    async def link_renewed(self, request: Request) -> Response:
        """Where a renewal lands: the address the new link went to."""
        flash = self.flash(request)
        if flash is not None and flash.title is not None and flash.error:
            context = {"title": flash.title, "error": flash.error}
            return self.render(request, "error", context, flash.status)
        hint = flash.values.get("recipient_hint") if flash else None
        return self.render(request, "link_renewed", {"recipient_hint": hint})

    def _too_large_error(self, scope: Scope) -> tuple[OnboardingError, str]:
        """What a too large request is told, and the page's title: the
        signature step's file limit there, the limit enforced elsewhere (a
        page that takes no file names none)."""
        max_file = self.onboarding.settings.signature_max_bytes
        if route_path(scope).endswith("/firma"):
            return too_large_error(max_file), "Archivo demasiado grande"
        error = request_too_large_error(page_body_limit(max_file))
        return error, "Solicitud demasiado grande"

    def too_large(self, scope: Scope) -> Response:
        """The 413 answer, where no page can be shown around it."""
        request = Request(scope)
        if route_path(scope).startswith("/api/"):
            max_file = self.onboarding.settings.signature_max_bytes
            return error_json(too_large_error(max_file), 413)
        error, title = self._too_large_error(scope)
        return self.render(request, "error", {"title": title, "error": error}, 413)

    async def too_large_page(self, request: Request) -> Response:
        """The 413 answer: back to the page of the form, with the message
        beside the signature's box, or on its own page leading back to the
        form."""
        page = _back(request)
        if page is None or route_path(request.scope).startswith("/api/"):
            return self.too_large(request.scope)
        error, title = self._too_large_error(request.scope)
        if request.path_params.get("action") == "firma":
            return self.refuse(request, page, error, 413, step=2)
        return self.refuse(request, page, error, 413, title=title)

    async def call(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await run_in_threadpool(func, *args, **kwargs)

    async def link_page(
        self,
        request: Request,
        purpose: str,
        draw: Callable[[Request, LinkSnapshot], Response],
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

        def page() -> Response:
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
            flash = self.flash(request)
            return await self.link_page(
                request,
                Purpose.CREATE_PASSWORD,
                lambda request, snapshot: self._password_page(request, snapshot, flash),
            )
        token = request.path_params["token"]
        try:
            await self.call(self.onboarding.open_link, token, Purpose.CREATE_PASSWORD)
        except LinkError:
            # The page behind the link says what became of it.
            return RedirectResponse(request.url.path, 303)
        form = await _form(request)
        self.check_csrf(request, form, token)
        page = request.url.path
        try:
            await self.call(
                self.onboarding.set_password,
                token,
                _text(form, "password"),
                _text(form, "confirmation"),
            )
        except LinkError:
            return RedirectResponse(page, 303)
        except OnboardingError as exc:
            return self.refuse(request, page, exc, _form_status(exc))
        return self.done(request, page)

    def _password_page(
        self, request: Request, snapshot: LinkSnapshot, flash: Flash | None
    ) -> Response:
        titled = self.titled(request, flash)
        if titled is not None:
            return titled
        context = {
            "customer": snapshot.customer(),
            "action": request.url.path,
            "min_length": MIN_LENGTH,
        }
        refused = _refused(flash)
        if refused is None:
            return self.render(request, "password", context)
        shown = {**context, "errors": refused.errors}
        return self.render(request, "password", shown, refused.status)

    async def forgot_password(self, request: Request) -> Response:
        context: dict[str, Any] = {
            "action": request.url.path,
            "sent": False,
            "email": "",
        }
        if request.method != "POST":
            flash = self.flash(request)
            if (titled := self.titled(request, flash)) is not None:
                return titled
            if flash is not None and flash.kind == "done":
                context.update(sent=True, email=flash.values.get("email", ""))
            elif flash is not None:
                context.update(errors=flash.errors, **flash.values)
                response = self.browser_form(request, "forgot", context, flash.status)
                if flash.retry_after is not None:
                    response.headers["Retry-After"] = str(flash.retry_after)
                return response
            return self.browser_form(request, "forgot", context, 200)

        form = await _form(request)
        self.check_csrf(request, form)
        email = _text(form, "email").strip()
        client = request.client.host if request.client else None
        page = request.url.path
        try:
            await self.call(
                self.onboarding.request_password_email, email, client=client
            )
        except RateLimited as exc:
            return self.refuse(request, page, exc, 429, values={"email": email})
        except ValidationError as exc:
            return self.refuse(request, page, exc, 400, values={"email": email})
        return self.done(request, page, {"email": email})

    # -- CREAR WORKSPACE ---------------------------------------------------

    async def workspace(self, request: Request) -> Response:
        flash = self.flash(request)

        def draw(request: Request, snapshot: LinkSnapshot) -> Response:
            titled = self.titled(request, flash)
            if titled is not None:
                return titled
            return self._workspace_page(request, _journey(snapshot), flash)

        return await self.link_page(request, Purpose.CREATE_WORKSPACE, draw)

    def _workspace_page(
        self, request: Request, journey: Journey, flash: Flash | None = None
    ) -> HTMLResponse:
        if journey.stage not in WIZARD_STEP:
            return self.render(request, "workspace_done", {"journey": journey})
        reached = WIZARD_STEP[journey.stage]
        refused = _refused(flash)
        workspace = journey.workspace
        # Step 1 shows the administrator as stored; the buyer until then.
        stored = workspace.administrator_name if workspace else None
        defaults = {
            "name": stored or journey.buyer.name,
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
                "step": _shown_step(request, reached, refused),
                "action": str(request.url_for("workspace", token=token).path),
                "errors": refused.errors if refused else (),
                "values": {**defaults, **(refused.values if refused else {})},
                "state": wizard_state(journey),
            },
            refused.status if refused else 200,
        )

    async def workspace_action(self, request: Request) -> Response:
        token = request.path_params["token"]
        action = request.path_params["action"]
        facade = self.onboarding
        page = str(request.url_for("workspace", token=token).path)
        try:
            link = await self.call(facade.open_link, token, Purpose.CREATE_WORKSPACE)
        except LinkError:
            return RedirectResponse(page, 303)
        assert link.journey is not None
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
            raise HTTPException(404)
        step, call = steps[action]
        stale = self._stale(request, page, link.journey, "workspace", step, form)
        if stale is not None:
            return stale
        try:
            journey = await self.call(call)
        except LinkError:
            return RedirectResponse(page, 303)
        except StepOrderError as exc:
            return self.refuse(request, page, exc, 409)
        except OnboardingError as exc:
            return self.refuse(
                request,
                _step_url(page, step),
                exc,
                _form_status(exc),
                values=values,
                step=step,
            )
        if journey.stage is Stage.SETUP_PENDING:
            return self.done(request, page)
        return RedirectResponse(page, 303)

    def _stale(
        self,
        request: Request,
        page: str,
        journey: Journey,
        wizard: str,
        step: int,
        form: FormData,
    ) -> Response | None:
        """The answer to a form drawn before the journey last changed, or
        ``None`` when the form is current.

        The check and the step are two transactions: two posts in the same
        instant can both pass it, and then the step's own rules decide, as
        they did before the check existed. A step before its turn, or a
        journey past the wizard, is left to the facade, which says so
        ("Completa primero los pasos anteriores", the link used) whatever
        the form was drawn from.
        """
        reached = (WIZARD_STEP if wizard == "workspace" else SETUP_STEP).get(
            journey.stage
        )
        if reached is None or step > reached:
            return None
        if _text(form, "state") == wizard_state(journey):
            return None
        if _already_saved(journey, wizard, step, form):
            return RedirectResponse(page, 303)
        return self.refuse(request, page, StaleForm(), 409)

    # -- INICIAR SETUP -----------------------------------------------------

    async def setup(self, request: Request) -> Response:
        flash = self.flash(request)

        def draw(request: Request, snapshot: LinkSnapshot) -> Response:
            titled = self.titled(request, flash)
            if titled is not None:
                return titled
            return self._setup_page_now(
                request, _journey(snapshot), flash, snapshot=snapshot
            )

        return await self.link_page(request, Purpose.START_SETUP, draw)

    def _setup_page_now(
        self,
        request: Request,
        journey: Journey,
        flash: Flash | None = None,
        *,
        snapshot: LinkSnapshot | None = None,
    ) -> HTMLResponse:
        """The setup page of ``journey``; blocks (reads the offer, unless
        ``journey`` comes from ``snapshot``)."""
        if journey.stage not in SETUP_STEP:
            context = {
                "journey": journey,
                **self._done_extras(request, Purpose.START_SETUP),
            }
            return self.render(request, "setup_done", context)
        reached = SETUP_STEP[journey.stage]
        refused = _refused(flash)
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
                "step": _shown_step(request, reached, refused),
                "action": str(request.url_for("setup", token=token).path),
                "errors": refused.errors if refused else (),
                "values": {
                    "legal_name": "",
                    "rut": "",
                    "legal_representative_rut": "",
                    **(refused.values if refused else {}),
                },
                "offer": offer,
                "titles": {code.value: code.title for code in DteType},
                "state": wizard_state(journey),
            },
            refused.status if refused else 200,
        )

    async def setup_action(self, request: Request) -> Response:
        token = request.path_params["token"]
        action = request.path_params["action"]
        facade = self.onboarding
        page = str(request.url_for("setup", token=token).path)
        # The link is checked before the form is read: an upload behind a
        # dead link is never parsed.
        try:
            link = await self.call(facade.open_link, token, Purpose.START_SETUP)
        except LinkError:
            return RedirectResponse(page, 303)
        assert link.journey is not None
        form = await _form(request)
        self.check_csrf(request, form, token)
        values = {k: _text(form, k) for k in form}
        step = {"comenzar": 0, "organizacion": 1, "firma": 2, "documentos": 3}.get(
            action
        )
        if step is None:
            raise HTTPException(404)
        if (
            step == 2
            and _text(form, "state") != wizard_state(link.journey)
            and await self._signature_resent(link.journey, form)
        ):
            return RedirectResponse(page, 303)
        stale = self._stale(request, page, link.journey, "setup", step, form)
        if stale is not None:
            return stale
        try:
            journey = await self._setup_call(token, action, form)
        except LinkError:
            return RedirectResponse(page, 303)
        except StepOrderError as exc:
            return self.refuse(request, page, exc, 409)
        except OnboardingError as exc:
            return self.refuse(
                request,
                _step_url(page, step),
                exc,
                _form_status(exc),
                values=values,
                step=step,
            )
        if journey.stage not in SETUP_STEP:
            return self.done(request, page)
        return RedirectResponse(page, 303)

    async def setup_certification(self, request: Request) -> Response:
        """The certification's progress, reached from the setup's done page
        through its own (used) link: the page of the emailed VER AVANCE."""
        token = request.path_params["token"]
        try:
            link = await self.call(
                self.onboarding.completed_link, token, Purpose.START_SETUP
            )
        except LinkError:
            # Not done yet, or not a setup link: the setup page says which.
            page = str(request.url_for("setup", token=token).path)
            return RedirectResponse(page, 303)
        journey = link.journey
        assert journey is not None
        if journey.certification is None:
            page = str(request.url_for("setup", token=token).path)
            return RedirectResponse(page, 303)
        return self.render(request, "certification", {"journey": journey})

    async def _signature_resent(self, journey: Journey, form: FormData) -> bool:
        """Whether a step 2 form drawn before the signature was loaded
        carries the very signature loaded since (sent twice)."""
        upload = form.get("signature")
        if not isinstance(upload, UploadFile):
            return False
        data = await upload.read()
        await upload.seek(0)
        representative = _text(form, "legal_representative_rut")
        return await self.call(  # type: ignore[no-any-return]
            self.onboarding.holds_signature,
            journey,
            data,
            _text(form, "signature_password"),
            representative,
        )

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
            flash = self.flash(request)

            def draw(request: Request, snapshot: LinkSnapshot) -> Response:
                titled = self.titled(request, flash)
                if titled is not None:
                    return titled
                context = _tax_document_context(request, _journey(snapshot))
                refused = _refused(flash)
                if refused is None:
                    return self.render(request, "tax_document", context)
                context["values"].update(refused.values)
                context["errors"] = refused.errors
                return self.render(request, "tax_document", context, refused.status)

            return await self.link_page(request, Purpose.TAX_DOCUMENT, draw)
        token = request.path_params["token"]
        try:
            await self.call(self.onboarding.open_link, token, Purpose.TAX_DOCUMENT)
        except LinkError:
            # The page behind the link says what became of it.
            return RedirectResponse(request.url.path, 303)
        form = await _form(request)
        self.check_csrf(request, form, token)
        values = {k: _text(form, k) for k in form}
        page = request.url.path
        if values.get("kind") == "factura" and (missing := _factura_errors(values)):
            return self.refuse(request, page, missing, 400, values=values)
        try:
            await self.call(
                self.onboarding.request_tax_document,
                token,
                kind=values.get("kind", ""),
                legal_name=values.get("legal_name", ""),
                rut=values.get("rut", ""),
                business_activity=values.get("business_activity", ""),
                address=values.get("address", ""),
            )
        except LinkError:
            return RedirectResponse(page, 303)
        except OnboardingError as exc:
            return self.refuse(request, page, exc, _form_status(exc), values=values)
        return self.done(request, page)

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
        flash = self.flash(request)
        if (titled := self.titled(request, flash)) is not None:
            return titled
        refused = _refused(flash)
        return self.browser_form(
            request,
            "dev_mailbox",
            {
                "messages": messages,
                "scenarios": [(key, s[0]) for key, s in self.scenarios.items()],
                "purchase_action": request.url_for("dev_purchase").path,
                "errors": refused.errors if refused else (),
                "email": (refused.values if refused else {}).get(
                    "email", "cliente@example.cl"
                ),
            },
            refused.status if refused else 200,
        )

    async def dev_purchase(self, request: Request) -> Response:
        form = await _form(request)
        self.check_csrf(request, form)
        page = request.url_for("dev_mailbox").path
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
            values = {"email": _text(form, "email")}
            title = "No registramos la compra"
            return self.refuse(request, page, exc, 400, values=values, title=title)
        return RedirectResponse(page, 303)


#: Posts whose page is another route's.
_PAGE_OF = {"dev_purchase": "dev_mailbox", "renew_link": "link_renewed"}


def _plain(response: Response) -> bool:
    """Whether ``response`` carries only the pages' own headers (no cookie,
    nothing said to this request alone), so that it may be kept."""
    return all(name in _PLAIN_HEADERS for name, _ in response.raw_headers)


def _with_body(response: Response, body: bytes) -> Response:
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
    """The page a form was on, where a fresh form waits."""
    path = request.url.path
    if "action" in request.path_params:
        return path.rsplit("/", 1)[0]
    route = request.scope.get("route")
    name = getattr(route, "name", None)
    if name in _PAGE_OF:
        return str(request.url_for(_PAGE_OF[name]).path)
    return path if "GET" in (getattr(route, "methods", None) or ()) else None


def _form_status(error: OnboardingError) -> int:
    """The status of a page showing a form's refusal: 429 (with
    ``Retry-After``) past a rate limit, as in the API; else 400."""
    return 429 if isinstance(error, RateLimited) else 400


def _step_url(page: str, step: int) -> str:
    """The wizard page at ``step``, as its Volver link names it."""
    return f"{page}?paso={step}" if step in {1, 2, 3} else page


def _route(
    path: str,
    endpoint: Callable[[Request], Awaitable[Response]],
    name: str,
    methods: Sequence[str] = ("GET", "HEAD"),
) -> Route:
    return Route(path, endpoint, name=name, methods=list(methods))


class _StaticFiles(StaticFiles):
    """The pages' files: revalidated on each use (``ETag``), so an upgrade
    of the SDK shows at once, and never sent as a referrer."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        return response


class _PrivateHeaders:
    """Gives every answer the headers of the pages unless it set its own:
    a handler's, a static file's, an error page of Starlette's own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.headers = [(k.lower().encode(), v.encode()) for k, v in _HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Where this app is mounted, before its own mounts (the API) add to
        # ``root_path``.
        scope = {**scope, _ROOT: scope.get("root_path") or ""}

        async def private(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {name.lower() for name, _ in headers}
                headers += [h for h in self.headers if h[0] not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, private)


_ROOT = "haulmer_onboarding.root_path"


def _app_root(scope: Scope) -> str:
    """The path this app is mounted at, also inside its own mounts."""
    root: str = scope.get(_ROOT, scope.get("root_path") or "")
    return root


def _is_machine(request: Request) -> bool:
    """A path programs call: its errors are JSON, not pages."""
    path: str = request.scope["path"]
    below = path[len(_app_root(request.scope)) :]
    return below.startswith(("/api/", "/webhooks/"))


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
        _route("/enlace-nuevo", pages.link_renewed, "link_renewed"),
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
            "/setup/{token}/certificacion",
            pages.setup_certification,
            "setup_certification",
        ),
        _route(
            "/setup/{token}/{action}", pages.setup_action, "setup_action", ("POST",)
        ),
        _route(
            "/documento-tributario/{token}", pages.tax_document, "tax_document", both
        ),
        _route("/certificacion/{token}", pages.certification, "certification"),
        Mount("/api/v1", routes=api_routes(onboarding)),
        Mount("/static", _StaticFiles(directory=_STATIC), name="static"),
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
            title = "No hicimos ningún cambio"
        else:
            title = "No pudimos continuar"
        status = error_status(exc)
        back = _back(request)
        if request.method == "POST" and back is not None:
            return pages.refuse(request, back, exc, status, title=title)
        context = {"title": title, "back_url": back, "error": exc}
        return pages.render(request, "error", context, status)

    async def too_large(request: Request, exc: Exception) -> Response:
        return await pages.too_large_page(request)

    async def http_error(request: Request, exc: Exception) -> Response:
        """Starlette's own refusals (no such page, a method the page does
        not take), in Spanish like every other."""
        assert isinstance(exc, HTTPException)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            error: OnboardingError = NotFoundError(
                "Esta dirección no recibe esa solicitud. Abre la página desde el "
                "enlace del correo para continuar.",
                code="method_not_allowed",
            )
            title = "Esta página no se abre así"
        else:
            error = NotFoundError(
                "No encontramos esta página. Revisa que la dirección esté completa "
                "o abre de nuevo el enlace del correo.",
                code="not_found" if exc.status_code == 404 else "http_error",
            )
            title = "Página no encontrada"
        if _is_machine(request):
            response: Response = error_json(error, exc.status_code)
        else:
            back = _back(request) if exc.status_code == 405 else None
            context = {"title": title, "error": error, "back_url": back}
            response = pages.render(request, "error", context, exc.status_code)
        response.headers.update(headers)
        return response

    # Forms are small; the largest body is a signature file and its form, or
    # the same file in base64 inside the API's JSON.
    page_limit = page_body_limit(onboarding.settings.signature_max_bytes)
    api_limit = onboarding.settings.signature_max_bytes * 4 // 3 + 64 * 1024

    def limit(scope: Scope) -> int:
        return api_limit if route_path(scope).startswith("/api/") else page_limit

    # Servers' access logs would write the links' tokens down.
    redact_access_logs()
    # The body limit and the pages' headers are the app's own middleware,
    # not wrappers around it: a host that mounts the app finds its routes
    # through it, so the pages' own links (``url_for``) resolve under the
    # host's prefix.
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(BodyLimit, limit=limit, too_large=pages.too_large),
            Middleware(_PrivateHeaders),
        ],
        exception_handlers={
            OnboardingError: unhandled,
            TooLarge: too_large,
            HTTPException: http_error,
        },
    )
