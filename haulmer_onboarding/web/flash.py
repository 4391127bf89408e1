"""What a page's ``POST`` hands to the ``GET`` it redirects to.

Every form post is answered ``303 See Other`` (post/redirect/get), so the
browser's history holds only ``GET`` entries: Back, Forward and Reload
never resend a form nor show the browser's own error page. What the next
page must show, a refusal with what was typed or the step just done,
travels in a short-lived cookie signed with the deployment's first secret
key (itsdangerous), bound to the page it is for and to an ``aviso`` id in
the redirect's query. The cookie never holds a password, a signature file
or a token: a link page is named by a digest of its token.

A page opened with an ``aviso`` id whose flash is gone (it expired, or the
browser keeps no cookies) says so instead of silently showing a blank form.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from itsdangerous import BadData, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import RedirectResponse

from haulmer_onboarding.errors import OnboardingError, RateLimited

__all__ = ["COOKIE", "MAX_AGE", "QUERY", "Flash", "FlashError", "Flashes"]

#: The cookie that carries the flash to the next page.
COOKIE = "haulmer_aviso"
#: The query parameter that names the flash a page was redirected with.
QUERY = "aviso"
#: How long, in seconds, a flash stays readable: Back, Forward and Reload
#: show the same page for that long.
MAX_AGE = 600

_SALT = "haulmer_onboarding.web.flash"
# Browsers keep about 4 KB per cookie; what was typed is dropped first.
_MAX_COOKIE = 3500
_MAX_VALUE = 500
# Never written back into a page nor into the cookie.
_SECRET_FIELDS = frozenset(
    {"password", "confirmation", "signature_password", "signature", "csrf_token"}
)

LOST_MESSAGE = (
    "No pudimos mostrar el resultado de tu último envío: el aviso expiró o tu "
    "navegador no guarda las cookies de este sitio. Revisa los datos y, si hace "
    "falta, envíalos de nuevo."
)


@attrs.frozen
class FlashError:
    """A refusal as a page shows it: the same attributes as the SDK's errors."""

    message: str
    code: str
    field: str | None = None

    @classmethod
    def of(cls, error: OnboardingError) -> FlashError:
        return cls(message=error.message, code=error.code, field=error.field)


@attrs.frozen
class Flash:
    """What the page after a post shows.

    ``kind`` is ``"error"`` (``errors`` say why, ``values`` keep what was
    typed) or ``"done"`` (``values`` carry what the done page shows).
    ``status`` is the status the page answers with; ``step`` the wizard
    step the form was for; ``title`` makes the page an error page.
    """

    kind: str
    status: int = 200
    errors: tuple[FlashError, ...] = ()
    values: Mapping[str, str] = attrs.field(factory=dict)
    step: int | None = None
    title: str | None = None
    retry_after: int | None = None

    @classmethod
    def refusal(
        cls,
        errors: OnboardingError | Sequence[OnboardingError],
        status: int,
        *,
        values: Mapping[str, str] | None = None,
        step: int | None = None,
        title: str | None = None,
    ) -> Flash:
        listed = [errors] if isinstance(errors, OnboardingError) else list(errors)
        retry = next(
            (e.retry_after for e in listed if isinstance(e, RateLimited)), None
        )
        return cls(
            kind="error",
            status=status,
            errors=tuple(FlashError.of(e) for e in listed),
            values=kept_values(values or {}),
            step=step,
            title=title,
            retry_after=retry,
        )

    @property
    def error(self) -> FlashError | None:
        """The first refusal, for pages that show one."""
        return self.errors[0] if self.errors else None


def kept_values(values: Mapping[str, str]) -> dict[str, str]:
    """What a refused form may show again: never a password or a file."""
    return {
        name: value[:_MAX_VALUE]
        for name, value in values.items()
        if name not in _SECRET_FIELDS
    }


def _lost() -> Flash:
    return Flash(
        kind="error",
        status=400,
        errors=(FlashError(LOST_MESSAGE, "notice_lost"),),
    )


class Flashes:
    """Writes a flash with its redirect, and reads it back on the page."""

    def __init__(self, secret_keys: Sequence[str]) -> None:
        # itsdangerous signs with the last key of its list.
        self._serializer = URLSafeTimedSerializer(
            list(reversed(secret_keys)), salt=_SALT
        )

    def redirect(
        self, request: Request, url: str, binding: str, flash: Flash
    ) -> RedirectResponse:
        """``303`` to ``url`` (a ``GET`` page), carrying ``flash`` for the
        page bound to ``binding``."""
        notice = secrets.token_urlsafe(6)
        value = self._dump(notice, binding, flash)
        target = f"{url}{'&' if '?' in url else '?'}{QUERY}={notice}"
        response = RedirectResponse(target, 303)
        response.set_cookie(
            COOKIE,
            value,
            max_age=MAX_AGE,
            path=(request.scope.get("root_path") or "") + "/",
            secure=request.url.scheme == "https",
            httponly=True,
            # Lax, not Strict: the page after a refused cross-site post must
            # still be able to say why nothing changed.
            samesite="lax",
        )
        return response

    def read(self, request: Request, binding: str) -> Flash | None:
        """The flash the page was redirected with; ``None`` when it was
        opened without one; a notice that it is gone when it expired or the
        browser kept no cookie."""
        notice = request.query_params.get(QUERY)
        if notice is None:
            return None
        try:
            data = self._serializer.loads(
                request.cookies.get(COOKIE, ""), max_age=MAX_AGE
            )
        except BadData:
            return _lost()
        if not isinstance(data, dict) or (data.get("i"), data.get("b")) != (
            notice,
            binding,
        ):
            return _lost()
        return _load(data)

    def _dump(self, notice: str, binding: str, flash: Flash) -> str:
        data: dict[str, Any] = {
            "i": notice,
            "b": binding,
            "k": flash.kind,
            "s": flash.status,
            "e": [[e.message, e.code, e.field] for e in flash.errors],
            "v": dict(flash.values),
            "n": flash.step,
            "t": flash.title,
            "r": flash.retry_after,
        }
        value = str(self._serializer.dumps(data))
        if len(value) > _MAX_COOKIE:
            data["v"] = {}
            value = str(self._serializer.dumps(data))
        return value


def _load(data: Mapping[str, Any]) -> Flash:
    try:
        return Flash(
            kind=str(data["k"]),
            status=int(data["s"]),
            errors=tuple(
                FlashError(str(m), str(c), None if f is None else str(f))
                for m, c, f in data["e"]
            ),
            values={str(k): str(v) for k, v in dict(data["v"]).items()},
            step=None if data["n"] is None else int(data["n"]),
            title=None if data["t"] is None else str(data["t"]),
            retry_after=None if data["r"] is None else int(data["r"]),
        )
    except (KeyError, TypeError, ValueError):
        # Signed by us, so only an older release's shape can land here.
        return _lost()
