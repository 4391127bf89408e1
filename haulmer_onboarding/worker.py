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
    """Runs the relay, the certification poller, password requests and
    post-enablement actions in a thread."""

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
        self._thread = threading.Thread(target=self._run, name="worker", daemon=True)

    def start(self) -> Worker:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def run_once(self) -> int:
        """One round: answer password requests, poll certifications, then
        deliver; return how many emails were sent."""
        self._onboarding.process_password_requests()
        self._onboarding.poll_certifications()
        self._onboarding.run_enablement_actions()
        return self._relay.deliver_pending()

    def _run(self) -> None:
        since_poll = self._poll_interval
        while not self._stop.is_set():
            try:
                self._onboarding.process_password_requests()
                if since_poll >= self._poll_interval:
                    self._onboarding.poll_certifications()
                    self._onboarding.run_enablement_actions()
                    since_poll = 0.0
                busy = self._relay.deliver_pending() > 0
            except Exception:  # the worker must outlive one bad round
                logger.exception("a worker round failed; it will try again")
                busy = False
            if not busy:
                self._stop.wait(self._interval)
                since_poll += self._interval
