"""Faults a deployment lives through, on SQLite and on PostgreSQL.

An SMTP server away for a while, a relay process killed in the middle of a
batch, several relay processes at once, a SQLite database locked by
another process, the same purchase event arriving twice, two clients
racing on one link. Every part is real: the relays that are killed are
processes, the SMTP server speaks SMTP on a socket.
"""

from __future__ import annotations

import asyncio
import email
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from email.policy import default as default_policy
from typing import Any

import attrs
import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from argon2 import PasswordHasher

from haulmer_onboarding import LinkUsed, OnboardingError, Purpose, Settings, passwords
from haulmer_onboarding.journey import Onboarding
from haulmer_onboarding.mail import Relay
from haulmer_onboarding.store import Store, outbox
from haulmer_onboarding.testing.clock import MovableClock
from haulmer_onboarding.testing.customer import link_in
from haulmer_onboarding.testing.scenarios import purchase_for
from haulmer_onboarding.testing.servers import free_port
from haulmer_onboarding.testing.smtp import CaughtMessage

GOOD = "Cordillera2026"


class Smtp:
    """A real SMTP server whose behaviour a test changes while it runs.

    ``delay`` slows each message down; ``refuse`` answers every message
    with a temporary error (421), as a server shedding load does.
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.delay = 0.0
        self.refuse = False
        self.raw: list[bytes] = []
        self._lock = threading.Lock()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.refuse:
            return "421 4.3.2 Service shutting down, try later"
        with self._lock:
            self.raw.append(envelope.original_content or envelope.content)
        return "250 OK"

    def __enter__(self) -> Smtp:
        self._controller.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._controller.stop()

    def message_ids(self) -> list[str]:
        with self._lock:
            raw = list(self.raw)
        return [
            str(email.message_from_bytes(r, policy=default_policy)["Message-ID"])
            for r in raw
        ]

    def recipients_in_order(self) -> list[tuple[str, str]]:
        with self._lock:
            raw = list(self.raw)
        parsed = [email.message_from_bytes(r, policy=default_policy) for r in raw]
        return [(str(m["To"]), str(m["Message-ID"])) for m in parsed]


@pytest.fixture
def smtp() -> Iterator[Smtp]:
    with Smtp() as server:
        yield server


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.02)


def queued(store: Store) -> list[Any]:
    with store.begin() as conn:
        return list(conn.execute(sa.select(outbox).order_by(outbox.c.id)).all())


def queue_purchases(onboarding: Onboarding, count: int) -> None:
    """``count`` purchases by ``count // 2`` buyers: several emails per
    address, whose order must hold."""
    for index in range(count):
        buyer = f"cliente{index % max(1, count // 2)}@example.cl"
        onboarding.record_purchase(purchase_for("simple", buyer))


def assert_per_recipient_order(smtp: Smtp, store: Store) -> None:
    """Each address got its emails in the order they were queued."""
    queued_order: dict[str, list[str]] = {}
    for row in queued(store):
        queued_order.setdefault(row.recipient, []).append(row.message_id)
    received: dict[str, list[str]] = {}
    for to, message_id in smtp.recipients_in_order():
        if message_id not in received.setdefault(to, []):
            received[to].append(message_id)
    assert received == queued_order


RELAY_PROCESS = """
import sys, threading
from datetime import timedelta
from haulmer_onboarding.mail import Relay
from haulmer_onboarding.store import Store

url, port, lease, batch = sys.argv[1], int(sys.argv[2]), *sys.argv[3:5]
relay = Relay(Store(url), host="127.0.0.1", port=port, sender="no-reply@haulmer.com",
              lease=timedelta(seconds=float(lease)), batch_size=int(batch),
              timeout=5.0)
