"""A customer without a browser: reads emails, follows links, submits forms.

``demo`` and the tests use it to walk the journey over real HTTP exactly as
the pages offer it: the form's own action, its hidden fields (the CSRF token
among them), its pre-checked boxes and chosen options are sent, plus what
the customer types; the cookies the pages set come back, as in a browser.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from html.parser import HTMLParser
from urllib.parse import urljoin

import attrs
import httpx

from haulmer_onboarding.testing.smtp import CaughtMessage, SmtpCatcher

__all__ = ["Form", "Page", "WebCustomer", "link_in", "wait_for", "wait_for_subject"]

_URL = re.compile(r"https?://[^\s<>\"]+")


def link_in(message: CaughtMessage, button: str) -> str:
    """The URL under ``button`` in the plain-text part of ``message``.

    The text part lists each button as ``LABEL:`` followed by its URL on
    the next line.
    """
    text = message.text()
    match = re.search(re.escape(button) + r":\s*\n\s*(" + _URL.pattern + ")", text)
    if match is None:
        raise LookupError(f"no {button!r} link in {message.subject!r}")
    return match.group(1)


@attrs.define
class Form:
    """An HTML form as a browser would submit it."""

    action: str
    method: str
    enctype: str
    fields: list[tuple[str, str]] = attrs.field(factory=list)
    file_fields: list[str] = attrs.field(factory=list)
    buttons: list[str] = attrs.field(factory=list)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self._button: list[str] | None = None
        # The open <select>: its name and the value a browser would send.
        self._select: list[str] | None = None

    def handle_starttag(
        self, tag: str, attributes: list[tuple[str, str | None]]
    ) -> None:
        attrs_ = {k: v or "" for k, v in attributes}
        if tag == "form":
            self.forms.append(
                Form(
                    action=attrs_.get("action", ""),
                    method=attrs_.get("method", "get").upper(),
                    enctype=attrs_.get("enctype", ""),
                )
            )
            return
        if not self.forms:
            return
        form = self.forms[-1]
        if tag == "button":
            self._button = []
        elif tag == "input":
            self._input(form, attrs_)
        elif tag == "select" and attrs_.get("name") and "disabled" not in attrs_:
            self._select = [attrs_["name"]]
        elif tag == "option" and self._select is not None:
            self._option(self._select, attrs_)

    def _input(self, form: Form, attrs_: Mapping[str, str]) -> None:
        kind = attrs_.get("type", "text").lower()
        name = attrs_.get("name")
        if not name or "disabled" in attrs_:
            return
        if kind == "file":
            form.file_fields.append(name)
        elif kind in {"checkbox", "radio"}:
            if "checked" in attrs_:
                form.fields.append((name, attrs_.get("value", "on")))
        elif kind not in {"submit", "button", "image", "reset"}:
            form.fields.append((name, attrs_.get("value", "")))

    @staticmethod
    def _option(select: list[str], attrs_: Mapping[str, str]) -> None:
        """Keep the selected option's value, or else the first one's."""
        if len(select) == 1 or "selected" in attrs_:
            select[1:] = [attrs_.get("value", "")]

    def handle_data(self, data: str) -> None:
        if self._button is not None:
            self._button.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "button" and self._button is not None and self.forms:
            self.forms[-1].buttons.append(" ".join("".join(self._button).split()))
            self._button = None
        elif tag == "select" and self._select is not None and self.forms:
            if len(self._select) == 2:
                self.forms[-1].fields.append((self._select[0], self._select[1]))
            self._select = None


@attrs.frozen
class Page:
    url: str
    status: int
    html: str

    def forms(self) -> list[Form]:
        parser = _FormParser()
        parser.feed(self.html)
        return parser.forms

    def form(self, button: str) -> Form:
        """The form whose submit button starts with ``button``."""
        for form in self.forms():
            if any(label.startswith(button) for label in form.buttons):
                return form
        raise LookupError(f"no form with a {button!r} button on {self.url}")

    @property
    def text(self) -> str:
        """The page's visible text, whitespace collapsed."""
        body = re.sub(r"<(style|script)[^>]*>.*?</\1>", " ", self.html, flags=re.S)
        return " ".join(re.sub(r"<[^>]+>", " ", body).split())


class WebCustomer:
    """Follows links and submits forms over real HTTP."""

    def __init__(self, client: httpx.Client | None = None) -> None:
        self.client = client or httpx.Client(timeout=30.0, follow_redirects=True)

    def open(self, url: str) -> Page:
        response = self.client.get(url)
        return Page(str(response.url), response.status_code, response.text)

    def submit(
        self,
        page: Page,
        button: str,
        data: Mapping[str, str | list[str]] | None = None,
        files: Mapping[str, tuple[str, bytes, str]] | None = None,
    ) -> Page:
        """Press ``button`` on ``page`` after typing ``data`` into its form.

        Values of ``data`` replace the form's own; a list sets every value of
        a multi-valued field (checkboxes).
        """
        form = page.form(button)
        values: dict[str, list[str]] = {}
        for name, value in form.fields:
            values.setdefault(name, []).append(value)
        for name, typed in (data or {}).items():
            values[name] = list(typed) if isinstance(typed, list) else [typed]
        pairs = [(name, v) for name, vs in values.items() for v in vs]
        url = urljoin(page.url, form.action or page.url)
        if form.file_fields or files:
            response = self.client.post(
                url, data=_multi(pairs), files=dict(files or {})
            )
        else:
            response = self.client.post(url, data=_multi(pairs))
        return Page(str(response.url), response.status_code, response.text)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> WebCustomer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _multi(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        grouped.setdefault(name, []).append(value)
    return grouped


def wait_for(
    catcher: SmtpCatcher,
    predicate: Callable[[CaughtMessage], bool],
    *,
    timeout: float = 20.0,
) -> CaughtMessage:
    """The first caught message for which ``predicate`` holds, waiting for it."""
    deadline = time.monotonic() + timeout
    while True:
        for message in catcher.messages:
            if predicate(message):
                return message
        if time.monotonic() > deadline:
            raise TimeoutError("the expected email did not arrive in time")
        time.sleep(0.05)


def wait_for_subject(
    catcher: SmtpCatcher, recipient: str, subject: str, *, timeout: float = 20.0
) -> CaughtMessage:
    """The first message to ``recipient`` whose subject starts with ``subject``."""
    try:
        return wait_for(
            catcher,
            lambda m: recipient in m.rcpt_tos and m.subject.startswith(subject),
            timeout=timeout,
        )
    except TimeoutError:
        raise TimeoutError(f"no email {subject!r} for {recipient}") from None
