"""The mountable web app: link pages, and the development mailbox."""

from haulmer_onboarding.web.app import create_app

__all__ = ["create_app"]