print("ready", flush=True)
relay.run(threading.Event(), interval=0.05)
"""


def start_relay(
    url: str, port: int, *, lease: float = 60.0, batch: int = 10
) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", RELAY_PROCESS, url, str(port), str(lease), str(batch)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


# -- the SMTP server away ------------------------------------------------------


@pytest.mark.both_databases
def test_smtp_down_for_a_while_backs_off_and_delivers_everything_when_back(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    clock = MovableClock()
    port = free_port()  # nothing listens here yet
    onboarding = Onboarding(attrs.evolve(settings, smtp_port=port, clock=clock))
    onboarding.create_tables()
    queue_purchases(onboarding, 4)
    relay = onboarding.relay()
    total = len(queued(onboarding.store))

    caplog.set_level(logging.WARNING, logger="haulmer_onboarding")
    delays = []
    for _ in range(3):
        assert relay.deliver_pending() == 0
        rows = queued(onboarding.store)
        assert all(r.sent_at is None and r.failed_at is None for r in rows)
        delays.append(min(r.next_attempt_at for r in rows) - clock())
        # Before the backoff ends, nothing is tried again.
        clock.advance(seconds=delays[-1].total_seconds() * 0.5)
        assert relay.deliver_pending() == 0
        assert {r.attempts for r in queued(onboarding.store)} == {len(delays)}
        clock.advance(seconds=delays[-1].total_seconds())
    # Doubling, with jitter of at most 20% either way.
    assert timedelta(seconds=3.9) <= delays[0] <= timedelta(seconds=6.1)
    assert delays[1] > delays[0] * 1.3
    assert delays[2] > delays[1] * 1.3
    assert "retrying in about" in caplog.text

    with Smtp(port) as smtp:
        assert relay.deliver_pending() == total
        assert len(smtp.raw) == total
        assert sorted(smtp.message_ids()) == sorted(
            r.message_id for r in queued(onboarding.store)
        )
        assert_per_recipient_order(smtp, onboarding.store)
        assert relay.deliver_pending() == 0  # and nothing twice
    onboarding.close()


@pytest.mark.both_databases
def test_an_smtp_server_refusing_for_a_while_loses_nothing(
    settings: Settings, smtp: Smtp
) -> None:
    clock = MovableClock()
    onboarding = Onboarding(attrs.evolve(settings, smtp_port=smtp.port, clock=clock))
    onboarding.create_tables()
    queue_purchases(onboarding, 2)
    total = len(queued(onboarding.store))
    relay = onboarding.relay()

    smtp.refuse = True
    assert relay.deliver_pending() == 0
    rows = queued(onboarding.store)
    # The first email to each address was refused; the later ones wait
    # behind it rather than overtaking it.
    assert all(r.sent_at is None and r.failed_at is None for r in rows)
    assert all("421" in (r.last_error or "") for r in rows if r.attempts)

    smtp.refuse = False
    clock.advance(minutes=1)
    assert relay.deliver_pending() == total
    assert_per_recipient_order(smtp, onboarding.store)
    onboarding.close()


# -- relays: processes, kills, many at once ------------------------------------


@pytest.mark.both_databases
def test_a_relay_killed_mid_batch_is_resumed_by_another_after_its_lease(
    onboarding: Onboarding, database_url: str, smtp: Smtp
) -> None:
    queue_purchases(onboarding, 8)
    rows = queued(onboarding.store)
    smtp.delay = 0.05  # slow enough to kill the relay in the middle

    victim = start_relay(database_url, smtp.port, lease=3.0, batch=len(rows))
    try:
        wait_until(lambda: len(smtp.raw) >= 5, 30, "the relay sent nothing")
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
    assert victim.returncode == -signal.SIGKILL
    time.sleep(smtp.delay * 4)  # a message the server was still taking in

    # The dead relay's claim still holds its unsent rows.
    stranded = [r for r in queued(onboarding.store) if r.sent_at is None]
    assert stranded, "the relay finished before it was killed"
    assert all(r.claimed_until is not None for r in stranded)
    # Those the server had accepted but the relay had not yet marked sent
    # (it marks them in groups, within 0.2 s) will go twice.
    received_before = set(smtp.message_ids())
    unmarked = {r.message_id for r in stranded} & received_before

    killed_at = time.monotonic()
    heir = start_relay(database_url, smtp.port, lease=3.0, batch=len(rows))
    try:
        wait_until(
            lambda: all(r.sent_at for r in queued(onboarding.store)),
            60,
            "the stranded emails were not resumed",
        )
    finally:
        heir.terminate()
        heir.wait(10)
    # Not before the lease ended: until then the dead relay might have been
    # alive and sending.
    assert time.monotonic() - killed_at > 2.0

    ids = smtp.message_ids()
    assert set(ids) == {r.message_id for r in rows}  # nothing lost
    # Exactly those went twice, and each copy carries the same Message-ID.
    twice = {i for i in ids if ids.count(i) == 2}
    assert twice == unmarked
    assert all(ids.count(i) <= 2 for i in ids)
    assert_per_recipient_order(smtp, onboarding.store)


@pytest.mark.both_databases
def test_several_relay_processes_send_each_email_once_in_order(
    onboarding: Onboarding, database_url: str, smtp: Smtp
) -> None:
    queue_purchases(onboarding, 24)
    rows = queued(onboarding.store)
    smtp.delay = 0.005

    relays = [start_relay(database_url, smtp.port, batch=5) for _ in range(3)]
    try:
        wait_until(
            lambda: all(r.sent_at for r in queued(onboarding.store)),
            120,
            "the relays did not deliver everything",
        )
    finally:
        for process in relays:
            process.terminate()
        for process in relays:
            process.wait(10)

    ids = smtp.message_ids()
    assert sorted(ids) == sorted(r.message_id for r in rows)  # each exactly once
    assert_per_recipient_order(smtp, onboarding.store)


@pytest.mark.both_databases
def test_one_smtp_connection_carries_a_whole_burst(
    onboarding: Onboarding, settings: Settings, smtp: Smtp
) -> None:
    queue_purchases(onboarding, 30)
    total = len(queued(onboarding.store))
    relay = Relay(
        onboarding.store,
        host="127.0.0.1",
        port=smtp.port,
        sender=settings.mail_from,
        batch_size=20,
    )
    assert total > 3 * 20
    assert relay.deliver_pending() == total
    assert relay.connections_opened == 1
    assert len(smtp.raw) == total


# -- the database busy ---------------------------------------------------------


def test_a_sqlite_database_locked_by_another_process_is_waited_for(
    onboarding: Onboarding, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = database_url.removeprefix("sqlite:///")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "db.execute('BEGIN IMMEDIATE')\n"
            "print('locked', flush=True)\n"
            "time.sleep(3)\n"
            "db.execute('COMMIT')\n",
            path,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "locked"
    caplog.set_level(logging.WARNING, logger="haulmer_onboarding")
    started = time.monotonic()
    try:
        journey = onboarding.record_purchase(purchase_for("simple", "a@example.cl"))
    finally:
        holder.wait(10)
    # Longer than SQLite's own busy wait: the store retried after it.
    assert time.monotonic() - started > 2.0
    assert "locked by another writer" in caplog.text
    assert onboarding.journey(journey.id).order_number == journey.order_number


def test_a_lock_held_past_the_timeout_fails_and_changes_nothing(
    settings: Settings, database_url: str
) -> None:
    store = Store(database_url, lock_timeout=0.5)
    store.create_all()
    holder = sqlite3.connect(database_url.removeprefix("sqlite:///"))
    holder.isolation_level = None
    holder.execute("BEGIN IMMEDIATE")
    try:
        with (
            pytest.raises(sa.exc.OperationalError, match="locked"),
            store.begin() as conn,
        ):
            conn.execute(outbox.delete())
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        store.dispose()


class LockingSmtp(Smtp):
    """Takes the SQLite database's write lock, from a connection of its own,
    when the first message arrives, and holds it for ``hold`` seconds: the
    relay's "sent" mark meets a locked database after the email is gone."""

    def __init__(self, path: str, hold: float) -> None:
        super().__init__()
        self._path, self._hold = path, hold
        self.holder: threading.Thread | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.holder is None:
            locked = threading.Event()

            def hold() -> None:
                db = sqlite3.connect(self._path, isolation_level=None)
                db.execute("BEGIN IMMEDIATE")
                locked.set()
                time.sleep(self._hold)
                db.execute("COMMIT")
                db.close()

            self.holder = threading.Thread(target=hold)
            self.holder.start()
            locked.wait(5)
        return await super().handle_DATA(server, session, envelope)


