"""Background work of a deployment: deliver the outbox, poll certifications.

``serve`` and ``demo`` run one ``Worker`` in their own process; at scale,
several worker processes share the same database.
"""

from __future__ import annotations

import logging
import threading

from haulmer_onboarding.journey import Onboarding

__all__ = ["Worker"]

logger = logging.getLogger("haulmer_onboarding")


class Worker:
    """Runs the deployment's background work in two threads.

    One thread answers password requests and delivers the outbox; the other
    polls certifications and runs post-enablement actions. A slow
    certification service never delays an email.
    """

    def __init__(
        self,
        onboarding: Onboarding,
        *,
        interval: float = 0.2,
        poll_interval: float = 1.0,
    ) -> None:
        self._onboarding = onboarding
        self._relay = onboarding.relay()
        self._interval = interval
        self._poll_interval = poll_interval
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._mail_loop, name="worker-mail", daemon=True),
            threading.Thread(target=self._poll_loop, name="worker-poll", daemon=True),
        ]

    def start(self) -> Worker:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def run_once(self) -> int:
        """One round of everything, in order; return how many emails were
        sent."""
        self._onboarding.process_password_requests()
        self._onboarding.poll_certifications()
        self._onboarding.run_enablement_actions()
        return self._relay.deliver_pending()

    def _mail_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._onboarding.process_password_requests()
                busy = self._relay.deliver_pending() > 0
            except Exception:  # the worker must outlive one bad round
                logger.exception("a mail round failed; it will try again")
                busy = False
            if not busy:
                self._stop.wait(self._interval)
        self._relay.close()

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._onboarding.poll_certifications()
                self._onboarding.run_enablement_actions()
            except Exception:  # the worker must outlive one bad round
                logger.exception("a polling round failed; it will try again")
            self._stop.wait(self._poll_interval)
