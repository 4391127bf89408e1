"""The web app mounted under a path prefix in Starlette, FastAPI, Flask
(through a2wsgi) and Django (ASGI), each served over real HTTP, and a real
emailed link followed in each: the link carries the prefix, and so do the
page's form, its stylesheet, its script and its API."""

from __future__ import annotations

import threading
import types
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import attrs
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from haulmer_onboarding import Onboarding, Settings
from haulmer_onboarding.testing.customer import WebCustomer, link_in
from haulmer_onboarding.testing.scenarios import purchase_for
from haulmer_onboarding.testing.servers import free_port, serve_in_thread
from haulmer_onboarding.testing.smtp import SmtpCatcher
from haulmer_onboarding.web import create_app

PREFIX = "/onboarding"
BUYER = "compras@ferreteria-los-andes.cl"
GOOD = "Cordillera2026"
HOME = "la aplicación anfitriona"

Host = Callable[[Any, int], AbstractContextManager[None]]


# -- one host application per framework, each serving on a real socket ---------


@contextmanager
def starlette_host(onboarding_app: Any, port: int) -> Iterator[None]:
    async def home(request: Request) -> PlainTextResponse:
        return PlainTextResponse(HOME)

    app = Starlette(routes=[Route("/", home), Mount(PREFIX, app=onboarding_app)])
    with serve_in_thread(app, port=port):
        yield


@contextmanager
def fastapi_host(onboarding_app: Any, port: int) -> Iterator[None]:
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/", response_class=PlainTextResponse)
    def home() -> str:
        return HOME

    app.mount(PREFIX, onboarding_app)
    with serve_in_thread(app, port=port):
        yield


@contextmanager
def flask_host(onboarding_app: Any, port: int) -> Iterator[None]:
    from a2wsgi import ASGIMiddleware
    from flask import Flask
    from werkzeug.middleware.dispatcher import DispatcherMiddleware
    from werkzeug.serving import make_server

    app = Flask("host")

    @app.get("/")
    def home() -> str:
        return HOME

    app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, {PREFIX: ASGIMiddleware(onboarding_app)}
    )
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        thread.join(10)


@contextmanager
def django_host(onboarding_app: Any, port: int) -> Iterator[None]:
    import django
    from django.conf import settings
    from django.core.asgi import get_asgi_application
    from django.http import HttpRequest, HttpResponse
    from django.urls import path

    def home(request: HttpRequest) -> HttpResponse:
        return HttpResponse(HOME, content_type="text/plain; charset=utf-8")

    if not settings.configured:
        urls = types.ModuleType("host_urls")
        urls.urlpatterns = [path("", home)]  # type: ignore[attr-defined]
        settings.configure(
            DEBUG=False,
            SECRET_KEY="a-django-key-for-this-test-only",
            ALLOWED_HOSTS=["127.0.0.1"],
            ROOT_URLCONF=urls,
            INSTALLED_APPS=[],
            MIDDLEWARE=[],
        )
        django.setup()
    # Django's URLconf cannot hold an ASGI app: the project's asgi.py sends
    # the prefix to the onboarding app and everything else to Django.
    app = Starlette(
        routes=[
            Mount(PREFIX, app=onboarding_app),
            Mount("", app=get_asgi_application()),
        ]
    )
    with serve_in_thread(app, port=port):
        yield


HOSTS: dict[str, Host] = {
    "starlette": starlette_host,
    "fastapi": fastapi_host,
    "flask-a2wsgi": flask_host,
    "django-asgi": django_host,
}


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def mounted(settings: Settings, port: int) -> Iterator[Onboarding]:
    # A trailing slash on base_url is tolerated: links never get "//".
    base_url = f"http://127.0.0.1:{port}{PREFIX}/"
    facade = Onboarding(attrs.evolve(settings, base_url=base_url))
    facade.create_tables()
    yield facade
    facade.close()


