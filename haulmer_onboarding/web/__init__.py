"""The mountable web app: link pages, a JSON API with its OpenAPI document,
and the development mailbox."""

from haulmer_onboarding.web.app import create_app
from haulmer_onboarding.web.redact import RedactLinkTokens, redact_path

__all__ = ["RedactLinkTokens", "create_app", "redact_path"]
