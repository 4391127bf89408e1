"""Link pages as drawn, each kept beside the database state it was drawn from.

A link page is a function of the link's snapshot (its row and everything
it acts on, read in one statement on every request: ``snapshots.py``) and
of the request's path, prefix and step. A kept page is served only when
the state read by *this* request equals the one it was drawn from, so a
change made by any process, or a link used, revoked or superseded, is
never answered from here: the comparison fails, or the link's read raises
before the cache is asked. Nothing expires by time because nothing here
depends on it (a link's expiry is checked on its token, before the read).

Nothing said to one request alone is kept: a page is kept as the pieces
around its form token, and each answer joins them with a token signed for
it; a page that sets a cookie, or answers a query other than ``?paso=``,
is not kept (``web/app.py``, ``link_page``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

__all__ = ["PageCache", "Pieces"]

#: A page as kept: its bytes around the places a request's own values go
#: (the web app joins them with the request's form token).
Pieces = tuple[bytes, ...]


class PageCache:
    """At most ``size`` pages, the least recently served dropped first.

    ``size`` 0 keeps nothing. Safe to use from several threads.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._pages: OrderedDict[Hashable, tuple[Any, Pieces]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, state: Any) -> Pieces | None:
        """The page kept under ``key`` if it was drawn from ``state``."""
        with self._lock:
            found = self._pages.get(key)
            if found is None:
                return None
            if found[0] != state:
                # Drawn from another state: the caller draws it again.
                del self._pages[key]
                return None
            self._pages.move_to_end(key)
            return found[1]

    def put(self, key: Hashable, state: Any, body: Pieces) -> None:
        """Keep ``body``, the page drawn from ``state``, under ``key``."""
        if self.size <= 0:
            return
        with self._lock:
            self._pages[key] = (state, body)
            self._pages.move_to_end(key)
            while len(self._pages) > self.size:
                self._pages.popitem(last=False)

    def __len__(self) -> int:
        return len(self._pages)
