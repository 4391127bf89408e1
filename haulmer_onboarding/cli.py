"""The ``haulmer-onboarding`` command.

``demo``     runs a whole journey on real parts and prints its timeline.
``serve``    runs the same parts for a person to click through.
``worker``   runs a deployment's background work, configured by environment.
``plugins``  lists the loaded plugins and the hooks each implements.
``migrate``  brings the database to the newest schema (or prints its SQL).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import secrets
import socket
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import attrs
import sqlalchemy as sa
from cryptography.fernet import Fernet

from haulmer_onboarding.hookspecs import Plugins
from haulmer_onboarding.journey import Onboarding
from haulmer_onboarding.migrations import migrate, sql_script
from haulmer_onboarding.models import Stage
from haulmer_onboarding.sandbox import create_sandbox_app
from haulmer_onboarding.settings import Settings
from haulmer_onboarding.testing.customer import (
    Page,
    WebCustomer,
    link_in,
    wait_for,
    wait_for_subject,
)
from haulmer_onboarding.testing.scenarios import SCENARIOS, purchase_for
from haulmer_onboarding.testing.servers import free_port, serve_in_thread
from haulmer_onboarding.testing.signatures import make_pkcs12
from haulmer_onboarding.testing.smtp import SmtpCatcher
from haulmer_onboarding.web import create_app
from haulmer_onboarding.worker import Worker

__all__ = ["main"]

SUBJECTS = {
    "purchase": "Haulmer - Compra exitosa",
    "payment": "Haulmer - Pago Confirmado",
    "tax": "¿Boleta o factura? Obtén tu documento tributario por la compra en HAULMER",
    "password": "[Haulmer Accounts] Crea tu nueva contraseña",
    "workspace": "[Workspace] Crea tu nuevo espacio de trabajo",
    "setup": "¡Habilita tu organización para emitir documentos!",
}


@attrs.define
class Stack:
    """The real parts of a local deployment, running on 127.0.0.1."""

    onboarding: Onboarding
    catcher: SmtpCatcher
    web_url: str
    sandbox_url: str


@contextmanager
def local_stack(
    folder: Path,
    *,
    web_port: int | None = None,
    seconds_per_business_day: float = 0.1,
    poll_interval: float = 0.2,
    development: bool = False,
    webhook_secrets: tuple[str, ...] = (),
) -> Iterator[Stack]:
    """An SMTP catcher, the certification sandbox, the web app and a worker.

    The database is a SQLite file in ``folder``, and the keys that sign
    links and seal signatures are kept beside it, so a folder used again
    keeps its journeys working. The sandbox forgets its certifications when
    it stops.
    """
    with ExitStack() as stack:
        catcher = SmtpCatcher().start()
        stack.callback(catcher.stop)
        plugins = Plugins(blocked=Settings.blocked_plugins_from_env())
        sandbox = serve_in_thread(
            create_sandbox_app(
                seconds_per_business_day=seconds_per_business_day,
                services=plugins.sandbox_routes(),
            )
        )
        stack.callback(sandbox.stop)

        port = web_port or free_port()
        secret_key, sealing_key = _folder_keys(folder)
        settings = Settings(
            secret_keys=(secret_key,),
            sealing_keys=(sealing_key,),
            database_url=f"sqlite:///{folder / 'onboarding.db'}",
            base_url=f"http://127.0.0.1:{port}",
            smtp_port=catcher.port,
            certification_url=sandbox.url,
            services={
                product: {"url": f"{sandbox.url}/{product}", "api_key": "sandbox"}
                for product in plugins.products
            },
            development=development,
            webhook_secrets=webhook_secrets,
        )
        onboarding = Onboarding(settings, plugins=plugins)
        stack.callback(onboarding.close)
        onboarding.create_tables()

        app = create_app(
            onboarding,
            mailbox=lambda: catcher.messages,
            scenarios=SCENARIOS,
        )
        web = serve_in_thread(app, port=port)
        stack.callback(web.stop)
        worker = Worker(onboarding, poll_interval=poll_interval).start()
        stack.callback(worker.stop)
        yield Stack(onboarding, catcher, web.url, sandbox.url)


def _folder_keys(folder: Path) -> tuple[str, str]:
    """The folder's signing and sealing keys, made on first use (mode 0600)."""
    path = folder / "keys.json"
    if path.exists():
        keys = json.loads(path.read_text(encoding="utf-8"))
        return str(keys["secret_key"]), str(keys["sealing_key"])
    keys = {
        "secret_key": secrets.token_urlsafe(32),
        "sealing_key": Fernet.generate_key().decode(),
    }
    path.touch(mode=0o600)
    path.write_text(json.dumps(keys), encoding="utf-8")
    return keys["secret_key"], keys["sealing_key"]


