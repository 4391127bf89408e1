"""Journey tests that read like the customer's guide.

``JourneyKit`` holds what a journey test needs: the SDK on its own SQLite
file, a ``Mailbox`` on a real SMTP server, a ``KitCustomer`` who follows the
emails' buttons and fills the pages' forms, a clock that moves only when
told, the certification sandbox and the worker's round. The pytest plugin
(``haulmer_onboarding.testing.pytest_plugin``) builds one per test as the
``journey_kit`` fixture; docs/testing.md shows a whole suite.

A failed expectation raises ``JourneyExpectationError``, an
``AssertionError`` whose message ends with the mailbox (numbered subjects
and recipients) and where every journey of the database stands, so the
failure explains itself without a debugger.
"""

from __future__ import annotations

import contextlib
import email.policy
import re
import time
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from typing import Any

import anyio.from_thread
import attrs
import httpx
import sqlalchemy as sa

from haulmer_onboarding.errors import OnboardingError
from haulmer_onboarding.journey import Onboarding
from haulmer_onboarding.mail import Relay
from haulmer_onboarding.models import Journey, Purchase
from haulmer_onboarding.store import journeys
from haulmer_onboarding.testing.clock import MovableClock
from haulmer_onboarding.testing.customer import Page, WebCustomer
from haulmer_onboarding.testing.journey import JourneyWalker
from haulmer_onboarding.testing.signatures import make_pkcs12
from haulmer_onboarding.testing.smtp import CaughtMessage, SmtpCatcher
from haulmer_onboarding.worker import Worker

__all__ = [
    "Email",
    "InProcessTransport",
    "JourneyExpectationError",
    "JourneyKit",
    "KitCustomer",
    "KitPage",
    "Mailbox",
    "journeys_report",
]

#: What a form field may be given: text, a number, several values (boxes
#: to check), or the bytes of a file to upload.
FieldValue = str | int | bytes | Sequence[str | int]

# The text part of an email lists each button as "LABEL:" and, on the next
# line, its URL.
_BUTTON = re.compile(r"^[ \t]*([^\n:]+?):[ \t]*\n[ \t]*(https?://\S+)", re.M)
# An alert above a form, or an error beside its field (read with the field
# through its aria-describedby, so it is no alert of its own).
_ALERT = re.compile(r'<p\b[^>]*(?:role="alert"|class="error")[^>]*>(.*?)</p>', re.S)
_TITLE = re.compile(r"<h1[^>]*>(.*?)</h1>", re.S)
_TAG = re.compile(r"<[^>]+>")


class JourneyExpectationError(AssertionError):
    """An expectation of a journey test that did not hold.

    ``problem`` says what was expected; ``report`` is the mailbox and the
    journeys when it failed. The message is both.
    """

    def __init__(self, problem: str, report: str = "") -> None:
        super().__init__(f"{problem}\n\n{report}" if report else problem)
        self.problem = problem
        self.report = report


# -- the mailbox ------------------------------------------------------------


