"""What a page's ``POST`` hands to the ``GET`` it redirects to.

Every form post is answered ``303 See Other`` (post/redirect/get), so the
browser's history holds only ``GET`` entries: Back, Forward and Reload
never resend a form nor show the browser's own error page. What the next
page must show, a refusal with what was typed or the step just done,
travels in a short-lived cookie signed with the deployment's first secret
key (itsdangerous), bound to the page it is for and to an ``aviso`` id in
the redirect's query. The cookie never holds a password, a signature file
or a token: a link page is named by a digest of its token.

Each page binding has its own cookie (named by a digest of the binding),
holding that page's last few flashes, newest first, so a refusal in
another tab or on another link does not overwrite this one, and Back to
an earlier refusal on the same page still finds it. A browser holds at
most ``MAX_PAGES`` such cookies of at most ``_MAX_COOKIE`` characters
each: writing one expires the oldest beyond that.

A page opened with an ``aviso`` id whose flash is gone (it expired, newer
posts pushed it out, or the browser keeps no cookies) says so instead of
silently showing a blank form. When what was typed does not fit, the
largest values are dropped first and the page says which.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
from itsdangerous import BadData, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import RedirectResponse

from haulmer_onboarding.errors import OnboardingError, RateLimited

__all__ = [
    "COOKIE",
    "MAX_AGE",
    "MAX_ENTRIES",
    "MAX_PAGES",
    "QUERY",
    "Flash",
    "FlashError",
    "Flashes",
    "cookie_name",
]

#: The prefix of the cookies that carry flashes to the next page; each page
#: binding has its own (see :func:`cookie_name`).
COOKIE = "haulmer_aviso"
#: The query parameter that names the flash a page was redirected with.
QUERY = "aviso"
#: How long, in seconds, a flash stays readable: Back, Forward and Reload
#: show the same page for that long.
MAX_AGE = 600

#: How many flashes of one page a cookie keeps, newest first: Back to an
#: earlier refusal on the same page still shows it.
MAX_ENTRIES = 3
#: How many pages' flash cookies a browser keeps at once; writing one
#: expires the oldest beyond that, so cookies never pile up.
MAX_PAGES = 3

_SALT = "haulmer_onboarding.web.flash.v2"
# Browsers keep about 4 KB per cookie, and uvicorn (h11) refuses a request
# head over 16 KB: MAX_PAGES cookies of this size stay well under both.
_MAX_COOKIE = 3000
# Never written back into a page nor into the cookie.
_SECRET_FIELDS = frozenset(
    {"password", "confirmation", "signature_password", "signature", "csrf_token"}
)
# Choices (radio buttons, selects): small, and what makes the rest of the
# form make sense, so they are the last to be dropped.
_CHOICE_FIELDS = frozenset({"kind", "organization", "documents", "scenario"})
# How the pages name the boxes, for the note on what could not be kept.
_LABELS = {
    "name": "nombre",
    "email": "correo electrónico",
    "workspace_name": "nombre del espacio de trabajo",
    "legal_name": "razón social",
    "rut": "RUT",
    "business_activity": "giro",
    "address": "dirección",
    "legal_representative_rut": "RUT del representante legal",
    "organization": "organización",
    "documents": "documentos",
    "kind": "documento",
    "scenario": "compra de prueba",
}

LOST_MESSAGE = (
    "No pudimos mostrar el resultado de ese envío: el aviso expiró (dura 10 "
    "minutos), enviaste otros formularios después o tu navegador no guarda las "
    "cookies de este sitio. Revisa los datos y, si hace falta, envíalos de nuevo."
)
#: The code of the note that some of what was typed could not be kept.
DROPPED_CODE = "values_dropped"


def dropped_message(names: Sequence[str]) -> str:
    """The note, in Spanish, that what was typed in ``names`` is gone."""
    labels = [_LABELS[name] for name in names if name in _LABELS]
    if not labels or len(labels) < len(names):
        return (
            "No pudimos conservar todo lo que escribiste; revisa el formulario "
            "y escribe de nuevo lo que falte."
        )
    listed = labels[0] if len(labels) == 1 else ", ".join(labels[:-1])
    if len(labels) > 1:
        listed += " y " + labels[-1]
    return f"No pudimos conservar lo que escribiste en {listed}; escríbelo de nuevo."


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
    return {name: value for name, value in values.items() if name not in _SECRET_FIELDS}


def _lost() -> Flash:
    return Flash(
        kind="error",
        status=400,
        errors=(FlashError(LOST_MESSAGE, "notice_lost"),),
    )


def cookie_name(binding: str) -> str:
    """The cookie that carries the flashes of the page bound to ``binding``:
    named by a digest, so it never repeats a link's token."""
    return f"{COOKIE}_{hashlib.sha256(binding.encode()).hexdigest()[:12]}"


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
        name = cookie_name(binding)
        earlier = self._entries(request.cookies.get(name), binding)
        value = self._dump(_fitted(self._sign, _entry(notice, binding, flash)), earlier)
        target = f"{url}{'&' if '?' in url else '?'}{QUERY}={notice}"
        response = RedirectResponse(target, 303)
        options: dict[str, Any] = {
            "path": (request.scope.get("root_path") or "") + "/",
            "secure": request.url.scheme == "https",
            "httponly": True,
            # Lax, not Strict: the page after a refused cross-site post must
            # still be able to say why nothing changed.
            "samesite": "lax",
        }
        response.set_cookie(name, value, max_age=MAX_AGE, **options)
        for stale in self._stale(request, name):
            response.delete_cookie(stale, **options)
        return response

    def read(self, request: Request, binding: str) -> Flash | None:
        """The flash the page was redirected with; ``None`` when it was
        opened without one; a notice that it is gone when it expired, newer
        posts pushed it out, or the browser kept no cookie."""
        notice = request.query_params.get(QUERY)
        if notice is None:
            return None
        cookie = request.cookies.get(cookie_name(binding))
        for entry in self._entries(cookie, binding):
            if entry.get("i") == notice:
                return _load(entry)
        return _lost()

    def _sign(self, entries: list[dict[str, Any]]) -> str:
        return str(self._serializer.dumps(entries))

    def _entries(self, cookie: str | None, binding: str) -> list[dict[str, Any]]:
        """The flashes in ``cookie`` still readable, newest first."""
        if not cookie:
            return []
        try:
            data = self._serializer.loads(cookie, max_age=MAX_AGE)
        except BadData:
            return []
        if not isinstance(data, list):
            return []
        oldest = time.time() - MAX_AGE
        return [
            entry
            for entry in data
            if isinstance(entry, dict)
            and entry.get("b") == binding
            and isinstance(entry.get("w"), int | float)
            and entry["w"] >= oldest
        ]

    def _dump(self, entry: dict[str, Any], earlier: list[dict[str, Any]]) -> str:
        """``entry`` and as many ``earlier`` flashes as fit, oldest dropped
        first."""
        kept = [entry]
        value = self._sign(kept)
        for older in earlier[: MAX_ENTRIES - 1]:
            candidate = self._sign([*kept, older])
            if len(candidate) > _MAX_COOKIE:
                break
            kept.append(older)
            value = candidate
        return value

    def _stale(self, request: Request, written: str) -> list[str]:
        """The other flash cookies to expire: unreadable ones, and the
        oldest beyond ``MAX_PAGES`` (counting the one just ``written``)."""
        stale: list[str] = []
        readable: list[tuple[float, str]] = []
        for name, value in request.cookies.items():
            if name == written or not name.startswith(COOKIE):
                continue
            try:
                entries, signed_at = self._serializer.loads(
                    value, max_age=MAX_AGE, return_timestamp=True
                )
            except BadData:
                stale.append(name)
                continue
            # The signature's time has whole seconds; the entries' own times
            # order cookies written within the same second.
            written_at = [
                float(e["w"])
                for e in (entries if isinstance(entries, list) else [])
                if isinstance(e, dict) and isinstance(e.get("w"), int | float)
            ]
            readable.append((max(written_at, default=signed_at.timestamp()), name))
        readable.sort(reverse=True)
        stale.extend(name for _, name in readable[MAX_PAGES - 1 :])
        return stale