class Timeline:
    """Prints what happens, with the seconds since the start."""

    def __init__(self, out: object = sys.stdout) -> None:
        self._start = time.monotonic()
        self._out = out

    def __call__(self, text: str) -> None:
        elapsed = time.monotonic() - self._start
        print(f"[{elapsed:6.2f}s] {text}", file=self._out, flush=True)  # type: ignore[call-overload]


class JourneyFailed(Exception):
    """The demo's customer could not go on; the message says why."""


def _expect(page: Page, what: str, status: int = 200) -> None:
    if page.status != status:
        alerts = re.findall(r'role="alert">(.*?)</p>', page.html, flags=re.S)
        said = " / ".join(" ".join(a.split()) for a in alerts) or page.text[:300]
        raise JourneyFailed(f"{what}: HTTP {page.status}: {said}")


def run_demo(
    scenario: str, *, admin_email: str | None = None, folder: Path | None = None
) -> int:
    """The whole journey as the customer lives it; 0 only if it completed."""
    say = Timeline()
    buyer = "compras@ferreteria-los-andes.cl"
    with ExitStack() as stack:
        if folder is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        say(f"SQLite at {folder / 'onboarding.db'}")
        parts = stack.enter_context(local_stack(folder))
        say(
            f"SMTP at 127.0.0.1:{parts.catcher.port}, web at {parts.web_url}, "
            f"certification sandbox at {parts.sandbox_url}"
        )
        customer = WebCustomer()
        stack.callback(customer.close)
        try:
            return _walk(parts, customer, say, scenario, buyer, admin_email)
        except (JourneyFailed, TimeoutError, LookupError) as exc:
            say(f"FAILED: {exc}")
            return 1


def _walk(
    parts: Stack,
    customer: WebCustomer,
    say: Timeline,
    scenario: str,
    buyer: str,
    admin_email: str | None,
) -> int:
    onboarding, catcher = parts.onboarding, parts.catcher
    purchase = purchase_for(scenario, email=buyer)
    journey = onboarding.record_purchase(purchase)
    say(
        f"purchase {journey.order_number} recorded: {', '.join(journey.products)}"
        + (" (new razón social)" if purchase.changes_legal_name else "")
    )

    def read(recipient: str, key: str) -> object:
        message = wait_for_subject(catcher, recipient, SUBJECTS[key])
        number = catcher.messages.index(message) + 1
        say(f"✉ #{number} «{message.subject}» → {', '.join(message.rcpt_tos)}")
        return message

    for key in ("purchase", "payment"):
        read(buyer, key)

    tax = read(buyer, "tax")
    page = customer.open(link_in(tax, "SOLICITAR DOCUMENTO"))  # type: ignore[arg-type]
    _expect(page, "documento tributario")
    page = customer.submit(
        page,
        "SOLICITAR DOCUMENTO",
        {
            "kind": "factura",
            "legal_name": "Inversiones Rojas SpA",
            "rut": "76.354.771-K",
            "business_activity": "Comercio al por menor",
            "address": "Av. Providencia 1234, Providencia",
        },
    )
    _expect(page, "documento tributario")
    say("→ ¿Boleta o factura?: factura requested")

    password = "Haulmer" + secrets.token_hex(4) + "9"
    created = read(buyer, "password")
    page = customer.open(link_in(created, "CREAR CONTRASEÑA"))  # type: ignore[arg-type]
    _expect(page, "CREAR CONTRASEÑA")
    page = customer.submit(
        page, "CREAR CONTRASEÑA", {"password": password, "confirmation": password}
    )
    _expect(page, "CREAR CONTRASEÑA")
    say("→ CREAR CONTRASEÑA: password set")

    admin = buyer
    if purchase.changes_legal_name:
        admin = (admin_email or buyer).strip().lower()
        _workspace_wizard(customer, read(buyer, "workspace"), say, admin)
        if admin != buyer:
            # A new administrator creates their own password first.
            created = read(admin, "password")
            page = customer.open(link_in(created, "CREAR CONTRASEÑA"))  # type: ignore[arg-type]
            page = customer.submit(
                page,
                "CREAR CONTRASEÑA",
                {"password": password, "confirmation": password},
            )
            _expect(page, "CREAR CONTRASEÑA (administrador)")
            say("→ CREAR CONTRASEÑA: the administrator's password set")

    _setup_wizard(customer, read(admin, "setup"), say)

    # The certification moves on its own; its emails arrive as it does.
    outcome = wait_for(
        catcher,
        lambda m: (
            admin in m.rcpt_tos
            and ("ya puede emitir" in m.subject or "necesita tu atención" in m.subject)
        ),
        timeout=60.0,
    )
    for message in catcher.messages:
        if message.subject.startswith(("Comenzó", "Avance")) or message is outcome:
            number = catcher.messages.index(message) + 1
            say(f"✉ #{number} «{message.subject}» → {', '.join(message.rcpt_tos)}")
    if "necesita tu atención" in outcome.subject:
        raise JourneyFailed(f"the certification failed: {outcome.subject}")
    enabled = outcome

    page = customer.open(link_in(enabled, "VER DETALLE"))
    _expect(page, "certification status page")
    final = onboarding.journey(journey.id)
    say(
        f"final state: {final.stage.value}; documents "
        f"{', '.join(str(c) for c in sorted(final.documents))}; "
        f"{len(catcher.messages)} emails"
    )
    if final.stage is not Stage.ENABLED or "habilitada" not in page.text:
        raise JourneyFailed(f"the organization was not enabled ({final.stage})")

    # Each product then does its own part: an API key, a code, a terminal.
    assert final.organization is not None
    for product in final.products:
        for action in onboarding.plugins.enablement_actions(product):
            subject = f"{final.organization.legal_name}: {action.title}"
            message = wait_for_subject(catcher, admin, subject, timeout=30.0)
            number = catcher.messages.index(message) + 1
            say(f"✉ #{number} «{message.subject}» → {', '.join(message.rcpt_tos)}")
    states = {a["state"] for a in onboarding.enablement_actions(final.id)}
    if states - {"done"}:
        raise JourneyFailed(f"post-enablement actions not done: {states}")
    say(f"✔ {final.organization.legal_name} is enabled to issue documents")
    return 0


