"""The journey testing kit as pytest fixtures, loaded through ``pytest11``.

Installing haulmer-onboarding registers this module with pytest, so any test
suite in the environment can ask for the fixtures below; ``-p
no:haulmer_onboarding`` turns it off. Importing it is cheap: nothing starts
until a test asks for a fixture, and the modules that run servers are
imported there.

Each fixture lives for one test:

- ``journey_kit``: a ``JourneyKit`` over all of the below.
- ``kit_onboarding``: the SDK (``Onboarding``) on a SQLite file in the test's
  temporary folder, its tables created.
- ``kit_settings``: its ``Settings``, pointed at the kit's SMTP server,
  sandbox and clock; ``services`` points every product at the sandbox.
- ``kit_mailbox``: a ``Mailbox`` on a real SMTP server on 127.0.0.1.
- ``kit_customer``: a ``KitCustomer`` talking to the link pages in process,
  or over a live server when asked for.
- ``kit_sandbox``: the certification sandbox, with the sandbox routes of
  every loaded product plugin mounted at ``/<product>``, served on
  127.0.0.1 (a ``RunningServer``).
- ``kit_plugins``: the loaded ``Plugins``; override it to load others.
- ``kit_clock``: the ``MovableClock`` of the SDK and of the sandbox.
- ``kit_pkcs12``: the signature factory, ``make_pkcs12``.

The ``journey_kit`` marker chooses how they start; the ini option
``journey_kit_timeout`` (seconds, 2 by default) is how long the mailbox
waits for an email.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from haulmer_onboarding.hookspecs import Plugins
    from haulmer_onboarding.journey import Onboarding
    from haulmer_onboarding.settings import Settings
    from haulmer_onboarding.testing.clock import MovableClock
    from haulmer_onboarding.testing.scenario import JourneyKit, KitCustomer, Mailbox
    from haulmer_onboarding.testing.servers import RunningServer

#: Where links point when the customer talks to the app in process.
IN_PROCESS_URL = "http://onboarding.test"

_MARKER = "journey_kit"
_OPTIONS = {"live_server", "fail_steps", "retry_steps", "timeout"}
# The sandbox's steps last their business days on the kit's clock, counted
# as 24 hours each: moving the clock a day ends a one-day step.
_SECONDS_PER_BUSINESS_DAY = 24 * 3600.0


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "journey_kit_timeout",
        "seconds the journey kit's mailbox waits for an expected email",
        default="2",
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test that used the kit shows the mailbox and the journeys,
    even when it failed on a plain ``assert``."""
    report = yield
    if report.failed and call.when == "call":
        kit = getattr(item, "funcargs", {}).get("journey_kit")
        if kit is not None:
            try:
                report.sections.append(("journey kit", kit.report()))
            except Exception as exc:  # a broken database must not hide the failure
                report.sections.append(("journey kit", f"(no report: {exc!r})"))
    return report


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "journey_kit(live_server=False, fail_steps=None, retry_steps=None, "
        "timeout=None): how the journey kit's fixtures start: the pages on a "
        "live server on 127.0.0.1, sandbox steps that fail (for good, or once) "
        "with a Spanish message, the mailbox's timeout in seconds",
    )


def _options(request: pytest.FixtureRequest) -> Mapping[str, Any]:
    marker = request.node.get_closest_marker(_MARKER)
    if marker is None:
        return {}
    if marker.args or not set(marker.kwargs) <= _OPTIONS:
        raise pytest.UsageError(
            f"@pytest.mark.{_MARKER} takes only the keywords "
            f"{', '.join(sorted(_OPTIONS))}; got {marker.args!r} {marker.kwargs!r}"
        )
    return dict(marker.kwargs)


@pytest.fixture
def kit_plugins() -> Plugins:
    """The product plugins the kit's SDK and sandbox load: every installed
    one not blocked by ``HAULMER_ONBOARDING_BLOCKED_PLUGINS``."""
    from haulmer_onboarding.hookspecs import Plugins
    from haulmer_onboarding.settings import Settings

    return Plugins(blocked=Settings.blocked_plugins_from_env())


@pytest.fixture
def kit_clock() -> MovableClock:
    """The SDK's and the sandbox's clock: it moves only with ``advance``."""
    from haulmer_onboarding.testing.clock import MovableClock

    return MovableClock()


@pytest.fixture
def kit_mailbox(request: pytest.FixtureRequest) -> Iterator[Mailbox]:
    """A real SMTP server on 127.0.0.1 keeping the journey's emails."""
    from haulmer_onboarding.testing.scenario import Mailbox

    timeout = _options(request).get("timeout")
    if timeout is None:
        timeout = request.config.getini("journey_kit_timeout")
    with Mailbox(timeout=float(timeout)) as mailbox:
        yield mailbox