@pytest.mark.parametrize("framework", list(HOSTS))
def test_an_emailed_link_works_under_a_prefix(
    framework: str, mounted: Onboarding, catcher: SmtpCatcher, port: int
) -> None:
    root = f"http://127.0.0.1:{port}"
    mounted.record_purchase(purchase_for("simple", BUYER))
    mounted.relay().deliver_pending()
    message = next(m for m in catcher.messages if "contraseña" in m.subject)
    link = link_in(message, "CREAR CONTRASEÑA")
    assert link.startswith(f"{root}{PREFIX}/contrasena/")

    with HOSTS[framework](create_app(mounted), port), WebCustomer() as web:
        assert web.open(root + "/").text == HOME

        page = web.open(link)
        assert page.status == 200, page.text
        form = page.form("CREAR CONTRASEÑA")
        assert form.action.startswith(f"{PREFIX}/contrasena/")
        for asset in ("site.css", "password.js"):
            assert f'"{PREFIX}/static/{asset}"' in page.html
            served = web.client.get(f"{root}{PREFIX}/static/{asset}")
            assert served.status_code == 200, asset

        refused = web.submit(
            page, "CREAR CONTRASEÑA", {"password": GOOD, "confirmation": "otra"}
        )
        assert refused.status == 400
        assert "no coinciden" in refused.text
        assert mounted.verify_password(BUYER, GOOD) is False
        done = web.submit(
            page, "CREAR CONTRASEÑA", {"password": GOOD, "confirmation": GOOD}
        )
        assert done.status == 200, done.text
        assert "¡Tu contraseña está lista!" in done.text
        assert mounted.verify_password(BUYER, GOOD)

        # The linkless form's cookie is scoped to the prefix and comes back.
        forgot = web.open(f"{root}{PREFIX}/olvide-mi-contrasena")
        sent = web.submit(forgot, "ENVIAR EMAIL", {"email": BUYER})
        assert sent.status == 200, sent.text
        assert "te enviamos el correo" in sent.text

        document = web.client.get(f"{root}{PREFIX}/api/v1/openapi.json").json()
        assert document["servers"] == [{"url": f"{PREFIX}/api/v1"}]
        api = web.client.get(
            f"{root}{PREFIX}/api/v1/password",
            headers={"Authorization": "Bearer " + link.rsplit("/", 1)[1]},
        )
        assert api.status_code == 410
        assert api.json()["error"]["code"] == "link_used"


@pytest.mark.parametrize("framework", list(HOSTS))
def test_every_page_family_resolves_its_links_under_a_prefix(
    framework: str, mounted: Onboarding, catcher: SmtpCatcher, port: int
) -> None:
    # The pages build their own links (forms, the forgotten-password page)
    # from the host's router: each family answers its page, never a 500.
    root = f"http://127.0.0.1:{port}"
    mounted.record_purchase(purchase_for("simple", BUYER))
    mounted.relay().deliver_pending()
    password_link = link_in(
        next(m for m in catcher.messages if "contraseña" in m.subject),
        "CREAR CONTRASEÑA",
    )
    with HOSTS[framework](create_app(mounted), port), WebCustomer() as web:
        page = web.open(password_link)
        web.submit(page, "CREAR CONTRASEÑA", {"password": GOOD, "confirmation": GOOD})
        mounted.relay().deliver_pending()
        setup_link = link_in(
            next(m for m in catcher.messages if "Habilita" in m.subject),
            "INICIAR SETUP",
        )
        setup = web.open(setup_link)
        assert setup.status == 200, setup.text
        assert setup.form("COMENZAR").action.startswith(f"{PREFIX}/setup/")

        for family in ("contrasena", "workspace", "setup", "certificacion"):
            bad = web.open(f"{root}{PREFIX}/{family}/no-es-un-enlace")
            assert bad.status == 404, (family, bad.text)
            assert "Enlace no válido" in bad.text
            if family == "contrasena":
                assert f'href="{PREFIX}/olvide-mi-contrasena"' in bad.html
