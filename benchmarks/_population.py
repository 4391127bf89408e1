"""Fill a database with many journeys quickly, for the benchmarks.

One purchase is recorded through the facade (its rows are the real thing:
the journey, its customer, organization, links, events and five queued
emails, marked sent), the customer sets a password, and that journey's rows
are copied with new keys, many thousand at a time. Recording each purchase
through the facade would take hours at 100,000; what the benchmarks measure
is reading and serving with that many rows in place, not writing them.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.fernet import Fernet

from haulmer_onboarding import Onboarding, Settings
from haulmer_onboarding.store import (
    customers,
    events,
    journeys,
    link_tokens,
    organizations,
    outbox,
    workspaces,
)
from haulmer_onboarding.testing.scenarios import purchase_for
from haulmer_onboarding.tokens import Purpose

PASSWORD = "Cordillera2026"
_CHUNK = 2_000


def settings_for(folder: Path, **overrides: Any) -> Settings:
    return Settings(
        secret_keys=("bench-" + secrets.token_urlsafe(24),),
        sealing_keys=(Fernet.generate_key().decode(),),
        database_url=f"sqlite:///{folder / 'onboarding.db'}",
        **overrides,
    )


def _token(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[1]


def populate(onboarding: Onboarding, count: int) -> None:
    """``count`` journeys at the setup step, each with its rows."""
    onboarding.create_tables()
    template = onboarding.record_purchase(
        purchase_for("simple", "plantilla@scale.example.cl", "OC-TEMPLATE")
    )
    with onboarding.store.begin() as conn:
        url = onboarding.links.issue(
            conn, Purpose.CREATE_PASSWORD, f"customer:{template.buyer.id}"
        )
    onboarding.set_password(_token(url), PASSWORD, PASSWORD)
    now = datetime.now(UTC)

    with onboarding.store.begin() as conn:
        conn.execute(outbox.update().values(sent_at=now))
        customer = conn.execute(sa.select(customers)).one()._asdict()
        journey = conn.execute(sa.select(journeys)).one()._asdict()
        workspace = conn.execute(sa.select(workspaces)).one()._asdict()
        organization = conn.execute(sa.select(organizations)).one()._asdict()
        links = [r._asdict() for r in conn.execute(sa.select(link_tokens))]
        journey_events = [r._asdict() for r in conn.execute(sa.select(events))]
        mails = [r._asdict() for r in conn.execute(sa.select(outbox))]

    for start in range(1, count, _CHUNK):
        rows: dict[str, list[dict[str, Any]]] = {
            "customers": [],
            "workspaces": [],
            "organizations": [],
            "journeys": [],
            "link_tokens": [],
            "events": [],
            "outbox": [],
        }
        for n in range(start, min(start + _CHUNK, count)):
            key = n + 1  # the template holds id 1 everywhere
            rows["customers"].append(
                {**customer, "id": key, "email": f"cliente{n}@scale.example.cl"}
            )
            rows["workspaces"].append({**workspace, "id": key, "administrator_id": key})
            rows["organizations"].append(
                {**organization, "id": key, "workspace_id": key}
            )
            rows["journeys"].append(
                {
                    **journey,
                    "id": key,
                    "order_number": f"OC-S{n:07d}",
                    "customer_id": key,
                    "workspace_id": key,
                    "organization_id": key,
                }
            )
            for link in links:
                subject = link["subject"].split(":")[0] + f":{key}"
                rows["link_tokens"].append(
                    {**link, "jti": secrets.token_hex(10), "subject": subject}
                )
            for event in journey_events:
                rows["events"].append({**event, "id": None, "journey_id": key})
            for mail in mails:
                rows["outbox"].append(
                    {
                        **mail,
                        "id": None,
                        "journey_id": key,
                        "recipient": f"cliente{n}@scale.example.cl",
                        "message_id": f"<{secrets.token_hex(12)}@haulmer.com>",
                    }
                )
        with onboarding.store.begin() as conn:
            for table in (
                customers,
                workspaces,
                organizations,
                journeys,
                link_tokens,
                events,
                outbox,
            ):
                values = rows[table.name]
                if table.name in {"events", "outbox"}:
                    values = [{k: v for k, v in r.items() if k != "id"} for r in values]
                conn.execute(table.insert(), values)


def setup_tokens(onboarding: Onboarding, journey_ids: list[int]) -> list[str]:
    """A fresh INICIAR SETUP link for each journey (the old one superseded)."""
    tokens = []
    with onboarding.store.begin() as conn:
        for journey_id in journey_ids:
            url = onboarding.links.issue(
                conn, Purpose.START_SETUP, f"journey:{journey_id}"
            )
            tokens.append(_token(url))
    return tokens


@contextmanager
def populated(count: int, **overrides: Any) -> Iterator[Onboarding]:
    """An ``Onboarding`` on a fresh SQLite file holding ``count`` journeys."""
    with tempfile.TemporaryDirectory() as folder:
        onboarding = Onboarding(settings_for(Path(folder), **overrides))
        try:
            populate(onboarding, count)
            yield onboarding
        finally:
            onboarding.close()
