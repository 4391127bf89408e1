"""Keeping link tokens out of access logs.

Link URLs carry their token in the path. A server's access log (uvicorn's
``uvicorn.access``, the Flask development server's ``werkzeug``, gunicorn's
``gunicorn.access``) would write it down; install the filter there::

    logging.getLogger("uvicorn.access").addFilter(RedactLinkTokens())

``redact_path`` does the same to one string, for a log line you write
yourself.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence

__all__ = ["ACCESS_LOGGERS", "LINK_PAGES", "RedactLinkTokens", "install", "redact_path"]

#: The loggers the usual servers write request lines to.
ACCESS_LOGGERS = (
    "uvicorn.access",
    "uvicorn.error",
    "werkzeug",
    "gunicorn.access",
    "hypercorn.access",
)

#: The first path segment of every page whose next segment is a token.
LINK_PAGES = (
    "contrasena",
    "workspace",
    "setup",
    "documento-tributario",
    "certificacion",
)

# The segment after a link page, under any prefix; the JSON API's paths
# (``/api/v1/setup/start``) name actions, never tokens.
_AFTER_PAGE = re.compile(
    r"(?<!/api/v1)/(" + "|".join(map(re.escape, LINK_PAGES)) + r")/[^/?#\s\"']+"
)
# A token anywhere (a query string, an Authorization header, a click
# tracker's wrapped URL, alone): purpose.jti.issued.signature, where the
# random id and the signature are long runs, so that an IP address or a
# version number is never taken for one. A click tracker may have written
# the dots as %2E and the slash before it as %2F.
_SEPARATOR = r"(?:\.|%2[Ee])"
_TOKEN = re.compile(
    r"(?:(?<=%2[Ff])|(?<=%3[Dd])|(?<![A-Za-z0-9_]))"
    r"[a-z][a-z0-9_]{0,39}"
    + _SEPARATOR
    + r"[A-Za-z0-9_-]{16,}"
    + _SEPARATOR
    + r"[0-9a-z]{1,13}"
    + _SEPARATOR
    + r"[A-Za-z0-9_-]{16,}(?![A-Za-z0-9_-])"
)


def redact_path(text: str) -> str:
    """``text`` with ``[token]`` for every link token in it.

    The segment after ``/contrasena/``, ``/workspace/``, ``/setup/``,
    ``/documento-tributario/`` or ``/certificacion/`` is replaced whatever
    it looks like (a token cut short or with a stray character is still
    most of a token), and so is anything shaped like a token elsewhere. A
    host application's own paths with those words lose their next segment
    too: a log line loses a detail, never a secret.
    """
    return _TOKEN.sub("[token]", _AFTER_PAGE.sub(r"/\1/[token]", text))


def _redacted(value: object) -> object:
    return redact_path(value) if isinstance(value, str) else value


class RedactLinkTokens(logging.Filter):
    """Replaces link tokens with ``[token]`` in a record's message and its
    arguments (a tuple, as uvicorn and werkzeug log, or a mapping, as
    gunicorn does)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_path(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted(a) for a in record.args)
        elif isinstance(record.args, Mapping):
            record.args = {k: _redacted(v) for k, v in record.args.items()}
        return True


def install(names: Sequence[str] = ACCESS_LOGGERS) -> None:
    """Give each logger in ``names`` the filter, once: ``create_app`` calls
    this, so a host served by uvicorn, Flask's werkzeug, gunicorn or
    hypercorn writes ``[token]`` where a link's token was."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactLinkTokens) for f in logger.filters):
            logger.addFilter(RedactLinkTokens())