def _workspace_wizard(
    customer: WebCustomer, message: object, say: Timeline, admin: str
) -> None:
    page = customer.open(link_in(message, "CREAR WORKSPACE"))  # type: ignore[arg-type]
    _expect(page, "CREAR WORKSPACE")
    page = customer.submit(page, "ACTIVAR")
    _expect(page, "ACTIVAR")
    say("→ CREAR WORKSPACE: ACTIVAR")
    page = customer.submit(page, "CREAR", {"name": "Camila Rojas", "email": admin})
    _expect(page, "CREAR (administrador)")
    say(f"→ step 1, CREAR: administrator {admin}")
    page = customer.submit(page, "SIGUIENTE", {"workspace_name": "Rojas y Cía"})
    _expect(page, "SIGUIENTE (nombre)")
    say("→ step 2, SIGUIENTE: workspace «Rojas y Cía»")
    page = customer.submit(
        page,
        "FINALIZAR",
        {"legal_name": "Comercial Rojas y Compañía Limitada", "rut": "76.543.210-3"},
    )
    _expect(page, "FINALIZAR")
    say("→ step 3, FINALIZAR: razón social and RUT 76.543.210-3")


def _setup_wizard(customer: WebCustomer, message: object, say: Timeline) -> None:
    page = customer.open(link_in(message, "INICIAR SETUP"))  # type: ignore[arg-type]
    _expect(page, "INICIAR SETUP")
    page = customer.submit(page, "COMENZAR")
    _expect(page, "COMENZAR")
    say("→ INICIAR SETUP: COMENZAR")
    page = customer.submit(page, "SIGUIENTE")
    _expect(page, "organización")
    say("→ step 1, SIGUIENTE: main organization chosen")

    signature_password = "firma-" + secrets.token_hex(4)
    pfx = make_pkcs12(
        holder_name="Camila Rojas Fuentes",
        holder_rut="15.678.901-1",
        password=signature_password,
    )
    page = customer.submit(
        page,
        "SIGUIENTE",
        {
            "legal_representative_rut": "15.678.901-1",
            "signature_password": signature_password,
        },
        files={"signature": ("camila-rojas.pfx", pfx, "application/x-pkcs12")},
    )
    _expect(page, "firma electrónica")
    say(
        f"→ step 2, SIGUIENTE: legal representative 15.678.901-1 and the "
        f"{len(pfx)}-byte .pfx of her signature"
    )
    page = customer.submit(page, "SIGUIENTE")
    _expect(page, "documentos")
    say("→ step 3, SIGUIENTE: documents chosen; the certification starts")


def run_serve(port: int, folder: Path | None, business_day: float) -> int:
    try:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))
    except OSError:
        print(f"port {port} is in use; choose another with --port", file=sys.stderr)
        return 2
    webhook_secrets = Settings.webhook_secrets_from_env()
    with ExitStack() as stack:
        if folder is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        try:
            parts = stack.enter_context(
                local_stack(
                    folder,
                    web_port=port,
                    seconds_per_business_day=business_day,
                    poll_interval=1.0,
                    development=True,
                    webhook_secrets=webhook_secrets,
                )
            )
        except ValueError as exc:
            print(f"serve cannot start: {exc}", file=sys.stderr)
            return 2
        if webhook_secrets:
            print(f"Purchase webhook: {parts.web_url}/webhooks/purchases")
        else:
            print(
                "Purchase webhook off: set HAULMER_ONBOARDING_WEBHOOK_SECRETS "
                "to sign purchases sent to /webhooks/purchases"
            )
        print(f"Development mailbox: {parts.web_url}/_dev/correos")
        print(f"SMTP at 127.0.0.1:{parts.catcher.port}; data in {folder}")
        print("Ctrl-C to stop.")
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            print()
    return 0


