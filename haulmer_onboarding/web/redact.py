"""A logging filter that hides link tokens in request lines.

Link URLs carry their token in the path. An ASGI server's access log (for
uvicorn, the ``uvicorn.access`` logger) would write it down; install the
filter there::

    logging.getLogger("uvicorn.access").addFilter(RedactLinkTokens())
"""

from __future__ import annotations

import logging
import re

__all__ = ["RedactLinkTokens"]

# A token is four URL-safe runs joined by dots: purpose.jti.issued.signature;
# a click tracker may have written the dots as %2E.
_TOKEN = re.compile(
    r"(?<=/)[A-Za-z0-9_%-]+(?:(?:\.|%2[Ee])[A-Za-z0-9_%-]+){3}(?![A-Za-z0-9_.%-])"
)


class RedactLinkTokens(logging.Filter):
    """Replaces anything shaped like a link token with ``[token]``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = _TOKEN.sub("[token]", record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN.sub("[token]", a) if isinstance(a, str) else a
                for a in record.args
            )
        return True