@attrs.frozen
class Email:
    """One delivered email, parsed once; ``number`` counts arrivals from 1."""

    number: int
    subject: str
    recipients: tuple[str, ...]
    sender: str
    text: str
    html: str
    message: EmailMessage = attrs.field(repr=False)

    @classmethod
    def parse(cls, number: int, caught: CaughtMessage) -> Email:
        parsed = email.message_from_bytes(caught.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        text = parsed.get_body(preferencelist=("plain",))
        html = parsed.get_body(preferencelist=("html",))
        return cls(
            number=number,
            subject=str(parsed["Subject"]),
            recipients=caught.rcpt_tos,
            sender=caught.mail_from,
            text="" if text is None else str(text.get_content()),
            html="" if html is None else str(html.get_content()),
            message=parsed,
        )

    @property
    def buttons(self) -> dict[str, str]:
        """Each button's label and URL, in the email's order."""
        return {label.strip(): url for label, url in _BUTTON.findall(self.text)}

    def link(self, button: str) -> str:
        """The URL under the button labelled ``button``; ``LookupError`` if
        the email has no such button."""
        buttons = self.buttons
        if button not in buttons:
            offered = ", ".join(f"«{label}»" for label in buttons) or "none"
            raise LookupError(
                f"email #{self.number} «{self.subject}» has no «{button}» "
                f"button; its buttons: {offered}"
            )
        return buttons[button]

    def matches(self, subject: str | None, to: str | None) -> bool:
        """Whether the subject starts with ``subject`` and ``to`` is among
        the recipients (either may be left out)."""
        if subject is not None and not self.subject.startswith(subject):
            return False
        wanted = None if to is None else to.strip().lower()
        return wanted is None or wanted in (r.lower() for r in self.recipients)

    def line(self) -> str:
        return f"#{self.number} «{self.subject}» → {', '.join(self.recipients)}"


def _wanted(subject: str | None, to: str | None) -> str:
    what = f"«{subject}»" if subject is not None else "any subject"
    return what if to is None else f"{what} to {to}"


class Mailbox:
    """The journey's emails as an SMTP server on loopback received them.

    The server runs from ``start()`` to ``stop()`` (or as a context
    manager). Once ``attach``-ed to an ``Onboarding``, the mailbox delivers
    that deployment's outbox itself before every look, as the worker's relay
    would, and its failures show where the journeys stand.
    """

    def __init__(self, *, timeout: float = 2.0, host: str = "127.0.0.1") -> None:
        self.timeout = timeout
        self.catcher = SmtpCatcher(host)
        self._parsed: list[Email] = []
        self._returned: set[int] = set()
        self._onboarding: Onboarding | None = None
        self._relay: Relay | None = None

    @property
    def host(self) -> str:
        return self.catcher.host

    @property
    def port(self) -> int:
        return self.catcher.port

    def start(self) -> Mailbox:
        self.catcher.start()
        return self

    def stop(self) -> None:
        self.catcher.stop()

    def __enter__(self) -> Mailbox:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def attach(self, onboarding: Onboarding) -> None:
        """Deliver ``onboarding``'s outbox here, and describe its journeys."""
        self._onboarding = onboarding
        self._relay = onboarding.relay()

    def deliver(self) -> int:
        """Send the queued emails now; return how many were sent."""
        return 0 if self._relay is None else self._relay.deliver_pending()

    @property
    def emails(self) -> list[Email]:
        """Every email delivered so far, oldest first."""
        caught = self.catcher.messages
        for index in range(len(self._parsed), len(caught)):
            self._parsed.append(Email.parse(index + 1, caught[index]))
        return list(self._parsed)

    def find(self, subject: str | None = None, to: str | None = None) -> list[Email]:
        """The emails whose subject starts with ``subject`` and that went to
        ``to``, oldest first, after delivering the outbox. Waits for none."""
        self.deliver()
        return [message for message in self.emails if message.matches(subject, to)]

    def expect(
        self,
        subject: str | None = None,
        to: str | None = None,
        *,
        timeout: float | None = None,
    ) -> Email:
        """The newest matching email that ``expect`` has not returned yet.

        Waits up to ``timeout`` seconds (the mailbox's own by default) for
        one to arrive. Older unreturned matches count as read too, so after
        a new link is sent, ``expect`` gives the new email and never the
        old one. Raises ``JourneyExpectationError`` when none arrives.
        """
        __tracebackhide__ = True
        wait = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        while True:
            fresh = [
                m for m in self.find(subject, to) if m.number not in self._returned
            ]
            if fresh:
                self._returned.update(m.number for m in fresh)
                return fresh[-1]
            if time.monotonic() >= deadline:
                raise JourneyExpectationError(
                    f"no email {_wanted(subject, to)} arrived within {wait:g} s",
                    self.report(),
                )
            time.sleep(0.02)

    def listing(self) -> str:
        """The mailbox as a failure shows it: one numbered line per email."""
        received = self.emails
        if not received:
            return "mailbox: empty"
        lines = [f"mailbox ({len(received)} emails):"]
        lines += [f"  {message.line()}" for message in received]
        return "\n".join(lines)

    def report(self) -> str:
        """The listing, after delivering the outbox, then the journeys of
        the attached deployment."""
        if self._onboarding is None:
            return self.listing()
        try:
            self.deliver()
        except Exception as exc:  # a report must never hide the failure it explains
            undelivered = f"\noutbox: undeliverable ({type(exc).__name__}: {exc})"
        else:
            undelivered = ""
        listing = self.listing() + undelivered
        return f"{listing}\n\n{journeys_report(self._onboarding)}"


def journeys_report(onboarding: Onboarding) -> str:
    """Where every journey of ``onboarding``'s database stands, one per line:
    stage, documents, certification and post-enablement actions."""
    try:
        with onboarding.store.begin() as conn:
            ids = list(conn.scalars(sa.select(journeys.c.id).order_by(journeys.c.id)))
        lines = [_journey_line(onboarding, journey_id) for journey_id in ids]
    except Exception as exc:  # a report must never hide the failure it explains
        return f"journeys: unreadable ({type(exc).__name__}: {exc})"
    if not lines:
        return "journeys: none recorded"
    return "\n".join([f"journeys ({len(lines)}):", *lines])


def _journey_line(onboarding: Onboarding, journey_id: int) -> str:
    journey = onboarding.journey(journey_id)
    documents = ", ".join(str(code) for code in sorted(journey.documents)) or "none"
    line = (
        f"  {journey.order_number} (journey {journey.id}): "
        f"stage {journey.stage.value}; documents {documents}; "
        f"certification {_certification_text(journey.certification)}"
    )
    actions = onboarding.enablement_actions(journey_id)
    if actions:
        done = ", ".join(f"{a['product']}/{a['action']} {a['state']}" for a in actions)
        line += f"; actions {done}"
    return line


def _certification_text(snapshot: Mapping[str, Any] | None) -> str:
    if not snapshot:
        return "not started"
    steps = ", ".join(f"{s['id']} {s['state']}" for s in snapshot.get("steps", ()))
    return f"{snapshot.get('state')} ({steps})"


# -- the customer -----------------------------------------------------------


class InProcessTransport(httpx.BaseTransport):
    """Serves a synchronous ``httpx.Client`` from an ASGI app in process.

    ``httpx.ASGITransport`` answers only async clients, so each request is
    run on an event loop in a thread of its own (an anyio blocking portal),
    and the answer is read whole before it is handed back. ``close()``
    stops that thread.
    """

    def __init__(self, app: Any) -> None:
        self._asgi = httpx.ASGITransport(app=app)
        self._exit = contextlib.ExitStack()
        self._portal = self._exit.enter_context(
            anyio.from_thread.start_blocking_portal()
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def call() -> httpx.Response:
            answer = await self._asgi.handle_async_request(request)
            body = await answer.aread()
            return httpx.Response(
                answer.status_code,
                headers=answer.headers,
                stream=httpx.ByteStream(body),
            )

        return self._portal.call(call)

    def close(self) -> None:
        self._exit.close()


def _page_title(html: str) -> str:
    found = _TITLE.search(html)
    return " ".join(_TAG.sub(" ", found.group(1)).split()) if found else ""


def _page_alerts(html: str) -> list[str]:
    return [" ".join(_TAG.sub(" ", alert).split()) for alert in _ALERT.findall(html)]


@attrs.frozen
class KitPage:
    """A page the customer is looking at, and the buttons to press on it."""

    page: Page
    customer: KitCustomer = attrs.field(repr=False)

    @property
    def url(self) -> str:
        return self.page.url

    @property
    def status(self) -> int:
        return self.page.status

    @property
    def html(self) -> str:
        return self.page.html

    @property
    def text(self) -> str:
        """The visible text, whitespace collapsed."""
        return self.page.text

    @property
    def title(self) -> str:
        """The page's heading (its ``<h1>``)."""
        return _page_title(self.page.html)

    @property
    def alerts(self) -> list[str]:
        """The page's error messages, in Spanish, as a screen reader hears
        them: the alerts above a form and the errors beside its fields, in
        the page's order."""
        return _page_alerts(self.page.html)

    @property
    def buttons(self) -> list[str]:
        return [label for form in self.page.forms() for label in form.buttons]

    def press(
        self, button: str, *, status: int | None = None, **fields: FieldValue
    ) -> KitPage:
        """Type ``fields`` into the form of ``button`` and press it.

        See ``KitCustomer.press``.
        """
        __tracebackhide__ = True
        return self.customer.press(self, button, status=status, **fields)


class KitCustomer:
    """Follows the emails' buttons and fills the pages' forms over HTTP.

    A page that answers 400 or more when no ``status`` was asked for (or
    any other status than the one asked for) fails the test with the
    page's heading and Spanish error, the mailbox and the journeys.
    """

    def __init__(self, client: httpx.Client, mailbox: Mailbox) -> None:
        self.web = WebCustomer(client)
        self.mailbox = mailbox

    def click(
        self, message: Email, button: str, *, status: int | None = None
    ) -> KitPage:
        """Open the link under ``button`` in ``message``."""
        __tracebackhide__ = True
        try:
            url = message.link(button)
        except LookupError as exc:
            raise JourneyExpectationError(str(exc), self.mailbox.report()) from None
        what = f"«{button}» of email #{message.number} led to {url}"
        return self._checked(self.web.open(url), what, status, asked=url)

    def open(self, url: str, *, status: int | None = None) -> KitPage:
        """Open ``url`` as if typed into the browser."""
        __tracebackhide__ = True
        return self._checked(self.web.open(url), f"GET {url}", status, asked=url)

    def press(
        self,
        page: KitPage,
        button: str,
        *,
        status: int | None = None,
        **fields: FieldValue,
    ) -> KitPage:
        """Press ``button`` on ``page`` after typing ``fields`` into its form.

        The form's own hidden fields and pre-checked boxes are sent as a
        browser sends them; a given field replaces the form's value. A
        sequence checks exactly those boxes; ``bytes`` are uploaded as the
        file of that field.
        """
        __tracebackhide__ = True
        data: dict[str, str | list[str]] = {}
        files: dict[str, tuple[str, bytes, str]] = {}
        for name, value in fields.items():
            if isinstance(value, bytes):
                files[name] = (name, value, "application/octet-stream")
            elif isinstance(value, str | int):
                data[name] = str(value)
            else:
                data[name] = [str(item) for item in value]
        try:
            answer = self.web.submit(page.page, button, data, files or None)
        except LookupError:
            offered = ", ".join(f"«{label}»" for label in page.buttons) or "none"
            problem = f"no «{button}» button on {page.url}; its buttons: {offered}"
            raise JourneyExpectationError(problem, self.mailbox.report()) from None
        return self._checked(answer, f"pressing «{button}» on {page.url}", status)

    def _checked(
        self, page: Page, what: str, status: int | None, asked: str | None = None
    ) -> KitPage:
        __tracebackhide__ = True
        if page.status == status or (status is None and page.status < 400):
            return KitPage(page, self)
        expected = "a page without error" if status is None else str(status)
        lines = [f"{what}: answered {page.status}, expected {expected}"]
        where = "" if page.url == asked else f" at {page.url}"
        lines.append(f"  page «{_page_title(page.html)}»{where}")
        lines += [f"  says: {alert}" for alert in _page_alerts(page.html)]
        raise JourneyExpectationError("\n".join(lines), self.mailbox.report())

    def close(self) -> None:
        self.web.close()


# -- the kit ----------------------------------------------------------------


@attrs.define
class JourneyKit:
    """One deployment on real parts, and the steps of a journey test."""

    onboarding: Onboarding
    mailbox: Mailbox
    customer: KitCustomer
    clock: MovableClock
    sandbox_url: str
    password: str = "Cordillera2026"
    signature_password: str = "firma-1234"
    _worker: Worker = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._worker = Worker(self.onboarding)

    def purchase(self, purchase: Purchase) -> Journey:
        """Record a paid ``purchase``; its first emails wait in the outbox."""
        return self.onboarding.record_purchase(purchase)

    def journey(self, journey: Journey | int) -> Journey:
        """``journey`` as it stands now."""
        return self.onboarding.journey(
            journey if isinstance(journey, int) else journey.id
        )

    def signature(self, **knobs: Any) -> bytes:
        """A ``.pfx`` opened by ``signature_password``; ``knobs`` go to
        ``make_pkcs12`` (an expired file, another holder...)."""
        return make_pkcs12(**{"password": self.signature_password, **knobs})

    def run_worker_once(self) -> int:
        """The worker's round: password requests, certification polls,
        post-enablement actions, then the relay. Returns emails sent."""
        return self._worker.run_once()

    def walk_to_enabled(
        self, purchase: Purchase, documents: Sequence[int] = ()
    ) -> Journey:
        """Record ``purchase`` and do every customer step through the SDK,
        each with the link of the email that carries it, up to the
        certification's verdict. ``documents`` are the optional DTE codes
        chosen. Returns the journey, enabled unless the sandbox was told to
        fail a step."""
        __tracebackhide__ = True
        walker = self._walker()
        try:
            return walker.to_enabled(purchase, tuple(documents))
        except (LookupError, AssertionError, OnboardingError) as exc:
            problem = f"the walk of {purchase.order_number} stopped: {exc!r}"
            raise JourneyExpectationError(problem, self.report()) from exc

    def finish_certification(self, journey: Journey) -> Journey:
        """Move the sandbox certification of ``journey`` through every step,
        polling after each, until the service gives its verdict."""
        __tracebackhide__ = True
        try:
            return self._walker().finish_certification(self.journey(journey))
        except (AssertionError, OnboardingError, httpx.HTTPError) as exc:
            problem = f"the certification of {journey.order_number} stopped: {exc!r}"
            raise JourneyExpectationError(problem, self.report()) from exc

    def report(self) -> str:
        """The mailbox and the journeys, as a failed expectation shows them."""
        return self.mailbox.report()

    def _walker(self) -> JourneyWalker:
        return JourneyWalker(
            self.onboarding,
            self.mailbox.catcher,
            self.sandbox_url,
            password=self.password,
            signature_password=self.signature_password,
        )
