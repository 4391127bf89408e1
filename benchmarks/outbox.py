"""Outbox delivery against a bare smtplib loop, to the same SMTP server.

    .venv/bin/python benchmarks/outbox.py [--count N] [--postgres URL]

Queues ``N`` journey emails (multipart, base64, about 6.5 kB each, to 50
addresses), then delivers them two ways to one SMTP server on 127.0.0.1
(aiosmtpd, the testing kit's catcher, in a process of its own as a real
server would be):

- baseline: a bare ``smtplib`` loop, one connection, ``sendmail`` for each
  message's bytes, nothing recorded anywhere;
- relay: ``Relay.deliver_pending`` until the outbox is empty: claims in
  batches, per-address order, each email marked sent in its own
  transaction right after the server accepted it.

Each round fills every outbox first, then times the contenders, starting
with another one each round; each keeps its best of five rounds. The relay runs on a
SQLite file, and also on PostgreSQL when ``--postgres`` gives the URL of a
database it may fill (``HAULMER_ONBOARDING_BENCH_POSTGRES_URL`` works too).
Target: the relay at least 0.8x the bare loop's rate.
"""

from __future__ import annotations

import argparse
import logging
import os
import smtplib
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import sqlalchemy as sa

from haulmer_onboarding.mail import Relay
from haulmer_onboarding.mail.outbox import build_message, message_bytes
from haulmer_onboarding.store import Store, outbox

ROUNDS = 5
TARGET = 0.8
SENDER = "Haulmer <no-reply@haulmer.com>"


CATCHER = """
import sys
from haulmer_onboarding.testing.smtp import SmtpCatcher
with SmtpCatcher() as catcher:
    print(catcher.port, flush=True)
    for line in sys.stdin:
        count = len(catcher.messages)
        catcher.clear()
        print(count, flush=True)
"""


class Catcher:
    """The SMTP catcher in its own process; ``take()`` returns how many
    messages arrived since the last call."""

    host = "127.0.0.1"

    def __init__(self) -> None:
        self._process = subprocess.Popen(  # noqa: S603 (our own script)
            [sys.executable, "-c", CATCHER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.port = int(self._readline())

    def _readline(self) -> str:
        assert self._process.stdout is not None
        return self._process.stdout.readline()

    def take(self) -> int:
        assert self._process.stdin is not None
        self._process.stdin.write("take\n")
        self._process.stdin.flush()
        return int(self._readline())

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait(10)


def messages(count: int) -> list[tuple[str, bytes, str]]:
    """(recipient, raw bytes, Message-ID) for ``count`` emails."""
    now = datetime.now(UTC)
    text = "Hola Camila,\n\nTu compra OC-1001 fue exitosa.\n" * 40
    html = "<p>Hola Camila,</p><p>Tu compra <b>OC-1001</b> fue exitosa.</p>" * 40
    made = []
    for index in range(count):
        recipient = f"cliente{index % 50}@example.cl"
        message = build_message(
            sender=SENDER,
            recipient=recipient,
            subject="Haulmer - Compra exitosa",
            text=text,
            html=html,
            now=now,
        )
        raw = message_bytes(message)
        made.append((recipient, raw, str(message["Message-ID"])))
    return made


def fill(store: Store, batch: list[tuple[str, bytes, str]]) -> None:
    now = datetime.now(UTC)
    with store.begin() as conn:
        conn.execute(outbox.delete())
        conn.execute(
            outbox.insert(),
            [
                {
                    "message_id": message_id,
                    "template": "purchase_succeeded",
                    "recipient": recipient,
                    "subject": "Haulmer - Compra exitosa",
                    "raw": raw,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
                for recipient, raw, message_id in batch
            ],
        )


def bare_loop(catcher: Catcher, batch: list[tuple[str, bytes, str]]) -> float:
    catcher.take()
    start = time.perf_counter()
    smtp = smtplib.SMTP(catcher.host, catcher.port, timeout=10)
    for recipient, raw, _ in batch:
        smtp.sendmail("no-reply@haulmer.com", [recipient], raw)
    smtp.quit()
    elapsed = time.perf_counter() - start
    assert catcher.take() == len(batch)
    return elapsed


def relay_drain(
    catcher: Catcher, store: Store, batch: list[tuple[str, bytes, str]]
) -> float:
    catcher.take()
    relay = Relay(store, host=catcher.host, port=catcher.port, sender=SENDER)
    start = time.perf_counter()
    sent = 0
    while sent < len(batch):
        sent += relay.deliver_pending()
    relay.close()
    elapsed = time.perf_counter() - start
    assert catcher.take() == len(batch)
    with store.begin() as conn:
        unsent = conn.execute(
            sa.select(sa.func.count()).where(outbox.c.sent_at.is_(None))
        ).scalar_one()
    assert unsent == 0
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument(
        "--postgres", default=os.environ.get("HAULMER_ONBOARDING_BENCH_POSTGRES_URL")
    )
    args = parser.parse_args()
    # The relay logs each email at info; the benchmark measures, not logs.
    logging.getLogger("haulmer_onboarding").setLevel(logging.WARNING)

    batch = messages(args.count)
    size = sum(len(raw) for _, raw, _ in batch) // len(batch)
    catcher = Catcher()
    with tempfile.TemporaryDirectory() as folder:
        stores = {"SQLite": Store(f"sqlite:///{Path(folder) / 'bench.db'}")}
        if args.postgres:
            stores["PostgreSQL"] = Store(args.postgres)
        for store in stores.values():
            store.create_all()

        best = {"bare smtplib loop": float("inf")}
        best.update({f"relay on {name}": float("inf") for name in stores})
        contenders: list[tuple[str, Callable[[], float]]] = [
            ("bare smtplib loop", lambda: bare_loop(catcher, batch))
        ]
        for name, store in stores.items():
            contenders.append(
                (f"relay on {name}", partial(relay_drain, catcher, store, batch))
            )
        for round_number in range(ROUNDS):
            # Every outbox is filled before anyone is timed (writing the
            # rows disturbs the machine for a while after), and each round
            # starts with another contender.
            for store in stores.values():
                fill(store, batch)
            shift = round_number % len(contenders)
            for name, run in contenders[shift:] + contenders[:shift]:
                best[name] = min(best[name], run())
        for store in stores.values():
            store.dispose()
    catcher.close()

    print(f"{args.count} emails of about {size:,} bytes to 50 addresses\n")
    print(f"{'delivery':<24} {'emails/s':>10} {'ratio':>7}")
    base = args.count / best["bare smtplib loop"]
    for name, elapsed in best.items():
        value = args.count / elapsed
        print(f"{name:<24} {value:>10,.0f} {value / base:>7.2f}")
    print()
    failed = False
    for name in stores:
        ratio = (args.count / best[f"relay on {name}"]) / base
        verdict = "PASS" if ratio >= TARGET else "FAIL"
        failed |= ratio < TARGET
        print(f"{verdict}  relay on {name} >= {TARGET}x bare loop: {ratio:.2f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