def _entry(notice: str, binding: str, flash: Flash) -> dict[str, Any]:
    return {
        "i": notice,
        "b": binding,
        "w": round(time.time(), 3),
        "k": flash.kind,
        "s": flash.status,
        "e": [[e.message, e.code, e.field] for e in flash.errors],
        "v": dict(flash.values),
        "n": flash.step,
        "t": flash.title,
        "r": flash.retry_after,
    }


def _fitted(
    sign: Callable[[list[dict[str, Any]]], str], entry: dict[str, Any]
) -> dict[str, Any]:
    """``entry`` small enough for a cookie on its own: what was typed is
    dropped largest first, choices last; a refusal then says what was
    dropped."""
    values: dict[str, str] = dict(entry["v"])
    typed = list(values)  # in the form's order
    order = sorted(
        typed,
        key=lambda name: (name in _CHOICE_FIELDS, -len(json.dumps(values[name]))),
    )
    fitted = entry
    while len(sign([fitted])) > _MAX_COOKIE:
        if not order:
            # Only our own messages are left: keep the first refusal (and
            # the note on what was dropped).
            return {**fitted, "e": [*entry["e"][:1], *fitted["e"][len(entry["e"]) :]]}
        values.pop(order.pop(0))
        fitted = {**entry, "v": dict(values)}
        if entry["k"] == "error":
            dropped = [name for name in typed if name not in values]
            note = [dropped_message(dropped), DROPPED_CODE, None]
            fitted["e"] = [*entry["e"], note]
    return fitted


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