def test_a_sent_mark_meeting_a_locked_database_is_retried_not_dropped(
    settings: Settings, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    onboarding = Onboarding(settings)
    onboarding.create_tables()
    queue_purchases(onboarding, 1)
    total = len(queued(onboarding.store))
    caplog.set_level(logging.WARNING, logger="haulmer_onboarding")
    with LockingSmtp(database_url.removeprefix("sqlite:///"), hold=1.5) as smtp:
        # The relay gives up on one lock wait after 0.3 s, well inside the
        # 1.5 s the lock is held: its mark fails at least once.
        relay = Relay(
            Store(database_url, lock_timeout=0.3),
            host="127.0.0.1",
            port=smtp.port,
            sender="no-reply@haulmer.com",
        )
        assert relay.deliver_pending() == total
        assert smtp.holder is not None
        smtp.holder.join(5)
        assert "trying again" in caplog.text
        rows = queued(onboarding.store)
        # Every email went out once and is recorded as sent: none is left
        # to go a second time when its lease ends.
        assert all(r.sent_at is not None and r.claimed_by is None for r in rows)
        assert sorted(smtp.message_ids()) == sorted(r.message_id for r in rows)
        relay.close()
    onboarding.close()


# -- duplicate events and races ------------------------------------------------


@pytest.mark.both_databases
def test_the_same_purchase_event_twice_makes_one_journey_and_no_duplicate_email(
    onboarding: Onboarding, settings: Settings, smtp: Smtp
) -> None:
    purchase = purchase_for("simple", "doble@example.cl")
    first = onboarding.record_purchase(purchase)
    again = onboarding.record_purchase(purchase)
    assert again.id == first.id

    # The same event delivered to two web workers at the same instant.
    twin = purchase_for("simple", "gemelo@example.cl")
    workers = [Onboarding(settings) for _ in range(3)]
    results = race([lambda w=w: w.record_purchase(twin) for w in workers])
    assert len({r.id for r in results}) == 1, results

    relay = attrs.evolve(settings, smtp_port=smtp.port)
    Onboarding(relay).relay().deliver_pending()
    subjects: dict[str, list[str]] = {}
    for raw in smtp.raw:
        message = email.message_from_bytes(raw, policy=default_policy)
        subjects.setdefault(str(message["To"]), []).append(str(message["Subject"]))
    assert subjects["doble@example.cl"] == subjects["gemelo@example.cl"]
    for sent in subjects.values():
        assert len(sent) == len(set(sent)), sent  # no email twice
    for worker in workers:
        worker.close()


def race(actions: list[Callable[[], Any]]) -> list[Any]:
    """Run each action in its own thread, all released at once."""
    barrier = threading.Barrier(len(actions))
    results: list[Any] = [None] * len(actions)

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = actions[index]()
        except Exception as exc:  # the test looks at what each one got
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(actions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


@pytest.mark.both_databases
def test_two_workers_racing_on_one_link_one_wins(
    onboarding: Onboarding, settings: Settings, smtp: Smtp
) -> None:
    onboarding.record_purchase(purchase_for("simple", "carrera@example.cl"))
    Onboarding(attrs.evolve(settings, smtp_port=smtp.port)).relay().deliver_pending()
    # Two deployments' web workers, each with its own engine and pool.
    workers = [Onboarding(settings) for _ in range(2)]
    token = _password_token(smtp)
    results = race([lambda w=w: w.set_password(token, GOOD, GOOD) for w in workers])
    winners = [r for r in results if not isinstance(r, Exception)]
    losers = [r for r in results if isinstance(r, Exception)]
    assert len(winners) == 1, results
    assert len(losers) == 1
    assert isinstance(losers[0], LinkUsed), losers
    assert isinstance(losers[0], OnboardingError)
    for worker in workers:
        worker.close()


@pytest.mark.both_databases
def test_a_crowd_on_one_password_link_hashes_no_more_than_the_slots(
    onboarding: Onboarding,
    settings: Settings,
    smtp: Smtp,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Twelve requests on one CREAR CONTRASEÑA link: one wins, the others are
    # told the link was used; those that waited for a hashing slot find it
    # used when their turn comes, so the server does not spend a third of a
    # second and 64 MiB on each of them. The real Argon2 runs; it is counted.
    onboarding.record_purchase(purchase_for("simple", "multitud@example.cl"))
    Onboarding(attrs.evolve(settings, smtp_port=smtp.port)).relay().deliver_pending()
    token = _password_token(smtp)
    lock = threading.Lock()
    running = hashed = most = 0

    class CountedHasher(PasswordHasher):
        def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
            nonlocal running, hashed, most
            with lock:
                running += 1
                hashed += 1
                most = max(most, running)
            try:
                return super().hash(password, salt=salt)
            finally:
                with lock:
                    running -= 1

    monkeypatch.setattr(passwords, "_hasher", CountedHasher())
    slots = max(1, os.cpu_count() or 1)
    crowd = slots + 10
    results = race(
        [lambda: onboarding.set_password(token, GOOD, GOOD) for _ in range(crowd)]
    )
    winners = [r for r in results if not isinstance(r, Exception)]
    assert len(winners) == 1, results
    assert all(isinstance(r, LinkUsed) for r in results if r not in winners), results
    assert most <= slots
    assert hashed <= slots, f"{hashed} hashes for {crowd} requests on one link"
    assert onboarding.verify_password("multitud@example.cl", GOOD)


def _password_token(smtp: Smtp) -> str:
    for raw in smtp.raw:
        caught = CaughtMessage(mail_from="", rcpt_tos=(), raw=raw)
        if caught.subject.startswith("[Haulmer Accounts]"):
            return link_in(caught, "CREAR CONTRASEÑA").rsplit("/", 1)[1]
    raise AssertionError(f"no {Purpose.CREATE_PASSWORD} email")
