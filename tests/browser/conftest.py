"""A real browser for the journey's pages: Debian's Chromium under Playwright.

Playwright's Python package drives the Chromium that Debian installs at
``/usr/bin/chromium`` (``HAULMER_ONBOARDING_CHROMIUM`` names another one);
Playwright's own browser downloads are never used. Without that Chromium
the browser tests are skipped with the reason, except under CI
(``CI=true``), where they fail: a CI run must never pass without them.

Every page a test looks at is saved as a full-page PNG under
``artifacts/screenshots/<test>/``, numbered in the order the customer saw
them; the folder of each test is emptied when the test starts. A request
to any host but 127.0.0.1 is refused and fails the test: the pages must
work with no internet.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    Request,
    Response,
    Route,
    sync_playwright,
)

CHROMIUM = os.environ.get("HAULMER_ONBOARDING_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium keeps calling hosts that
# a machine with no internet cannot reach.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 667}
LOCAL_HOSTS = {"127.0.0.1"}
#: A RUT written the way programs store it (76543210-3), not as people read it.
UNDOTTED_RUT = re.compile(r"(?<![\d.])\d{7,9}-[\dkK](?![\w])")
# Schemes that never leave the browser.
LOCAL_SCHEMES = {"data", "blob", "about"}


def _screenshot_root(config: pytest.Config) -> Path:
    return config.rootpath / "artifacts" / "screenshots"


def pytest_terminal_summary(
    terminalreporter: Any, exitstatus: int, config: pytest.Config
) -> None:
    root = _screenshot_root(config)
    shots = sorted(root.rglob("*.png")) if root.is_dir() else []
    if shots:
        terminalreporter.write_line(
            f"browser screenshots: {len(shots)} pages in {root}"
        )


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def chromium(playwright: Playwright) -> Iterator[Browser]:
    """Debian's Chromium, headless; skipped (failed under CI) when missing."""
    if not Path(CHROMIUM).is_file():
        reason = (
            f"no Chromium at {CHROMIUM}: install Debian's package "
            "(apt-get install -y chromium) or set HAULMER_ONBOARDING_CHROMIUM"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"browser tests cannot run under CI: {reason}")
        pytest.skip(reason)
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True
    )
    yield browser
    browser.close()


class Offline:
    """Every request a browser context made, refusing any that leaves
    127.0.0.1."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.refused: list[str] = []

    @staticmethod
    def is_local(url: str) -> bool:
        parts = urlsplit(url)
        return parts.scheme in LOCAL_SCHEMES or parts.hostname in LOCAL_HOSTS

    def route(self, route: Route, request: Request) -> None:
        if self.is_local(request.url):
            route.continue_()
        else:
            self.refused.append(request.url)
            route.abort("internetdisconnected")

    def record(self, request: Request) -> None:
        self.seen.append(request.url)


class Screens:
    """The customer's browser tab: opens links, presses buttons, and saves
    each page it lands on after checking what every page owes the customer
    (a language, one heading, a label for each field, no sideways scrolling
    on a phone)."""

    def __init__(self, page: Page, folder: Path, *, phone: bool) -> None:
        self.page = page
        self.folder = folder
        self.phone = phone
        self.saved: list[Path] = []

    def open(self, url: str, name: str, *, status: int | None = None) -> Response:
        """Go to ``url`` as a click in a mail client would, then ``shoot``."""
        __tracebackhide__ = True
        response = self.page.goto(url)
        return self._landed(response, f"opening {url}", name, status)

    def press(self, button: str, name: str, *, status: int | None = None) -> Response:
        """Press the button named ``button`` and wait for the next page."""
        __tracebackhide__ = True
        with self.page.expect_navigation() as navigation:
            self.page.get_by_role("button", name=button, exact=True).click()
        return self._landed(navigation.value, f"pressing {button}", name, status)

    def _landed(
        self, response: Response | None, what: str, name: str, status: int | None
    ) -> Response:
        __tracebackhide__ = True
        assert response is not None, f"{what}: no answer"
        if status is None:
            assert response.status < 400, (
                f"{what}: answered {response.status}: "
                f"{self.page.locator('main').inner_text()}"
            )
        else:
            assert response.status == status, f"{what}: answered {response.status}"
        self.shoot(name)
        return response

    def shoot(self, name: str) -> Path:
        """Check the page and save it, full length, as ``NN-name.png``."""
        __tracebackhide__ = True
        check_page(self.page, phone=self.phone, name=name)
        path = self.folder / f"{len(self.saved) + 1:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.saved.append(path)
        return path


def check_page(page: Page, *, phone: bool, name: str) -> None:
    """What every page of the journey owes the customer."""
    __tracebackhide__ = True
    assert page.evaluate("document.documentElement.lang") == "es-CL", name
    assert page.locator("h1").count() == 1, f"{name}: one <h1> per page"
    unlabeled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea')]
            .filter(e => e.type !== 'hidden')
            .filter(e => e.labels.length === 0 && !e.getAttribute('aria-label')
                         && !e.getAttribute('aria-labelledby'))
            .map(e => e.name || e.id || e.outerHTML)"""
    )
    assert unlabeled == [], f"{name}: fields without a label: {unlabeled}"
    # A RUT is read with its dots, as every field's example writes it.
    undotted = UNDOTTED_RUT.findall(page.locator("body").inner_text())
    assert undotted == [], f"{name}: RUTs shown without dots: {undotted}"
    if phone:
        overflow = page.evaluate(
            """() => ({scroll: document.documentElement.scrollWidth,
                       view: document.documentElement.clientWidth})"""
        )
        assert overflow["scroll"] <= overflow["view"], (
            f"{name}: the page scrolls sideways on a phone: "
            f"{overflow['scroll']} px wide in a {overflow['view']} px screen"
        )


def _slug(nodeid: str) -> str:
    name = nodeid.split("::")[-1]
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")


def open_context(
    browser: Browser, *, phone: bool = False
) -> tuple[BrowserContext, Offline]:
    viewport = PHONE if phone else DESKTOP
    context = browser.new_context(
        viewport=viewport,
        locale="es-CL",
        timezone_id="America/Santiago",
        is_mobile=phone,
        has_touch=phone,
        device_scale_factor=2 if phone else 1,
    )
    context.set_default_timeout(15_000)
    offline = Offline()
    context.route("**/*", offline.route)
    context.on("request", offline.record)
    return context, offline


@pytest.fixture
def screenshot_folder(request: pytest.FixtureRequest) -> Path:
    """``artifacts/screenshots/<test>/``, emptied for this run of the test."""
    folder = _screenshot_root(request.config) / _slug(request.node.nodeid)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def viewport_kind() -> str:
    """``desktop`` (1280x800); a test parametrized with ``viewport_kind``
    set to ``phone`` gets a phone's screen (375x667)."""
    return "desktop"


@pytest.fixture
def browser_page(
    chromium: Browser, viewport_kind: str
) -> Iterator[tuple[Page, Offline]]:
    """A fresh page in its own context; fails the test if any request left
    127.0.0.1."""
    context, offline = open_context(chromium, phone=viewport_kind == "phone")
    page = context.new_page()
    yield page, offline
    context.close()
    assert offline.refused == [], f"requests left 127.0.0.1: {offline.refused}"


@pytest.fixture
def screens(
    browser_page: tuple[Page, Offline], screenshot_folder: Path, viewport_kind: str
) -> Screens:
    return Screens(browser_page[0], screenshot_folder, phone=viewport_kind == "phone")
