"""Real parts for the tests: a database, an SMTP server, HTTP servers.

The database is a SQLite file; the tests where the database matters (store,
relay, journey, faults, migrations, the links race) run on PostgreSQL too.
PostgreSQL is the server at ``HAULMER_ONBOARDING_TEST_POSTGRES_URL`` (a URL
to a database the tests may create databases from), else a throwaway
cluster started from the local server binaries. Without either, those
tests are skipped, except under CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from haulmer_onboarding import Onboarding, Settings
from haulmer_onboarding.sandbox import create_sandbox_app
from haulmer_onboarding.testing.servers import (
    RunningServer,
    free_port,
    serve_in_thread,
)
from haulmer_onboarding.testing.smtp import SmtpCatcher


def _seed_folder() -> Path:
    """The customer's guide: in ``shared/`` beside the project (where CI and
    developers have it), or where ``HAULMER_ONBOARDING_SEED_DIR`` says."""
    if folder := os.environ.get("HAULMER_ONBOARDING_SEED_DIR"):
        return Path(folder)
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "shared" / "seeds"
        if candidate.is_dir():
            return candidate
    return here.parents[2] / "shared" / "seeds"


SEED = _seed_folder()

POSTGRES_URL_VARIABLE = "HAULMER_ONBOARDING_TEST_POSTGRES_URL"
DATABASES = ("sqlite", "postgresql")
# Modules, or (module, test) pairs, that run on both databases besides the
# ones marked ``both_databases``.
_ON_BOTH = {
    "test_journey",
    ("test_links", "test_two_concurrent_uses_of_one_link_exactly_one_wins"),
    ("test_links", "test_two_concurrent_posts_over_http_exactly_one_wins"),
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "both_databases: run the test on SQLite and on PostgreSQL"
    )
    config.addinivalue_line(
        "markers", "postgresql: the PostgreSQL run of a both_databases test"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "database_url" not in metafunc.fixturenames:
        return
    module = metafunc.module.__name__.rpartition(".")[2]
    on_both = (
        metafunc.definition.get_closest_marker("both_databases") is not None
        or module in _ON_BOTH
        or (module, metafunc.function.__name__) in _ON_BOTH
    )
    if on_both:
        metafunc.parametrize(
            "database_url",
            [
                pytest.param("sqlite", id="sqlite"),
                pytest.param(
                    "postgresql", id="postgresql", marks=pytest.mark.postgresql
                ),
            ],
            indirect=True,
        )


def _postgres_binaries() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``, newest version first."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: (
            int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0
        ),
        reverse=True,
    )
    if found:
        return found[0].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@contextlib.contextmanager
def throwaway_postgres(binaries: Path) -> Iterator[str]:
    """A PostgreSQL cluster in a temporary folder, on 127.0.0.1; yields the
    URL of its ``postgres`` database. Durability is off: it is for tests."""
    folder = Path(tempfile.mkdtemp(prefix="haulmer-pg-"))
    # initdb refuses to run as root: the cluster then belongs to `postgres`.
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, user="postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", free_port()

    def run(*command: str) -> None:
        subprocess.run(
            [*as_user, *command], check=True, capture_output=True, timeout=120
        )

    run(
        str(binaries / "initdb"),
        "-D",
        str(data),
        "-U",
        "postgres",
        "-A",
        "trust",
        "--no-sync",
        "-E",
        "UTF8",
    )
    options = (
        f"-h 127.0.0.1 -p {port} -k {folder} -F -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    pg_ctl = str(binaries / "pg_ctl")
    run(
        pg_ctl, "-D", str(data), "-l", str(folder / "log"), "-w", "-o", options, "start"
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a PostgreSQL database from which tests create their own."""
    if url := os.environ.get(POSTGRES_URL_VARIABLE):
        yield url
        return
    binaries = _postgres_binaries()
    if binaries is None:
        reason = (
            f"PostgreSQL is not available: set {POSTGRES_URL_VARIABLE} or "
            "install the server (Debian: apt-get install postgresql)"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    with throwaway_postgres(binaries) as url:
        yield url


@contextlib.contextmanager
def fresh_postgres_database(server_url: str) -> Iterator[str]:
    """An empty database on the server, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield (
            sa.make_url(server_url)
            .set(database=name)
            .render_as_string(hide_password=False)
        )
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file, or a new PostgreSQL database for
    the PostgreSQL run of a test on both databases."""
    kind = getattr(request, "param", "sqlite")
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'onboarding.db'}"
        return
    server = request.getfixturevalue("postgres_server")
    with fresh_postgres_database(server) as url:
        yield url


@pytest.fixture
def catcher() -> Iterator[SmtpCatcher]:
    with SmtpCatcher() as smtp:
        yield smtp


@pytest.fixture
def sandbox() -> Iterator[RunningServer]:
    """The certification sandbox; steps move only when a test advances them."""
    app = create_sandbox_app(seconds_per_business_day=3600.0)
    with serve_in_thread(app) as server:
        yield server


@pytest.fixture
def settings(
    database_url: str, catcher: SmtpCatcher, sandbox: RunningServer
) -> Settings:
    return Settings(
        secret_keys=(secrets.token_urlsafe(32),),
        sealing_keys=(Fernet.generate_key().decode(),),
        database_url=database_url,
        base_url="http://127.0.0.1:9",
        smtp_port=catcher.port,
        certification_url=sandbox.url,
    )


@pytest.fixture
def onboarding(settings: Settings) -> Iterator[Onboarding]:
    facade = Onboarding(settings)
    facade.create_tables()
    yield facade
    facade.close()


def advance_certification(sandbox: RunningServer, certification_id: str) -> None:
    """Finish the running step of a sandbox certification now."""
    response = httpx.post(f"{sandbox.url}/v1/certifications/{certification_id}/advance")
    response.raise_for_status()
