"""Real parts for the tests: a SQLite file, an SMTP server, HTTP servers."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from haulmer_onboarding import Onboarding, Settings
from haulmer_onboarding.sandbox import create_sandbox_app
from haulmer_onboarding.testing.servers import RunningServer, serve_in_thread
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
def settings(tmp_path: Path, catcher: SmtpCatcher, sandbox: RunningServer) -> Settings:
    return Settings(
        secret_keys=(secrets.token_urlsafe(32),),
        sealing_keys=(Fernet.generate_key().decode(),),
        database_url=f"sqlite:///{tmp_path / 'onboarding.db'}",
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
