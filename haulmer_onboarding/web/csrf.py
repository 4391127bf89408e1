"""Cross-site request forgery protection for the pages' forms.

Every form carries a hidden ``csrf_token``: a value signed with the
deployment's first secret key (itsdangerous), bound to what the form acts
on. A form behind an email link is bound to that link; the forms without a
link (¿Olvidó su contraseña?, the development mailbox) are bound to a random
value the browser keeps in a cookie (the double-submit pattern). A post is
refused when its token is missing, forged, made for another link or another
browser, or when the browser says the post comes from another site
(``Sec-Fetch-Site``). A refused post changes nothing.

The JSON API is protected differently: it accepts only
``Content-Type: application/json``, which a form on another site cannot
send, and it answers no CORS preflight (see docs/web.md).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence

from itsdangerous import BadData, URLSafeTimedSerializer
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from haulmer_onboarding.errors import OnboardingError

__all__ = ["COOKIE", "FIELD", "CsrfGuard", "CsrfRefused"]

#: The hidden field every form carries.
FIELD = "csrf_token"
#: The cookie holding the browser's random value for forms without a link.
COOKIE = "haulmer_csrf"
#: How long a form without a link may stay open before it must be reloaded.
BROWSER_MAX_AGE = 24 * 3600

_SALT = "haulmer_onboarding.web.csrf"
# How many bindings' tokens of the current second are kept at most.
_RECENT_MAX = 4096
# Browsers send this header on every request; only these two values mean
# the post came from our own page (or was typed by the person).
_OWN_SITE = {"same-origin", "none"}


class CsrfRefused(OnboardingError, PermissionError):
    """A post that does not come from a page this app rendered."""

    code = "csrf_refused"
    default_message = (
        "No pudimos confirmar que este formulario venga de nuestra página, así "
        "que no hicimos ningún cambio. Vuelve a abrir la página desde el enlace "
        "del correo e inténtalo de nuevo."
    )


def link_binding(token: str) -> str:
    """What a form behind the link ``token`` is bound to.

    A digest, so the form's token does not repeat the link's token.
    """
    return "link:" + hashlib.sha256(token.encode()).hexdigest()[:32]


class CsrfGuard:
    """Issues and checks the forms' tokens with the deployment's keys.

    ``secret_keys`` is newest first, as in ``Settings``: the first signs,
    every one verifies, so rotating the link keys rotates these too.
    """

    def __init__(self, secret_keys: Sequence[str]) -> None:
        # itsdangerous signs with the last key of its list.
        self._serializer = URLSafeTimedSerializer(
            list(reversed(secret_keys)), salt=_SALT
        )
        self._recent: tuple[int, dict[str, str]] = (0, {})

    def token(self, binding: str) -> str:
        """A token for ``binding``, signed now.

        itsdangerous stamps a token with the second it was signed in, so
        every token for one binding in one second is the same string: it is
        signed once and handed out again for the rest of that second (a link
        page read by many at once signs once, not once a request).
        """
        second = int(time.time())
        recent = self._recent
        if recent[0] != second:
            recent = self._recent = (second, {})
        found = recent[1].get(binding)
        if found is None:
            found = self._serializer.dumps(binding)
            # Kept only when signed within that second, which is what its
            # stamp says; a few bindings a second, never an unbounded set.
            if int(time.time()) == second and len(recent[1]) < _RECENT_MAX:
                recent[1][binding] = found
        return found

    def check(
        self, request: Request, form: FormData, binding: str, *, max_age: int | None
    ) -> None:
        """Raise ``CsrfRefused`` unless ``form`` came from our page for
        ``binding``."""
        if request.headers.get("sec-fetch-site", "same-origin") not in _OWN_SITE:
            raise CsrfRefused()
        sent = form.get(FIELD)
        if not isinstance(sent, str) or not sent:
            raise CsrfRefused()
        try:
            bound = self._serializer.loads(sent, max_age=max_age)
        except BadData:
            raise CsrfRefused() from None
        if not isinstance(bound, str) or not hmac.compare_digest(bound, binding):
            raise CsrfRefused()

    # -- forms without a link: the browser's cookie ------------------------

    def browser_binding(self, request: Request) -> str | None:
        value = request.cookies.get(COOKIE, "")
        return "browser:" + value if len(value) >= 32 else None

    def browser_token(self, request: Request) -> tuple[str, str | None]:
        """The token for a linkless form, and the cookie value to set when
        the browser has none yet."""
        binding = self.browser_binding(request)
        if binding is not None:
            return self.token(binding), None
        value = secrets.token_urlsafe(32)
        return self.token("browser:" + value), value

    def check_browser(self, request: Request, form: FormData) -> None:
        binding = self.browser_binding(request)
        if binding is None:
            raise CsrfRefused(
                "Tu navegador no envió la cookie de seguridad de esta página, así "
                "que no hicimos ningún cambio. Permite las cookies de este sitio, "
                "recarga la página e inténtalo de nuevo.",
                code="csrf_cookie_missing",
            )
        self.check(request, form, binding, max_age=BROWSER_MAX_AGE)


def set_browser_cookie(request: Request, response: Response, value: str) -> None:
    """Give the browser its random value, only for this app's paths."""
    response.set_cookie(
        COOKIE,
        value,
        path=(request.scope.get("root_path") or "") + "/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
