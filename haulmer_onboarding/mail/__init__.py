"""Emails: rendering, the outbox written with each state change, the relay."""

from haulmer_onboarding.mail.outbox import queue_email
from haulmer_onboarding.mail.relay import Relay
from haulmer_onboarding.mail.render import RenderedEmail, Renderer

__all__ = ["Relay", "RenderedEmail", "Renderer", "queue_email"]
