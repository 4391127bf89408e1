"""Kept link pages (docs/web.md, "Kept link pages") over real HTTP: a page
served again is one this request's database read still draws, never a
page of another browser's, never a link that died in between, and always
with the pages' headers and a form token signed for this request."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator

import attrs
import httpx
import pytest

from haulmer_onboarding import Onboarding, Settings, Stage
from haulmer_onboarding.testing.clock import MovableClock
from haulmer_onboarding.testing.customer import Page, WebCustomer, link_in
from haulmer_onboarding.testing.scenarios import purchase_for
from haulmer_onboarding.testing.servers import free_port, serve_in_thread
from haulmer_onboarding.testing.smtp import SmtpCatcher
from haulmer_onboarding.web import create_app
from haulmer_onboarding.web.csrf import COOKIE

BUYER = "compras@ferreteria-los-andes.cl"
GOOD = "Cordillera2026"
PASSWORD = "[Haulmer Accounts] Crea tu nueva contraseña"
WORKSPACE = "[Workspace] Crea tu nuevo espacio de trabajo"


@attrs.define
class Site:
    onboarding: Onboarding
    catcher: SmtpCatcher
    clock: MovableClock
    url: str

    def link(self, subject: str, button: str) -> str:
        self.onboarding.process_password_requests()
        self.onboarding.relay().deliver_pending()
        found = [m for m in self.catcher.messages if m.subject.startswith(subject)]
        assert found, f"no email {subject!r}"
        return link_in(found[-1], button)


@pytest.fixture
def site(settings: Settings, catcher: SmtpCatcher) -> Iterator[Site]:
    port = free_port()
    clock = MovableClock()
    facade = Onboarding(
        attrs.evolve(settings, base_url=f"http://127.0.0.1:{port}", clock=clock)
    )
    facade.create_tables()
    with serve_in_thread(create_app(facade), port=port) as server:
        yield Site(facade, catcher, clock, server.url)
    facade.close()


def _token(page: Page | httpx.Response) -> str:
    html = page.html if isinstance(page, Page) else page.text
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no form token"
    return found[1]


def _private(response: httpx.Response) -> None:
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "set-cookie" not in response.headers


def test_two_browsers_on_one_link_get_their_own_form_and_nothing_of_the_other(
    site: Site,
) -> None:
    site.onboarding.record_purchase(purchase_for("simple", BUYER, "OC-1"))
    url = site.link(PASSWORD, "CREAR CONTRASEÑA")
    with WebCustomer() as first, WebCustomer() as second:
        # The first browser holds the linkless forms' cookie.
        first.open(site.url + "/olvide-mi-contrasena")
        cookie = first.client.cookies.get(COOKIE)
        assert cookie
        drawn = [first.client.get(url) for _ in range(3)]
        # Tokens carry their second: the next one must be signed now, not
        # copied from the page kept a second ago.
        time.sleep(1.1)
        kept = second.client.get(url)
        assert second.client.cookies.get(COOKIE) is None

    for response in [*drawn, kept]:
        assert response.status_code == 200
        _private(response)
        assert cookie not in response.text
    assert _token(kept) != _token(drawn[0])
    # The same page otherwise, byte for byte.
    assert kept.text == drawn[0].text.replace(_token(drawn[0]), _token(kept))

    # Each browser's token works for its own post, and the GETs before it
    # consumed nothing.
    done = httpx.post(
        url,
        data={"password": GOOD, "confirmation": GOOD, "csrf_token": _token(kept)},
    )
    assert done.status_code == 303  # post/redirect/get
    assert site.onboarding.verify_password(BUYER, GOOD)


_OTHER_PROCESS = """
import sys
from haulmer_onboarding import Onboarding, Settings
facade = Onboarding(Settings.from_env())
facade.create_workspace_administrator(sys.argv[1], sys.argv[2], "Camila Rojas")
facade.close()
"""


@pytest.mark.both_databases
def test_a_change_by_another_instance_or_process_shows_on_the_next_get(
    site: Site,
) -> None:
    site.onboarding.record_purchase(purchase_for("razon-social", BUYER, "OC-1"))
    site.onboarding.set_password(
        site.link(PASSWORD, "CREAR CONTRASEÑA").rsplit("/", 1)[1], GOOD, GOOD
    )
    url = site.link(WORKSPACE, "CREAR WORKSPACE")
    token = url.rsplit("/", 1)[1]
    for _ in range(3):
        page = httpx.get(url)
        assert page.status_code == 200
        assert "ACTIVAR" in page.text
        assert "Paso 1 de 3" not in page.text

    # Another instance: its own engine and connections, nothing shared with
    # the server's but the database.
    settings = site.onboarding.settings
    other = Onboarding(attrs.evolve(settings, clock=site.clock))
    try:
        other.activate_workspace(token)
    finally:
        other.close()
    page = httpx.get(url)
    assert "Paso 1 de 3" in page.text
    assert "ACTIVAR" not in page.text
    _private(page)
    assert "Paso 1 de 3" in httpx.get(url).text

    # Another process: the administrator it names is on the next page.
    env = {
        **os.environ,
        "HAULMER_ONBOARDING_DATABASE_URL": settings.database_url,
        "HAULMER_ONBOARDING_SECRET_KEYS": ",".join(settings.secret_keys),
        "HAULMER_ONBOARDING_SEALING_KEYS": ",".join(settings.sealing_keys),
        "HAULMER_ONBOARDING_BASE_URL": settings.base_url,
    }
    administrator = "admin@ferreteria-los-andes.cl"
    subprocess.run(
        [sys.executable, "-c", _OTHER_PROCESS, token, administrator],
        env=env,
        check=True,
        timeout=60,
    )
    page = httpx.get(url)
    assert "Paso 2 de 3" in page.text
    back = httpx.get(url + "?paso=1")
    assert "Paso 1 de 3" in back.text
    assert f'value="{administrator}"' in back.text
    assert (
        site.onboarding.journey_by_order("OC-1").stage is Stage.WORKSPACE_ADMIN_CREATED
    )


def test_a_link_used_or_expired_after_kept_gets_is_refused(site: Site) -> None:
    site.onboarding.record_purchase(purchase_for("razon-social", BUYER, "OC-1"))
    password = site.link(PASSWORD, "CREAR CONTRASEÑA")
    with WebCustomer() as customer:
        for _ in range(3):
            assert customer.open(password).status == 200
        page = customer.open(password)
        done = customer.submit(
            page, "CREAR CONTRASEÑA", {"password": GOOD, "confirmation": GOOD}
        )
        assert done.status == 200

    used = httpx.get(password)
    assert used.status_code == 410
    assert 'name="csrf_token"' not in used.text
    _private(used)

    # Past the link's days, the page kept a moment ago is not shown.
    workspace = site.link(WORKSPACE, "CREAR WORKSPACE")
    for _ in range(3):
        assert httpx.get(workspace).status_code == 200
    site.clock.advance(days=15)
    expired = httpx.get(workspace)
    assert expired.status_code == 410
    assert "ENVIAR UN NUEVO ENLACE" in expired.text
    _private(expired)
    assert site.onboarding.journey_by_order("OC-1").stage is Stage.WORKSPACE_PENDING
