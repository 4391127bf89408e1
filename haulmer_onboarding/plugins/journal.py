"""Writes each journey event to the ``haulmer_onboarding`` logger.

Events carry ids, step names and SII codes, never a token, a password or a
signature file, so they are safe to log as they are.
"""

from __future__ import annotations

import logging

from haulmer_onboarding.hookspecs import hookimpl
from haulmer_onboarding.models import JourneyEvent

logger = logging.getLogger("haulmer_onboarding")


@hookimpl
def onboarding_journey_event(event: JourneyEvent) -> None:
    if event.kind == "email_queued":
        return  # the outbox logs these itself
    logger.info("journey %s: %s", event.journey_id, event.kind)