@pytest.fixture
def kit_sandbox(
    request: pytest.FixtureRequest, kit_plugins: Plugins, kit_clock: MovableClock
) -> Iterator[RunningServer]:
    """The certification sandbox and the plugins' sandbox routes, served on
    127.0.0.1; its steps move with ``kit_clock`` or when advanced."""
    from haulmer_onboarding.sandbox import create_sandbox_app
    from haulmer_onboarding.testing.servers import serve_in_thread

    options = _options(request)
    app = create_sandbox_app(
        seconds_per_business_day=_SECONDS_PER_BUSINESS_DAY,
        clock=lambda: kit_clock().timestamp(),
        fail_steps=options.get("fail_steps"),
        retry_steps=options.get("retry_steps"),
        services=kit_plugins.sandbox_routes(),
    )
    with serve_in_thread(app) as server:
        yield server


@pytest.fixture
def kit_settings(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    kit_plugins: Plugins,
    kit_mailbox: Mailbox,
    kit_sandbox: RunningServer,
    kit_clock: MovableClock,
) -> Settings:
    """Fresh keys, a SQLite file, the kit's SMTP server, sandbox and clock."""
    import secrets

    from cryptography.fernet import Fernet

    from haulmer_onboarding.settings import Settings
    from haulmer_onboarding.testing.servers import free_port

    base_url = IN_PROCESS_URL
    if _options(request).get("live_server"):
        base_url = f"http://127.0.0.1:{free_port()}"
    return Settings(
        secret_keys=(secrets.token_urlsafe(32),),
        sealing_keys=(Fernet.generate_key().decode(),),
        database_url=f"sqlite:///{tmp_path / 'journey-kit.db'}",
        base_url=base_url,
        smtp_host=kit_mailbox.host,
        smtp_port=kit_mailbox.port,
        certification_url=kit_sandbox.url,
        services={
            product: {"url": f"{kit_sandbox.url}/{product}", "api_key": "sandbox"}
            for product in kit_plugins.products
        },
        clock=kit_clock,
    )


@pytest.fixture
def kit_onboarding(
    kit_settings: Settings, kit_plugins: Plugins, kit_mailbox: Mailbox
) -> Iterator[Onboarding]:
    """The SDK on ``kit_settings``; ``kit_mailbox`` delivers its outbox."""
    from haulmer_onboarding.journey import Onboarding

    facade = Onboarding(kit_settings, plugins=kit_plugins)
    facade.create_tables()
    kit_mailbox.attach(facade)
    yield facade
    facade.close()


@pytest.fixture
def kit_customer(
    request: pytest.FixtureRequest, kit_onboarding: Onboarding, kit_mailbox: Mailbox
) -> Iterator[KitCustomer]:
    """A customer without a browser, on the SDK's link pages.

    By default the pages answer in process, through ``InProcessTransport``;
    with ``@pytest.mark.journey_kit(live_server=True)`` they are served by
    uvicorn on the port of ``Settings.base_url``.
    """
    from urllib.parse import urlsplit

    import httpx

    from haulmer_onboarding.testing.scenario import InProcessTransport, KitCustomer
    from haulmer_onboarding.testing.servers import serve_in_thread
    from haulmer_onboarding.web import create_app

    app = create_app(kit_onboarding)
    base_url = kit_onboarding.settings.base_url
    if _options(request).get("live_server"):
        with serve_in_thread(app, port=urlsplit(base_url).port) as server:
            customer = KitCustomer(
                httpx.Client(base_url=server.url, timeout=30.0, follow_redirects=True),
                kit_mailbox,
            )
            yield customer
            customer.close()
        return

    # Closing the client closes the transport and stops its event loop.
    client = httpx.Client(
        transport=InProcessTransport(app), base_url=base_url, follow_redirects=True
    )
    customer = KitCustomer(client, kit_mailbox)
    yield customer
    customer.close()


@pytest.fixture
def kit_pkcs12() -> Callable[..., bytes]:
    """``make_pkcs12``: real ``.pfx`` files shaped like Chilean signatures."""
    from haulmer_onboarding.testing.signatures import make_pkcs12

    return make_pkcs12


@pytest.fixture
def journey_kit(
    kit_onboarding: Onboarding,
    kit_mailbox: Mailbox,
    kit_customer: KitCustomer,
    kit_clock: MovableClock,
    kit_sandbox: RunningServer,
) -> JourneyKit:
    """The SDK, mailbox, customer, clock, sandbox and worker of one test."""
    from haulmer_onboarding.testing.scenario import JourneyKit

    return JourneyKit(
        onboarding=kit_onboarding,
        mailbox=kit_mailbox,
        customer=kit_customer,
        clock=kit_clock,
        sandbox_url=kit_sandbox.url,
    )