def run_worker(interval: float, poll_interval: float) -> int:
    """The background work of a deployment configured by its environment."""
    try:
        onboarding = Onboarding(Settings.from_env())
    except (TypeError, ValueError) as exc:
        print(f"the worker's settings are incomplete or wrong: {exc}", file=sys.stderr)
        return 2
    onboarding.create_tables()
    print("Worker running: outbox, password requests, certifications, actions.")
    with Worker(onboarding, interval=interval, poll_interval=poll_interval):
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            print()
    onboarding.close()
    return 0


def run_migrate(given: str | None, as_sql: bool) -> int:
    """Migrate the database at ``given`` (else HAULMER_ONBOARDING_DATABASE_URL,
    else the settings' default)."""
    default = str(attrs.fields(Settings).database_url.default)
    url = given or os.environ.get("HAULMER_ONBOARDING_DATABASE_URL") or default
    try:
        shown = sa.make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):
        # The URL may hold a password: it is not echoed.
        print(
            "migrate: the database URL cannot be read; write it as "
            "sqlite:///onboarding.db or postgresql+psycopg://user@host:5432/name",
            file=sys.stderr,
        )
        return 2
    if as_sql:
        print(sql_script(url))
        return 0
    try:
        changed, revision = migrate(url)
    except sa.exc.OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else ""
        print(f"migrate: cannot reach {shown}: {reason}", file=sys.stderr)
        return 1
    state = "migrated to" if changed else "already at"
    print(f"database {state} revision {revision}")
    return 0


def run_plugins(as_json: bool) -> int:
    plugins = Plugins(blocked=Settings.blocked_plugins_from_env())
    described = plugins.describe()
    if as_json:
        print(json.dumps(described, indent=2))
        return 0
    for plugin in described:
        print(f"{plugin['name']} {plugin['version']}: {', '.join(plugin['hooks'])}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="haulmer-onboarding",
        description="The onboarding journey of Haulmer's customers.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log info lines")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run a whole journey on real parts")
    demo.add_argument(
        "--scenario",
        choices=sorted(SCENARIOS),
        default="razon-social",
        help="which purchase: "
        + "; ".join(f"{k}: {v[0]}" for k, v in SCENARIOS.items()),
    )
    demo.add_argument(
        "--admin-email", help="another workspace administrator (razon-social only)"
    )
    demo.add_argument("--keep", type=Path, help="keep the SQLite file in this folder")

    serve = commands.add_parser("serve", help="serve the journey for a person")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--data", type=Path, help="folder for the SQLite file")
    serve.add_argument(
        "--business-day",
        type=float,
        default=5.0,
        help="seconds the sandbox takes per business day of certification",
    )

    worker = commands.add_parser(
        "worker",
        help="deliver emails, poll certifications and run actions "
        "(settings from HAULMER_ONBOARDING_* variables)",
    )
    worker.add_argument("--interval", type=float, default=0.5)
    worker.add_argument("--poll-interval", type=float, default=30.0)

    migrate = commands.add_parser(
        "migrate",
        help="bring the database to the newest schema "
        "(HAULMER_ONBOARDING_DATABASE_URL)",
    )
    migrate.add_argument("--database-url", help="instead of the environment's")
    migrate.add_argument(
        "--sql", action="store_true", help="print the SQL instead of running it"
    )

    plugins = commands.add_parser("plugins", help="list loaded plugins")
    plugins.add_argument("--json", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Only the SDK's own logger speaks at info: other libraries' info lines
    # carry full URLs (link tokens) and addresses.
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if args.verbose:
        logging.getLogger("haulmer_onboarding").setLevel(logging.INFO)
    if args.command == "demo":
        if args.admin_email and args.scenario != "razon-social":
            _parser().error("--admin-email applies to --scenario razon-social only")
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
        return run_demo(args.scenario, admin_email=args.admin_email, folder=args.keep)
    if args.command == "serve":
        if args.data:
            args.data.mkdir(parents=True, exist_ok=True)
        return run_serve(args.port, args.data, args.business_day)
    if args.command == "worker":
        return run_worker(args.interval, args.poll_interval)
    try:
        if args.command == "migrate":
            return run_migrate(args.database_url, args.sql)
        return run_plugins(args.json)
    except BrokenPipeError:
        # The reader (``| head``) left: stop quietly, and keep Python from
        # failing again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
